"""One backend object per backend: make_backend turns the Fuser's arguments into the VFN, CLDyN or onnxruntime."""

import pytest
import torch

from cldyn.errors import CldynError
from cldyn.inference.backends import CLDyNBackend, VFNBackend, fuse_tensors, make_backend
from cldyn.model.rsc import RSC, RSCConfig
from cldyn.model.vfn import VFN
from cldyn.tasks import create_task

CPU = torch.device("cpu")


def test_no_task_is_the_vfn_and_its_output_is_fuse_tensors():
    torch.manual_seed(0)
    vfn = VFN().eval()
    ir, vis = torch.rand(2, 1, 16, 16), torch.rand(2, 3, 16, 16)
    for task in (None, "none"):
        backend = make_backend(vfn, CPU, task)
        assert isinstance(backend, VFNBackend) and backend.outputs == 1 and not backend.customised
    (out,) = make_backend(vfn, CPU).fuse_all(ir, vis)
    assert out.shape == (2, 3, 16, 16) and torch.allclose(out, fuse_tensors(vfn, ir, vis), atol=1e-5)


def test_a_task_with_one_rsc_or_several_is_cldyn_and_a_fresh_rsc_gives_the_vfn():
    torch.manual_seed(0)
    vfn = VFN().eval()
    task = create_task("tiny_adapter:TinyAdapter")
    one = make_backend(vfn, CPU, task, RSC(RSCConfig(num_stages=vfn.num_stages - 1)), strength=1.0)
    two = make_backend(vfn, CPU, task, [RSC(RSCConfig(num_stages=vfn.num_stages - 1)) for _ in range(2)])
    assert isinstance(one, CLDyNBackend) and one.outputs == 1 and one.customised and one.auto_tiles
    assert two.outputs == 2 and not two.auto_tiles  # a tile runs one RSC
    ir, vis = torch.rand(1, 1, 16, 16), torch.rand(1, 3, 16, 16)
    plain = make_backend(vfn, CPU).fuse_all(ir, vis)[0]
    assert all(torch.allclose(out, plain, atol=1e-5) for out in (*one.fuse_all(ir, vis), *two.fuse_all(ir, vis)))
    base, fused = one.fuse_with_base(ir, vis)
    assert torch.allclose(base.float(), plain, atol=1e-5)


def test_a_task_name_loads_its_shipped_network_and_a_shipped_rsc_by_name():
    backend = make_backend(None, CPU, "saliency", "visible")
    assert isinstance(backend, CLDyNBackend) and backend.task.task == "saliency"


def test_refusals_are_one_line_errors():
    with pytest.raises(CldynError, match="list given is empty"):
        make_backend(VFN(), CPU, create_task("tiny_adapter:TinyAdapter"), [])
    with pytest.raises(CldynError, match="drop --task"):
        make_backend(None, CPU, "saliency", onnx="graph.onnx")
    with pytest.raises(CldynError, match="--strength"):
        make_backend(None, CPU, strength=2.0)


def test_max_change_limits_each_images_mean_change_and_zero_lifts_the_limit():
    from cldyn.model.color import luma_of

    vfn = VFN().eval()
    rsc = RSC(RSCConfig(num_stages=vfn.num_stages - 1))
    torch.manual_seed(0)
    for p in rsc.parameters():  # a live RSC: large compensations
        torch.nn.init.normal_(p, std=0.5)
    task = create_task("saliency").freeze()
    ir, vis = torch.rand(2, 1, 64, 64), torch.rand(2, 3, 64, 64)
    base = luma_of(VFNBackend(vfn, torch.device("cpu")).fuse_all(ir, vis)[0])
    free = CLDyNBackend(vfn, task, [rsc], torch.device("cpu"), strength=0.5, max_change=0).fuse_all(ir, vis)[0]
    held = CLDyNBackend(vfn, task, [rsc], torch.device("cpu"), strength=0.5, max_change=1.0).fuse_all(ir, vis)[0]
    change = lambda out: ((luma_of(out) - base).abs().mean(dim=(1, 2, 3)) * 255)  # noqa: E731
    assert (change(free) > 0.6).all()  # without a limit the halfway customisation moves more than 0.5 level
    assert (change(held) <= 0.5 + 0.05).all()  # 0.5 * 1 level (recolouring clips a little)
    with pytest.raises(CldynError, match="--max-change"):
        CLDyNBackend(vfn, task, [rsc], torch.device("cpu"), max_change=-1.0)
