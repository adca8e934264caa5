"""Image reading/writing, pairing of infrared and visible folders, and known dataset layouts.

Images are returned as float32 numpy arrays in [0, 1], ``(H, W)`` for gray and ``(H, W, 3)`` RGB for colour.
Decoding goes through OpenCV from bytes (so any file name works, UTF-8 or not); every failure becomes an
:class:`~cldyn.errors.InputError` naming the file.
"""

from __future__ import annotations

import csv
import functools
import io
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from cldyn.errors import InputError, OutputExistsError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


@dataclass(frozen=True)
class Image:
    """A decoded image: ``pixels`` float32 in [0, 1], ``(H, W)`` or ``(H, W, 3)`` RGB; ``bits`` of the source."""

    pixels: np.ndarray
    bits: int
    path: Path

    @property
    def is_gray(self) -> bool:
        return self.pixels.ndim == 2

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)``."""
        return self.pixels.shape[0], self.pixels.shape[1]


def _decode(path: Path) -> np.ndarray:
    if not path.exists():
        raise InputError(path, "file not found")
    if path.is_dir():
        raise InputError(path, "is a directory, not an image file")
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise InputError(path, f"cannot read ({exc.strerror or exc})") from None
    if data.size == 0:
        raise InputError(path, "empty file (0 bytes)")
    level = cv2.utils.logging.getLogLevel()
    # silent: a corrupt file gets our one line, not OpenCV's own [ERROR]/[WARN] lines on stderr too
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        array = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    finally:
        cv2.utils.logging.setLogLevel(level)
    if array is None or array.size == 0:
        raise InputError(path, "not a readable image (unknown format or truncated/corrupt data)")
    return array


def read_image(path: str | Path) -> Image:
    """Read an 8/16-bit or float image as float32 in [0, 1].

    Gray stays ``(H, W)``; colour becomes RGB ``(H, W, 3)`` (alpha dropped); float images must already lie in
    [0, 1] (values outside are an error, so nothing is silently clipped).

    Raises:
        InputError: the file is missing, not an image, empty, NaN/inf, out of range, or constant.
    """
    path = Path(path)
    array = _decode(path)
    if array.dtype == np.uint8:
        bits, pixels = 8, array.astype(np.float32) / 255.0
    elif array.dtype == np.uint16:
        bits, pixels = 16, array.astype(np.float32) / 65535.0
    elif array.dtype in (np.float32, np.float64):
        pixels = array.astype(np.float32)
        if not np.isfinite(pixels).all():
            raise InputError(path, "contains NaN or infinite values")
        lo, hi = float(pixels.min()), float(pixels.max())
        if lo < 0.0 or hi > 1.0:
            raise InputError(path, f"float image values must lie in [0, 1], found [{lo:.4g}, {hi:.4g}]")
        bits = 32
    else:
        raise InputError(path, f"unsupported pixel type {array.dtype}")
    if pixels.ndim == 3:
        channels = pixels.shape[2]
        if channels == 1:
            pixels = pixels[:, :, 0]
        elif channels in (3, 4):
            pixels = np.ascontiguousarray(pixels[:, :, 2::-1])  # BGR(A) -> RGB
        else:
            raise InputError(path, f"unsupported channel count {channels}")
    if float(pixels.max()) == float(pixels.min()):
        raise InputError(path, f"image is constant (every pixel = {float(pixels.flat[0]):.4g}); nothing to fuse")
    return Image(pixels=pixels, bits=bits, path=path)


def check_same_size(ir_path: Path, ir_hw: tuple[int, int], vis_path: Path, vis_hw: tuple[int, int]) -> None:
    """One-line error, naming the visible file, when a pair's sizes ``(H, W)`` differ."""
    if tuple(ir_hw) != tuple(vis_hw):
        raise InputError(vis_path, f"size {vis_hw[1]}x{vis_hw[0]} differs from its infrared partner "
                         f"{Path(ir_path).name} ({ir_hw[1]}x{ir_hw[0]})")


def read_pair(ir_path: str | Path, vis_path: str | Path) -> tuple[Image, Image]:
    """Both images of a pair, checked to have the same size."""
    ir, vis = read_image(ir_path), read_image(vis_path)
    check_same_size(ir.path, ir.size, vis.path, vis.size)
    return ir, vis


def luma(pixels: np.ndarray) -> np.ndarray:
    """BT.601 luma of RGB ``(H, W, 3)`` pixels; gray ``(H, W)`` is returned as it is."""
    return pixels if pixels.ndim == 2 else pixels @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def three_channels(pixels: np.ndarray) -> np.ndarray:
    """Gray ``(H, W)`` pixels repeated to ``(H, W, 3)``; RGB is returned as it is."""
    return np.repeat(pixels[:, :, None], 3, axis=2) if pixels.ndim == 2 else pixels


def to_single_channel(image: Image) -> np.ndarray:
    """Infrared given as RGB is reduced to one channel with BT.601 luma (exact when the channels are equal)."""
    return luma(image.pixels)


@functools.lru_cache(maxsize=1)
def _umask() -> int:
    # os.umask can only be read by setting it; do it once per process.
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file beside ``path`` then rename: readers never see a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the permissions open() would
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def refuse_to_replace(paths: Iterable[str | Path], overwrite: bool = False) -> None:
    """One policy for every output: unless ``overwrite``, raise :class:`~cldyn.errors.OutputExistsError` naming
    the first of ``paths`` that exists (and how many do), before anything is written."""
    if overwrite:
        return
    paths = [Path(p) for p in paths]
    existing = [p for p in paths if p.exists()]
    if existing:
        count = f" ({len(existing)} of {len(paths)} outputs do)" if len(paths) > 1 else ""
        raise OutputExistsError(existing[0], f"already exists{count}; {OutputExistsError.API_HINT} to replace "
                                f"{'them' if len(existing) > 1 else 'it'}")


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Public form of the atomic write, turning OS errors into one-line :class:`InputError`."""
    path = Path(path)
    try:
        _atomic_write_bytes(path, data)
    except OSError as exc:
        raise InputError(path, f"cannot write ({exc.strerror or exc})") from None


WRITE_EXTENSIONS = {".png": (8, 16), ".tif": (8, 16), ".tiff": (8, 16), ".bmp": (8,), ".jpg": (8,), ".jpeg": (8,)}


def encode_image(pixels: np.ndarray, bits: int = 8, ext: str = ".png") -> bytes:
    """Encode float pixels in [0, 1] (``(H, W)`` or RGB ``(H, W, 3)``) in the format of ``ext``.

    PNG and TIFF take 8 or 16 bits; BMP and JPEG only 8.
    """
    ext = ext.lower()
    if problem := format_problem(ext, bits):
        raise ValueError(problem)
    scale, dtype = (255.0, np.uint8) if bits == 8 else (65535.0, np.uint16)
    array = np.rint(np.clip(pixels, 0.0, 1.0) * scale).astype(dtype)
    if array.ndim == 3:
        array = np.ascontiguousarray(array[:, :, ::-1])  # RGB -> BGR for OpenCV
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if ext in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(ext, array, params)
    if not ok:
        raise ValueError(f"{ext} encoding failed")
    return buf.tobytes()


def format_problem(ext: str, bits: int | None) -> str | None:
    """Why :func:`encode_image` cannot write ``ext`` files (at ``bits``, when given), or ``None``.

    >>> format_problem(".jpg", 16)
    '.jpg files hold 8-bit pixels, not 16'
    """
    if ext not in WRITE_EXTENSIONS:
        return f"cannot write {ext or 'extension-less'!r} files; use one of {', '.join(sorted(WRITE_EXTENSIONS))}"
    if bits is not None and bits not in WRITE_EXTENSIONS[ext]:
        return f"{ext} files hold {' or '.join(map(str, WRITE_EXTENSIONS[ext]))}-bit pixels, not {bits}"
    return None


def check_output_format(path: str | Path, bits: int | None = None) -> None:
    """Raise :class:`InputError` naming ``path`` when its extension is not a format :func:`write_image` writes (or
    not at ``bits``): checked before any work, not after it."""
    path = Path(path)
    if problem := format_problem(path.suffix.lower(), bits):
        raise InputError(path, problem)


def encode_png(pixels: np.ndarray, bits: int = 8) -> bytes:
    """Encode float pixels in [0, 1] (``(H, W)`` or RGB ``(H, W, 3)``) as an 8- or 16-bit PNG."""
    return encode_image(pixels, bits, ".png")


def write_image(path: str | Path, pixels: np.ndarray, bits: int = 8) -> None:
    """Write float pixels in [0, 1] in the format given by the file's extension, atomically."""
    path = Path(path)
    try:
        data = encode_image(pixels, bits, path.suffix)
    except ValueError as exc:
        raise InputError(path, str(exc)) from None
    atomic_write_bytes(path, data)


def write_png(path: str | Path, pixels: np.ndarray, bits: int = 8) -> None:
    """Write float pixels in [0, 1] as a PNG, atomically (temp file + rename)."""
    atomic_write_bytes(path, encode_png(pixels, bits))


def write_csv(path: str | Path, rows: Sequence[dict], fields: Sequence[str] | None = None) -> None:
    """Rows of dicts as CSV, atomically; columns are ``fields`` or every key in order of first appearance."""
    keys = list(fields) if fields else list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(path, buf.getvalue().encode())


def read_csv(path: str | Path) -> list[dict]:
    """Rows of a CSV file as dicts; an absent file gives no rows."""
    path = Path(path)
    if not path.is_file():
        return []
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


# --- pairing ----------------------------------------------------------------------------------------------
