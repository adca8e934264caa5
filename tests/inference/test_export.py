import numpy as np
import pytest
import torch

from cldyn.cli import main
from cldyn.model.vfn import VFN


def test_onnx_matches_pytorch_at_any_size(tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is in the dev/onnx extras")
    from cldyn.inference.export import export_vfn_onnx

    torch.manual_seed(0)
    net = VFN().eval()
    path = export_vfn_onnx(net, tmp_path / "vfn.onnx")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for b, h, w in [(1, 97, 131), (2, 48, 64), (1, 2, 3)]:
        ir, vis = torch.rand(b, 1, h, w), torch.rand(b, 1, h, w)
        out = sess.run(None, {"ir": ir.numpy(), "vis_y": vis.numpy()})[0]
        with torch.no_grad():
            ref = net(ir, vis).numpy()
        assert out.shape == ref.shape and np.abs(out - ref).max() < 1e-4


def test_cli_export(tmp_path, capsys):
    pytest.importorskip("onnx", reason="the ONNX exporter writes through the onnx package")
    assert main(["export", "--task", "none", "-o", str(tmp_path / "m.onnx")]) == 0
    assert (tmp_path / "m.onnx").stat().st_size > 10_000
    assert main(["export", "--task", "detection", "-o", str(tmp_path / "d.onnx"), "--rsc-weights",
                 str(tmp_path / "missing.safetensors")]) == 2
    assert "missing.safetensors" in capsys.readouterr().err


def test_fuse_with_onnxruntime_backend_matches_torch(tmp_path, pairs_dir):
    pytest.importorskip("onnxruntime", reason="onnxruntime is in the dev/onnx extras")
    from cldyn.data.io import read_image

    onnx = tmp_path / "vfn.onnx"
    assert main(["export", "-o", str(onnx)]) == 0
    assert main(["fuse", str(pairs_dir), "-o", str(tmp_path / "t"), "--quiet"]) == 0
    assert main(["fuse", str(pairs_dir), "-o", str(tmp_path / "o"), "--quiet", "--backend", "onnxruntime",
                 "--onnx", str(onnx)]) == 0
    for p in (tmp_path / "t").iterdir():
        a, b = read_image(p).pixels, read_image(tmp_path / "o" / p.name).pixels
        assert np.abs(a - b).max() <= 1 / 255 + 1e-6  # 1e-6 differences may round to the next 8-bit level
    assert main(["fuse", str(pairs_dir), "-o", str(tmp_path / "x"), "--backend", "onnxruntime"]) == 2


def _live_rsc(vfn: VFN, seed: int = 0, tone: int = 0):
    """An RSC whose output convs (and task FiLMs) are non-zero, so that compensation changes the fused image and
    depends on where the task responds; ``tone``: with a tone head of that many knots, also non-zero."""
    from dataclasses import replace

    from cldyn.model.rsc import RSC, CLDyN
    from cldyn.model.tone import ToneConfig

    torch.manual_seed(seed)
    rsc = CLDyN(vfn).rsc
    if tone:
        rsc = RSC(replace(rsc.cfg, tone=ToneConfig(knots=tone)))
        torch.nn.init.normal_(rsc.tone.net[-1].weight, std=1.0)
    for block in [*rsc.ir_blocks, *rsc.vis_blocks]:
        torch.nn.init.normal_(block.out_conv.weight, std=0.2)
        for last in (block.task_encoder.film_global[-1], block.task_encoder.film_spatial[-1]):
            torch.nn.init.normal_(last.weight, std=0.1)
    return rsc.eval()


def _reach_vfn() -> VFN:
    """A max-skip VFN with a detail gain and a reach head (a trained-looking correction, a random paper-form head)."""
    from cldyn.model.vfn import VFNConfig, with_reach_head

    torch.manual_seed(5)
    maxskip = VFN(VFNConfig(skip="max", detail_gain=0.15))
    torch.nn.init.normal_(maxskip.decoder.head[-1].weight, std=0.01)
    return with_reach_head(maxskip, VFN())


@pytest.mark.parametrize(("config", "reach", "tone"), [({}, False, 0), ({"arch": "lite0-fpn"}, False, 0),
                                                       ({}, True, 0), ({}, False, 8)])
def test_customised_fusion_onnx_matches_pytorch(tmp_path, config, reach, tone):  # Lite0: its size-dependent padding too
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is in the dev/onnx extras")
    from cldyn.inference.export import export_cldyn_onnx
    from cldyn.model.color import rgb_to_luma
    from cldyn.model.ops import pad_to_multiple
    from cldyn.model.rsc import CLDyN, at_strength
    from cldyn.tasks import create_task

    vfn = _reach_vfn() if reach else VFN().eval()
    rsc = _live_rsc(vfn, tone=tone)
    task = create_task("saliency", config).freeze()
    path = export_cldyn_onnx(vfn, rsc, task, tmp_path / "cldyn.onnx", strength=1.0)  # the full compensation
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    model = CLDyN(vfn, rsc).eval()
    for b, h, w in [(1, 96, 128), (2, 160, 224), (1, 97, 61)]:  # the example size, larger, not multiples of 32
        ir, vis = torch.rand(b, 1, h, w), torch.rand(b, 3, h, w)
        out = sess.run(None, {"ir": ir.numpy(), "vis": vis.numpy()})[0]
        y = rgb_to_luma(vis)
        with torch.no_grad():  # luminance before recolouring (which clamps)
            feats = task.features(pad_to_multiple(model.base(ir, vis), 32)[0])
            plain_t = vfn(ir, y)
            # the full compensation, each image's mean change limited as CLDyN.customised does
            ref = at_strength(plain_t, model.compensated_luma(ir, y, feats), 1.0, model.max_change).numpy()
            plain = plain_t.numpy()
        assert out.shape == (b, 1, h, w)
        assert np.abs(out - ref).max() < 1e-4
        assert np.abs(out - plain).max() > 1e-2  # the compensation is in the graph


def test_fuse_with_exported_customised_fusion_matches_torch(tmp_path, pairs_dir):
    pytest.importorskip("onnxruntime", reason="onnxruntime is in the dev/onnx extras")
    from cldyn.data.io import read_image
    from cldyn.weights import load_pretrained_vfn, save_rsc

    rsc_path = tmp_path / "rsc.safetensors"
    save_rsc(rsc_path, _live_rsc(load_pretrained_vfn()))
    onnx = tmp_path / "sal.onnx"
    assert main(["export", "--task", "saliency", "--rsc-weights", str(rsc_path), "-o", str(onnx)]) == 0
    common = [str(pairs_dir), "--quiet"]
    assert main(["fuse", *common, "-o", str(tmp_path / "t"), "--task", "saliency", "--rsc-weights",
                 str(rsc_path)]) == 0
    assert main(["fuse", *common, "-o", str(tmp_path / "o"), "--backend", "onnxruntime", "--onnx", str(onnx)]) == 0
    assert main(["fuse", *common, "-o", str(tmp_path / "v")]) == 0
    names = sorted(p.name for p in (tmp_path / "t").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "o").iterdir()) and names
    for name in names:
        t, o, v = (read_image(tmp_path / d / name).pixels for d in "tov")
        assert np.abs(t - o).max() <= 1 / 255 + 1e-6  # 1e-6 differences may round to the next 8-bit level
        assert np.abs(t - v).max() > 5 / 255  # customised differs from plain VFN
    assert main(["fuse", *common, "-o", str(tmp_path / "x"), "--backend", "onnxruntime", "--onnx", str(onnx),
                 "--task", "saliency"]) == 2


def test_exported_strength_matches_the_fuser(tmp_path, pairs_dir):
    pytest.importorskip("onnxruntime", reason="onnxruntime is in the dev/onnx extras")
    from cldyn.data.io import read_image
    from cldyn.weights import load_pretrained_vfn, save_rsc

    rsc_path = tmp_path / "rsc.safetensors"
    save_rsc(rsc_path, _live_rsc(load_pretrained_vfn()))
    onnx = tmp_path / "sal_half.onnx"
    assert main(["export", "--task", "saliency", "--rsc-weights", str(rsc_path), "--strength", "0.5", "-o",
                 str(onnx)]) == 0
    common = [str(pairs_dir), "--quiet"]
    assert main(["fuse", *common, "-o", str(tmp_path / "t"), "--task", "saliency", "--rsc-weights", str(rsc_path),
                 "--strength", "0.5"]) == 0
    assert main(["fuse", *common, "-o", str(tmp_path / "f"), "--task", "saliency", "--rsc-weights", str(rsc_path),
                 "--strength", "1"]) == 0
    assert main(["fuse", *common, "-o", str(tmp_path / "o"), "--backend", "onnxruntime", "--onnx", str(onnx)]) == 0
    for name in sorted(p.name for p in (tmp_path / "t").iterdir()):
        t, o, f = (read_image(tmp_path / d / name).pixels for d in "tof")
        assert np.abs(t - o).max() <= 1 / 255 + 1e-6
        assert np.abs(t - f).max() > 2 / 255  # half strength is not the full customisation


def test_export_refuses_auto_strength_in_one_line(tmp_path, capsys):
    pytest.importorskip("onnx", reason="onnx is in the dev/onnx extras")
    out = tmp_path / "auto.onnx"
    assert main(["export", "--task", "saliency", "--strength", "auto", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--strength auto chooses each image's strength" in err[0] and not out.exists()
