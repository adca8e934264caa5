"""The weights registry: the shipped-files manifest, the RSC-fits-VFN check, model configs."""

import json

import pytest

import cldyn.weights as W
from cldyn.errors import CheckpointError, CldynError
from cldyn.model.rsc import RSC, CLDyN, RSCConfig, rsc_fit_problem
from cldyn.model.vfn import VFN, VFNConfig
from cldyn.tasks import load_pretrained_task


def test_rsc_fit_problem_names_both_sides():
    vfn = VFN(VFNConfig(num_blocks=2))
    assert rsc_fit_problem(RSCConfig(num_stages=1), vfn) is None
    problem = rsc_fit_problem(RSCConfig(num_stages=3), vfn)
    assert problem == "RSC for a VFN of 4 blocks, width 8, does not fit the VFN in use (2 blocks, width 8)"
    with pytest.raises(ValueError, match="does not fit"):
        CLDyN(vfn, RSC(RSCConfig()))


def test_load_rsc_checks_the_fit_as_a_checkpoint_error(tmp_path):
    path = tmp_path / "rsc.safetensors"
    W.save_rsc(path, RSC(RSCConfig()))
    assert W.load_rsc(path, vfn=VFN()).cfg == RSCConfig()
    with pytest.raises(CheckpointError, match=r"rsc\.safetensors: RSC for a VFN of 4 blocks.*\(2 blocks"):
        W.load_rsc(path, vfn=VFN(VFNConfig(num_blocks=2)))


def test_shipped_files_are_listed_with_their_hashes():
    manifest = W.read_manifest()
    for name in (W.SHIPPED_VFN, W.SHIPPED_RSC, W.shipped_task_file("saliency")):
        path, sha = W.shipped_file(name, "missing")
        assert path.is_file() and sha == manifest[name]["sha256"] and len(sha) == 64
    with pytest.raises(CldynError, match="^no such file here$"):
        W.shipped_file("nothing.safetensors", "no such file here")


def test_record_shipped_adds_an_entry(tmp_path, monkeypatch):
    monkeypatch.setattr(W, "shipped_weights_dir", lambda: tmp_path)
    with pytest.raises(CheckpointError, match="no shipped weights manifest"):
        W.read_manifest()
    W.record_shipped("a.safetensors", {"sha256": "0" * 64, "kind": "vfn"})
    W.record_shipped("b.safetensors", {"sha256": "1" * 64, "kind": "rsc"})
    assert json.loads((tmp_path / W.MANIFEST).read_text())["a.safetensors"]["kind"] == "vfn"
    assert sorted(W.read_manifest()) == ["a.safetensors", "b.safetensors"]


def test_registry_builds_each_config():
    assert W.list_models() == sorted(W.MODEL_CONFIGS)
    for name, cfg in W.MODEL_CONFIGS.items():
        assert W.create_vfn(name).cfg == cfg
    assert W.create_vfn("vfn", num_blocks=3).cfg.num_blocks == 3
    with pytest.raises(ValueError, match="unknown VFN"):
        W.create_vfn("nope")
    with pytest.raises(ValueError, match="shipped weights exist only"):
        W.create_vfn("vfn_small", pretrained=True)
    with pytest.raises(ValueError, match="with overrides"):
        W.create_vfn(W.SHIPPED_MODEL, pretrained=True, num_blocks=3)


def test_shipped_vfn_is_the_registry_model_it_is_named_after():
    # the registry entry must build exactly the network whose weights ship, so create_vfn(name) can train it anew
    shipped = W.create_vfn(W.SHIPPED_MODEL, pretrained=True)
    assert shipped.cfg == W.MODEL_CONFIGS[W.SHIPPED_MODEL]
    assert W.PRETRAINED_FILES == {W.SHIPPED_MODEL: W.SHIPPED_VFN}
    fresh = W.create_vfn(W.SHIPPED_MODEL)
    assert {k: v.shape for k, v in fresh.state_dict().items()} == {k: v.shape for k, v in shipped.state_dict().items()}


def test_shipped_weights_info_counts_parameters_and_checks_hashes():
    rows = {r["file"]: r for r in W.shipped_weights_info()}
    assert set(rows) == set(W.read_manifest())
    assert all(r["sha256_ok"] for r in rows.values())
    assert rows[W.SHIPPED_VFN]["parameters"] == sum(p.numel() for p in W.load_pretrained_vfn().parameters())
    assert rows[W.SHIPPED_RSC]["parameters"] == sum(p.numel() for p in W.load_pretrained_rsc().parameters())
    saliency = load_pretrained_task("saliency")
    assert rows["task_saliency.safetensors"]["parameters"] == sum(p.numel() for p in saliency.model.parameters())


def test_training_summary_names_the_camera_a_network_was_trained_on():
    meta = {"global_step": 650, "train_config": {"data": "../shared/data/msrs", "input": "visible",
                                                 "train_split": "docs/training/splits/msrs_train_a.txt"}}
    assert W._training_summary(meta) == "650 steps on msrs (msrs_train_a), visible images only"
    meta["train_config"]["input"] = "runs/msrs_vfn"
    assert W._training_summary(meta) == "650 steps on msrs (msrs_train_a), fused images"


def test_training_summary_of_a_record():
    meta = {"global_step": 960, "epoch": 40, "val_score": 1.44921,
            "train_config": {"data": ["../shared/data/msrs", "/x/roadscene"], "split": "train"}}
    assert W._training_summary(meta) == "960 steps on msrs+roadscene (train); val score 1.4492"
    assert W._training_summary({"global_step": 5, "train_config": {"data": {"a": "d/msrs", "b": "d/msrs"}}}) == \
        "5 steps on msrs"
    assert W._training_summary({}) == "no training record"


def test_an_rsc_trained_without_the_loop_before_the_config_said_so_loads_as_the_ablation(tmp_path):
    from cldyn.weights.checkpoint import load_checkpoint, save_checkpoint

    path = tmp_path / "nocl.safetensors"
    W.save_rsc(path, RSC(RSCConfig()), {"train_config": {"closed_loop": False}})
    tensors, meta = load_checkpoint(path)
    del meta["rsc_config"]["closed_loop"]  # as train-rsc wrote it before RSCConfig.closed_loop existed
    save_checkpoint(path, tensors, meta)
    assert W.load_rsc(path).cfg.closed_loop is False
    W.save_rsc(path, RSC(RSCConfig()), {"train_config": {"closed_loop": True}})
    assert W.load_rsc(path).cfg.closed_loop is True
