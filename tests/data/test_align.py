"""Registration of unaligned pairs (:mod:`cldyn.data.align`) on the real pairs bundled with the package."""

from dataclasses import replace

import numpy as np
import pytest

from cldyn.data.align import (
    AlignConfig,
    AlignmentError,
    align,
    align_images,
    check_range,
    estimate_warp,
    pair_confidence,
)
from cldyn.data.confidence import local_contrast, registration_confidence
from cldyn.data.io import luma, read_image, to_single_channel
from cldyn.data.rig import corner_error, random_warp, warped_visible
from cldyn.errors import InputError
from cldyn.inference.demo import demo_dir


def _demo(stem: str):
    d = demo_dir()
    ext = ".jpg" if stem.startswith("roadscene") else ".png"
    return read_image(d / "ir" / f"{stem}{ext}"), read_image(d / "vi" / f"{stem}{ext}")


@pytest.mark.parametrize("stem, seed, model", [("msrs_01506D", 1, "homography"), ("roadscene_FLIR_04514", 0, "affine")])
def test_a_known_warp_is_recovered_on_a_real_pair(stem, seed, model):
    ir_img, vis_img = _demo(stem)
    ir, vis = to_single_channel(ir_img), vis_img.pixels
    # the pair's own residual misalignment (a few pixels)
    reference = estimate_warp(ir, luma(vis), AlignConfig(model=model))[0]
    true, canvas = random_warp(np.random.default_rng(seed), ir.shape)
    moved = warped_visible(vis, true, canvas)
    assert moved.shape[:2] == canvas and canvas[0] > 2 * ir.shape[0]  # twice the resolution, another aspect ratio
    result = align(ir, moved, model)
    # the warp moves corners by hundreds of pixels; it is found to within a few (affine cannot take its perspective;
    # measured 0.38 px for the homography, 1.83 px for affine)
    assert corner_error(np.eye(3), true, ir.shape) > 100
    assert corner_error(result.warp, true @ reference, ir.shape) < {"homography": 1.0, "affine": 4.0}[model]
    assert result.aligned.shape == vis.shape[:1] + (ir.shape[1], 3) and result.confidence >= 4.0


def test_sizes_that_differ_give_the_infrared_frame():
    ir_img, vis_img = _demo("roadscene_FLIR_04514")
    true, canvas = random_warp(np.random.default_rng(3), ir_img.size)
    moved = vis_img.__class__(pixels=warped_visible(vis_img.pixels, true, canvas), bits=8, path=vis_img.path)
    aligned, result = align_images(ir_img, moved, "homography")
    assert moved.size != ir_img.size and aligned.size == ir_img.size and aligned.bits == 8
    assert result.model == "homography" and np.isfinite(result.warp).all()


def test_an_unrelated_pair_is_refused_with_its_reason():
    ir_img, _ = _demo("msrs_01506D")
    _, other = _demo("roadscene_FLIR_04514")
    with pytest.raises(AlignmentError, match="no consistent alignment|range|structure") as info:
        align(to_single_channel(ir_img), other.pixels, "affine")
    assert info.value.confidence is None or info.value.confidence < AlignConfig().min_confidence
    with pytest.raises(InputError, match=r"roadscene_FLIR_04514\.jpg: cannot be aligned to msrs_01506D\.png"):
        align_images(ir_img, other)


def test_too_little_structure_and_flat_images_are_refused():
    ir_img, _ = _demo("msrs_01506D")
    flat = np.full((300, 400), 0.5, np.float32)
    with pytest.raises(AlignmentError, match="too little structure in the visible image"):
        align(to_single_channel(ir_img), flat)


def test_none_needs_the_same_size_and_is_the_identity():
    ir = np.random.default_rng(0).random((20, 30)).astype(np.float32)
    warp, conf = estimate_warp(ir, ir, AlignConfig(model="none"))
    assert np.array_equal(warp, np.eye(3)) and conf == float("inf")
    with pytest.raises(AlignmentError, match="sizes differ"):
        estimate_warp(ir, ir[:10], AlignConfig(model="none"))
    with pytest.raises(Exception, match="unknown alignment model"):
        AlignConfig(model="elastic")


def test_check_range_names_what_is_wrong():
    hw = (100, 200)
    assert check_range(np.diag([2.0, 2.0, 1.0]), hw, (200, 400)) is None
    assert "folds" in check_range(np.array([[1, 0, 0], [0, 1, 0], [0, -0.05, 1.0]]), hw, hw)
    assert "scale" in check_range(np.diag([0.01, 0.01, 1.0]), hw, hw)
    assert "outside" in check_range(np.array([[1, 0, 500], [0, 1, 0], [0, 0, 1.0]]), hw, hw)


def test_under_the_threshold_the_confidence_is_the_larger_of_the_images_and_their_local_contrasts():
    ir_img, vis_img = _demo("msrs_01506D")
    ir, vis = to_single_channel(ir_img), luma(vis_img.pixels)
    warp, cfg = np.eye(3), AlignConfig(min_confidence=100.0)  # under the threshold: both measures
    plain = registration_confidence(ir, vis, warp, 0.5, cfg.blur)
    sigma = cfg.contrast_sigma * max(ir.shape) / 640
    contrast = registration_confidence(local_contrast(ir, sigma), local_contrast(vis, sigma), warp, 0.5, cfg.blur)
    assert contrast * cfg.contrast_weight != plain
    assert pair_confidence(ir, vis, warp, 0.5, cfg) == max(plain, cfg.contrast_weight * contrast)
    assert pair_confidence(ir, vis, warp, 0.5, replace(cfg, contrast_sigma=0.0)) == plain
    assert pair_confidence(ir, vis, warp, 0.5, replace(cfg, min_confidence=plain)) == plain  # over it: the first


def test_a_dark_night_pair_is_registered_on_its_local_contrast(shared_data):
    # MSRS 01282N: a night pair whose edges alone peak too weakly (3.6-3.8 on six random warps) to be trusted
    root = shared_data / "msrs"
    ir, vis = to_single_channel(read_image(root / "ir" / "01282N.png")), read_image(root / "vi" / "01282N.png").pixels
    edges_only = replace(AlignConfig(), contrast_sigma=0.0)
    reference = estimate_warp(ir, luma(vis), replace(edges_only, min_confidence=0.0))[0]
    true, canvas = random_warp(np.random.default_rng(2), ir.shape)
    moved = warped_visible(vis, true, canvas)
    with pytest.raises(AlignmentError, match="no consistent alignment"):
        align(ir, moved, cfg=edges_only)
    result = align(ir, moved)
    assert result.confidence >= AlignConfig().min_confidence
    assert corner_error(result.warp, true @ reference, ir.shape) < 1.5  # measured 0.61 px


def test_canvas_transform_by_hand():
    from cldyn.data.align import canvas_transform

    # a 6x4 visible image at 2 visible pixels per infrared pixel onto a 3x2 infrared frame padded by 1 on each side
    m = canvas_transform((4, 6), (2, 3), 2.0, 0.0, (1, 1))
    np.testing.assert_allclose(m @ [2.5, 1.5, 1.0], [2.0, 1.5])  # centre onto the padded frame's centre
    np.testing.assert_allclose(m @ [0.0, 0.0, 1.0], [0.75, 0.75])  # 2.5 and 1.5 visible pixels away: halved
    turned = canvas_transform((4, 6), (2, 3), 2.0, 90.0, (1, 1))  # counter-clockwise on the screen (y down)
    np.testing.assert_allclose(turned @ [4.5, 1.5, 1.0], [2.0, 0.5])  # 2 px right of the centre -> 1 px above
