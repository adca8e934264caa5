import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from cldyn.model.color import (
    RgbToYcbcr,
    YcbcrToRgb,
    luma_of,
    replace_luma,
    rgb_to_luma,
    rgb_to_ycbcr,
    with_colour_of,
    ycbcr_to_rgb,
)

# JFIF (ITU-T T.871) full-range matrix, written out independently of the implementation.
JFIF = torch.tensor([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]],
                    dtype=torch.float64)


def test_matches_jfif_matrix():
    x = torch.rand(4, 3, 5, 6, dtype=torch.float64)
    ref = torch.einsum("ij,bjhw->bihw", JFIF, x)
    ref[:, 1:] += 0.5
    assert torch.allclose(rgb_to_ycbcr(x), ref, atol=1e-6)


def test_close_to_kornia():
    kornia = pytest.importorskip("kornia")
    x = torch.rand(2, 3, 7, 9)
    # kornia rounds the chroma scales to 0.564 / 0.713; cldyn uses the exact 0.5/(1-Kb), 0.5/(1-Kr).
    assert torch.allclose(rgb_to_ycbcr(x), kornia.color.rgb_to_ycbcr(x), atol=1e-3)
    assert torch.allclose(rgb_to_ycbcr(x)[:, 0], kornia.color.rgb_to_ycbcr(x)[:, 0], atol=1e-6)


def test_round_trip_below_1e5():
    x = torch.rand(3, 3, 64, 48)
    assert (ycbcr_to_rgb(rgb_to_ycbcr(x)) - x).abs().max() < 1e-5
    assert (YcbcrToRgb()(RgbToYcbcr()(x)) - x).abs().max() < 1e-5


def test_hand_values():
    white = torch.ones(1, 3, 1, 1)
    assert torch.allclose(rgb_to_ycbcr(white).flatten(), torch.tensor([1.0, 0.5, 0.5]), atol=1e-6)
    red = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    assert torch.allclose(rgb_to_ycbcr(red).flatten(), torch.tensor([0.299, 0.5 - 0.168736, 1.0]), atol=1e-6)


def test_luma_and_replace_luma():
    x = torch.rand(2, 3, 8, 8)
    assert torch.allclose(rgb_to_luma(x), rgb_to_ycbcr(x)[:, :1])
    # Putting an image's own luma back returns the image.
    assert torch.allclose(replace_luma(x, rgb_to_luma(x)), x, atol=1e-5)
    # Gray stays gray: with Cb = Cr = 0.5 the output is the new luma in every channel.
    gray = torch.rand(1, 1, 4, 4).expand(1, 3, 4, 4)
    y = torch.rand(1, 1, 4, 4)
    assert torch.allclose(replace_luma(gray, y), y.expand(1, 3, 4, 4), atol=1e-6)


def test_differentiable():
    x = torch.rand(1, 3, 4, 4, requires_grad=True)
    ycbcr_to_rgb(rgb_to_ycbcr(x)).sum().backward()
    assert torch.allclose(x.grad, torch.ones_like(x), atol=1e-5)


@pytest.mark.parametrize("shape", [(3,), (2, 3), (1, 4, 5, 5), (1, 1, 5, 5)])
def test_shape_check(shape):
    with pytest.raises(ValueError, match=r"\(\*, 3, H, W\)"):
        rgb_to_ycbcr(torch.rand(shape))


@settings(max_examples=50, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(1, 3), st.just(3), st.integers(1, 9), st.integers(1, 9)),
              elements=st.floats(0, 1, width=32)))
def test_round_trip_property(x):
    t = torch.from_numpy(x)
    assert (ycbcr_to_rgb(rgb_to_ycbcr(t)) - t).abs().max() < 1e-5
    y = rgb_to_luma(t)
    assert float(y.min()) >= -1e-6 and float(y.max()) <= 1 + 1e-6


def test_luma_of_and_with_colour_of_take_rgb_or_gray_visible_images():
    torch.manual_seed(3)
    rgb, gray, y = torch.rand(2, 3, 4, 5), torch.rand(2, 1, 4, 5), torch.rand(2, 1, 4, 5)
    # BT.601 by hand for one pixel, and a gray image passes through
    r, g, b = rgb[0, :, 1, 2]
    assert torch.isclose(luma_of(rgb)[0, 0, 1, 2], 0.299 * r + 0.587 * g + 0.114 * b, atol=1e-6)
    assert luma_of(gray) is gray
    assert torch.equal(with_colour_of(rgb, y), replace_luma(rgb, y)) and with_colour_of(gray, y) is y
