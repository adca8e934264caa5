"""Tone compensation: a monotone tone curve of the fused luminance, chosen from the task network's features.

The A2SI blocks change the fused image pixel by pixel; any such change of a grey level or more that is not a function
of the grey level itself spreads the joint histograms that MI is computed from (MI −14% for a ±1-level change,
README "How much could a customisation give at all?"). A tone curve moves every pixel of one grey level alike: the
histogram moves without spreading, and a monotone curve keeps the order of grey levels, so MI, Qabf and SSIM barely
move, while the task networks, which are not invariant to tone, can gain. With the labels, a per-image curve of 8
knots moved 3 levels lifts every task's primary metric on MSRS val (docs/training/eval/oracle/*tone8_b3*).

The curve is piecewise linear in the luminance with ``knots`` evenly spaced knots on [0, 1]: ``y + sum_k c_k
hat_k(y)``, the hats summing to 1. :class:`ToneHead` predicts the ``c_k`` from the task signature
(:func:`cldyn.model.task_encoder.channel_quantiles`: which network, what it sees), the image's own luminance
quantiles and histogram, and the histogram weighted by where the task responds, bounded by ``max_levels``
through a tanh, and starts at zero (the identity).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cldyn.model.ops import adaptive_avg_pool2d
from cldyn.model.task_encoder import TaskStatistics, as_statistics


@dataclass(frozen=True)
class ToneConfig:
    """Tone-head settings. ``knots = 0``: no tone head (the paper's RSC).

    Attributes:
        knots: knots of the piecewise-linear curve (8 when on).
        max_levels: the largest move of one knot, in 8-bit grey levels (8). Below ``255 / (2 (knots - 1))`` the
            curve is strictly increasing whatever the head predicts (two neighbouring knots can move apart by at
            most ``2 max_levels``, which must stay under their spacing); checked.
        quantiles: ``k`` of the task signature and of the image's luminance quantiles (16).
        hidden: width of the head's hidden layer (32).
    """

    knots: int = 0
    max_levels: float = 8.0
    quantiles: int = 16
    hidden: int = 32

    def __post_init__(self) -> None:
        if self.knots == 1 or self.knots < 0:
            raise ValueError(f"tone knots must be 0 (off) or at least 2, got {self.knots}")
        if self.knots and not 0 < self.max_levels < 255 / (2 * (self.knots - 1)):
            raise ValueError(f"tone max_levels must lie in (0, {255 / (2 * (self.knots - 1)):.2f}) for "
                             f"{self.knots} knots (a monotone curve), got {self.max_levels}")


def apply_tone_curve(y: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
    """``y + sum_k c_k hat_k(y)``, clamped to [0, 1]: the piecewise-linear curve through the knots ``k / (K - 1)``
    moved by ``coefficients``.

    Args:
        y: luminance ``(B, 1, H, W)`` in [0, 1].
        coefficients: ``(B, K)`` knot moves, in [0, 1] units.

    Example:
        >>> y = torch.tensor([0.0, 0.25, 0.5, 1.0]).view(1, 1, 1, 4)
        >>> apply_tone_curve(y, torch.tensor([[0.0, 0.1, 0.0]])).flatten()  # knots at 0, 0.5, 1; lift the middle
        tensor([0.0000, 0.3000, 0.6000, 1.0000])
    """
    if y.dim() != 4 or y.shape[1] != 1:
        raise ValueError(f"tone curve: luminance must be (B, 1, H, W), got {tuple(y.shape)}")
    b, k = coefficients.shape
    if b != y.shape[0] or k < 2:
        raise ValueError(f"tone curve: coefficients must be (B={y.shape[0]}, K>=2), got {tuple(coefficients.shape)}")
    pos = y.clamp(0, 1).flatten(1) * (k - 1)  # (B, HW) in knot units
    left = pos.detach().floor().clamp(max=k - 2)
    frac = pos - left
    left = left.long()
    c0, c1 = coefficients.gather(1, left), coefficients.gather(1, left + 1)
    return (y + (c0 + (c1 - c0) * frac).view_as(y)).clamp(0, 1)


def luma_quantiles(y: torch.Tensor, k: int = 16, size: int = 32) -> torch.Tensor:
    """``k`` quantiles of a luminance ``(B, 1, H, W)``, read from its average-pooled ``size x size`` thumbnail
    (enough for a tone summary, and cheap at any resolution): ``(B, k)``, ascending.

    Example:
        >>> luma_quantiles(torch.linspace(0, 1, 16).view(1, 1, 4, 4), k=3, size=4)
        tensor([[0.0000, 0.5000, 1.0000]])
    """
    small = adaptive_avg_pool2d(y, (min(size, y.shape[-2]), min(size, y.shape[-1]))) if size else y
    values = small.flatten(1).sort(-1).values[:, None]  # (B, 1, N)
    return F.interpolate(values, size=k, mode="linear", align_corners=True)[:, 0]


def tone_hats(y: torch.Tensor, knots: int) -> torch.Tensor:
    """The hat functions of :func:`apply_tone_curve` at every pixel of a luminance ``(B, 1, H, W)``: ``(B, K, HW)``,
    summing to 1 over ``K`` (a change ``sum_k c_k hat_k`` is the curve's move; ``sum_pixels g * hat_k`` is a
    gradient ``g``'s component along knot ``k``)."""
    centres = torch.linspace(0, 1, knots, dtype=y.dtype, device=y.device).view(1, -1, 1)
    return (1 - (y.flatten(2) - centres).abs() * (knots - 1)).clamp_min(0)


def tone_histogram(y: torch.Tensor, knots: int, weight: torch.Tensor | None = None, eps: float = 1e-6
                   ) -> torch.Tensor:
    """How much of a luminance ``(B, 1, H, W)`` lies at each knot's grey levels: the mean of each hat function
    (the same hats as :func:`apply_tone_curve`), ``(B, K)``, summing to 1. ``weight`` ``(B, 1, H, W)``: a weighted
    mean instead (all zeros where the weights are).

    Example:
        >>> tone_histogram(torch.tensor([0.0, 0.25, 1.0]).view(1, 1, 1, 3), knots=3)  # 0.25: half on each of 0, 0.5
        tensor([[0.5000, 0.1667, 0.3333]])
    """
    hats = tone_hats(y, knots)
    if weight is None:
        return hats.mean(-1)
    w = weight.flatten(2)
    return (hats * w).sum(-1) / w.sum(-1).clamp_min(eps)


class ToneHead(nn.Module):
    """Task signature + the image's tone + where the task responds -> a monotone tone curve of the fused luminance.

    ``forward(task_features, y) -> y'`` with ``y`` ``(B, 1, H, W)``; ``task_features`` the task network's features
    or their :class:`~cldyn.model.task_encoder.TaskStatistics`. The head reads the task signature (which network),
    the image's luminance quantiles and :func:`tone_histogram` (its tone), and the histogram weighted by where the
    task network responds (:func:`~cldyn.model.task_encoder.response_maps`, channel RMS; the luminance pooled to the
    features' resolution): at which grey levels the task's objects lie. The last layer starts at zero: a fresh
    head is the identity.

    Example:
        >>> head = ToneHead(ToneConfig(knots=8))
        >>> y = torch.rand(2, 1, 16, 16)
        >>> torch.equal(head(torch.rand(2, 32, 4, 4), y), y)
        True
    """

    def __init__(self, cfg: ToneConfig) -> None:
        super().__init__()
        if not cfg.knots:
            raise ValueError("ToneHead needs knots >= 2 (ToneConfig.knots = 0 means no tone head)")
        self.cfg = cfg
        q = cfg.quantiles
        self.net = nn.Sequential(nn.Linear(3 * q + 2 * cfg.knots, cfg.hidden), nn.LeakyReLU(0.2),
                                 nn.Linear(cfg.hidden, cfg.knots))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def inputs(self, task_features: torch.Tensor | TaskStatistics, y: torch.Tensor) -> torch.Tensor:
        """What the head reads, ``(B, 3 * quantiles + 2 * knots)``: the task signature, the luminance quantiles, the
        tone histogram and the response-weighted tone histogram (all gradient-free)."""
        stats, k = as_statistics(task_features), self.cfg.knots
        y = y.detach()  # the curve's inputs describe the image; the gradient goes through the curve itself
        response = stats.response()[:, :1]  # (B, 1, h, w)
        pooled = adaptive_avg_pool2d(y, response.shape[-2:])
        return torch.cat((stats.signature(self.cfg.quantiles), luma_quantiles(y, self.cfg.quantiles),
                          tone_histogram(pooled, k), tone_histogram(pooled, k, response.to(y.dtype))), 1).to(y.dtype)

    def coefficients(self, task_features: torch.Tensor | TaskStatistics, y: torch.Tensor) -> torch.Tensor:
        """The knot moves ``(B, K)`` in [0, 1] units, each within ``± max_levels / 255``."""
        return self.coefficients_of_inputs(self.inputs(task_features, y))

    def coefficients_of_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """The knot moves ``(B, K)`` for the head's :meth:`inputs` ``x``."""
        return self.cfg.max_levels / 255.0 * torch.tanh(self.net(x))

    def forward(self, task_features: torch.Tensor | TaskStatistics, y: torch.Tensor) -> torch.Tensor:
        if y.dim() != 4 or y.shape[1] != 1:
            raise ValueError(f"ToneHead: luminance must be (B, 1, H, W), got {tuple(y.shape)}")
        return apply_tone_curve(y, self.coefficients(task_features, y))


__all__ = ["ToneConfig", "ToneHead", "apply_tone_curve", "luma_quantiles", "tone_hats", "tone_histogram"]
