"""``cldyn bench align``: how well, how often and how fast :func:`cldyn.data.align.align` recovers known warps.

Real aligned pairs have their visible image redrawn as a second camera of one rig would see it: a random warp with
a shift of up to 8% of the frame, a rotation of up to 5 degrees, a scale of 0.9 to 1.1, a small shear and
perspective, at twice the infrared resolution, on a canvas a little wider than the infrared field of view (so the
two images differ in size and aspect ratio). Registration then has to find the warp back.

The corner error is the mean distance, in infrared pixels, between where two warps put the infrared frame's corners.
It is measured two ways:

- ``known``: against the known warp composed with the registration of the original pair (the warp that the method
  finds before any warp is applied). This is how well the known warp is recovered, whatever the dataset's own
  alignment is.
- ``published``: against the known warp alone, i.e. taking the published alignment as exact. Published pairs are
  not exact at this level: on MSRS and RoadScene three unrelated criteria (edge correlation, gradient fields,
  mutual information) agree on a residual scale of about 1% (3-4 pixels at the corners), which this figure then
  counts as error.

Unrelated pairs (an infrared image with another scene's visible image) must be refused.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cldyn.data.align import AlignConfig, AlignmentError, align, estimate_warp
from cldyn.data.io import atomic_write_bytes, luma, read_image, to_single_channel
from cldyn.data.pairs import Pair
from cldyn.data.rig import WarpRange, corner_error, random_warp, warped_visible
from cldyn.evaluation.evaluate import fusion_metrics, gray_of_array
from cldyn.inference.fuse import Fuser


@dataclass
class AlignBenchConfig:
    """``cldyn bench align``: the registration's settings (its warp model included), the seed, the number of
    unrelated pairs and the warps' range."""

    align: AlignConfig = field(default_factory=AlignConfig)
    seed: int = 0
    unrelated: int = 50
    warp_range: WarpRange = field(default_factory=WarpRange)


def _pair_images(pair: Pair) -> tuple[np.ndarray, np.ndarray]:
    """``(infrared (H, W), visible (H, W) or (H, W, 3))`` in [0, 1]."""
    return to_single_channel(read_image(pair.ir)), read_image(pair.vis).pixels


def _summary(errors: list[float]) -> dict[str, float]:
    e = np.asarray(errors, np.float64) if errors else np.array([np.nan])
    return {"median_px": float(np.median(e)), "p95_px": float(np.percentile(e, 95)), "mean_px": float(e.mean())}


def bench_align(sets: dict[str, tuple[Sequence[Pair], int]], cfg: AlignBenchConfig | None = None,
                fuse: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
                fusion_metrics: Callable[[np.ndarray, np.ndarray, np.ndarray], dict[str, float]] | None = None,
                progress: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    """Corner errors, failures and time per pair for each set (name -> (pairs, warps per pair)); the refusal rate
    on unrelated pairs; with ``fuse`` (``(ir, vis) -> fused``, arrays in [0, 1]) and ``fusion_metrics`` (``(fused,
    ir, vis_luma) -> {metric: value}`` on the 0..255 scale), the fusion quality of aligned+fused pairs against
    fused original pairs (first warp of each pair of the first set), each scored against its own two sources, and
    the fusion time."""
    cfg = cfg or AlignBenchConfig()
    rng = np.random.default_rng(cfg.seed)
    align_cfg = cfg.align
    out: dict[str, Any] = {"config": asdict(cfg), "sets": {}, "warps": []}
    fuse_times: list[float] = []
    for index, (name, (pairs, per_pair)) in enumerate(sets.items()):
        known, published, times, failed, quality, no_reference = [], [], [], 0, [], 0
        for pair in pairs:
            ir, vis = _pair_images(pair)
            try:  # the method's own registration of the published pair: the reference of the known warp
                reference = estimate_warp(ir, luma(vis), align_cfg)[0]
            except AlignmentError:
                reference, no_reference = None, no_reference + 1
            for k in range(per_pair):
                true, canvas = random_warp(rng, ir.shape, cfg.warp_range)
                moved = warped_visible(vis, true, canvas)
                row: dict[str, Any] = {"set": name, "pair": pair.name, "k": k, "true": true.tolist(),
                                       "reference": None if reference is None else reference.tolist()}
                t0 = time.perf_counter()
                try:
                    result = align(ir, moved, align_cfg.model, align_cfg)
                except AlignmentError as exc:
                    times.append(time.perf_counter() - t0)
                    failed += 1
                    out["warps"].append({**row, "estimated": None, "failure": exc.reason})
                    continue
                times.append(time.perf_counter() - t0)
                row.update(estimated=result.warp.tolist(), confidence=result.confidence,
                           published_px=corner_error(result.warp, true, ir.shape))
                published.append(row["published_px"])
                if reference is not None:
                    row["known_px"] = corner_error(result.warp, true @ reference, ir.shape)
                    known.append(row["known_px"])
                out["warps"].append(row)
                if index == 0 and k == 0 and fuse is not None and fusion_metrics is not None:
                    t0 = time.perf_counter()
                    fused_ref = fuse(ir, vis)
                    fuse_times.append(time.perf_counter() - t0)
                    ref = fusion_metrics(luma(fused_ref), ir, luma(vis))
                    got = fusion_metrics(luma(fuse(ir, result.aligned)), ir, luma(result.aligned))
                    quality.append({m: 100 * (got[m] - ref[m]) / abs(ref[m]) if ref[m] else 0.0 for m in ref})
            progress(f"{name}: {pair.name}")
        n = len(times)
        row = {"pairs": len(pairs), "warps": n, "failed": failed, "failure_rate": failed / max(1, n),
               "known": _summary(known), "published": _summary(published), "no_reference": no_reference,
               "seconds_per_pair": float(np.median(times)) if times else float("nan")}
        if quality:
            row["fusion_quality_change_pct"] = {m: float(np.mean([q[m] for q in quality])) for m in quality[0]}
        out["sets"][name] = row
    if fuse_times:
        out["fusion_seconds_per_pair"] = float(np.median(fuse_times))
    if cfg.unrelated:
        out["unrelated"] = _unrelated(sets, cfg, align_cfg, rng)
    return out


def _unrelated(sets: dict[str, tuple[Sequence[Pair], int]], cfg: AlignBenchConfig, align_cfg: AlignConfig,
               rng: np.random.Generator) -> dict[str, Any]:
    """Infrared images each given another scene's visible image (warped as above): how many are refused."""
    pairs = [p for ps, _ in sets.values() for p in ps]
    refused, accepted = 0, []
    for _ in range(cfg.unrelated):
        gap = min(10, len(pairs) // 2)  # another scene: not a near frame of the same sequence
        while True:
            i, j = (int(v) for v in rng.choice(len(pairs), 2, replace=False))
            if abs(i - j) >= gap:
                break
        ir, _ = _pair_images(pairs[i])
        _, vis = _pair_images(pairs[j])
        true, canvas = random_warp(rng, ir.shape, cfg.warp_range)
        try:
            align(ir, warped_visible(vis, true, canvas), align_cfg.model, align_cfg)
            accepted.append(f"{pairs[i].name}+{pairs[j].name}")
        except AlignmentError:
            refused += 1
    return {"pairs": cfg.unrelated, "refused": refused, "refusal_rate": refused / max(1, cfg.unrelated),
            "accepted": accepted}


def vfn_fusion_scorers(vfn: torch.nn.Module) -> tuple[Callable, Callable]:
    """``(fuse, quality)`` for :func:`bench_align`: the VFN's fusion of ``(ir, vis)`` arrays in [0, 1] on the CPU,
    and VIF, Qabf and SSIM of a fused luminance against its two sources (0..255 scale, as ``cldyn evaluate``)."""
    fuser = Fuser(vfn, device="cpu")

    def quality(fused: np.ndarray, ir: np.ndarray, vis_y: np.ndarray) -> dict[str, float]:
        return fusion_metrics(gray_of_array(fused), gray_of_array(ir), gray_of_array(vis_y),
                              keys=("vif", "qabf", "ssim"))

    return fuser.fuse_arrays, quality


def align_report(result: dict[str, Any]) -> list[str]:
    """The benchmark's result as lines of text: per set, errors against the known warp and against the published
    alignment, failures and time; the refusal of unrelated pairs; fusion quality and time."""
    lines = [f"{'set':10s} {'warps':>5s} {'known median/p95 px':>20s} {'published median/p95 px':>24s} "
             f"{'failed':>7s} {'s/pair':>7s}"]
    for name, r in result["sets"].items():
        k, p = r["known"], r["published"]
        lines.append(f"{name:10s} {r['warps']:5d} {k['median_px']:10.2f} / {k['p95_px']:<8.2f}"
                     f"{p['median_px']:12.2f} / {p['p95_px']:<10.2f} {100 * r['failure_rate']:6.1f}% "
                     f"{r['seconds_per_pair']:7.2f}")
        if "fusion_quality_change_pct" in r:
            q = ", ".join(f"{m} {v:+.1f}%" for m, v in r["fusion_quality_change_pct"].items())
            lines.append(f"{'':10s} fusion of aligned pairs against the original pairs: {q}")
    if "fusion_seconds_per_pair" in result:
        first = next(iter(result["sets"].values()))
        lines.append(f"fusion {result['fusion_seconds_per_pair']:.2f} s per pair; registration / fusion time "
                     f"{first['seconds_per_pair'] / result['fusion_seconds_per_pair']:.1f}x")
    if "unrelated" in result:
        u = result["unrelated"]
        lines.append(f"unrelated pairs refused: {u['refused']} of {u['pairs']} ({100 * u['refusal_rate']:.0f}%)")
    return lines


def write_bench_align(result: dict[str, Any], path: str | Path) -> Path:
    """The benchmark's result, every warp included, as JSON (written atomically)."""
    path = Path(path)
    atomic_write_bytes(path, (json.dumps(result, indent=1) + "\n").encode())
    return path


__all__ = ["AlignBenchConfig", "align_report", "bench_align", "vfn_fusion_scorers", "write_bench_align"]
