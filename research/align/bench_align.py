"""``cldyn bench align``: how well, how often and how fast :func:`cldyn.data.align.align` recovers known warps.

Real aligned pairs have their visible image warped by random transforms that two cameras of one rig give: a shift of
up to 8% of the width, a rotation of up to 5 degrees, a scale of 0.9 to 1.1, a small shear and perspective, and a
visible camera of twice the infrared resolution. The visible image is drawn on a canvas that holds all of it, so
the pair differs in size and aspect ratio. Registration then has to find the warp back; the corner error is the
mean distance, in infrared pixels, between where the recovered and the true warp put the infrared frame's corners.
Unrelated pairs (an infrared image with another scene's visible image) must be refused.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from align import AlignConfig, AlignmentError, align, estimate_warp

from cldyn.data.io import atomic_write_bytes, luma, read_pair, to_single_channel
from cldyn.data.pairs import Pair


@dataclass(frozen=True)
class WarpRange:
    """The random transforms of the benchmark (the visible camera against the infrared one)."""

    shift: float = 0.08  # of the infrared width, each axis
    rotation_deg: float = 5.0
    scale: tuple[float, float] = (0.9, 1.1)
    shear: float = 0.03
    perspective: float = 2e-5  # per infrared pixel at 640 pixels wide (scaled with the width): 1.3% across it
    resolution: float = 2.0  # visible pixels per infrared pixel before the scale above


def random_warp(rng: np.random.Generator, ir_hw: tuple[int, int], r: WarpRange = WarpRange()) -> np.ndarray:
    """A 3x3 warp from infrared pixels to the pixels of a visible image on a canvas that holds all of it (the
    canvas's size follows from the warp: :func:`warped_visible`)."""
    h, w = ir_hw
    c = np.array([[1, 0, -w / 2], [0, 1, -h / 2], [0, 0, 1]], np.float64)  # about the centre
    a = np.deg2rad(rng.uniform(-r.rotation_deg, r.rotation_deg))
    s = rng.uniform(*r.scale) * r.resolution
    sh = rng.uniform(-r.shear, r.shear)
    lin = s * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) @ np.array([[1, sh], [0, 1]])
    m = np.eye(3)
    m[:2, :2] = lin
    m[:2, 2] = rng.uniform(-r.shift, r.shift, 2) * w * s
    p = np.eye(3)
    p[2, :2] = rng.uniform(-r.perspective, r.perspective, 2) * 640 / w
    warp = p @ m @ c
    # move the visible frame so that every visible pixel lands on the canvas (the visible camera sees all the scene)
    corners = warp @ np.array([[0, 0, 1], [w, 0, 1], [w, h, 1], [0, h, 1]], np.float64).T
    xy = corners[:2] / corners[2]
    return np.array([[1, 0, -xy[0].min()], [0, 1, -xy[1].min()], [0, 0, 1]]) @ warp


def warped_visible(vis: np.ndarray, warp: np.ndarray, ir_hw: tuple[int, int]) -> np.ndarray:
    """The pair's visible image as a camera with ``warp`` (infrared -> its pixels) sees it: the aligned visible image
    (infrared frame) drawn forward through ``warp`` onto a canvas that holds it."""
    h, w = ir_hw
    corners = warp @ np.array([[0, 0, 1], [w, 0, 1], [w, h, 1], [0, h, 1]], np.float64).T
    xy = corners[:2] / corners[2]
    size = (int(np.ceil(xy[0].max())), int(np.ceil(xy[1].max())))
    return cv2.warpPerspective(vis, warp, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def corner_error(estimated: np.ndarray, true: np.ndarray, ir_hw: tuple[int, int]) -> float:
    """Mean distance, in infrared pixels, between the infrared frame's corners and where ``true^-1 @ estimated``
    puts them (0 for a perfect registration).

    >>> corner_error(np.eye(3), np.eye(3), (10, 20))
    0.0
    """
    h, w = ir_hw
    corners = np.array([[0, 0, 1], [w, 0, 1], [w, h, 1], [0, h, 1]], np.float64).T
    back = np.linalg.inv(true) @ estimated @ corners
    return float(np.linalg.norm(back[:2] / back[2] - corners[:2], axis=0).mean())


@dataclass
class AlignBenchConfig:
    """``cldyn bench align``: datasets (name -> (pairs, warps per pair)), the model, the seed, unrelated pairs."""

    model: str = "affine"
    seed: int = 0
    unrelated: int = 50
    warp_range: WarpRange = WarpRange()


def _pair_images(pair: Pair) -> tuple[np.ndarray, np.ndarray]:
    ir, vis = read_pair(pair.ir, pair.vis)
    return to_single_channel(ir), vis.pixels


def bench_align(sets: dict[str, tuple[Sequence[Pair], int]], cfg: AlignBenchConfig | None = None,
                fuse: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
                fusion_metrics: Callable[[np.ndarray, np.ndarray, np.ndarray], dict[str, float]] | None = None,
                progress: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    """Corner errors, failures and time per pair for each set; the refusal rate on unrelated pairs; with ``fuse``
    and ``fusion_metrics``, fusion quality of aligned+fused against fused from the original pair (first set)."""
    cfg = cfg or AlignBenchConfig()
    rng = np.random.default_rng(cfg.seed)
    align_cfg = AlignConfig(model=cfg.model)
    out: dict[str, Any] = {"config": {**asdict(cfg), "align": asdict(align_cfg)}, "sets": {}, "warps": []}
    first = True
    for name, (pairs, per_pair) in sets.items():
        errors, times, failed, quality = [], [], 0, []
        for pair in pairs:
            ir, vis = _pair_images(pair)
            for k in range(per_pair):
                true = random_warp(rng, ir.shape, cfg.warp_range)
                moved = warped_visible(vis, true, ir.shape)
                t0 = time.perf_counter()
                try:
                    result = align(ir, moved, cfg.model, align_cfg)
                except AlignmentError as exc:
                    times.append(time.perf_counter() - t0)
                    failed += 1
                    out["warps"].append({"set": name, "pair": pair.name, "k": k, "true": true.tolist(),
                                         "estimated": None, "error": None, "failure": exc.reason})
                    continue
                times.append(time.perf_counter() - t0)
                err = corner_error(result.warp, true, ir.shape)
                errors.append(err)
                out["warps"].append({"set": name, "pair": pair.name, "k": k, "true": true.tolist(),
                                     "estimated": result.warp.tolist(), "error": err,
                                     "confidence": result.confidence})
                if first and fuse is not None and fusion_metrics is not None and k == 0:
                    ref = fusion_metrics(fuse(ir, vis), ir, luma(vis))
                    got = fusion_metrics(fuse(ir, result.aligned), ir, luma(vis))
                    quality.append({m: (got[m] - ref[m]) / abs(ref[m]) if ref[m] else 0.0 for m in ref})
            progress(f"{name}: {pair.name}")
        e = np.array(errors) if errors else np.array([np.nan])
        n = len(times)
        row = {"pairs": len(pairs), "warps": n, "failed": failed, "failure_rate": failed / max(1, n),
               "median_px": float(np.median(e)), "p95_px": float(np.percentile(e, 95)), "mean_px": float(e.mean()),
               "seconds_per_pair": float(np.median(times)) if times else float("nan")}
        if quality:
            row["fusion_quality_change"] = {m: float(np.mean([q[m] for q in quality])) for m in quality[0]}
        out["sets"][name] = row
        first = False
    if cfg.unrelated:
        pairs = [p for ps, _ in sets.values() for p in ps]
        refused, tried = 0, 0
        for _ in range(cfg.unrelated):
            i, j = rng.choice(len(pairs), 2, replace=False)
            ir, _ = _pair_images(pairs[i])
            _, vis = _pair_images(pairs[j])
            true = random_warp(rng, ir.shape, cfg.warp_range)
            tried += 1
            try:
                estimate_warp(ir, luma(warped_visible(vis, true, ir.shape)), align_cfg)
            except AlignmentError:
                refused += 1
        out["unrelated"] = {"pairs": tried, "refused": refused, "refusal_rate": refused / max(1, tried)}
    return out


def write_bench_align(result: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    atomic_write_bytes(path, (json.dumps(result, indent=1) + "\n").encode())
    return path


__all__ = ["AlignBenchConfig", "WarpRange", "bench_align", "corner_error", "random_warp", "warped_visible",
           "write_bench_align"]
