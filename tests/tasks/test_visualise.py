"""Predictions drawn on images: hand-made predictions of each built-in task."""

import numpy as np
import pytest
import torch

from cldyn.tasks import load_pretrained_task
from cldyn.tasks.visualise import PALETTE, draw_prediction, prediction_overlay


def test_boxes_above_the_score_threshold_are_drawn():
    rgb = np.zeros((40, 60, 3), np.float32)
    pred = {"boxes": torch.tensor([[10.0, 5.0, 30.0, 25.0], [40, 5, 55, 20]]), "scores": torch.tensor([0.9, 0.1]),
            "labels": torch.tensor([0, 1])}
    out = draw_prediction("detection", rgb, pred)
    assert np.allclose(out[5, 20], PALETTE[1], atol=1 / 255)  # top edge of the confident box, class 0 colour
    assert out[15, 20].sum() == 0  # inside the box: untouched
    assert out[:, 40:].sum() == 0  # the 0.1-score box is not drawn


def test_segmentation_overlay_blends_foreground_classes_only():
    rgb = np.full((2, 2, 3), 0.5, np.float32)
    out = draw_prediction("segmentation", rgb, np.array([[0, 2], [0, 0]]))
    assert np.allclose(out[0, 0], 0.5) and np.allclose(out[0, 1], 0.45 * 0.5 + 0.55 * PALETTE[2])


def test_saliency_map_is_shown_gray_and_unknown_tasks_refused():
    out = draw_prediction("saliency", np.zeros((2, 3, 3), np.float32), np.array([[0.0, 0.5, 1.0], [1, 1, 1]]))
    assert out.shape == (2, 3, 3) and np.allclose(out[0, :, 1], [0, 0.5, 1])
    with pytest.raises(ValueError, match="no drawing"):
        draw_prediction("depth", np.zeros((1, 1, 3)), None)


def test_overlay_of_a_real_network_on_an_odd_size():
    adapter = load_pretrained_task("saliency").freeze()
    rgb = np.random.default_rng(0).random((50, 70, 3)).astype(np.float32)
    out = prediction_overlay(adapter, rgb)
    assert out.shape == (50, 70, 3) and out.min() >= 0 and out.max() <= 1


def test_a_legend_names_the_classes_drawn_and_only_those():
    rgb = np.full((120, 200, 3), 0.5, np.float32)
    pred = {"boxes": torch.tensor([[100.0, 60.0, 150.0, 110.0], [120, 30, 190, 50], [10, 90, 20, 100]]),
            "scores": torch.tensor([0.9, 0.8, 0.1]), "labels": torch.tensor([2, 0, 1])}
    out = draw_prediction("detection", rgb, pred, ["person", "bicycle", "car"])
    # two rows (person, car: the drawn classes in index order; bicycle's box is under the score threshold), each a
    # square of the class's box colour
    from cldyn.tasks.visualise import ROW, SWATCH

    for row, lab in enumerate((0, 2)):
        top = 4 + row * ROW
        assert np.allclose(out[top + SWATCH // 2, 4 + SWATCH // 2], PALETTE[1 + lab], atol=1 / 255)
    assert np.allclose(out[4 + 2 * ROW + SWATCH // 2, 4 + SWATCH // 2], 0.5, atol=1 / 255)  # no third row
    assert (np.abs(out[4:4 + 2 * ROW, SWATCH + 8:60] - 1.0) < 0.02).any()  # white text of the names
    plain = draw_prediction("detection", rgb, {**pred, "scores": torch.zeros(3)}, ["person", "bicycle", "car"])
    assert np.allclose(plain, rgb, atol=1 / 255)  # nothing drawn, no legend
    seg = np.zeros((120, 200), np.int64)
    seg[60:, 100:] = 2
    out = draw_prediction("segmentation", rgb, seg, ["unlabelled", "car", "person"])
    assert np.allclose(out[4 + SWATCH // 2, 4 + SWATCH // 2], PALETTE[2], atol=1 / 255)
    assert np.allclose(out[4 + ROW + SWATCH // 2, 4 + SWATCH // 2], 0.5, atol=1 / 255)  # one class, one row
