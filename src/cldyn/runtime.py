"""Process-level tuning for CPU inference and training.

glibc's malloc returns large freed blocks (feature maps of a few MB) to the kernel and maps them again on the next
allocation, so every forward pass pays tens of thousands of page faults: about a fifth of the VFN's CPU time at
640x480 in ``cldyn bench fuse``. :func:`tune_malloc` keeps such blocks in the heap instead. It changes the whole
process, so the ``cldyn`` command calls it at start-up and library code never does; call it yourself in a script
if you want the same effect.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import sys
from collections.abc import Iterator

import torch

from cldyn.errors import CldynError

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


def tune_malloc(mmap_threshold: int = 32 << 20, trim_threshold: int = 1 << 30, top_pad: int = 256 << 20) -> bool:
    """Serve blocks up to ``mmap_threshold`` bytes (glibc's maximum, 32 MiB) from the heap and keep up to
    ``trim_threshold`` bytes of freed heap mapped. Returns whether the settings were applied (glibc on Linux
    only; elsewhere a no-op)."""
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other libcs have no mallopt
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, mmap_threshold) == 1
    ok &= mallopt(_M_TRIM_THRESHOLD, trim_threshold) == 1
    ok &= mallopt(_M_TOP_PAD, top_pad) == 1
    return bool(ok)


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is a one-line error."""
    if isinstance(spec, torch.device):
        return spec
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise CldynError("--device cuda asked for, but torch sees no CUDA GPU (use --device cpu or auto)")
    try:
        return torch.device(spec)
    except RuntimeError:
        raise CldynError(f"unknown device {spec!r}; use auto, cpu, cuda or cuda:N") from None


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Temporarily set torch's intra-op CPU threads (``None``: leave as is)."""
    if not n:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
