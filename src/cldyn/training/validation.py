"""Validation of a VFN during training: fuse held-out pairs and score them with the fusion metrics.

The pairs are fused in colour (Y fused, visible Cb/Cr put back), quantised to 8 bits as a written PNG would be, and
scored as ``cldyn evaluate`` scores such files under the chosen convention (default ``cddfuse``, the convention of
the table the VFN is compared on). The checkpoint kept as ``best`` is the one with the highest
:func:`selection_score`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from cldyn.data.io import read_pair, to_single_channel
from cldyn.data.pairs import Pair
from cldyn.errors import CldynError
from cldyn.evaluation.evaluate import fusion_metrics, gray_of_rgb8, read_gray
from cldyn.inference.fuse import fuse_tensors
from cldyn.model.color import replace_luma, rgb_to_luma

# The eight metrics of the comparison table (all higher-is-better).
VAL_METRICS = ("en", "sd", "sf", "mi", "scd", "vif", "qabf", "ssim")


@dataclass(frozen=True)
class ValidationConfig:
    """When and on what a VFN run validates. ``data=None``: no validation (the last checkpoint is the result).

    Attributes:
        data: dataset root of the validation pairs (e.g. ``../shared/data/msrs``).
        split: its split file (``ROOT/splits/SPLIT.txt``).
        every: steps between validations (the last step is always validated).
        limit: the first N pairs of the split, sorted by name (``None``: all).
        convention: how the fused images are scored (``cddfuse`` or ``cldyn``, see :mod:`cldyn.evaluation.evaluate`).
    """

    data: str | None = None
    split: str = "val"
    every: int = 200
    limit: int | None = 16
    convention: str = "cddfuse"

    def to_dict(self) -> dict:
        return asdict(self)


def selection_score(metrics: dict[str, float], reference: dict[str, float]) -> float:
    """The rule that picks the best checkpoint: the mean over :data:`VAL_METRICS` of each metric divided by the
    same metric of the reference fusion (the average of infrared and visible Y, on the same pairs). Every metric
    counts by its relative size, so no single one dominates by its scale.

    Example:
        >>> selection_score({k: 2.0 for k in VAL_METRICS}, {k: 1.0 for k in VAL_METRICS})
        2.0
    """
    return float(np.mean([metrics[k] / reference[k] for k in VAL_METRICS]))


def _as_uint8(image: torch.Tensor) -> np.ndarray:
    """``(1, C, H, W)`` in [0, 1] -> ``(H, W)`` or ``(H, W, 3)`` uint8, rounded as :func:`cldyn.data.io.write_image`
    rounds 8-bit output."""
    arr = image[0].permute(1, 2, 0).numpy()
    arr = arr[..., 0] if arr.shape[-1] == 1 else arr
    return np.rint(np.clip(arr, 0.0, 1.0) * 255.0).astype(np.uint8)


class FusionValidator:
    """Held-out pairs decoded once; :meth:`metrics` scores a model on them, :attr:`reference` is the average fusion's
    score."""

    def __init__(self, pairs: Sequence[Pair], convention: str = "cddfuse") -> None:
        if not pairs:
            raise CldynError("no validation pairs (check --val-data and --val-split)")
        self.pairs, self.convention = list(pairs), convention
        self.inputs: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.sources: list[tuple[np.ndarray, np.ndarray]] = []
        for p in self.pairs:
            ir, vis = read_pair(p.ir, p.vis)
            vis_t = torch.from_numpy(vis.pixels)
            vis_t = vis_t[None] if vis.is_gray else vis_t.permute(2, 0, 1)
            self.inputs.append((torch.from_numpy(to_single_channel(ir))[None, None], vis_t[None].contiguous()))
            self.sources.append((read_gray(p.ir, convention), read_gray(p.vis, convention)))
        self.reference = self.score_images(self._average(ir, vis) for ir, vis in self.inputs)

    @staticmethod
    def _average(ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        if vis.shape[1] == 1:
            return 0.5 * (ir + vis)
        return replace_luma(vis, 0.5 * (ir + rgb_to_luma(vis)))

    def score_images(self, fused: Iterable[torch.Tensor]) -> dict[str, float]:
        """Mean of each of :data:`VAL_METRICS` over the pairs for fused images ``(1, C, H, W)`` given in order."""
        rows = [fusion_metrics(gray_of_rgb8(_as_uint8(f), self.convention), a, b, self.convention, keys=VAL_METRICS)
                for f, (a, b) in zip(fused, self.sources, strict=True)]
        return {k: float(np.nanmean([r[k] for r in rows])) for k in VAL_METRICS}

    @torch.no_grad()
    def metrics(self, model: nn.Module) -> dict[str, float]:
        """:meth:`score_images` of ``model``'s fusions, run in eval mode (its mode is restored afterwards)."""
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        try:
            return self.score_images(fuse_tensors(model, ir.to(device), vis.to(device)).float().cpu()
                                     for ir, vis in self.inputs)
        finally:
            model.train(was_training)
