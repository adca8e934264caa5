"""The paired bootstrap of a task metric between two image sources (``cldyn eval-task --against``)."""

import json

import numpy as np
import pytest
import torch

from cldyn.evaluation.bootstrap import metric_scorer, paired_bootstrap
from cldyn.tasks import create_task


def test_paired_bootstrap_against_numpy():
    rng = np.random.default_rng(3)
    a, b = rng.random(15), rng.random(15)
    r = paired_bootstrap(lambda i: a[i].mean(), lambda i: b[i].mean(), 15, resamples=400, seed=7, level=0.9)
    # independently: the same draws, the differences of the means
    draws = np.random.default_rng(7).integers(0, 15, size=(400, 15))
    diffs = a[draws].mean(1) - b[draws].mean(1)
    assert r["a"] == pytest.approx(a.mean()) and r["difference"] == pytest.approx(a.mean() - b.mean())
    assert r["ci"] == pytest.approx(list(np.quantile(diffs, [0.05, 0.95])))
    assert r["std"] == pytest.approx(diffs.std()) and r["p_a_not_better"] == pytest.approx((diffs <= 0).mean())
    same = paired_bootstrap(lambda i: a[i].mean(), lambda i: a[i].mean(), 15, resamples=50)
    assert same["ci"] == [0.0, 0.0] and same["p_a_not_better"] == 1.0  # a source is never better than itself
    with pytest.raises(ValueError, match="resamples >= 1"):
        paired_bootstrap(lambda i: 0.0, lambda i: 0.0, 3, resamples=0)


def _resampled(adapter, preds, targets, index, metric):
    """The reference: the adapter's own evaluate on the resampled lists."""
    return adapter.evaluate([preds[i] for i in index], [targets[i] for i in index])[metric]


def _check_scorer(adapter, preds, targets, metric):
    score = metric_scorer(adapter, preds, targets, metric)
    rng = np.random.default_rng(0)
    for index in [np.arange(len(preds)), *rng.integers(0, len(preds), size=(4, len(preds)))]:
        assert score(index) == pytest.approx(_resampled(adapter, preds, targets, index, metric), abs=1e-12)


def test_segmentation_miou_from_per_image_confusions():
    adapter = create_task("segmentation", {"arch": "lite0-fpn"})
    k, g = adapter.config["num_labels"], torch.Generator().manual_seed(0)
    targets = [torch.randint(0, k, (12, 16), generator=g, dtype=torch.uint8) for _ in range(6)]
    targets[0][:3] = 255  # ignored pixels
    preds = [torch.where(torch.rand(12, 16, generator=g) < 0.6, t.long() % k, torch.randint(0, k, (12, 16),
                                                                                          generator=g))
             for t in targets]
    _check_scorer(adapter, preds, targets, "miou")


def test_saliency_max_f_from_per_image_curves():
    adapter = create_task("saliency", {"arch": "lite0-fpn"})
    g = torch.Generator().manual_seed(1)
    targets = [(torch.rand(1, 10, 14, generator=g) < 0.3).float() for _ in range(6)]
    preds = [(0.6 * t + 0.4 * torch.rand(1, 10, 14, generator=g)).clamp(0, 1) for t in targets]
    _check_scorer(adapter, preds, targets, "max_f")


def test_detection_map_from_one_matching():
    pytest.importorskip("pycocotools")
    adapter = create_task("cldyn.tasks.detection_fcos:RetinaNetDetectionAdapter", {})
    g = torch.Generator().manual_seed(2)
    targets, preds = [], []
    for i in range(7):
        n = int(torch.randint(0 if i else 1, 4, (1,), generator=g))  # some images without objects
        t = torch.cat((torch.randint(0, 3, (n, 1), generator=g).float(), 0.3 + 0.4 * torch.rand(n, 2, generator=g),
                       0.1 + 0.1 * torch.rand(n, 2, generator=g)), 1)
        centre = t[:, 1:3] * 100 + 4 * torch.randn(n, 2, generator=g)
        size = t[:, 3:5] * 100
        boxes = torch.cat((centre - size / 2, centre + size / 2), 1)
        labels = torch.where(torch.rand(n, generator=g) < 0.8, t[:, 0].long(), torch.randint(0, 3, (n,), generator=g))
        preds.append({"boxes": torch.cat((boxes, torch.tensor([[5.0, 5, 20, 20]]))),
                      "scores": torch.cat((torch.rand(n, generator=g), torch.tensor([0.05]))),
                      "labels": torch.cat((labels, torch.tensor([1]))), "size": (100, 100)})
        targets.append(t)
    _check_scorer(adapter, preds, targets, "map50_95")


def test_any_other_adapter_through_its_evaluate():
    adapter = create_task("tiny_adapter:TinyAdapter")
    g = torch.Generator().manual_seed(4)
    targets = [torch.rand(1, 4, 4, generator=g) for _ in range(5)]
    preds = [t + 0.1 * torch.rand(1, 4, 4, generator=g) for t in targets]
    _check_scorer(adapter, preds, targets, "mae")
    with pytest.raises(KeyError, match="no 'miou'"):
        metric_scorer(adapter, preds, targets, "miou")(np.arange(5))


def test_eval_task_against_cli(labelled, tmp_path, capsys):
    from cldyn.cli import main

    out = tmp_path / "cmp.json"
    assert main(["eval-task", "--task", "saliency", "--data", str(labelled), "--split", "train", "--source", "visible",
                 "--against", "infrared", "--resamples", "30", "--json", str(out), "--quiet"]) == 0
    res = json.loads(out.read_text())
    c = res["comparison"]
    assert c["metric"] == "max_f" and c["resamples"] == 30 and res["against"] == "infrared"
    assert c["a"] == pytest.approx(res["metrics"]["max_f"]) and c["b"] == pytest.approx(res["against_metrics"]["max_f"])
    assert c["ci"][0] <= c["ci"][1]
    assert "saliency max_f:" in capsys.readouterr().err
    assert main(["eval-task", "--task", "saliency", "--data", str(labelled), "--source", "visible",
                 "--against", "infrared", "--resamples", "0", "--quiet"]) == 2
    assert "resamples must be at least 1" in capsys.readouterr().err
    assert main(["eval-task", "--task", "saliency", "--data", str(labelled), "--split", "train", "--source", "visible",
                 "--against", "infrared", "--metric", "miou", "--quiet"]) == 2
    assert "no metric 'miou' to compare on (its metrics: mae, max_f" in capsys.readouterr().err
