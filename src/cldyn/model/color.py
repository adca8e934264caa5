"""BT.601 full-range RGB <-> YCbCr conversion in torch (differentiable, batched).

Follows the JPEG/JFIF convention used by the fusion literature (and kornia): Y in [0, 1], Cb and Cr centred on 0.5.
"""

from __future__ import annotations

import torch
from torch import nn

# JFIF coefficients (ITU-R BT.601, full range).
_KR, _KG, _KB = 0.299, 0.587, 0.114
_CB_SCALE = 0.5 / (1.0 - _KB)  # 0.564
_CR_SCALE = 0.5 / (1.0 - _KR)  # 0.713


def _check_three_channels(image: torch.Tensor, what: str) -> None:
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"{what}: expected a torch.Tensor, got {type(image).__name__}")
    if image.dim() < 3 or image.shape[-3] != 3:
        raise ValueError(f"{what}: expected shape (*, 3, H, W), got {tuple(image.shape)}")


def rgb_to_ycbcr(image: torch.Tensor) -> torch.Tensor:
    """Convert RGB in [0, 1] to full-range YCbCr (BT.601).

    Args:
        image: ``(*, 3, H, W)`` RGB.

    Returns:
        ``(*, 3, H, W)`` with channels Y, Cb, Cr; Y in [0, 1], Cb/Cr in [0, 1] centred on 0.5.

    Example:
        >>> rgb_to_ycbcr(torch.ones(1, 3, 2, 2))[0, :, 0, 0]
        tensor([1.0000, 0.5000, 0.5000])
    """
    _check_three_channels(image, "rgb_to_ycbcr")
    r, g, b = image.unbind(-3)
    y = _KR * r + _KG * g + _KB * b
    cb = (b - y) * _CB_SCALE + 0.5
    cr = (r - y) * _CR_SCALE + 0.5
    return torch.stack((y, cb, cr), dim=-3)


def ycbcr_to_rgb(image: torch.Tensor) -> torch.Tensor:
    """Convert full-range YCbCr (BT.601) back to RGB; the exact inverse of :func:`rgb_to_ycbcr`.

    Args:
        image: ``(*, 3, H, W)`` with channels Y, Cb, Cr.

    Returns:
        ``(*, 3, H, W)`` RGB (not clamped: out-of-gamut values are kept so the map stays invertible).

    Example:
        >>> x = torch.rand(2, 3, 4, 5)
        >>> torch.allclose(ycbcr_to_rgb(rgb_to_ycbcr(x)), x, atol=1e-6)
        True
    """
    _check_three_channels(image, "ycbcr_to_rgb")
    y, cb, cr = image.unbind(-3)
    cb = cb - 0.5
    cr = cr - 0.5
    r = y + cr / _CR_SCALE
    b = y + cb / _CB_SCALE
    g = (y - _KR * r - _KB * b) / _KG
    return torch.stack((r, g, b), dim=-3)


def rgb_to_luma(image: torch.Tensor) -> torch.Tensor:
    """The Y channel of :func:`rgb_to_ycbcr`, shape ``(*, 1, H, W)``."""
    _check_three_channels(image, "rgb_to_luma")
    r, g, b = image.unbind(-3)
    return (_KR * r + _KG * g + _KB * b).unsqueeze(-3)


def replace_luma(rgb: torch.Tensor, luma: torch.Tensor) -> torch.Tensor:
    """Put a new Y channel under the Cb/Cr of ``rgb`` and return RGB: how a fused Y becomes a colour image.

    Args:
        rgb: ``(*, 3, H, W)`` visible image in [0, 1].
        luma: ``(*, 1, H, W)`` new luminance in [0, 1].

    Returns:
        ``(*, 3, H, W)`` RGB clamped to [0, 1].
    """
    _check_three_channels(rgb, "replace_luma")
    if luma.shape[-3] != 1 or luma.shape[-2:] != rgb.shape[-2:]:
        raise ValueError(f"replace_luma: luma {tuple(luma.shape)} does not fit rgb {tuple(rgb.shape)}")
    ycbcr = rgb_to_ycbcr(rgb)
    return ycbcr_to_rgb(torch.cat((luma, ycbcr[..., 1:, :, :]), dim=-3)).clamp(0.0, 1.0)


def luma_of(vis: torch.Tensor) -> torch.Tensor:
    """The luminance the VFN fuses: :func:`rgb_to_luma` of an RGB ``(*, 3, H, W)`` visible image, a gray
    ``(*, 1, H, W)`` one as it is.

    Example:
        >>> luma_of(torch.ones(1, 3, 2, 2)).shape, luma_of(torch.zeros(1, 1, 2, 2)).shape
        (torch.Size([1, 1, 2, 2]), torch.Size([1, 1, 2, 2]))
    """
    return rgb_to_luma(vis) if vis.shape[-3] == 3 else vis


def with_colour_of(vis: torch.Tensor, luma: torch.Tensor) -> torch.Tensor:
    """A fused ``luma`` ``(*, 1, H, W)`` with the colour of the visible image ``vis`` put back (:func:`replace_luma`)
    when ``vis`` is RGB; for a gray ``vis``, ``luma`` itself."""
    return replace_luma(vis, luma) if vis.shape[-3] == 3 else luma


class RgbToYcbcr(nn.Module):
    """Module wrapper of :func:`rgb_to_ycbcr`."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return rgb_to_ycbcr(image)


class YcbcrToRgb(nn.Module):
    """Module wrapper of :func:`ycbcr_to_rgb`."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return ycbcr_to_rgb(image)
