import pytest
import torch

from cldyn.model.ops import sobel_l1_magnitude, sobel_xy, unsharp


def test_ramp_hand_computed():
    ramp = torch.arange(6.0).repeat(1, 1, 5, 1)  # +1 per column
    g = sobel_xy(ramp)
    assert torch.all(g[0, 0, 0, :, 1:-1] == 8.0)  # (1 + 2 + 1) * 2
    assert torch.all(g[0, 0, 1] == 0.0)
    # Replicate padding: the border column sees a step of 1 instead of 2.
    assert torch.all(g[0, 0, 0, :, 0] == 4.0)
    assert torch.equal(sobel_l1_magnitude(ramp)[0, 0], g[0, 0, 0].abs())


@pytest.mark.parametrize("normalized", [False, True])
def test_matches_kornia(normalized):
    kornia = pytest.importorskip("kornia")
    x = torch.rand(2, 3, 11, 13)
    assert torch.allclose(sobel_xy(x, normalized), kornia.filters.spatial_gradient(x, "sobel", 1, normalized),
                          atol=1e-6)


def test_shape_check():
    with pytest.raises(ValueError):
        sobel_xy(torch.rand(3, 8, 8))


@pytest.mark.parametrize("normalized", [False, True])
def test_magnitude_equals_xy_and_keeps_layout(normalized):
    x = torch.rand(2, 5, 9, 12)
    ref = sobel_xy(x, normalized).abs().sum(2)
    assert torch.allclose(sobel_l1_magnitude(x, normalized), ref, atol=1e-6)
    cl = x.contiguous(memory_format=torch.channels_last)
    out = sobel_l1_magnitude(cl, normalized)
    assert torch.allclose(out, ref, atol=1e-6)
    assert out.is_contiguous(memory_format=torch.channels_last)


def test_unsharp_matches_opencv_gaussian_blur():
    cv2 = pytest.importorskip("cv2")
    x = torch.rand(1, 1, 23, 31, generator=torch.Generator().manual_seed(0))
    for gain, sigma in ((0.3, 1.0), (1.0, 1.5)):
        a = x[0, 0].numpy()
        expected = a + gain * (a - cv2.GaussianBlur(a, (0, 0), sigma))
        assert torch.allclose(unsharp(x, gain, sigma)[0, 0], torch.from_numpy(expected), atol=1e-6)
    assert unsharp(x, 0.0) is x


def test_unsharp_on_images_smaller_than_the_kernel_repeats_the_edge():
    cv2 = pytest.importorskip("cv2")
    x = torch.rand(1, 1, 3, 7, generator=torch.Generator().manual_seed(1))  # 3 rows: a 4-pixel mirror cannot pad
    a = x[0, 0].numpy()
    expected = a + 0.15 * (a - cv2.GaussianBlur(a, (0, 0), 1.0, borderType=cv2.BORDER_REPLICATE))
    assert torch.allclose(unsharp(x, 0.15)[0, 0], torch.from_numpy(expected), atol=1e-6)
