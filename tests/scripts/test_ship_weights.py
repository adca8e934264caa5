"""scripts/ship_weights.py, the release tool that puts trained weights into the package: fp16 copies whose SHA-256
and training record go into the manifest (here into a temporary folder, never the package's)."""

import json
import runpy
import sys
from pathlib import Path

import pytest
import torch

from cldyn.model.rsc import RSC, RSCConfig
from cldyn.model.vfn import VFN
from cldyn.weights import load_rsc, load_vfn, save_rsc, save_vfn
from cldyn.weights.checkpoint import load_checkpoint, sha256_file

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "ship_weights.py"


def ship(monkeypatch, *args: str) -> None:
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), *args])
    runpy.run_path(str(SCRIPT), run_name="__main__")


def test_ships_a_vfn_and_an_rsc_as_fp16_with_their_sha256_and_record(tmp_path, monkeypatch, capsys):
    torch.manual_seed(0)
    vfn = VFN().eval()
    save_vfn(tmp_path / "vfn_run.safetensors", vfn, {"global_step": 12, "train_config": {"optim": {"seed": 3}}})
    rsc = RSC(RSCConfig(num_stages=vfn.num_stages - 1))
    with torch.no_grad():
        rsc.ir_blocks[0].out_conv.weight.normal_()
    save_rsc(tmp_path / "rsc_run.safetensors", rsc, {"global_step": 5})
    dest = tmp_path / "weights"
    dest.mkdir()
    ship(monkeypatch, "vfn", str(tmp_path / "vfn_run.safetensors"), "--name", "vfn_x", "--dest", str(dest))
    ship(monkeypatch, "rsc", str(tmp_path / "rsc_run.safetensors"), "--name", "rsc_x", "--dest", str(dest),
         "--strength", "1", "--max-change", "0")
    assert "shipped vfn_x.safetensors" in capsys.readouterr().out
    manifest = json.loads((dest / "manifest.json").read_text())
    assert manifest["rsc_x.safetensors"]["settings"] == {"strength": 1.0, "max_change": 0.0}
    assert "settings" not in manifest["vfn_x.safetensors"]
    for name in ("vfn_x.safetensors", "rsc_x.safetensors"):
        assert manifest[name]["sha256"] == sha256_file(dest / name)
        tensors, _ = load_checkpoint(dest / name)
        assert {t.dtype for t in tensors.values() if t.is_floating_point()} == {torch.float16}
    assert manifest["vfn_x.safetensors"]["source_meta"] == {"global_step": 12, "train_config": {"optim": {"seed": 3}}}
    shipped_vfn = load_vfn(dest / "vfn_x.safetensors")
    for k, v in vfn.state_dict().items():  # fp16 copies of the same weights
        assert torch.allclose(shipped_vfn.state_dict()[k].float(), v.float(), rtol=1e-3, atol=1e-4), k
    w = load_rsc(dest / "rsc_x.safetensors").ir_blocks[0].out_conv.weight
    assert torch.allclose(w.float(), rsc.ir_blocks[0].out_conv.weight, rtol=1e-3, atol=1e-3)


def test_refuses_a_checkpoint_of_another_kind(tmp_path, monkeypatch):
    from cldyn.errors import CheckpointError

    save_vfn(tmp_path / "vfn_run.safetensors", VFN())
    (tmp_path / "weights").mkdir()
    with pytest.raises(CheckpointError, match="not RSC weights"):
        ship(monkeypatch, "rsc", str(tmp_path / "vfn_run.safetensors"), "--dest", str(tmp_path / "weights"))
    assert not list((tmp_path / "weights").iterdir())  # nothing written
