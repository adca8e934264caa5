"""Stage-1 (VFN) unsupervised fusion loss: intensity + Sobel gradient."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cldyn.model.ops import sobel_l1_magnitude


def intensity_loss(fused: torch.Tensor, ir: torch.Tensor, vis_y: torch.Tensor) -> torch.Tensor:
    """``L1(F, max(IR, Y))``, mean over pixels. All inputs ``(B, 1, H, W)``."""
    return F.l1_loss(fused, torch.maximum(ir, vis_y))


def gradient_loss(fused: torch.Tensor, ir: torch.Tensor, vis_y: torch.Tensor) -> torch.Tensor:
    """``L1(|grad F|, max(|grad IR|, |grad Y|))`` with the Sobel L1 magnitude ``|gx| + |gy|``."""
    target = torch.maximum(sobel_l1_magnitude(ir), sobel_l1_magnitude(vis_y))
    return F.l1_loss(sobel_l1_magnitude(fused), target)


@dataclass(frozen=True)
class FusionLossConfig:
    """Weights of the VFN loss (paper: 0.2 intensity, 1.0 gradient)."""

    intensity_weight: float = 0.2
    gradient_weight: float = 1.0


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
    li = intensity_loss(fused, ir, vis_y)
    lg = gradient_loss(fused, ir, vis_y)
    total = cfg.intensity_weight * li + cfg.gradient_weight * lg
    return total, {"loss": float(total.detach()), "intensity": float(li.detach()), "gradient": float(lg.detach())}


class FusionLoss(nn.Module):
    """Module wrapper of :func:`fusion_loss` returning only the scalar."""

    def __init__(self, cfg: FusionLossConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or FusionLossConfig()

    def forward(self, fused: torch.Tensor, ir: torch.Tensor, vis_y: torch.Tensor) -> torch.Tensor:
        return fusion_loss(fused, ir, vis_y, self.cfg)[0]
