"""How much of a fusion fits in the free memory: the batch of same-size pairs, or the tile side of one pair too large
to be fused whole. Pure arithmetic on sizes, so that the fuser decides before it allocates anything."""

from __future__ import annotations

# Peak memory of one fused pair per input pixel: the VFN's float32 activations, measured at about 820 B/px for
# 640x480 pairs on the CPU (251 MB at batch 1, 786 MB at batch 4), rounded up; a task network in the loop
# (task-customised fusion) costs several times more.
BYTES_PER_PIXEL = 1024
TASK_MEMORY_FACTOR = 4
MIN_TILE = 256


def bytes_per_pair(size: tuple[int, int], customised: bool) -> int:
    """Peak bytes of fusing one ``(H, W)`` pair (with a task network in the loop when ``customised``).

    >>> bytes_per_pair((480, 640), False) // 2**20
    300
    """
    return size[0] * size[1] * BYTES_PER_PIXEL * (TASK_MEMORY_FACTOR if customised else 1)


def batch_that_fits(size: tuple[int, int], batch: int, free: int | None, customised: bool) -> int:
    """``batch`` lowered to what half of ``free`` bytes holds for ``(H, W)`` pairs (never below 1; unchanged when
    the free memory is unknown)."""
    per_pair = bytes_per_pair(size, customised)
    if free is None or batch * per_pair <= free // 2:
        return batch
    return max(1, int(free // 2 // per_pair))


def tile_that_fits(size: tuple[int, int], batch: int, free: int | None, customised: bool) -> int | None:
    """A tile side (a multiple of 256) whose pairs fit in half of ``free`` bytes when a whole ``(H, W)`` batch does
    not, else ``None``.

    >>> tile_that_fits((4000, 6000), 1, 8 * 2**30, False), tile_that_fits((480, 640), 1, 8 * 2**30, False)
    (2048, None)
    """
    per_pixel = bytes_per_pair((1, 1), customised) * batch
    if free is None or size[0] * size[1] * per_pixel <= free // 2:
        return None
    return max(MIN_TILE, int((free // 2 // per_pixel) ** 0.5) // MIN_TILE * MIN_TILE)
