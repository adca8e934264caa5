import numpy as np
import pytest
import torch

from cldyn.data.io import read_image, write_image
from cldyn.data.pairs import pair_folders
from cldyn.errors import CldynError, InputError
from cldyn.inference.fuse import Fuser, fuse_tensors
from cldyn.model.color import rgb_to_luma
from cldyn.model.vfn import VFN
from cldyn.runtime import resolve_device


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return VFN().eval()


def test_fuse_tensors_colour_keeps_chroma(net):
    ir, vis = torch.rand(2, 1, 12, 10), torch.rand(2, 3, 12, 10)
    with torch.no_grad():
        out = fuse_tensors(net, ir, vis)
        y = net(ir, rgb_to_luma(vis))
    assert out.shape == (2, 3, 12, 10)
    # Where no clamping happened the fused image's luma is the network output.
    inside = ((out > 1e-4) & (out < 1 - 1e-4)).all(dim=1, keepdim=True)
    assert inside.float().mean() > 0.5
    assert torch.allclose(rgb_to_luma(out)[inside], y[inside], atol=1e-5)


def test_fuse_tensors_gray(net):
    with torch.no_grad():
        out = fuse_tensors(net, torch.rand(1, 1, 9, 9), torch.rand(1, 1, 9, 9))
    assert out.shape == (1, 1, 9, 9)


def test_fuser_matches_model(net, pairs_dir):
    pairs, _ = pair_folders(pairs_dir / "ir", pairs_dir / "vi")
    fuser = Fuser(net, device="cpu")
    ir, vis = read_image(pairs[0].ir), read_image(pairs[0].vis)
    out = fuser.fuse_images(ir, vis)
    with torch.no_grad():
        ref = fuse_tensors(net, torch.from_numpy(ir.pixels)[None, None],
                           torch.from_numpy(vis.pixels).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
    assert out.shape == vis.pixels.shape
    assert np.abs(out - ref).max() < 1e-5  # BN folding and channels-last change only rounding


def test_fuse_pairs_batched_equals_single_and_is_deterministic(net, pairs_dir, tmp_path):
    pairs, _ = pair_folders(pairs_dir / "ir", pairs_dir / "vi")
    r1 = Fuser(net, device="cpu", batch_size=1).fuse_pairs(pairs, tmp_path / "a", progress=False)
    r2 = Fuser(net, device="cpu", batch_size=2).fuse_pairs(pairs, tmp_path / "b", progress=False)
    r3 = Fuser(net, device="cpu", batch_size=1).fuse_pairs(pairs, tmp_path / "c", progress=False)
    assert r1.ok and r2.ok and r3.ok and [p.name for p in r1.written] == [p.name for p in r2.written]
    for p in r1.written:
        a = read_image(p).pixels
        assert np.abs(a - read_image(tmp_path / "b" / p.name).pixels).max() <= 1 / 255 + 1e-6
        assert (tmp_path / "c" / p.name).read_bytes() == p.read_bytes()  # byte-identical re-run


def test_16bit_in_16bit_out_and_gray_stays_gray(net, tmp_path):
    rng = np.random.default_rng(0)
    ir = rng.random((20, 30))
    vis_gray = rng.random((20, 30))
    write_image(tmp_path / "ir.png", ir, 16)
    write_image(tmp_path / "vis.png", vis_gray, 16)
    fuser = Fuser(net, device="cpu")
    out = fuser.fuse_files(tmp_path / "ir.png", tmp_path / "vis.png", tmp_path / "out.png")
    img = read_image(out)
    assert img.bits == 16 and img.is_gray and img.size == (20, 30)
    out8 = fuser.fuse_files(tmp_path / "ir.png", tmp_path / "vis.png", tmp_path / "out8.png", bits=8)
    assert read_image(out8).bits == 8


def test_fuse_files_refuses_overwrite(net, tmp_path, pairs_dir):
    pairs, _ = pair_folders(pairs_dir / "ir", pairs_dir / "vi")
    fuser = Fuser(net, device="cpu")
    out = tmp_path / "x.png"
    out.write_bytes(b"keep me")
    with pytest.raises(InputError, match="already exists"):
        fuser.fuse_files(pairs[0].ir, pairs[0].vis, out)
    assert out.read_bytes() == b"keep me"
    fuser.fuse_files(pairs[0].ir, pairs[0].vis, out, overwrite=True)
    assert read_image(out).size == (72, 96)


def test_folder_run_reports_bad_pairs_and_continues(net, tmp_path, pairs_dir):
    pairs, _ = pair_folders(pairs_dir / "ir", pairs_dir / "vi")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    from cldyn.data.pairs import Pair

    bad = Pair("broken", tmp_path / "broken.png", pairs[0].vis)
    report = Fuser(net, device="cpu").fuse_pairs([bad, *pairs], tmp_path / "out", progress=False)
    assert len(report.written) == 2 and len(report.errors) == 1
    assert "broken.png" in str(report.errors[0])
    assert not (tmp_path / "out" / "broken.png").exists()


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda")


def test_task_customised_fuser_equals_vfn_at_init(net, pairs_dir):
    from cldyn.model.rsc import RSC
    from cldyn.tasks import create_task

    pairs, _ = pair_folders(pairs_dir / "ir", pairs_dir / "vi")
    ir, vis = read_image(pairs[0].ir), read_image(pairs[0].vis)
    plain = Fuser(net, device="cpu").fuse_images(ir, vis)
    torch.manual_seed(0)
    custom = Fuser(net, device="cpu", task=create_task("tiny_adapter:TinyAdapter"), rsc=RSC()).fuse_images(ir, vis)
    assert np.array_equal(plain, custom)  # zero-initialised RSC: CLDyN reproduces the VFN exactly


def test_several_rscs_share_the_base_and_match_one_rsc_at_a_time(net, pairs_dir, tmp_path):
    from cldyn.model.rsc import CLDyN
    from cldyn.tasks import create_task

    pairs, _ = pair_folders(pairs_dir / "ir", pairs_dir / "vi")
    task = create_task("tiny_adapter:TinyAdapter")
    rscs = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        rsc = CLDyN(net).rsc
        for block in [*rsc.ir_blocks, *rsc.vis_blocks]:
            torch.nn.init.normal_(block.out_conv.weight, std=0.3)
        rscs.append(rsc.eval())
    Fuser(net, device="cpu", task=task, rsc=rscs).fuse_pairs(pairs, [tmp_path / "a", tmp_path / "b"], progress=False)
    for rsc, folder in zip(rscs, ("a", "b"), strict=True):
        Fuser(net, device="cpu", task=task, rsc=rsc).fuse_pairs(pairs, tmp_path / f"one_{folder}", progress=False)
        for p in pairs:
            both = read_image(tmp_path / folder / f"{p.name}.png").pixels
            assert np.array_equal(both, read_image(tmp_path / f"one_{folder}" / f"{p.name}.png").pixels)
    a, b = (read_image(tmp_path / d / f"{pairs[0].name}.png").pixels for d in ("a", "b"))
    assert not np.array_equal(a, b)  # the two RSCs do compensate differently
    with pytest.raises(CldynError, match="2 output folders"):
        Fuser(net, device="cpu", task=task, rsc=rscs).fuse_pairs(pairs, tmp_path / "c", progress=False)


def test_tune_malloc_applies_on_linux():
    import sys

    from cldyn.runtime import tune_malloc

    assert tune_malloc() is sys.platform.startswith("linux")


def test_tiled_blending_is_seamless_for_a_local_operator():
    from cldyn.inference.tiling import fuse_tiled

    ir, vis = torch.rand(1, 1, 70, 95), torch.rand(1, 3, 70, 95)

    def local(a, b):  # any per-pixel operator: tiling must reproduce it exactly
        return 0.3 * a + 0.7 * b

    assert torch.allclose(fuse_tiled(local, ir, vis, tile=32, overlap=8), local(ir, vis), atol=1e-6)


def test_tiled_vfn_close_to_whole_image(net, pairs_dir):
    from cldyn.inference.fuse import Fuser

    pairs, _ = pair_folders(pairs_dir / "ir", pairs_dir / "vi")
    ir, vis = read_image(pairs[0].ir), read_image(pairs[0].vis)
    whole = Fuser(net, device="cpu").fuse_images(ir, vis)
    tiled = Fuser(net, device="cpu", tile=48, overlap=12).fuse_images(ir, vis)
    assert tiled.shape == whole.shape
    # Only the globally pooled channel attention differs between tiles.
    assert np.abs(tiled - whole).mean() < 0.02


def test_fuse_tensors_gives_plain_tensors_unless_asked_for_gradients(pairs_dir):
    net = VFN().train(False)  # parameters require grad, as a freshly built or loaded model's do
    ir, vis = torch.rand(1, 1, 12, 10), torch.rand(1, 3, 12, 10)
    out = fuse_tensors(net, ir, vis)
    assert not out.requires_grad and out.numpy().shape == (1, 3, 12, 10)
    traced = fuse_tensors(net, ir, vis, grad=True)
    traced.sum().backward()
    assert traced.requires_grad and next(net.parameters()).grad is not None
    assert torch.allclose(out, traced.detach())


def test_overwrite_refusal_names_the_python_keyword_and_the_flag(net, tmp_path, pairs_dir):
    pairs, _ = pair_folders(pairs_dir / "ir", pairs_dir / "vi")
    out = tmp_path / "x.png"
    out.write_bytes(b"keep me")
    with pytest.raises(InputError, match=r"x.png: already exists; pass overwrite=True to replace it"):
        Fuser(net, device="cpu").fuse_files(pairs[0].ir, pairs[0].vis, out)


def test_strength_goes_from_the_vfn_to_the_full_customisation(pairs_dir):
    from cldyn.model.rsc import CLDyN
    from cldyn.tasks import create_task
    from cldyn.weights import load_pretrained_vfn

    vfn = load_pretrained_vfn()
    pairs, _ = pair_folders(pairs_dir / "ir", pairs_dir / "vi")
    ir, vis = read_image(pairs[0].ir), read_image(pairs[0].vis)
    task = create_task("tiny_adapter:TinyAdapter")
    torch.manual_seed(3)
    rsc = CLDyN(vfn).rsc
    for block in [*rsc.ir_blocks, *rsc.vis_blocks]:  # a compensation far from zero
        torch.nn.init.normal_(block.out_conv.weight, std=0.3)
    rsc.eval()
    plain = Fuser(vfn, device="cpu").fuse_images(ir, vis)
    at = {s: Fuser(vfn, device="cpu", task=task, rsc=rsc, strength=s).fuse_images(ir, vis) for s in (0.0, 0.5, 1.0)}
    assert np.array_equal(at[0.0], plain)  # strength 0 is the VFN, bit for bit
    full, half = at[1.0] - plain, at[0.5] - plain
    assert np.abs(full).mean() > 1e-3  # the RSC does change the image
    # half way in the luminance (the colour put back clips at 0 and 1, so compare away from the clipped pixels)
    inside = (plain > 0.02).all(-1) & (plain < 0.98).all(-1) & (at[1.0] > 0.02).all(-1) & (at[1.0] < 0.98).all(-1)
    np.testing.assert_allclose(rgb_to_luma(torch.from_numpy(half[inside].T[:, None])).numpy(),
                               rgb_to_luma(torch.from_numpy(full[inside].T[:, None])).numpy() / 2, atol=2e-5)
    with pytest.raises(CldynError, match=r"--strength must be in \[0, 1\]"):
        Fuser(vfn, device="cpu", task=task, rsc=rsc, strength=1.5)


def test_fuse_refuses_a_strength_outside_0_1_before_any_work(pairs_dir, tmp_path, capsys):
    from cldyn.cli import main

    ir, vis = sorted((pairs_dir / "ir").iterdir())[0], sorted((pairs_dir / "vi").iterdir())[0]
    assert main(["fuse", str(ir), str(vis), "-o", str(tmp_path / "o.png"), "--task", "saliency",
                 "--strength", "-0.1"]) == 2
    assert "--strength must be in [0, 1]" in capsys.readouterr().err and not (tmp_path / "o.png").exists()
