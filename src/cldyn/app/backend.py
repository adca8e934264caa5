"""What the ``cldyn serve`` page asks for: decode an uploaded pair, fuse it with the VFN and with CLDyN customised
for a task, draw the task's prediction on both, and score both with the fusion metrics, timing every step.

No web framework here, so the same functions run in tests and behind any server. Models are loaded once per
weights and kept (:class:`ModelCache`); the compute runs one request at a time (a lock), so requests that arrive
together neither fight over the CPU threads nor share any intermediate result.
"""

from __future__ import annotations

import base64
import contextlib
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cldyn.data.align import AlignConfig, align_images, checkerboard
from cldyn.data.io import Image, check_same_size, encode_png, luma, read_image, three_channels, to_single_channel
from cldyn.errors import CldynError, InputError
from cldyn.evaluation.evaluate import fusion_metrics, gray_of_array
from cldyn.evaluation.report import png_data_uri
from cldyn.inference.customise import DEFAULT_STRENGTH, check_strength
from cldyn.inference.demo import heat_map
from cldyn.inference.fuse import Fuser, output_bits
from cldyn.tasks import list_tasks, load_pretrained_task, load_task_for
from cldyn.tasks.visualise import prediction_overlay
from cldyn.weights import load_rsc_or_shipped, load_vfn_or_shipped, shipped_networks
from cldyn.weights.checkpoint import sha256_file

TASKS = ("none", *list_tasks())
APP_METRICS = ("en", "sd", "sf", "mi", "scd", "vif", "qabf", "ssim")


@dataclass(frozen=True)
class AppConfig:
    """Limits and settings of the page.

    Attributes:
        max_upload_bytes: largest accepted file (each image or weights file).
        max_pixels: largest accepted image (width x height); 16.8 MP is 4096 x 4096.
        device: where the networks run (``cpu``, ``cuda``, ``auto``).
        metrics: fusion metrics shown for both results (the comparison-table eight by default).
        networks: user networks offered beside the shipped ones: name -> ``(module:Class, weights file)``.
    """

    max_upload_bytes: int = 32 * 2**20
    max_pixels: int = 4096 * 4096
    device: str = "cpu"
    metrics: tuple[str, ...] = APP_METRICS
    networks: dict[str, tuple[str, str]] = field(default_factory=dict)

    def choices(self) -> list[str]:
        """What the page's network list offers: ``none`` (the VFN alone), the shipped networks (a built-in task's
        own, and those trained elsewhere, e.g. ``detection-visible``), then the user's."""
        return ["none", *shipped_networks(), *self.networks]


@dataclass(frozen=True)
class Upload:
    """One uploaded file: the name the user gave it and its bytes."""

    name: str
    data: bytes


def _safe_name(name: str, default: str) -> str:
    """A bare file name (no folders, no odd characters) for writing an upload into the temporary folder."""
    base = re.sub(r"[^A-Za-z0-9._-]", "_", Path(name or default).name)[:100]
    return base if base.strip("._") else default


def check_size(upload: Upload, cfg: AppConfig) -> None:
    if len(upload.data) > cfg.max_upload_bytes:
        raise InputError(upload.name, f"{len(upload.data) / 2**20:.1f} MB is over the upload limit of "
                                      f"{cfg.max_upload_bytes / 2**20:.0f} MB")
    if not upload.data:
        raise InputError(upload.name, "empty file")


def decode_upload(upload: Upload, cfg: AppConfig, folder: Path) -> Image:
    """The uploaded image, decoded as the CLI reads files; errors name the user's file name, not the temporary
    copy."""
    check_size(upload, cfg)
    path = folder / _safe_name(upload.name, "image.png")
    path.write_bytes(upload.data)
    try:
        image = read_image(path)
    except InputError as exc:
        raise InputError(upload.name, exc.problem) from None
    h, w = image.pixels.shape[:2]
    if h * w > cfg.max_pixels:
        raise InputError(upload.name, f"{w}x{h} is over the size limit of {cfg.max_pixels / 1e6:.1f} megapixels")
    return Image(pixels=image.pixels, bits=image.bits, path=Path(upload.name))


def _uri(rgb01: np.ndarray) -> str:
    return png_data_uri(rgb01, max_side=800)


def difference_map(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, float]:
    """``|luma(a) - luma(b)|`` as the demo draws it (inferno colour map, :data:`~cldyn.inference.demo.DIFF_GAIN`
    times brighter, so one scale for every pair: a change of a few levels looks small), and its maximum in 8-bit
    levels (0: the images are equal)."""
    d = np.abs(luma(a).astype(np.float64) - luma(b).astype(np.float64)) * 255
    return heat_map(d), float(d.max())


class ModelCache:
    """Fusers by (task, weights files), built on first use and kept; ``lock`` serialises the compute."""

    def __init__(self, cfg: AppConfig) -> None:
        self.cfg = cfg
        self.lock = threading.Lock()
        self._fusers: dict[tuple, Fuser] = {}

    def fuser(self, task: str, vfn: Path | None, task_weights: Path | None, rsc: Path | None,
              strength: float | str = DEFAULT_STRENGTH) -> Fuser:
        """A fuser for ``task`` (``none``: the VFN alone; a built-in task, a shipped network's name, or one of the
        config's user networks); user weights are keyed by their content's hash."""
        key = (task, strength, *(None if p is None else sha256_file(p) for p in (vfn, task_weights, rsc)))
        if key not in self._fusers:
            model = load_vfn_or_shipped(vfn)
            if task == "none":
                self._fusers[key] = Fuser(model, device=self.cfg.device)
            else:
                if task in self.cfg.networks:
                    adapter = load_task_for(*self.cfg.networks[task])
                elif task_weights is None and task not in TASKS:  # a shipped network by name
                    adapter = load_pretrained_task(task).freeze()
                else:
                    adapter = load_task_for(task, task_weights)
                self._fusers[key] = Fuser(model, device=self.cfg.device, task=adapter,
                                          rsc=load_rsc_or_shipped(rsc, model), strength=strength)
        return self._fusers[key]


@contextlib.contextmanager
def _named_as_uploaded(paths: dict[str, Path | None], uploads: dict[str, Upload]) -> Iterator[None]:
    """Errors about a weights file name the file as the user uploaded it, not its temporary copy."""
    try:
        yield
    except InputError as exc:
        for kind, path in paths.items():
            if path is not None and exc.path is not None and exc.path == path:
                raise InputError(uploads[kind].name, exc.problem) from None
        raise


@dataclass
class _Clock:
    """Milliseconds per named step."""

    steps: dict[str, float]

    def run(self, name: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        out = fn()
        self.steps[name] = round((time.perf_counter() - t0) * 1000, 1)
        return out


def _scores(fused: np.ndarray, ir: np.ndarray, vis: np.ndarray, keys: tuple[str, ...]) -> dict[str, float]:
    a, b = gray_of_array(luma(ir)), gray_of_array(luma(vis))
    return {k: (None if not np.isfinite(v) else round(v, 4))
            for k, v in fusion_metrics(gray_of_array(luma(fused)), a, b, "cldyn", keys).items()}


def run_pair(ir_upload: Upload, vis_upload: Upload, task: str, models: ModelCache,
             weights: dict[str, Upload] | None = None, strength: float | str = DEFAULT_STRENGTH,
             align: str = "none") -> dict[str, Any]:
    """Everything the page shows for one pair: images (data URIs), per-image metrics of VFN and CLDyN, the
    prediction of the task network drawn on both, their difference, the full-size fused PNGs and the time of each
    step.

    Args:
        ir_upload, vis_upload: the two images as uploaded.
        task: ``none`` (VFN alone), a built-in task, a shipped network (``detection-visible``) or a user network
            of the config (:meth:`AppConfig.choices`).
        weights: optional user files ``vfn``, ``task``, ``rsc`` (default: the shipped ones).
        strength: how far the customisation goes, from the VFN's image (0) to the full customisation (1), or
            ``"auto"`` (per image, :meth:`cldyn.model.rsc.CLDyN.choose_strength`); a number as text too.
        align: register the visible image into the infrared frame first (``translation``, ``affine``,
            ``homography``; the images may then differ in size) and show a checkerboard of the pair before and after;
            ``none``: the pair must be aligned.

    Raises:
        CldynError: a one-line problem with the input (the page shows it as the CLI would).
    """
    if task not in models.cfg.choices():
        raise CldynError(f"unknown network {task!r}; choose one of {', '.join(models.cfg.choices())}")
    strength = check_strength(strength)
    align_cfg = None if align == "none" else AlignConfig(model=align)  # an unknown model: a one-line error
    clock = _Clock({})
    alignment, boards = None, {}
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cldyn-serve-") as tmp:  # uploads live here and nowhere else
        folder = Path(tmp)
        (folder / "ir").mkdir()
        (folder / "vi").mkdir()
        ir = decode_upload(ir_upload, models.cfg, folder / "ir")
        vis = decode_upload(vis_upload, models.cfg, folder / "vi")
        if align_cfg is None:
            check_same_size(ir.path, ir.pixels.shape[:2], vis.path, vis.pixels.shape[:2])
        else:
            before = vis
            with models.lock:
                vis, result = clock.run(f"registration ({align})", lambda: align_images(ir, before, align, align_cfg))
            alignment = {"model": result.model, "confidence": round(result.confidence, 2),
                         "warp": np.round(result.warp, 6).tolist()}
            boards = {"checkerboard before registration": checkerboard(to_single_channel(ir), before.pixels),
                      "checkerboard after registration": checkerboard(to_single_channel(ir), vis.pixels)}
        paths: dict[str, Path | None] = {"vfn": None, "task": None, "rsc": None}
        for kind, upload in (weights or {}).items():
            check_size(upload, models.cfg)
            paths[kind] = folder / f"{kind}_{_safe_name(upload.name, 'weights.safetensors')}"
            paths[kind].write_bytes(upload.data)
        with models.lock, _named_as_uploaded(paths, weights or {}):
            if task == "none":
                plain = clock.run("load VFN", lambda: models.fuser("none", paths["vfn"], None, None))
                results = {"vfn": clock.run("VFN fusion", lambda: plain.fuse_images(ir, vis))}
            else:
                custom = clock.run("load VFN, task network and RSC",
                                   lambda: models.fuser(task, paths["vfn"], paths["task"], paths["rsc"], strength))
                vfn_out, cldyn_out = clock.run("closed loop: VFN fusion, task features, compensated fusion",
                                               lambda: custom.fuse_images_with_base(ir, vis))
                results = {"vfn": vfn_out, "cldyn": cldyn_out}
                for name in ("vfn", "cldyn"):
                    overlay = clock.run(f"{task} prediction on {name.upper()}", lambda name=name: prediction_overlay(
                        custom.task, three_channels(results[name])))
                    results[f"{task}_on_{name}"] = overlay
            vfn_out = results["vfn"]
        ir_l = to_single_channel(ir)
        metrics = {m: clock.run(f"metrics of {m.upper()}", lambda m=m: _scores(results[m], ir_l, vis.pixels,
                                                                                models.cfg.metrics))
                   for m in ("vfn", "cldyn") if m in results}
    bits = output_bits(ir, vis, "auto")
    images = {"infrared": _uri(ir_l), "visible": _uri(vis.pixels), **{k: _uri(b) for k, b in boards.items()},
              "vfn": _uri(vfn_out)}
    downloads = {"vfn": _png_uri(vfn_out, bits)}
    difference = None
    if "cldyn" in results:
        images["cldyn"] = _uri(results["cldyn"])
        images[f"{task} on VFN"] = _uri(results[f"{task}_on_vfn"])
        images[f"{task} on CLDyN"] = _uri(results[f"{task}_on_cldyn"])
        diff, peak = difference_map(results["cldyn"], vfn_out)
        images["difference"] = _uri(diff)
        difference = round(peak, 2)
        downloads["cldyn"] = _png_uri(results["cldyn"], bits)
    clock.steps["total"] = round((time.perf_counter() - t_start) * 1000, 1)
    h, w = ir_l.shape
    return {"task": task, "strength": strength if "cldyn" in results else None, "size": [w, h], "bits": bits,
            "images": images, "metrics": metrics,
            "difference_max_levels": difference, "downloads": downloads, "timings_ms": clock.steps,
            "alignment": alignment,
            "names": {"infrared": ir_upload.name, "visible": vis_upload.name}}


def _png_uri(pixels: np.ndarray, bits: int) -> str:
    """The full-size fused image as a PNG data URI, at the bit depth the CLI would write (16 for >8-bit inputs)."""
    return "data:image/png;base64," + base64.b64encode(encode_png(pixels, bits)).decode()
