"""``cldyn evaluate``: fusion-quality metrics for folders of fused images (and classical baselines), per image and
summarised per method.

Conventions (what is scored, stated because evaluators in the field differ):

* ``cldyn`` (default): every image is reduced to BT.601 luminance (the fused image's Y, the infrared image, the
  visible image's Y), scaled to 0..255 and rounded to integers, as the CDDFuse evaluator rounds its gray images;
  16-bit inputs are scaled, not truncated. SSIM uses data range 255; MI is in nats (the CDDFuse unit); Qabf takes
  the standard G = 1 for equal edge strengths.
* ``cddfuse``: the public CDDFuse evaluator exactly: OpenCV reads 8-bit BGR, ``COLOR_BGR2GRAY`` on float32, rounded;
  SSIM as scikit-image 0.19 computed it on float input (data range 2); MI in nats; its Qabf variant.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from cldyn.data.io import Image, atomic_write_bytes, check_same_size, read_image, refuse_to_replace, to_single_channel
from cldyn.data.pairs import Pair, list_images, pair_folders
from cldyn.errors import InputError
from cldyn.evaluation import metrics as M
from cldyn.evaluation.baselines import BASELINES
from cldyn.runtime import progress_bar

METRIC_KEYS = ("en", "sd", "sf", "ag", "mi", "fmi", "scd", "vif", "qabf", "nabf", "ssim", "ms_ssim", "cc", "psnr",
               "qcb", "qcv", "qc")
CONVENTIONS = ("cldyn", "cddfuse")
EVALUATION_FILES = ("metrics.csv", "metrics.json", "metrics.md", "per_image.json")


def read_gray(path: Path, convention: str) -> np.ndarray:
    """The image as the convention scores it: float64 ``(H, W)``, integer values 0..255."""
    if convention == "cddfuse":
        data = np.fromfile(path, dtype=np.uint8) if path.is_file() else None
        img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data is not None and data.size else None
        if img is None:
            read_image(path)  # raises the precise one-line error
            raise InputError(path, "not readable as an 8-bit image")
        return _cddfuse_gray(img)
    image = read_image(path)
    return np.round(to_single_channel(image).astype(np.float64) * 255.0)


def _cddfuse_gray(bgr: np.ndarray) -> np.ndarray:
    return np.round(cv2.cvtColor(bgr.astype(np.float32), cv2.COLOR_BGR2GRAY)).astype(np.float64)


def gray_of_rgb8(pixels: np.ndarray, convention: str) -> np.ndarray:
    """An 8-bit image in memory, ``(H, W)`` gray or ``(H, W, 3)`` RGB, as :func:`read_gray` would score it written to
    a PNG (no file is written)."""
    if convention == "cddfuse":  # OpenCV reads a gray PNG as three equal channels
        bgr = np.repeat(pixels[..., None], 3, axis=2) if pixels.ndim == 2 else pixels[..., ::-1]
        return _cddfuse_gray(np.ascontiguousarray(bgr))
    image = Image(pixels=pixels.astype(np.float32) / 255.0, bits=8, path=Path("<memory>"))
    return np.round(to_single_channel(image).astype(np.float64) * 255.0)


def gray_of_array(luma01: np.ndarray) -> np.ndarray:
    """A [0, 1] luminance array on the scoring scale (0..255, rounded)."""
    return np.round(np.clip(luma01, 0, 1) * 255.0)


def fusion_metrics(f: np.ndarray, a: np.ndarray, b: np.ndarray, convention: str = "cldyn",
                   keys: Sequence[str] | None = None) -> dict[str, float]:
    """The metrics ``keys`` (default: all of :data:`METRIC_KEYS`) of one fused image ``f`` against infrared ``a``
    and visible ``b`` (0..255 scale).

    A metric that is undefined for the image (e.g. SSIM on an image smaller than its 7x7 window) is NaN, which the
    summary reports as "undef." rather than failing the whole image.
    """
    cdd = convention == "cddfuse"
    metrics: dict[str, Callable[[], float]] = {
        "en": lambda: M.entropy(f), "sd": lambda: M.standard_deviation(f), "sf": lambda: M.spatial_frequency(f),
        "ag": lambda: M.average_gradient(f), "mi": lambda: M.mutual_information(f, a, b),
        "fmi": lambda: M.fmi_pixel(f, a, b), "scd": lambda: M.scd(f, a, b), "vif": lambda: M.vif(f, a, b),
        "qabf": lambda: M.qabf(f, a, b, variant="cddfuse" if cdd else "standard"),
        "ssim": lambda: M.ssim_sum(f, a, b, data_range=2.0 if cdd else 255.0),
        "cc": lambda: M.correlation_coefficient(f, a, b), "psnr": lambda: M.psnr(f, a, b),
        "nabf": lambda: M.nabf(f, a, b), "ms_ssim": lambda: M.ms_ssim_sum(f, a, b),
        "qcb": lambda: M.q_chen_blum(f, a, b), "qcv": lambda: M.q_chen_varshney(f, a, b),
        "qc": lambda: M.q_cvejic(f, a, b),
    }
    unknown = sorted(set(keys or ()) - set(metrics))
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {list(METRIC_KEYS)}")
    out = {}
    for key in keys or METRIC_KEYS:
        try:
            out[key] = float(metrics[key]())
        except ValueError:  # undefined for this image size
            out[key] = float("nan")
    return out


@dataclass(frozen=True)
class _Job:
    pair: Pair
    fused: dict[str, Path | None]  # method -> file (None: missing)
    baselines: tuple[str, ...]
    convention: str
    metrics: tuple[str, ...] = METRIC_KEYS


def _evaluate_job(job: _Job) -> tuple[str, dict[str, dict[str, float] | str]]:
    """Metrics of every method for one pair; a method that cannot be scored gets an error string."""
    cv2.setNumThreads(1)  # parallelism comes from the worker processes
    out: dict[str, dict[str, float] | str] = {}
    try:
        a, b = read_gray(job.pair.ir, job.convention), read_gray(job.pair.vis, job.convention)
        check_same_size(job.pair.ir, a.shape, job.pair.vis, b.shape)
    except InputError as exc:
        return job.pair.name, {m: str(exc) for m in (*job.fused, *job.baselines)}
    for method, path in job.fused.items():
        if path is None:
            out[method] = f"no fused image named {job.pair.name}.* for method {method}"
            continue
        try:
            f = read_gray(path, job.convention)
            if f.shape != a.shape:
                raise InputError(path, f"size {f.shape[1]}x{f.shape[0]} differs from the sources "
                                 f"({a.shape[1]}x{a.shape[0]})")
            out[method] = fusion_metrics(f, a, b, job.convention, job.metrics)
        except (InputError, ValueError) as exc:
            out[method] = str(exc)
    for name in job.baselines:
        try:
            out[name] = fusion_metrics(gray_of_array(BASELINES[name](a / 255.0, b / 255.0)), a, b, job.convention,
                                       job.metrics)
        except ValueError as exc:  # e.g. a pyramid deeper than the image allows
            out[name] = f"{job.pair.vis}: baseline {name}: {exc}"
    return job.pair.name, out


@dataclass
class Evaluation:
    """Per-image metrics and failures of every method; :meth:`summary` gives mean, std and counts."""

    methods: list[str]
    per_image: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # method -> image -> metrics
    failures: dict[str, list[str]] = field(default_factory=dict)  # method -> messages
    problems: list[str] = field(default_factory=list)  # pairing problems
    metrics: tuple[str, ...] = METRIC_KEYS  # the metrics computed, in column order

    def summary(self) -> dict[str, dict[str, dict[str, float]]]:
        """``{method: {metric: {"mean", "std", "n", "undefined"}}}``; NaN/inf values are excluded and counted."""
        out: dict[str, dict[str, dict[str, float]]] = {}
        for m in self.methods:
            rows = list(self.per_image.get(m, {}).values())
            out[m] = {}
            for k in self.metrics:
                vals = np.array([r[k] for r in rows], dtype=np.float64)
                ok = vals[np.isfinite(vals)]
                out[m][k] = {"mean": float(ok.mean()) if ok.size else float("nan"),
                             "std": float(ok.std()) if ok.size else float("nan"),
                             "n": int(ok.size), "undefined": int(vals.size - ok.size)}
        return out

    def to_json(self) -> dict[str, dict[str, float]]:
        """The documented JSON shape: ``{METHOD: {"en": mean, ..., "n": images scored}}``."""
        out = {}
        for m, stats in self.summary().items():
            row = {k: (None if math.isnan(v["mean"]) else v["mean"]) for k, v in stats.items()}
            row["n"] = len(self.per_image.get(m, {}))
            row["failed"] = len(self.failures.get(m, []))
            out[m] = row
        return out

    def table(self, markdown: bool = False, width: int = 100) -> str:
        """mean ± std per metric (columns) and method (rows); the best mean per column marked with ``*``. As plain
        text (a terminal), the means alone, in blocks of columns at most ``width`` characters wide; the stds are in
        the markdown and CSV outputs."""
        summ = self.summary()
        best = {}
        for k in self.metrics:
            vals = {m: summ[m][k]["mean"] for m in self.methods if not math.isnan(summ[m][k]["mean"])}
            if vals:
                pick = max if M.DIRECTION[k] == "higher" else min
                best[k] = pick(vals, key=vals.get)
        header = ["method", *[f"{k.upper()} {'↑' if M.DIRECTION[k] == 'higher' else '↓'}" for k in self.metrics], "n"]
        lines = []
        for m in self.methods:
            cells = [m]
            for k in self.metrics:
                s = summ[m][k]
                cell = "n/a" if math.isnan(s["mean"]) else f"{s['mean']:.4f} ± {s['std']:.4f}" if markdown \
                    else f"{s['mean']:.4f}"
                if s["undefined"]:
                    cell += f" ({s['undefined']} undef.)"
                if best.get(k) == m:
                    cell = f"**{cell}**" if markdown else cell + " *"
                cells.append(cell)
            cells.append(str(len(self.per_image.get(m, {}))))
            lines.append(cells)
        if markdown:
            rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            rows += ["| " + " | ".join(c) + " |" for c in lines]
            return "\n".join(rows)
        widths = [max(len(r[i]) for r in [header, *lines]) for i in range(len(header))]
        blocks, current = [], [0]  # column indices per block; the method column starts every block
        for i in range(1, len(header)):
            if len(current) > 1 and sum(widths[j] + 2 for j in [*current, i]) > width:
                blocks.append(current)
                current = [0]
            current.append(i)
        blocks.append(current)
        out = []
        for cols in blocks:
            fmt = "  ".join(f"{{:<{widths[j]}}}" for j in cols)
            out += ["" if out else None, fmt.format(*(header[j] for j in cols)).rstrip(),
                    *[fmt.format(*(r[j] for j in cols)).rstrip() for r in lines]]
        return "\n".join(line for line in out if line is not None) + "\n(mean over pairs; * best; ± std in the " \
            "markdown and CSV files)"

    def csv_text(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["method", "metric", "mean", "std", "n", "undefined", "direction"])
        for m, stats in self.summary().items():
            for k, s in stats.items():
                w.writerow([m, k, s["mean"], s["std"], s["n"], s["undefined"], M.DIRECTION[k]])
        return buf.getvalue()

    @classmethod
    def read(cls, out_dir: str | Path) -> Evaluation:
        """The evaluation that :meth:`write` wrote into ``out_dir`` (its ``per_image.json``), without computing a
        metric again; failures are not kept there, so it has none."""
        path = Path(out_dir) / "per_image.json"
        try:
            per_image = json.loads(path.read_text())
        except FileNotFoundError:
            raise InputError(path, "not found: give the --out folder of a cldyn evaluate run") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(path, f"not readable as JSON ({exc})") from None
        if not isinstance(per_image, dict) or not all(isinstance(v, dict) for v in per_image.values()):
            raise InputError(path, "is not the per-image metrics of cldyn evaluate (method -> image -> metrics)")
        # the columns in the table's order, as metrics.json keeps it (undefined values: NaN, read back as NaN)
        summary = Path(out_dir) / "metrics.json"
        rows = json.loads(summary.read_text()) if summary.is_file() else {}
        order = next(iter(rows.values()), None) or next((row for r in per_image.values() for row in r.values()), {})
        return cls(list(per_image), per_image, metrics=tuple(k for k in order if k in METRIC_KEYS))

    def write(self, out_dir: str | Path, overwrite: bool = False) -> list[Path]:
        """Write :data:`EVALUATION_FILES` into ``out_dir``; existing ones are replaced only with ``overwrite``."""
        out_dir = Path(out_dir)
        refuse_to_replace(evaluation_outputs(out_dir), overwrite)
        out_dir.mkdir(parents=True, exist_ok=True)
        texts = (self.csv_text(), json.dumps(self.to_json(), indent=2), self.table(markdown=True) + "\n",
                 json.dumps(self.per_image, indent=1))
        for path, text in zip(evaluation_outputs(out_dir), texts, strict=True):
            atomic_write_bytes(path, text.encode())
        return evaluation_outputs(out_dir)


def evaluation_outputs(out_dir: str | Path) -> list[Path]:
    """The files :meth:`Evaluation.write` writes into ``out_dir``."""
    return [Path(out_dir) / name for name in EVALUATION_FILES]


def evaluate_folders(ir_dir: str | Path, vis_dir: str | Path, fused_dirs: Sequence[str | Path],
                     names: Sequence[str] | None = None, convention: str = "cldyn",
                     baselines: Sequence[str] = (), workers: int = 1, progress: bool = True,
                     on_error: Callable[[str], None] | None = None, metrics: Sequence[str] | None = None,
                     only: Collection[str] | None = None) -> Evaluation:
    """Score fused folders (matched to the pairs by file stem) and baselines on every IR/visible pair (or the pairs
    named in ``only``), with all metrics or the ``metrics`` given."""
    if convention not in CONVENTIONS:
        raise InputError(None, f"unknown convention {convention!r}; use {' or '.join(CONVENTIONS)}")
    unknown = [b for b in baselines if b not in BASELINES]
    if unknown:
        raise InputError(None, f"unknown baseline(s) {unknown}; choose from {sorted(BASELINES)}")
    fused_dirs = [Path(d) for d in fused_dirs]
    names = list(names) if names else [d.name for d in fused_dirs]
    if len(names) != len(fused_dirs):
        raise InputError(None, f"--names gives {len(names)} names for {len(fused_dirs)} --fused folders")
    if len(set(names) | set(baselines)) != len(names) + len(baselines):
        raise InputError(None, f"method names must be unique: {names + list(baselines)}")
    metrics = tuple(metrics or METRIC_KEYS)
    unknown = [k for k in metrics if k not in METRIC_KEYS]
    if unknown:
        raise InputError(None, f"unknown metric(s) {unknown}; choose from {','.join(METRIC_KEYS)}")
    pairs, problems = pair_folders(ir_dir, vis_dir)
    if only is not None:
        pairs = [p for p in pairs if p.name in set(only)]
    listings = {n: list_images(d) for n, d in zip(names, fused_dirs, strict=True)}
    jobs = [_Job(p, {n: listings[n].get(p.name) for n in names}, tuple(baselines), convention, metrics)
            for p in pairs]
    ev = Evaluation(methods=[*names, *baselines], problems=[str(p) for p in problems], metrics=metrics)
    workers = max(1, min(workers, len(jobs) or 1, os.cpu_count() or 1))
    pool = ProcessPoolExecutor(workers) if workers > 1 else None
    try:
        results = pool.map(_evaluate_job, jobs, chunksize=4) if pool else map(_evaluate_job, jobs)
        for name, per_method in progress_bar(results, total=len(jobs), disable=not progress, desc="evaluate",
                                             unit="pair"):
            for method, res in per_method.items():
                if isinstance(res, str):
                    ev.failures.setdefault(method, []).append(res)
                    if on_error:
                        on_error(res)
                else:
                    ev.per_image.setdefault(method, {})[name] = res
    finally:
        if pool:
            pool.shutdown()
    return ev
