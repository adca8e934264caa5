"""The warps of ``cldyn bench align`` (seed 0) redrawn for the probes, and unrelated pairs drawn as it draws them.

The benchmark's generator serves its sets in order (MSRS val first, three warps a pair; then RoadScene, one), so a
probe that draws the same warps in the same order sees the benchmark's pairs exactly.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from cldyn.data.align import AlignConfig, AlignmentError, estimate_warp
from cldyn.data.io import luma, read_image, to_single_channel
from cldyn.data.pairs import Pair
from cldyn.data.rig import random_warp, warped_visible


def benchmark_warps(pairs: Sequence[Pair], per_pair: int, rng: np.random.Generator
                    ) -> Iterator[tuple[Pair, np.ndarray, np.ndarray, list[tuple[np.ndarray, tuple[int, int]]]]]:
    """``(pair, ir, vis, [(true, canvas), ...])`` for each pair: the images in [0, 1] (visible in colour) and
    ``per_pair`` random warps drawn from ``rng`` as the benchmark draws them."""
    for pair in pairs:
        ir = to_single_channel(read_image(pair.ir))
        vis = read_image(pair.vis).pixels
        yield pair, ir, vis, [random_warp(rng, ir.shape) for _ in range(per_pair)]


def referenced_warps(pairs: Sequence[Pair], night_only: bool = False, per_pair: int = 3, seed: int = 0
                     ) -> Iterator[tuple[Pair, int, np.ndarray, np.ndarray, np.ndarray]]:
    """``(pair, k, ir, moved, target)`` for each benchmark warp of ``pairs`` (drawn as :func:`benchmark_warps`, seed
    ``seed``) whose published pair registers at all (no confidence threshold): ``moved`` the warped visible
    luminance, ``target`` the known warp composed with that registration of the published pair (what a corner error
    is measured against)."""
    free = AlignConfig(min_confidence=-np.inf)
    for pair, ir, vis, warps in benchmark_warps(pairs, per_pair, np.random.default_rng(seed)):
        if night_only and not pair.name.endswith("N"):
            continue
        try:
            reference = estimate_warp(ir, luma(vis), free)[0]
        except AlignmentError:
            continue
        for k, (true, canvas) in enumerate(warps):
            yield pair, k, ir, luma(warped_visible(vis, true, canvas)), true @ reference


def unrelated_pairs(pairs: Sequence[Pair], n: int, seed: int = 1, gap: int = 10
                    ) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """``n`` times ``(name, ir, moved visible luminance)``: an infrared image with the randomly warped visible image
    of a pair at least ``gap`` places away (another scene, not a near frame of the same sequence)."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        while True:
            i, j = (int(v) for v in rng.choice(len(pairs), 2, replace=False))
            if abs(i - j) >= gap:
                break
        ir = to_single_channel(read_image(pairs[i].ir))
        true, canvas = random_warp(rng, ir.shape)
        moved = warped_visible(read_image(pairs[j].vis).pixels, true, canvas)
        yield f"{pairs[i].name}+{pairs[j].name}", ir, luma(moved)
