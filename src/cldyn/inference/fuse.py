"""Fusing images with a trained VFN: a pure tensor function, and a :class:`Fuser` for files and folders.

Colour convention (paper): only the luminance is fused. A colour visible image gives ``Y`` to the network and its
``Cb``/``Cr`` back to the fused result; a gray visible image gives a gray result. Infrared given as RGB is reduced
to one channel (BT.601 luma).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from cldyn.data.align import AlignConfig, Alignment, align_images, warp_sidecar, write_warp
from cldyn.data.io import (
    IMAGE_EXTENSIONS,
    Image,
    check_output_format,
    check_same_size,
    read_image,
    read_pair,
    refuse_to_replace,
    to_single_channel,
    write_image,
)
from cldyn.data.pairs import Pair
from cldyn.errors import CldynError, InputError
from cldyn.inference.backends import (
    CLDyNBackend,
    FusionBackend,
    RSCInput,
    fuse_tensors,
    make_backend,
    prepare_for_inference,
)
from cldyn.inference.customise import DEFAULT_STRENGTH, check_strength
from cldyn.inference.memory import batch_that_fits, bytes_per_pair, tile_that_fits
from cldyn.inference.tiling import fuse_tiled
from cldyn.model.color import rgb_to_luma
from cldyn.model.rsc import DEFAULT_MAX_CHANGE
from cldyn.model.vfn import VFN
from cldyn.runtime import available_memory, progress_bar, resolve_device, torch_threads
from cldyn.tasks.base import TaskAdapter

Bits = Literal["auto", 8, 16]


def output_bits(ir: Image, vis: Image, bits: Bits) -> int:
    """``auto``: 16-bit output when either input has more than 8 bits, else 8."""
    if bits == "auto":
        return 16 if max(ir.bits, vis.bits) > 8 else 8
    return int(bits)


@dataclass
class FuseReport:
    """Outcome of a folder run: written files and one error per pair that could not be fused."""

    written: list[Path] = field(default_factory=list)
    errors: list[InputError] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # warnings, e.g. a batch size lowered to fit in memory

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        s = f"{len(self.written)} fused, {len(self.errors)} failed"
        return s if self.ok else s + f" (first: {self.errors[0]})"


@dataclass(frozen=True)
class _Loaded:
    pair: Pair
    index: int  # the pair's position: its output paths
    ir: Image | None = None
    vis: Image | None = None
    error: InputError | None = None
    alignment: Alignment | None = None

    @property
    def key(self) -> tuple[int, int, bool]:
        assert self.vis is not None
        return (*self.vis.size, self.vis.is_gray)


def read_aligned_pair(ir_path: str | Path, vis_path: str | Path, align: AlignConfig | None = None
                      ) -> tuple[Image, Image, Alignment | None]:
    """Both images of a pair: the same size (``align`` ``None`` or model ``none``), or the visible image registered
    into the infrared frame (any sizes), with its :class:`Alignment`.

    Raises:
        InputError: an unreadable image, sizes that differ without alignment, or a pair that cannot be aligned.
    """
    if align is None or align.model == "none":
        return (*read_pair(ir_path, vis_path), None)
    ir = read_image(ir_path)
    vis, result = align_images(ir, read_image(vis_path), align.model, align)
    return ir, vis, result


def _load(index: int, pair: Pair, align: AlignConfig | None = None) -> _Loaded:
    try:
        ir, vis, result = read_aligned_pair(pair.ir, pair.vis, align)
        return _Loaded(pair, index, ir, vis, alignment=result)
    except InputError as exc:
        return _Loaded(pair, index, error=exc)


def _prefetch(fn: Callable, items: Iterable, pool: ThreadPoolExecutor, depth: int) -> Iterator:
    """``map(fn, items)`` running up to ``depth`` calls ahead in ``pool``, results in order."""
    pending: list[Future] = []
    for item in items:
        pending.append(pool.submit(fn, *item))
        if len(pending) > depth:
            yield pending.pop(0).result()
    for fut in pending:
        yield fut.result()


def _chw(pixels: np.ndarray) -> torch.Tensor:
    """``(H, W)`` gray or ``(H, W, 3)`` RGB float pixels as a ``(C, H, W)`` float32 tensor."""
    t = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32))
    return t[None] if t.dim() == 2 else t.permute(2, 0, 1)


def _hwc(t: torch.Tensor) -> np.ndarray:
    """A ``(C, H, W)`` CPU tensor as ``(H, W)`` gray or ``(H, W, C)`` pixels: the inverse of :func:`_chw`."""
    return t[0].numpy() if t.shape[0] == 1 else t.permute(1, 2, 0).numpy()


class Fuser:
    """Fuses files and folders with a VFN on CPU or GPU.

    Args:
        model: a trained VFN; ``None`` loads the weights shipped in the package.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        batch_size: pairs per forward pass (consecutive pairs of one size are batched together).
        io_threads: threads that decode and encode images while the network runs.
        task: task-customised (CLDyN) fusion: a task name (``detection``, ``segmentation``, ``saliency``: the
            shipped network) or a :class:`~cldyn.tasks.base.TaskAdapter`; ``None`` or ``"none"`` fuses with the VFN
            alone.
        rsc: for a task, the trained :class:`~cldyn.model.rsc.RSC`, the path of its checkpoint or the name of a
            shipped one (``visible``); ``None`` loads the shipped default (it must fit ``model``). A list of RSCs
            (e.g. seeds or ablations) shares the base fusion and the task features, and :meth:`fuse_pairs` then
            takes one output folder per RSC.
        onnx: run this graph from ``cldyn export`` with onnxruntime instead (no ``task``: the graph holds it).
        tile, overlap: fuse in ``tile``-pixel tiles that overlap by ``overlap`` (``None``: whole images, in
            tiles only when an image does not fit in memory, with a note in :attr:`notes`).
        strength: for a task, from the VFN's image (0) to the full customisation (1)
            (:meth:`~cldyn.model.rsc.CLDyN.customised`), or ``"auto"``: per image, the one of 0, 0.5 and 1 that the
            task network is surest of (:meth:`~cldyn.model.rsc.CLDyN.choose_strength`; per tile where tiled).
        max_change: for a task, the most the full customisation may move an image's luminance, as a mean over
            its pixels in 8-bit grey levels (at strength s, s times that; ``None`` or 0: no limit;
            :func:`~cldyn.model.rsc.at_strength`).
        align: register each visible image into its infrared frame first: ``none`` (the default: pairs must be
            aligned and the same size), ``translation``, ``affine`` or ``homography`` (:mod:`cldyn.data.align`), or
            an :class:`~cldyn.data.align.AlignConfig`. A pair that cannot be registered is an error, never fused.
        save_warp: with ``align``, write each pair's warp and confidence beside its output (``NAME.warp.json``).

    What runs the network is :attr:`backend` (:mod:`cldyn.inference.backends`): the VFN, CLDyN or onnxruntime.

    Example:
        >>> fuser = Fuser(VFN(), device="cpu")
        >>> fuser.fuse_arrays(np.random.rand(8, 8), np.random.rand(8, 8, 3)).shape
        (8, 8, 3)
        >>> Fuser(device="cpu", task="saliency").task.name  # the shipped VFN, RSC and saliency network
        'saliency'
    """

    def __init__(self, model: VFN | None = None, device: str | torch.device = "auto", batch_size: int = 1,
                 io_threads: int = 2, task: str | TaskAdapter | None = None, rsc: RSCInput | None = None,
                 onnx: str | Path | None = None, tile: int | None = None, overlap: int = 64,
                 strength: float | str = DEFAULT_STRENGTH, align: str | AlignConfig = "none",
                 save_warp: bool = False, max_change: float | None = DEFAULT_MAX_CHANGE) -> None:
        if batch_size < 1:
            raise CldynError(f"--batch-size must be >= 1, got {batch_size}")
        self.align: AlignConfig | None = (align if isinstance(align, AlignConfig) else
                                          None if align == "none" else AlignConfig(model=align))
        self.save_warp = save_warp
        self.strength = check_strength(strength)
        self.device = resolve_device(device)
        self.backend: FusionBackend = make_backend(model, self.device, task, rsc, onnx, self.strength, max_change)
        if self.backend.outputs > 1 and tile:
            raise CldynError("tiled fusion takes one RSC at a time")
        self.batch_size = batch_size
        self.io_threads = max(1, io_threads)
        self.tile, self.overlap = tile, overlap
        self.notes: list[str] = []  # what the fuser decided for the user, e.g. tiles for an image too large

    @property
    def task(self) -> TaskAdapter | None:
        """The frozen task network of task-customised fusion, else ``None``."""
        return self.backend.task if isinstance(self.backend, CLDyNBackend) else None

    @property
    def outputs(self) -> int:
        """Fused images per pair: one per RSC for task-customised fusion, else one."""
        return self.backend.outputs

    @torch.inference_mode()
    def fuse_batch(self, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        """:func:`fuse_tensors` on the fuser's device (in tiles when the image is larger than ``tile``); returns a
        CPU tensor."""
        tile = self.tile or self._tile_to_fit(tuple(ir.shape[-2:]), ir.shape[0])
        if tile and max(ir.shape[-2:]) > tile:
            return fuse_tiled(self._fuse_whole, ir, vis, tile, self.overlap)
        try:
            return self._fuse_whole(ir, vis)
        except (torch.OutOfMemoryError, RuntimeError) as exc:  # the estimate below was too hopeful
            if "memory" not in str(exc).lower():
                raise
            h, w = ir.shape[-2:]
            raise CldynError(f"out of memory fusing a {w}x{h} pair; fuse it in tiles (--tile 1024)") from None

    def _tile_to_fit(self, size: tuple[int, int], batch: int) -> int | None:
        """A tile side that fits half the free memory when the whole image does not (with a note, once per size),
        else ``None``."""
        free = available_memory(self.device)
        customised = self.backend.customised
        side = tile_that_fits(size, batch, free, customised) if self.backend.auto_tiles or self.outputs > 1 else None
        if side is None:
            return None
        if self.outputs > 1:
            raise CldynError(f"a {size[1]}x{size[0]} pair does not fit in memory and tiled fusion takes one RSC at "
                             "a time")
        need = bytes_per_pair(size, customised) * batch
        note = (f"fused {size[1]}x{size[0]} pairs in {side}-pixel tiles: the whole image needs about "
                f"{need / 2**30:.1f} GiB, {free / 2**30:.1f} GiB are free (--tile sets the size)")
        if note not in self.notes:
            self.notes.append(note)
        return side

    @torch.inference_mode()
    def fuse_batch_all(self, ir: torch.Tensor, vis: torch.Tensor) -> list[torch.Tensor]:
        """One fused batch per RSC (:attr:`outputs` of them; the base fusion and task features computed once)."""
        if self.outputs == 1:
            return [self.fuse_batch(ir, vis)]
        return self.backend.fuse_all(*self._to_device(ir, vis))

    def _to_device(self, ir: torch.Tensor, vis: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fmt = torch.channels_last if self.device.type == "cpu" else torch.contiguous_format
        return ir.to(self.device).contiguous(memory_format=fmt), vis.to(self.device).contiguous(memory_format=fmt)

    def _fuse_whole(self, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        return self.backend.fuse_all(*self._to_device(ir, vis))[0]

    def fuse_arrays(self, ir: np.ndarray, vis: np.ndarray) -> np.ndarray:
        """Fuse float arrays in [0, 1]: ``ir`` ``(H, W)`` (or RGB), ``vis`` ``(H, W)`` or ``(H, W, 3)``."""
        ir_t = torch.from_numpy(np.ascontiguousarray(ir, dtype=np.float32))
        if ir_t.dim() == 3:
            ir_t = rgb_to_luma(ir_t.permute(2, 0, 1))[0]
        return _hwc(self.fuse_batch(ir_t[None, None], _chw(vis)[None])[0])

    def fuse_images(self, ir: Image, vis: Image) -> np.ndarray:
        """Fuse two decoded images; the result is gray or RGB like ``vis``."""
        check_same_size(ir.path, ir.size, vis.path, vis.size)
        return self.fuse_arrays(to_single_channel(ir), vis.pixels)

    @torch.inference_mode()
    def fuse_images_with_base(self, ir: Image, vis: Image) -> tuple[np.ndarray, np.ndarray]:
        """``(vfn, customised)``: the plain VFN fusion and the task-customised fusion of one pair, from one pass of
        the closed loop (its base fusion is the VFN result), each gray or RGB like ``vis``. Needs a task."""
        if not isinstance(self.backend, CLDyNBackend):
            raise CldynError("fuse_images_with_base needs task-customised fusion (Fuser(task=...))")
        check_same_size(ir.path, ir.size, vis.path, vis.size)
        ir_t, vis_t = self._to_device(_chw(to_single_channel(ir))[None], _chw(vis.pixels)[None])
        base, fused = self.backend.fuse_with_base(ir_t, vis_t)
        return _hwc(base[0].float().cpu()), _hwc(fused[0].float().cpu())

    def fuse_files(self, ir_path: str | Path, vis_path: str | Path, out_path: str | Path, bits: Bits = "auto",
                   overwrite: bool = False) -> Path:
        """Fuse one pair of files into ``out_path`` (format from its extension), written atomically."""
        out_path = Path(out_path)
        if out_path.is_dir():
            raise InputError(out_path, "is a folder; give a file name for a single pair")
        check_output_format(out_path, None if bits == "auto" else int(bits))
        refuse_to_replace([out_path], overwrite)
        ir, vis, alignment = read_aligned_pair(ir_path, vis_path, self.align)
        write_image(out_path, self.fuse_images(ir, vis), output_bits(ir, vis, bits))
        if alignment is not None and self.save_warp:
            write_warp(warp_sidecar(out_path), alignment, ir_path, vis_path)
        return out_path

    def _memory_cap(self, size: tuple[int, int], batch_size: int, report: FuseReport) -> int:
        """``batch_size`` lowered (with a note in ``report``) to what half the free memory holds for ``size``."""
        free = available_memory(self.device)
        cap = batch_that_fits(size, batch_size, free, self.backend.customised)
        if cap == batch_size:
            return batch_size
        per_pair = bytes_per_pair(size, self.backend.customised)
        report.notes.append(f"batch size {self.batch_size} lowered to {cap} for {size[1]}x{size[0]} pairs: "
                            f"{free / 2**30:.1f} GiB free, about {per_pair / 2**20:.0f} MiB per pair")
        return cap

    def fuse_pairs(self, pairs: Sequence[Pair], out_dir: str | Path | Sequence[str | Path], bits: Bits = "auto",
                   overwrite: bool = False, progress: bool = True, suffix: str = ".png") -> FuseReport:
        """Fuse pairs into ``out_dir/NAME.png``; a pair that fails is reported and the rest go on. With several
        RSCs, ``out_dir`` is one folder per RSC.

        Raises:
            InputError: some outputs exist already and ``overwrite`` is false (checked before any work).
        """
        out_dirs = [Path(out_dir)] if isinstance(out_dir, (str, Path)) else [Path(d) for d in out_dir]
        for d in out_dirs:
            if d.suffix.lower() in IMAGE_EXTENSIONS:
                raise InputError(d, "is an image file name, but several pairs are fused into an output folder "
                                 "(one image per pair); give a folder name")
        if len(out_dirs) != self.outputs:
            raise CldynError(f"{self.outputs} fused images per pair need {self.outputs} output folders, "
                             f"got {len(out_dirs)}")
        outputs = [[d / f"{p.name}{suffix}" for p in pairs] for d in out_dirs]  # [folder][pair]
        refuse_to_replace([t for ts in outputs for t in ts], overwrite)
        report = FuseReport()
        writes: list[tuple[Future, Path, Pair]] = []
        with ThreadPoolExecutor(self.io_threads) as pool, \
                progress_bar(total=len(pairs), disable=not progress, desc="fuse", unit="pair") as bar:

            def flush(batch: list[_Loaded]) -> None:
                ir = torch.stack([_chw(to_single_channel(b.ir)) for b in batch])
                vis = torch.stack([_chw(b.vis.pixels) for b in batch])
                for k, fused in enumerate(self.fuse_batch_all(ir, vis)):
                    for b, f in zip(batch, fused, strict=True):
                        out = outputs[k][b.index]
                        fut = pool.submit(write_image, out, _hwc(f), output_bits(b.ir, b.vis, bits))
                        writes.append((fut, out, b.pair))
                        if k == 0 and b.alignment is not None and self.save_warp:
                            write_warp(warp_sidecar(out), b.alignment, b.pair.ir, b.pair.vis)
                bar.update(len(batch))

            batch: list[_Loaded] = []
            size_cap = min(self.batch_size, max(1, len(pairs)))
            caps: dict[tuple[int, int, bool], int] = {}  # per image size: the batch that fits in memory
            jobs = ((i, p, self.align) for i, p in enumerate(pairs))
            for item in _prefetch(_load, jobs, pool, 2 * self.io_threads + min(size_cap, 256)):
                if item.error is not None:
                    report.errors.append(item.error)
                    bar.update(1)
                    continue
                if item.key not in caps:
                    caps[item.key] = self._memory_cap(item.key[:2], size_cap, report)
                if batch and (item.key != batch[0].key or len(batch) == caps[batch[0].key]):
                    flush(batch)
                    batch = []
                batch.append(item)
            if batch:
                flush(batch)
            report.notes += self.notes
            for fut, out, pair in writes:
                try:
                    fut.result()
                    report.written.append(out)
                except InputError as exc:
                    report.errors.append(InputError(exc.path, f"{exc.problem} (pair {pair.name})"))
        return report


__all__ = ["fuse_tensors", "Fuser", "FuseReport", "read_aligned_pair", "resolve_device", "prepare_for_inference",
           "torch_threads"]
