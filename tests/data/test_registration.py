"""The normalised-gradient-field criterion of registration, against hand-computed cases and OpenCV's own warp."""

import cv2
import numpy as np
import torch

from cldyn.data.registration import (
    Agreement,
    edge_points,
    level_matrix,
    ngf_field,
    peak_sharpness,
    refine_level,
    resized,
    shift_search,
)


def _scene(h=120, w=160, seed=0):
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), 2.5)
    return (img - img.min()) / (img.max() - img.min())


def test_level_matrix_matches_cv2_resize():
    # a bright pixel at (x, y) = (6, 4) of a 16x12 image, halved by area averaging, lands between output pixels
    img = np.zeros((24, 32), np.float32)
    img[8:10, 12:14] = 1.0  # a 2x2 block whose centre is (12.5, 8.5)
    small, m = resized(img, 0.5)
    assert small.shape == (12, 16)
    ys, xs = np.nonzero(small > 0.99)
    centre = m @ np.array([12.5, 8.5, 1.0])
    assert (xs[0], ys[0]) == (6, 4) and np.allclose(centre[:2], [6.0, 4.0])
    assert np.allclose(level_matrix(0.5) @ level_matrix(2.0), np.eye(3))


def test_ngf_is_a_unit_vector_on_edges_and_near_zero_on_flat_ground():
    img = np.zeros((20, 20), np.float32)
    img[:, 10:] = 1.0
    n = ngf_field(img)
    assert np.hypot(*n[:, 10, 9]) > 0.9 and abs(n[1, 10, 9]) < 1e-6  # across the step, pointing along x
    assert np.hypot(*n[:, 10, 3]) < 1e-3


def test_shift_search_finds_an_integer_shift_with_either_polarity():
    ir = _scene()
    pad = (12, 16)
    canvas = np.pad(1.0 - ir, ((pad[0], pad[0]), (pad[1], pad[1])), mode="reflect")  # inverted: other modality
    canvas = np.roll(canvas, (3, -5), axis=(0, 1))  # ir pixel x matches canvas x + pad + (-5, 3)
    score, (dx, dy) = shift_search(ir, canvas, pad)
    assert (dx, dy) == (-5, 3) and score > 0.5


def test_agreement_equals_the_ngf_of_the_image_warped_by_opencv():
    """The agreement carries the visible gradient through the warp's Jacobian; per point it must match the NGF of
    the visible image actually warped (cv2.warpPerspective) and differentiated, for a warp that rotates by 20
    degrees and scales by 1.3 (a wrong Jacobian would turn the vectors)."""
    vis = _scene(300, 400, seed=1)
    a, s = np.deg2rad(20), 1.3
    warp = np.array([[s * np.cos(a), -s * np.sin(a), 150], [s * np.sin(a), s * np.cos(a), 40], [2e-5, -1e-5, 1]])
    ir = 1.0 - cv2.warpPerspective(vis, warp, (160, 120), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP)
    points = edge_points(ir)
    agreement = Agreement(points, vis, warp, ir.shape, "homography")
    with torch.no_grad():
        m = torch.from_numpy(warp)
        total = float(agreement.of_warp(m))
    warped = 1.0 - ir  # the visible image as OpenCV warps it
    g = np.stack(np.gradient(warped)[::-1])  # (d/dx, d/dy), central differences
    xs, ys = points.xy[0].long().numpy(), points.xy[1].long().numpy()
    gv = g[:, ys, xs]
    n_vis = gv / np.sqrt((gv * gv).sum(0) + agreement.eta ** 2)
    dots = (points.n_ir.numpy().T * n_vis).sum(0) ** 2
    assert abs(total - dots.mean()) < 0.05 * dots.mean() and total > 0.5
    rotated = np.stack((n_vis[1], -n_vis[0]))  # what a Jacobian turned by 90 degrees would give
    assert abs(total - ((points.n_ir.numpy().T * rotated).sum(0) ** 2).mean()) > 0.5 * total


def test_the_perspective_prior_costs_the_perspective_that_the_refinement_adds():
    """Parameters 6 and 7 are the last row of the perturbation in [-1, 1] coordinates; (0.02, -0.01) at a prior of
    0.003 per 0.01**2 cost 0.003 * (4 + 1) = 0.015, whatever the base warp's own perspective."""
    vis = _scene(120, 160, seed=2)
    points = edge_points(vis)
    warp = np.array([[1.0, 0, 0], [0, 1.0, 0], [2e-4, 0, 1.0]])
    p = torch.zeros(8, dtype=torch.float64)
    p[6], p[7] = 0.02, -0.01
    plain = Agreement(points, vis, warp, vis.shape, "homography")
    priced = Agreement(points, vis, warp, vis.shape, "homography", perspective_prior=0.003)
    assert abs(float(plain(p) - priced(p)) - 0.015) < 1e-12
    assert float(plain(p * 0) - priced(p * 0)) == 0.0
    affine = Agreement(points, vis, np.eye(3), vis.shape, "affine", perspective_prior=0.003)  # no perspective
    zero6 = torch.zeros(6, dtype=torch.float64)
    assert float(affine(zero6)) == float(Agreement(points, vis, np.eye(3), vis.shape, "affine")(zero6))


def test_refinement_recovers_a_small_affine_warp_across_polarity():
    ir = _scene(200, 260, seed=3)
    true = np.array([[1.01, 0.02, 1.7], [-0.015, 0.995, -1.2], [0, 0, 1.0]])
    vis = cv2.warpPerspective(1.0 - ir, true, (260, 200), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    agreement = Agreement(edge_points(ir), vis, np.eye(3), ir.shape, "affine")
    warp, value = refine_level(agreement, 50)
    corners = np.array([[20, 20, 1], [240, 20, 1], [240, 180, 1], [20, 180, 1]], float).T
    assert np.abs(warp @ corners - true @ corners).max() < 0.1 and value > 0.5


def test_peak_sharpness_of_a_single_peak_and_of_noise():
    rng = np.random.default_rng(0)
    noise = rng.random((41, 41))
    peaked = noise.copy()
    peaked[20, 20] = 10.0
    assert peak_sharpness(peaked, 2) > 20 > 3 > peak_sharpness(noise, 2)
