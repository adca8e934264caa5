import json

import pytest
import torch
from safetensors.torch import save_file

from cldyn.errors import CheckpointError
from cldyn.model.vfn import VFN, VFNConfig
from cldyn.weights import load_pretrained_vfn, load_vfn, save_vfn
from cldyn.weights.checkpoint import load_checkpoint, save_checkpoint


def test_vfn_round_trip(tmp_path):
    net = VFN().eval()
    sha = save_vfn(tmp_path / "w.safetensors", net, {"note": "x"})
    back = load_vfn(tmp_path / "w.safetensors", expected_sha256=sha)
    for k, v in net.state_dict().items():
        assert torch.equal(v, back.state_dict()[k]), k
    meta = json.loads((tmp_path / "w.json").read_text())
    assert meta["sha256"] == sha and meta["note"] == "x" and meta["config"]["num_blocks"] == 4


def test_half_weights_close(tmp_path):
    net = VFN().eval()
    save_vfn(tmp_path / "h.safetensors", net, half=True)
    back = load_vfn(tmp_path / "h.safetensors")
    x = torch.rand(1, 1, 16, 16)
    with torch.no_grad():
        assert (back(x, x) - net(x, x)).abs().max() < 1e-2


def test_hash_mismatch(tmp_path):
    save_vfn(tmp_path / "w.safetensors", VFN())
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_vfn(tmp_path / "w.safetensors", expected_sha256="0" * 64)


def test_nan_weights_rejected(tmp_path):
    net = VFN()
    with torch.no_grad():
        net.decoder.head[-1].weight[0, 0, 0, 0] = float("nan")
    save_vfn(tmp_path / "nan.safetensors", net)
    with pytest.raises(CheckpointError, match="NaN"):
        load_vfn(tmp_path / "nan.safetensors")


def test_other_config_rejected(tmp_path):
    save_vfn(tmp_path / "w.safetensors", VFN(VFNConfig(num_blocks=2)))
    tensors, meta = load_checkpoint(tmp_path / "w.safetensors")
    meta["config"]["num_blocks"] = 4  # metadata lies about the architecture
    save_checkpoint(tmp_path / "lie.safetensors", tensors, meta)
    with pytest.raises(CheckpointError, match="does not fit the model: missing") as info:
        load_vfn(tmp_path / "lie.safetensors")
    assert "\n" not in str(info.value)


def test_foreign_files_rejected(tmp_path):
    save_file({"w": torch.zeros(2)}, tmp_path / "plain.safetensors")
    with pytest.raises(CheckpointError, match="no cldyn metadata"):
        load_checkpoint(tmp_path / "plain.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(CheckpointError, match="not a valid safetensors"):
        load_checkpoint(tmp_path / "junk.safetensors")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "absent.safetensors")


def test_shipped_weights_verified():
    net = load_pretrained_vfn()
    assert isinstance(net, VFN) and not net.training


def test_every_shipped_file_matches_its_sha256_and_loads():
    from cldyn.tasks import load_task
    from cldyn.weights import load_rsc, shipped_weights_dir

    wdir = shipped_weights_dir()
    manifest = json.loads((wdir / "manifest.json").read_text())
    assert {"vfn.safetensors", "rsc.safetensors", "task_saliency.safetensors",
            "task_segmentation.safetensors", "task_detection.safetensors"} <= set(manifest)
    for name, entry in manifest.items():
        _, meta = load_checkpoint(wdir / name, entry["sha256"])  # verifies the hash
        assert meta["kind"] == {"vfn": "vfn", "task": "task", "rsc": "rsc"}[entry["kind"]]
    rsc = load_rsc(wdir / "rsc.safetensors", manifest["rsc.safetensors"]["sha256"])
    assert rsc.cfg.num_stages == load_pretrained_vfn().num_stages - 1  # fits the shipped VFN
    assert load_task(wdir / "task_saliency.safetensors").task == "saliency"
