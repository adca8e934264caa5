"""``cldyn experiment`` end to end on the two labelled fixture pairs: every file, the tables' rows, and the cache."""

import json

import torch

from cldyn.cli import main


def test_experiment_writes_tables_report_and_reuses_its_cache(labelled, pairs_dir, tmp_path, capsys):
    from cldyn.model.rsc import CLDyN
    from cldyn.weights import load_pretrained_vfn, save_rsc

    torch.manual_seed(0)
    rsc = CLDyN(load_pretrained_vfn()).rsc
    for block in [*rsc.ir_blocks, *rsc.vis_blocks]:  # a live RSC: customised fusion differs from VFN
        torch.nn.init.normal_(block.out_conv.weight, std=0.1)
    save_rsc(tmp_path / "rsc.safetensors", rsc)
    out = tmp_path / "exp"
    rsc_file = str(tmp_path / "rsc.safetensors")
    args = ["experiment", "--data", str(labelled), "--split", "train", "--out", str(out), "--tasks",
            "saliency,segmentation", "--rsc-weights", rsc_file, rsc_file, "--ablation", f"no_penalty={rsc_file}",
            "--other-rsc", f"shipped={rsc_file}", "--unseen", str(pairs_dir),
            "--gallery", "1", "--timing-repeats", "1", "--timing-size", "96x128", "--threads", "1", "--quiet"]
    assert main(args) == 0
    for name in ("report.html", "results.md", "tasks.json", "tasks.md", "efficiency.json", "experiment.json",
                 "fusion/metrics.json", "fusion/metrics.md"):
        assert (out / name).is_file(), name
    fused = sorted(p.name for p in (out / "fused").iterdir())
    assert fused == ["average", "cldyn_saliency_s0", "cldyn_saliency_s1", "cldyn_segmentation_s0",
                     "cldyn_segmentation_s1", "no_penalty_saliency", "no_penalty_segmentation", "shipped_saliency",
                     "shipped_segmentation", "vfn"]
    tasks = json.loads((out / "tasks.json").read_text())
    assert set(tasks) == {"saliency", "segmentation"}
    rows = tasks["saliency"]
    assert list(rows) == ["visible", "infrared", "average", "vfn", "cldyn customised for saliency (this task)",
                          "cldyn customised for segmentation", "ablation: no_penalty", "other run: shipped"]
    mean, std, runs = rows["cldyn customised for saliency (this task)"]["s_measure"]
    assert runs == 2 and std == 0.0 and 0 <= mean <= 1  # two runs of the same weights
    fusion = json.loads((out / "fusion" / "metrics.json").read_text())
    assert {"vfn", "cldyn_saliency_s0", "ir_only", "dwt"} <= set(fusion)
    assert fusion["cldyn_saliency_s0"]["en"] != fusion["vfn"]["en"]
    eff = json.loads((out / "efficiency.json").read_text())
    assert eff["size"] == [96, 128] and "GFLOPs at 128×96" in (out / "results.md").read_text()
    assert eff["params"]["vfn_frozen"] == 46954 and eff["ms_per_pair"]["cldyn_saliency"] > 0
    page = (out / "report.html").read_text()
    assert "http://" not in page and "https://" not in page
    # gallery: 2 task rows x (IR, VIS, VFN, CLDyN-sal, CLDyN-seg); unseen: 2 pairs x the same 5 images
    assert page.count("<img") == 2 * 5 + 2 * 5
    assert "## Results" in (out / "results.md").read_text()
    results = (out / "results.md").read_text()
    assert "Does the customisation depend on the task?" in results and "| 0 | " in results
    assert "other run: shipped" in results and "Trained weights behind the rows" in results
    # inspect-rsc of each run (the same weights twice: two identical rows), in the results and the page
    inspected = json.loads((out / "inspect_rsc.json").read_text())["runs"]
    assert len(inspected) == 2 and inspected[0]["pairs"] == 2 and inspected[0] == inspected[1]
    assert "Does the RSC read the task?" in results and "Does the RSC read the task?" in page
    row = next(ln for ln in results.splitlines() if ln.startswith("| 0 | semantic |"))
    diff = inspected[0]["customisation_mean_abs_diff_grey"]["saliency-segmentation"]
    vs = inspected[0]["customisation_vs_vfn_grey"]
    assert f"| {diff:.3f} |" in row and diff > 0
    assert row.rstrip(" |").endswith(" / ".join(f"{t[:3]} {v:.3f}" for t, v in vs.items()))
    # issue 13's verdicts, from the same tables: the distance is the customisation table's, pooled over the 2 runs
    checks = {c["criterion"]: c for c in json.loads((out / "claims.json").read_text())}
    assert len(checks) == 8 and "The claims, measured" in results and "The claims, measured" in page
    table_row = next(ln for ln in results.splitlines() if ln.startswith("| 0 | ") and "semantic" not in ln)
    dist = table_row.split(" | ")[1]
    assert checks["customisations differ"]["measured"].startswith(f"saliency vs segmentation {dist} ± 0.000")
    assert checks["customisations differ"]["met"] is (float(dist) >= 1.0)
    assert checks["full method beats no_closed_loop"]["met"] is None  # no such ablation in this experiment
    # the unseen camera: VFN and each run's customisations fused there and scored against VFN
    assert sorted(p.name for p in (out / "unseen" / "fused").iterdir()) == [
        "cldyn_saliency_s0", "cldyn_saliency_s1", "cldyn_segmentation_s0", "cldyn_segmentation_s1", "vfn"]
    unseen = json.loads((out / "unseen" / "fusion" / "metrics.json").read_text())
    base = unseen["vfn"]["vif"]
    worst_vif = min(100 * (unseen[m]["vif"] - base) / base for m in unseen if m != "vfn")
    check = checks["no artefacts on an unseen camera"]
    assert f"VIF {worst_vif:+.1f}%" in check["measured"] and check["met"] is not None
    assert "A camera no network saw" in results and "A camera no network saw" in page

    stamps = {p: p.stat().st_mtime_ns for p in [*(out / "fused").rglob("*.png"), *(out / "unseen").rglob("*.png")]}
    stamps[out / "inspect_rsc.json"] = (out / "inspect_rsc.json").stat().st_mtime_ns
    metrics_time = (out / "fusion" / "metrics.json").stat().st_mtime_ns
    capsys.readouterr()
    assert main(args) == 0  # cached: nothing is fused or scored again
    assert "fusing" not in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in [*(out / "fused").rglob("*.png"), *(out / "unseen").rglob("*.png"),
                                              out / "inspect_rsc.json"]} == stamps
    assert (out / "fusion" / "metrics.json").stat().st_mtime_ns == metrics_time


def test_runs_table_names_each_runs_switches(tmp_path):
    from types import SimpleNamespace

    from cldyn.evaluation.experiment_report import runs_markdown
    from cldyn.model.rsc import RSC
    from cldyn.weights import save_rsc

    full, ablation, old = tmp_path / "full.safetensors", tmp_path / "abl.safetensors", tmp_path / "old.safetensors"
    cfg = {"aggregate": "cagrad", "penalty": 5.0, "closed_loop": True, "selection": "trainable", "seed": 1,
           "steps": 150, "task_encoder": "semantic", "fusion_weight": 1.0, "change_weight": 5.0,
           "split": "docs/training/splits/msrs_train_b.txt"}
    save_rsc(full, RSC(), {"train_config": cfg, "global_step": 150})
    save_rsc(ablation, RSC(), {"train_config": {**cfg, "task_encoder": "upstream"}, "global_step": 140})
    save_rsc(old, RSC(), {"train_config": {"aggregate": "mean", "steps": 400, "seed": 0}, "global_step": 50})
    exp = SimpleNamespace(rsc_paths=[full], ablations={"upstream_encoder": [(ablation, None, None)],
                                                       "old": [(old, None, None)]}, second=None)
    rows = runs_markdown(exp).splitlines()[2:]
    assert rows[0] == (f"| cldyn | `{full}` | 1 | 150 (150) | aggregate=cagrad, penalty=5.0, closed_loop=True, "
                       "selection=trainable, task_encoder=semantic, fusion_weight=1.0, change_weight=5.0, "
                       "split=msrs_train_b | cpu |")
    assert "task_encoder=upstream" in rows[1] and "| 150 (140) |" in rows[1]
    assert rows[2] == f"| old | `{old}` | 0 | 400 (50) | aggregate=mean | cpu |"  # older keys only


def test_fusion_scores_are_cached_per_method(pairs_dir, tmp_path):
    """A rerun with one more method scores that method alone, and the table equals scoring all at once."""
    import types

    import cv2

    from cldyn.data.pairs import discover_pairs
    from cldyn.evaluation.evaluate import evaluate_folders
    from cldyn.evaluation.experiment import Experiment

    pairs = sorted(discover_pairs([pairs_dir])[0], key=lambda p: p.name)
    folders = {}
    for m, pick in (("ir_copy", "ir"), ("vis_grey", "vis"), ("mean", None)):
        d = folders[m] = tmp_path / "fused" / m
        d.mkdir(parents=True)
        for p in pairs:
            ir, vis = cv2.imread(str(p.ir), 0), cv2.imread(str(p.vis), 0)
            img = {"ir": ir, "vis": vis, None: ((ir.astype(int) + vis) // 2).astype("uint8")}[pick]
            cv2.imwrite(str(d / f"{p.name}.png"), img)
        (d / ".identity.json").write_text(json.dumps({"method": m}))
    logged: list[str] = []
    stub = types.SimpleNamespace(_sources=Experiment._sources, log=logged.append,
                                 cfg=types.SimpleNamespace(workers=1), progress=False)
    out = tmp_path / "fusion"

    def score(methods):
        return Experiment._scored(stub, {m: folders[m] for m in methods}, pairs, tmp_path / "src", out, ["dwt"])

    first = score(["ir_copy", "vis_grey"])
    assert logged == ["fusion metrics: 2 methods + 1 baselines x 2 pairs"]
    both = score(["ir_copy", "vis_grey", "mean"])
    assert logged[-1] == "fusion metrics: 1 methods + 0 baselines x 2 pairs"
    assert {m: both[m] for m in first} == first
    stamp = (out / "metrics.json").stat().st_mtime_ns
    assert score(["ir_copy", "vis_grey", "mean"]) == both and len(logged) == 2  # nothing changed: nothing scored
    assert (out / "metrics.json").stat().st_mtime_ns == stamp
    src = tmp_path / "src"
    ref = evaluate_folders(src / "ir", src / "vi", [folders[m] for m in ("ir_copy", "vis_grey", "mean")],
                           names=["ir_copy", "vis_grey", "mean"], baselines=["dwt"], progress=False).to_json()
    assert both == ref
    (folders["mean"] / ".identity.json").write_text(json.dumps({"method": "mean", "weights": 2}))
    score(["ir_copy", "vis_grey", "mean"])  # new weights behind a folder: that folder is scored again
    assert logged[-1] == "fusion metrics: 1 methods + 0 baselines x 2 pairs"


def test_second_detector_has_its_own_task_cache(tmp_path, monkeypatch):
    """Both detectors score the VFN folder: each keeps its own cached file, so a rerun evaluates neither again."""
    import types

    from cldyn.evaluation import experiment as E

    calls: list[object] = []
    monkeypatch.setattr(E, "load_task_bank", lambda *a, **k: None)
    monkeypatch.setattr(E, "evaluate_bank", lambda adapter, bank: calls.append(adapter) or {"map50": adapter.score})
    monkeypatch.setattr(E, "image_source", lambda spec: spec)
    primary, second = (types.SimpleNamespace(config=None, score=s, task="detection", label_classes=None)
                       for s in (0.6, 0.3))
    folder = tmp_path / "fused" / "vfn"
    folder.mkdir(parents=True)
    (folder / ".identity.json").write_text(json.dumps({"method": "vfn"}))
    stub = types.SimpleNamespace(out=tmp_path, adapters={"detection": primary}, task_ids={"detection": "sha"},
                                 second_id="sha2", names=["a", "b"], cfg=types.SimpleNamespace(data="d", split="val"))
    for _ in range(2):
        got = [E.Experiment.task_metrics(stub, "detection", a, "vfn", folder) for a in (primary, second)]
        assert got == [{"map50": 0.6}, {"map50": 0.3}]
    assert calls == [primary, second]  # the second pass is served from the two files
    stub.second_id = "sha3"  # other weights behind the second detector: its scores are not served from the cache
    assert E.Experiment.task_metrics(stub, "detection", second, "vfn", folder) == {"map50": 0.3}
    assert calls == [primary, second, second]
    assert sorted(p.name for p in (tmp_path / "tasks").iterdir()) == ["detection__vfn.json",
                                                                     "detection_second__vfn.json"]
