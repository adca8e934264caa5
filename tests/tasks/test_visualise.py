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
