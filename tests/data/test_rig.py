"""The simulated second camera of a rig: random warps and the corner error, against hand-computed cases."""

import numpy as np

from cldyn.data.rig import WarpRange, corner_error, random_warp, warped_visible


def test_corner_error_by_hand():
    hw = (11, 21)  # corners (0, 0), (20, 0), (20, 10), (0, 10)
    assert corner_error(np.eye(3), np.eye(3), hw) == 0.0
    assert corner_error(np.array([[1, 0, 3], [0, 1, 4], [0, 0, 1.0]]), np.eye(3), hw) == 5.0
    scale = np.diag([2.0, 2.0, 1.0])  # each corner moves by its distance from the origin
    expected = (0 + 20 + np.hypot(20, 10) + 10) / 4
    assert np.isclose(corner_error(scale, np.eye(3), hw), expected)
    assert corner_error(scale, scale, hw) == 0.0


def test_random_warps_are_seeded_in_range_and_keep_the_frame_on_the_canvas():
    hw = (480, 640)
    r = WarpRange()
    first = random_warp(np.random.default_rng(7), hw)
    assert np.array_equal(first[0], random_warp(np.random.default_rng(7), hw)[0])
    rng = np.random.default_rng(0)
    corners = np.array([[0, 0, 1], [639, 0, 1], [639, 479, 1], [0, 479, 1]], float).T
    for _ in range(50):
        warp, (ch, cw) = random_warp(rng, hw, r)
        xy = warp @ corners
        xy = xy[:2] / xy[2]
        assert xy.min() >= -1 and (xy[0] <= cw).all() and (xy[1] <= ch).all()
        scale = np.sqrt(abs(np.linalg.det(warp[:2, :2])))
        assert 2 * 0.9 * 0.98 < scale < 2 * 1.1 * 1.02  # twice the resolution, 0.9-1.1 (+ shear, perspective)


def test_warped_visible_puts_each_pixel_where_the_warp_says():
    vis = np.zeros((60, 80), np.float32)
    vis[20, 30] = 1.0
    warp = np.array([[2.0, 0, 5], [0, 2.0, 7], [0, 0, 1]])
    out = warped_visible(vis, warp, (140, 180))
    y, x = np.unravel_index(np.argmax(out), out.shape)
    assert (x, y) == (2 * 30 + 5, 2 * 20 + 7)
