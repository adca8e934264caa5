"""Paired infrared/visible training data: discovery from dataset roots, in-memory cache, paired augmentation.

Each batch is a pure function of ``(seed, epoch, step)``: the epoch's order comes from a generator seeded with
``(seed, epoch)`` and the crops/flips/rotations of a batch from one seeded with ``(seed, epoch, step)``. So a run
resumed from a checkpoint sees exactly the batches an uninterrupted run would, with no RNG state to save.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from cldyn.data.io import read_pair, to_single_channel
from cldyn.data.pairs import Pair


def load_pair_tensors(pair: Pair) -> torch.Tensor:
    """``(2, H, W)`` float32: infrared and visible luminance (BT.601 Y) of one pair."""
    ir, vis = read_pair(pair.ir, pair.vis)
    return torch.from_numpy(np.stack((to_single_channel(ir), to_single_channel(vis))))


@dataclass(frozen=True)
class AugmentConfig:
    """Paired augmentation: square random crop, horizontal/vertical flips, 90-degree rotations."""

    crop_size: int = 128
    flip: bool = True
    rotate: bool = True


class PairBank:
    """All training pairs decoded once and kept in memory as ``(2, H, W)`` tensors (IR, visible Y)."""

    def __init__(self, pairs: Sequence[Pair]) -> None:
        self.pairs = list(pairs)
        self.images = [load_pair_tensors(p) for p in self.pairs]

    def __len__(self) -> int:
        return len(self.images)

    def min_side(self) -> int:
        return min(min(t.shape[-2:]) for t in self.images)

    def batch(self, indices: Sequence[int], gen: torch.Generator, aug: AugmentConfig) -> torch.Tensor:
        """Augmented ``(B, 2, c, c)`` crops of the given pairs; crops are clipped to the smallest image side."""
        c = min(aug.crop_size, self.min_side())
        # Draw every random number for the batch up front, in a fixed order, so the batch is reproducible.
        n = len(indices)
        u = torch.rand(n, 2, generator=gen, dtype=torch.float64)
        flips = torch.randint(0, 2, (n, 2), generator=gen)
        rots = torch.randint(0, 4, (n,), generator=gen)
        out = torch.empty(n, 2, c, c)
        for j, idx in enumerate(indices):
            img = self.images[idx]
            h, w = img.shape[-2:]
            top = int(u[j, 0] * (h - c + 1))
            left = int(u[j, 1] * (w - c + 1))
            crop = img[:, top:top + c, left:left + c]
            if aug.flip and flips[j, 0]:
                crop = crop.flip(-1)
            if aug.flip and flips[j, 1]:
                crop = crop.flip(-2)
            if aug.rotate and rots[j]:
                crop = torch.rot90(crop, int(rots[j]), dims=(-2, -1))
            out[j] = crop
        return out


def seeded_generator(*keys: int) -> torch.Generator:
    """A CPU generator seeded from integer keys (e.g. seed, epoch, step)."""
    g = torch.Generator()
    # SeedSequence mixes the keys the same way on every platform and Python version.
    g.manual_seed(int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1, np.uint64)[0] >> 1))
    return g
