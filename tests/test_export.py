import numpy as np
import pytest
import torch

from cldyn.cli import main
from cldyn.vfn import VFN


def test_onnx_matches_pytorch_at_any_size(tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is in the dev/onnx extras")
    from cldyn.export import export_vfn_onnx

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
    assert main(["export", "--task", "detection", "-o", str(tmp_path / "d.onnx")]) == 2
    assert "not available yet" in capsys.readouterr().err


def test_fuse_with_onnxruntime_backend_matches_torch(tmp_path, pairs_dir):
    pytest.importorskip("onnxruntime", reason="onnxruntime is in the dev/onnx extras")
    from cldyn.io import read_image

    onnx = tmp_path / "vfn.onnx"
    assert main(["export", "-o", str(onnx)]) == 0
    assert main(["fuse", str(pairs_dir), "-o", str(tmp_path / "t"), "--quiet"]) == 0
    assert main(["fuse", str(pairs_dir), "-o", str(tmp_path / "o"), "--quiet", "--backend", "onnxruntime",
                 "--onnx", str(onnx)]) == 0
    for p in (tmp_path / "t").iterdir():
        a, b = read_image(p).pixels, read_image(tmp_path / "o" / p.name).pixels
        assert np.abs(a - b).max() <= 1 / 255 + 1e-6  # 1e-6 differences may round to the next 8-bit level
    assert main(["fuse", str(pairs_dir), "-o", str(tmp_path / "x"), "--backend", "onnxruntime"]) == 2
