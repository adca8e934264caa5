import torch

from cldyn.tasks import load_task
from cldyn.training.task import TrainTaskConfig, train_task
from cldyn.weights.checkpoint import load_checkpoint


def _cfg(root, out, steps):
    return TrainTaskConfig(task="saliency", data=str(root), out_dir=str(out), input="visible", epochs=4,
                           batch_size=2, crop=48, adapter={"stages": 2, "width": 8}, max_steps=steps)


def test_train_resume_same_state(labelled, tmp_path):
    quiet = dict(progress=False, log=lambda m: None)
    best = train_task(_cfg(labelled, tmp_path / "a", 3), **quiet)
    train_task(_cfg(labelled, tmp_path / "b", 1), **quiet)
    train_task(_cfg(labelled, tmp_path / "b", 3), resume=True, **quiet)
    a, meta = load_checkpoint(tmp_path / "a" / "last.safetensors")
    b, _ = load_checkpoint(tmp_path / "b" / "last.safetensors")
    assert meta["global_step"] == 3
    for k in a:
        assert torch.equal(a[k], b[k]), k
    adapter = load_task(best)
    assert adapter.task == "saliency"
    assert (tmp_path / "a" / "metrics.csv").read_text().count("\n") == 4  # header + one row per epoch


def test_warm_start_from_weights(labelled, tmp_path):
    quiet = dict(progress=False, log=lambda m: None)
    best = train_task(_cfg(labelled, tmp_path / "a", 2), **quiet)
    cfg = _cfg(labelled, tmp_path / "warm", 1)
    cfg.init = str(best)
    train_task(cfg, **quiet)
    meta_cfg = load_checkpoint(tmp_path / "warm" / "last.safetensors")[1]["train_config"]
    assert meta_cfg["init"] == str(best)


def test_eval_task_cli_json(labelled, tmp_path, capsys):
    import json

    from cldyn.cli import main

    best = train_task(_cfg(labelled, tmp_path / "a", 2), progress=False, log=lambda m: None)
    out = tmp_path / "r.json"
    assert main(["eval-task", "--task", "saliency", "--data", str(labelled), "--split", "val", "--source", "visible",
                 "--weights", str(best), "--json", str(out), "--quiet"]) == 0
    res = json.loads(out.read_text())
    assert res["task"] == "saliency" and res["source"] == "visible" and res["n"] == 1
    assert {"mae", "max_f", "s_measure", "mean_e"} <= set(res["metrics"])
    assert main(["eval-task", "--task", "segmentation", "--data", str(labelled), "--weights", str(best),
                 "--source", "visible", "--quiet"]) == 2  # a saliency network is not a segmentation network
    assert "not 'segmentation'" in capsys.readouterr().err


def test_eval_task_cldyn_source_equals_vfn_with_untrained_rsc(labelled, tmp_path):
    import json

    import pytest

    from cldyn.cli import main
    from cldyn.model.rsc import RSC
    from cldyn.weights import save_rsc

    best = train_task(_cfg(labelled, tmp_path / "a", 2), progress=False, log=lambda m: None)
    save_rsc(tmp_path / "rsc.safetensors", RSC())  # zero-initialised: CLDyN == VFN
    out = {}
    for source in ("vfn", "cldyn"):
        path = tmp_path / f"{source}.json"
        assert main(["eval-task", "--task", "saliency", "--data", str(labelled), "--split", "train", "--source",
                     source, "--weights", str(best), "--rsc-weights", str(tmp_path / "rsc.safetensors"),
                     "--json", str(path), "--quiet"]) == 0
        out[source] = json.loads(path.read_text())["metrics"]
    # The vfn source is stored as 8-bit images, the closed loop works in float: equal up to that rounding.
    assert out["cldyn"]["mae"] == pytest.approx(out["vfn"]["mae"], abs=2e-3)


def test_a_module_class_spec_trains_on_its_tasks_labels(labelled, tmp_path):
    # FCOS (torchvision, no extra) named by module:Class: labels and metric follow the adapter's task, "detection"
    cfg = TrainTaskConfig(task="cldyn.tasks.detection_fcos:FCOSDetectionAdapter", data=str(labelled),
                          out_dir=str(tmp_path / "fcos"), input="visible", epochs=1, batch_size=2, crop=64,
                          max_steps=1)
    best = train_task(cfg, progress=False, log=lambda m: None)
    adapter = load_task(best)
    assert adapter.task == "detection" and type(adapter).__name__ == "FCOSDetectionAdapter"
    assert "map50" in (tmp_path / "fcos" / "metrics.csv").read_text()
