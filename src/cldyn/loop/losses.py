"""The closed loop's loss terms: the paper's reward-penalty loss and the optional terms that keep fusion quality
(the VFN's fusion loss), keep the change small (an L1 change penalty) or make it specific to a task (a hinge)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

PENALTY_REFERENCES = ("base", "best_camera")


@dataclass(frozen=True)
class LossWeights:
    """Weights of one task's closed-loop loss; the defaults are the paper's loss plus the fusion term.

    Attributes:
        penalty: ``w`` of the reward-penalty loss ``L + w * max(0, L - L_base)`` (0: the plain task loss).
        fusion_weight: weight of the VFN fusion loss on the compensated luminance (0: the paper's loss).
        change_weight: weight of the mean ``|compensated - base|`` luminance, [0, 1] units: an L1 penalty that keeps the
            change of the image where a task's loss asks for it (0: off). Networks trained elsewhere need changes
            of tens of grey levels; a weight that forbids them forbids the customisation.
        specificity_weight: weight of :func:`specificity_hinge` against the compensation made with another task
            network's features (one more compensated pass a task and step; 0: off).
        specificity_margin: that hinge's margin, relative to the base loss.
        reference: what ``L_base`` of the reward-penalty loss is: ``base``, the task loss on the base fusion (the
            paper), or ``best_camera``, the least of that and the losses on the visible and on the infrared image
            alone (the penalty then also holds the compensation to what the network gets from its better camera,
            the comparison that matters for a network trained elsewhere).
    """

    penalty: float = 5.0
    fusion_weight: float = 1.0
    change_weight: float = 0.0
    specificity_weight: float = 0.0
    specificity_margin: float = 0.02
    reference: str = "base"

    def __post_init__(self) -> None:
        if self.reference not in PENALTY_REFERENCES:
            raise ValueError(f"reference must be one of {PENALTY_REFERENCES}, got {self.reference!r}")


def reward_penalty(loss: torch.Tensor, base_loss: torch.Tensor, weight: float = 5.0) -> torch.Tensor:
    """``L + weight * max(0, L - L_base)``: no extra cost while the compensated image is at least as good for the
    task as the base image, a steep one once it is worse.

    Example:
        >>> round(float(reward_penalty(torch.tensor(1.2), torch.tensor(1.0))), 4)  # 1.2 + 5 * 0.2
        2.2
    """
    return loss + weight * torch.relu(loss - base_loss)


def specificity_hinge(loss: torch.Tensor, other_loss: torch.Tensor, base_loss: torch.Tensor,
                      margin: float = 0.02) -> torch.Tensor:
    """``max(0, margin + (loss - other_loss) / base_loss)``: zero once the compensation made with this task's
    features beats the one made with another task's features by ``margin`` of the base loss (scale-free, so tasks
    with losses of different size weigh alike)."""
    return torch.relu(margin + (loss - other_loss) / base_loss.detach().clamp_min(1e-8))


__all__ = ["PENALTY_REFERENCES", "LossWeights", "reward_penalty", "specificity_hinge"]
