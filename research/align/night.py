"""Night pairs: local contrast normalisation before registration.

Each image is replaced by its local z-score, ``(I - G_s * I) / (sqrt(G_s * (I - G_s * I)^2) + eps)`` (since shipped
as ``cldyn.data.confidence.local_contrast``, the confidence's second measure), with ``s`` in infrared pixels (the
visible image's ``s`` scaled by the ratio of the sizes), so that the faint edges of a dark
region weigh as much as those next to a street light. Measured two ways:

- ``truth``: the confidence of the published alignment itself (every val pair), and of unrelated pairs (each
  infrared image with the next pair's visible image) at the identity;
- ``search``: the full registration of random warps of N pairs (day or night): refused, corner error against the
  published alignment and against the known warp composed with the registration of the published pair.

    python research/align/night.py truth ROOT SPLIT [--sigma S ...]
    python research/align/night.py search ROOT SPLIT N [--night] [--sigma S] [--model M] [--seed K]
"""

from __future__ import annotations

import argparse

import numpy as np

import cldyn.data.align as align_module
from cldyn.data.align import AlignConfig, AlignmentError, estimate_warp
from cldyn.data.confidence import pair_local_contrast, registration_confidence
from cldyn.data.io import luma, read_image, to_single_channel
from cldyn.data.pairs import discover_pairs
from cldyn.data.rig import corner_error, random_warp, warped_visible

ORIGINAL_STARTS = align_module.initial_warps


def prepared(ir: np.ndarray, vis: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """The pair's local contrast (the package's :func:`cldyn.data.confidence.pair_local_contrast`); sigma 0: the
    images unchanged."""
    return pair_local_contrast(ir, vis, sigma) if sigma else (ir, vis)


def images(pair) -> tuple[np.ndarray, np.ndarray]:
    return to_single_channel(read_image(pair.ir)).astype(np.float32), luma(read_image(pair.vis).pixels)


def truth(pairs, sigmas) -> None:
    loaded = [images(p) for p in pairs]
    for s in sigmas:
        for tag in "DN":
            c = [registration_confidence(*prepared(ir, vis, s), np.eye(3), 0.5, 1.0)
                 for p, (ir, vis) in zip(pairs, loaded, strict=True) if p.name.endswith(tag)]
            u = [registration_confidence(*prepared(ir, loaded[(i + 1) % len(loaded)][1], s), np.eye(3), 0.5, 1.0)
                 for i, (p, (ir, _)) in enumerate(zip(pairs, loaded, strict=True)) if p.name.endswith(tag)]
            c, u = np.array(c), np.array(u)
            print(f"sigma {s} {tag}: published >= 4: {(c >= 4).sum()}/{len(c)} (median {np.median(c):.2f}); "
                  f"unrelated >= 4: {(u >= 4).sum()}/{len(u)} (max {u.max():.2f})", flush=True)


def _with_start(found, true, ir_hw, vis_hw):
    """``initial_warps`` with the known warp (at the coarse level's scale) added to its starts."""
    def starts(ir_c, vis_c, *args, **kwargs):
        to_ir = np.diag([ir_c.shape[1] / ir_hw[1], ir_c.shape[0] / ir_hw[0], 1.0])
        to_vis = np.diag([vis_c.shape[1] / vis_hw[1], vis_c.shape[0] / vis_hw[0], 1.0])
        return found(ir_c, vis_c, *args, **kwargs) + [to_vis @ true @ np.linalg.inv(to_ir)]
    return starts


def search(pairs, n, night, sigma, model, seed, oracle_start=False) -> None:
    cfg = AlignConfig(model=model)
    rng = np.random.default_rng(seed)
    pairs = [p for p in pairs if p.name.endswith("N" if night else "D")]
    pairs = [pairs[i] for i in sorted(rng.choice(len(pairs), min(n, len(pairs)), replace=False))]
    refused, known, published = 0, [], []
    for pair in pairs:
        ir, vis = images(pair)
        try:
            ref = estimate_warp(*prepared(ir, vis, sigma), cfg)[0]
        except AlignmentError:
            ref = None
        true, canvas = random_warp(rng, ir.shape)
        moved = warped_visible(vis, true, canvas)
        if oracle_start:  # the known warp joins the search's starts: does the refinement keep it?
            align_module.initial_warps = _with_start(ORIGINAL_STARTS, true, ir.shape, moved.shape)
        try:
            w, c = estimate_warp(*prepared(ir, moved, sigma), cfg)
        except AlignmentError as exc:
            refused += 1
            print(pair.name, "refused:", exc.reason, flush=True)
            continue
        published.append(corner_error(w, true, ir.shape))
        if ref is not None:
            known.append(corner_error(w, true @ ref, ir.shape))
        print(pair.name, f"confidence {c:.2f} published {published[-1]:.2f}",
              "" if ref is None else f"known {known[-1]:.2f}", flush=True)
    k, p = np.array(known or [np.nan]), np.array(published or [np.nan])
    print(f"sigma {sigma} {model} {'night' if night else 'day'}: refused {refused}/{len(pairs)}; known median "
          f"{np.median(k):.2f} p95 {np.percentile(k, 95):.2f} (n {len(known)}); published median {np.median(p):.2f} "
          f"p95 {np.percentile(p, 95):.2f}; over 10 px (published): {(p > 10).sum()}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=("truth", "search"))
    ap.add_argument("root")
    ap.add_argument("split")
    ap.add_argument("n", type=int, nargs="?", default=10)
    ap.add_argument("--sigma", type=float, nargs="+", default=[0.0, 8.0])
    ap.add_argument("--night", action="store_true")
    ap.add_argument("--model", default="affine")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--oracle-start", action="store_true", help="add the known warp to the search's starts")
    a = ap.parse_args()
    pairs = discover_pairs([a.root], a.split or None)[0]
    if a.what == "truth":
        truth(pairs, a.sigma)
    else:
        search(pairs, a.n, a.night, a.sigma[0], a.model, a.seed, a.oracle_start)


if __name__ == "__main__":
    main()
