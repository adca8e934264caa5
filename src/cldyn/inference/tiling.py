"""Tiled fusion of large images: overlapping tiles blended with linear ramps, so memory stays bounded."""

from __future__ import annotations

import torch

from cldyn.errors import CldynError


def _tile_starts(size: int, tile: int, step: int) -> list[int]:
    starts = list(range(0, max(size - tile, 0) + 1, step))
    if starts[-1] + tile < size:
        starts.append(size - tile)
    return starts


def _ramp(n: int, overlap: int, fade_start: bool, fade_end: bool) -> torch.Tensor:
    """Blending weights along one tile side: rising over ``overlap`` pixels where a neighbour tile overlaps."""
    i = torch.arange(n, dtype=torch.float32)
    w = torch.ones(n)
    if overlap > 0:
        if fade_start:
            w = torch.minimum(w, (i + 1) / (overlap + 1))
        if fade_end:
            w = torch.minimum(w, (n - i) / (overlap + 1))
    return w


def fuse_tiled(fuse_fn, ir: torch.Tensor, vis: torch.Tensor, tile: int, overlap: int = 64) -> torch.Tensor:
    """Fuse in overlapping ``tile`` x ``tile`` windows blended with linear ramps, so memory stays bounded for any
    image size.

    Inside the VFN everything is local except the channel attention, which pools each tile's features globally:
    tiled output therefore differs slightly from whole-image fusion (``cldyn bench tile`` measures by how much).
    ``fuse_fn(ir, vis) -> fused`` is :func:`fuse_tensors` with a model bound.
    """
    if tile <= 2 * overlap:
        raise CldynError(f"--tile {tile} must exceed twice the overlap ({overlap})")
    h, w = ir.shape[-2:]
    th, tw = min(tile, h), min(tile, w)
    ys, xs = _tile_starts(h, th, th - overlap), _tile_starts(w, tw, tw - overlap)
    out = None
    weight = torch.zeros(1, 1, h, w)
    for y in ys:
        wy = _ramp(th, overlap, y > 0, y + th < h)
        for x in xs:
            wx = _ramp(tw, overlap, x > 0, x + tw < w)
            piece = fuse_fn(ir[..., y:y + th, x:x + tw], vis[..., y:y + th, x:x + tw]).float().cpu()
            if out is None:
                out = torch.zeros(piece.shape[0], piece.shape[1], h, w)
            wt = (wy[:, None] * wx[None, :])[None, None]
            out[..., y:y + th, x:x + tw] += piece * wt
            weight[..., y:y + th, x:x + tw] += wt
    return out / weight
