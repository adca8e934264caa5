"""Validation during VFN training: the metrics, the selection rule and the best checkpoint on a tiny real run."""

import csv

import numpy as np
import pytest
import torch

from cldyn.data.bank import AugmentConfig
from cldyn.data.pairs import discover_pairs
from cldyn.errors import CldynError
from cldyn.evaluation.evaluate import fusion_metrics, gray_of_rgb8, read_gray
from cldyn.model.vfn import VFNConfig
from cldyn.training.validation import VAL_METRICS, FusionValidator, ValidationConfig, selection_score
from cldyn.training.vfn import TrainVFNConfig, train_vfn
from cldyn.weights import load_vfn
from cldyn.weights.checkpoint import load_checkpoint


def _cfg(pairs_dir, out, max_steps, every=2):
    return TrainVFNConfig(data=[str(pairs_dir)], out_dir=str(out), split=None, epochs=10, batch_size=2,
                          augment=AugmentConfig(crop_size=48), model=VFNConfig(num_blocks=2), checkpoint_every=1,
                          max_steps=max_steps, validation=ValidationConfig(data=str(pairs_dir), split="all",
                                                                           every=every, limit=None))


def _rows(path):
    return list(csv.DictReader(path.open()))


def test_selection_score_is_the_mean_ratio_to_the_reference():
    ref = {k: float(i + 1) for i, k in enumerate(VAL_METRICS)}
    assert selection_score(ref, ref) == pytest.approx(1.0)
    better_mi = {**ref, "mi": 2 * ref["mi"]}
    assert selection_score(better_mi, ref) == pytest.approx(1 + 1 / len(VAL_METRICS))


def test_in_memory_scoring_matches_a_written_file(tmp_path, pairs_dir):
    """What the validator scores equals what cldyn evaluate scores from the PNG file."""
    import cv2

    rgb = (np.random.default_rng(0).random((20, 30, 3)) * 255).astype(np.uint8)
    path = tmp_path / "f.png"
    cv2.imwrite(str(path), rgb[..., ::-1])
    for convention in ("cddfuse", "cldyn"):
        assert np.array_equal(gray_of_rgb8(rgb, convention), read_gray(path, convention))
        assert np.array_equal(gray_of_rgb8(rgb[..., 0], convention), np.round(rgb[..., 0].astype(np.float64)))


def test_metric_subset_and_unknown_names():
    rng = np.random.default_rng(1)
    f, a, b = (np.round(rng.random((24, 24)) * 255) for _ in range(3))
    full = fusion_metrics(f, a, b)
    sub = fusion_metrics(f, a, b, keys=VAL_METRICS)
    assert list(sub) == list(VAL_METRICS) and all(sub[k] == full[k] for k in VAL_METRICS)
    with pytest.raises(ValueError, match="unknown metric"):
        fusion_metrics(f, a, b, keys=["nope"])


def test_validator_reference_is_the_average_fusion(pairs_dir):
    pairs, _ = discover_pairs([pairs_dir])
    val = FusionValidator(pairs)
    assert set(val.reference) == set(VAL_METRICS) and all(np.isfinite(v) for v in val.reference.values())

    class Average(torch.nn.Module):  # the reference fusion as a "model": scores exactly the reference
        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(()))

        def forward(self, ir, vis_y):
            return 0.5 * (ir + vis_y) + 0 * self.p

    assert val.metrics(Average()) == val.reference
    with pytest.raises(CldynError, match="no validation pairs"):
        FusionValidator([])


def test_best_checkpoint_is_the_best_validated_step_and_survives_resume(tmp_path, pairs_dir):
    out = tmp_path / "run"
    train_vfn(_cfg(pairs_dir, out, 2), progress=False, log=lambda m: None)
    assert [int(r["step"]) for r in _rows(out / "val.csv")] == [0, 2]
    best = train_vfn(_cfg(pairs_dir, out, 5), resume=True, progress=False, log=lambda m: None)
    rows = _rows(out / "val.csv")
    assert [int(r["step"]) for r in rows] == [0, 2, 4, 5]  # every 2 steps and the last step
    scores = [float(r["score"]) for r in rows]
    _, meta = load_checkpoint(best)
    assert best == out / "best.safetensors" and meta["kind"] == "vfn"
    assert meta["global_step"] == int(rows[int(np.argmax(scores))]["step"])
    assert meta["val_score"] == pytest.approx(max(scores), abs=1e-5)
    assert load_vfn(best).cfg.num_blocks == 2 and (out / "val.png").stat().st_size > 0
    _, last = load_checkpoint(out / "last.safetensors")
    assert last["best"] == pytest.approx(max(scores), abs=1e-5)


def test_keep_validated_saves_each_validated_model(tmp_path, pairs_dir):
    cfg = _cfg(pairs_dir, tmp_path / "run", 4)
    cfg.keep_validated = True
    train_vfn(cfg, progress=False, log=lambda m: None)
    kept = sorted((tmp_path / "run" / "validated").glob("step_*.safetensors"))
    assert [p.name for p in kept] == ["step_0.safetensors", "step_2.safetensors", "step_4.safetensors"]
    rows = {int(r["step"]): float(r["score"]) for r in _rows(tmp_path / "run" / "val.csv")}
    for p in kept:
        _, meta = load_checkpoint(p)
        assert meta["val_score"] == pytest.approx(rows[meta["global_step"]], abs=1e-5)
    # the kept final model is the trained model: it equals last.safetensors' weights
    last, _ = load_checkpoint(tmp_path / "run" / "last.safetensors")
    step4, _ = load_checkpoint(kept[-1])
    assert all(torch.equal(step4[k], last[k]) for k in step4)
