"""Stage-1 (VFN) unsupervised fusion loss: intensity + Sobel gradient (the paper), an optional SSIM term towards
both sources, an optional noise floor on the gradient target and an optional detail gain on the intensity
target."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cldyn.model.ops import gaussian_kernel, sobel_l1_magnitude, unsharp


def intensity_target(ir: torch.Tensor, vis_y: torch.Tensor, detail: float = 0.0) -> torch.Tensor:
    """``max(IR, Y)`` (the paper's), or with ``detail > 0`` its :func:`unsharp` version (sigma 1) clipped to
    [0, 1]: the pixel-wise maximum keeps each source's intensities but not the sharpness of its edges."""
    target = torch.maximum(ir, vis_y)
    return unsharp(target, detail).clamp(0.0, 1.0) if detail else target


def intensity_loss(fused: torch.Tensor, ir: torch.Tensor, vis_y: torch.Tensor, detail: float = 0.0) -> torch.Tensor:
    """``L1(F, intensity_target(IR, Y, detail))``, mean over pixels. All inputs ``(B, 1, H, W)``."""
    return F.l1_loss(fused, intensity_target(ir, vis_y, detail))


def gradient_target(ir: torch.Tensor, vis_y: torch.Tensor, floor: float = 0.0) -> torch.Tensor:
    """``max(|grad IR|, |grad Y|)`` (Sobel L1 magnitude ``|gx| + |gy|``) with every source gradient at or below
    ``floor`` set to 0, so sensor noise in flat regions is not a target the fused image must copy."""
    g_ir, g_vis = sobel_l1_magnitude(ir), sobel_l1_magnitude(vis_y)
    if floor > 0:
        g_ir, g_vis = g_ir * (g_ir > floor), g_vis * (g_vis > floor)
    return torch.maximum(g_ir, g_vis)


def gradient_loss(fused: torch.Tensor, ir: torch.Tensor, vis_y: torch.Tensor, floor: float = 0.0) -> torch.Tensor:
    """``L1(|grad F|, gradient_target(IR, Y, floor))``; ``floor=0`` is the paper's loss."""
    return F.l1_loss(sobel_l1_magnitude(fused), gradient_target(ir, vis_y, floor))


def _ssim_and_variance_maps(x: torch.Tensor, y: torch.Tensor, window: int, sigma: float, data_range: float
                            ) -> tuple[torch.Tensor, torch.Tensor]:
    """The SSIM map of ``x`` and ``y`` and the local variance map of ``y`` (valid windows only)."""
    k = gaussian_kernel(window, sigma, x.dtype, x.device)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = F.conv2d(x, k), F.conv2d(y, k)
    sxx = F.conv2d(x * x, k) - mx * mx
    syy = F.conv2d(y * y, k) - my * my
    sxy = F.conv2d(x * y, k) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return s, syy


def ssim(x: torch.Tensor, y: torch.Tensor, window: int = 11, sigma: float = 1.5, data_range: float = 1.0
         ) -> torch.Tensor:
    """Mean SSIM (Wang et al. 2004) of ``(B, 1, H, W)`` images per sample, ``(B,)``: Gaussian window, population
    statistics, ``K1 = 0.01``, ``K2 = 0.03``, computed where the window fits (what scikit-image's
    ``structural_similarity(gaussian_weights=True, use_sample_covariance=False)`` averages). Differentiable.

    Example:
        >>> a = torch.rand(2, 1, 16, 16)
        >>> ssim(a, a)
        tensor([1., 1.])
    """
    if x.shape != y.shape or x.dim() != 4 or x.shape[1] != 1:
        raise ValueError(f"ssim takes two (B, 1, H, W) images of one shape, got {tuple(x.shape)}, {tuple(y.shape)}")
    return _ssim_and_variance_maps(x, y, window, sigma, data_range)[0].mean(dim=(1, 2, 3))


SSIM_TARGETS = ("both", "stronger")


def ssim_loss(fused: torch.Tensor, ir: torch.Tensor, vis_y: torch.Tensor, target: str = "both") -> torch.Tensor:
    """Structure kept from the sources, mean over the batch.

    ``both``: ``1 - (SSIM(F, IR) + SSIM(F, Y)) / 2``. ``stronger``: ``1 - mean SSIM`` where each window is compared
    with the source of larger local variance there (the one that carries the structure), so two disagreeing sources
    do not pull the fused window half-way between them.
    """
    if target == "both":
        return 1 - 0.5 * (ssim(fused, ir) + ssim(fused, vis_y)).mean()
    if target != "stronger":
        raise ValueError(f"unknown SSIM target {target!r}; known: {', '.join(SSIM_TARGETS)}")
    s_ir, var_ir = _ssim_and_variance_maps(fused, ir, 11, 1.5, 1.0)
    s_vis, var_vis = _ssim_and_variance_maps(fused, vis_y, 11, 1.5, 1.0)
    return 1 - torch.where(var_ir >= var_vis, s_ir, s_vis).mean()


@dataclass(frozen=True)
class FusionLossConfig:
    """The VFN loss; defaults are the paper's (0.2 intensity, 1.0 gradient, no SSIM term, no noise floor).

    Attributes:
        intensity_weight: weight of ``L1(F, max(IR, Y))``.
        gradient_weight: weight of the Sobel-gradient L1 towards :func:`gradient_target`.
        ssim_weight: weight of :func:`ssim_loss` (structure kept from both sources).
        gradient_floor: source gradients at or below this Sobel L1 magnitude are no target (0: all are).
        ssim_target: ``both`` sources, or in each window the ``stronger`` one (see :func:`ssim_loss`).
        intensity_detail: unsharp-mask gain of the intensity target (0: ``max(IR, Y)`` itself; see
            :func:`intensity_target`).
    """

    intensity_weight: float = 0.2
    gradient_weight: float = 1.0
    ssim_weight: float = 0.0
    gradient_floor: float = 0.0
    ssim_target: str = "both"
    intensity_detail: float = 0.0


def fusion_loss(
    fused: torch.Tensor, ir: torch.Tensor, vis_y: torch.Tensor, cfg: FusionLossConfig | None = None
) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted VFN loss and its parts (as floats, for logging).

    Example:
        >>> x = torch.rand(1, 1, 8, 8)
        >>> float(fusion_loss(x, x, x)[0])
        0.0
    """
    cfg = cfg or FusionLossConfig()
    li = intensity_loss(fused, ir, vis_y, cfg.intensity_detail)
    lg = gradient_loss(fused, ir, vis_y, cfg.gradient_floor)
    total = cfg.intensity_weight * li + cfg.gradient_weight * lg
    ls = ssim_loss(fused, ir, vis_y, cfg.ssim_target) if cfg.ssim_weight else torch.zeros(())
    total = total + cfg.ssim_weight * ls
    return total, {"loss": float(total.detach()), "intensity": float(li.detach()), "gradient": float(lg.detach()),
                   "ssim": float(ls.detach())}


class FusionLoss(nn.Module):
    """Module wrapper of :func:`fusion_loss` returning only the scalar."""

    def __init__(self, cfg: FusionLossConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or FusionLossConfig()

    def forward(self, fused: torch.Tensor, ir: torch.Tensor, vis_y: torch.Tensor) -> torch.Tensor:
        return fusion_loss(fused, ir, vis_y, self.cfg)[0]
