"""``cldyn experiment``: does the closed loop help each task while keeping fusion quality? One command, one folder.

Writes into ``out``: ``fused/<method>/`` (the fused images), ``fusion/`` (fusion-quality metrics of every method and
the classical baselines, CSV/JSON/Markdown), ``tasks.json|md`` (each task network on every image source),
``efficiency.json|md``, ``report.html`` (self-contained), ``results.md`` (the README's "Results" section),
``claims.json`` (the claims, measured) and, with ``unseen``, ``unseen/`` (the same for a camera no network
saw: fused images and fusion metrics).

Long steps are cached: a fused folder is reused while the weights that made it (their SHA-256) and the pair list
are unchanged, and so are the metric files computed from it; a re-run recomputes only what changed.

Methods: ``vfn`` (the base fusion), ``cldyn_<task>`` (CLDyN customised for ``task`` with the task's network),
``<ablation>_<task>`` for RSC weights given as ablations, and ``average`` (the colour average fusion, an image source
for the task table). Several RSC checkpoints for one name (seeds) give mean ± std.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cldyn.data.io import atomic_write_bytes
from cldyn.data.pairs import Pair, discover_pairs
from cldyn.data.task_bank import load_task_bank
from cldyn.errors import CldynError
from cldyn.evaluation.baselines import BASELINES
from cldyn.evaluation.efficiency import measure_efficiency
from cldyn.evaluation.evaluate import Evaluation, evaluate_folders
from cldyn.evaluation.experiment_report import write_experiment_report
from cldyn.evaluation.inspect_rsc import inspect_rsc, pair_tensors
from cldyn.evaluation.tables import SECOND_DETECTOR_ROW, TASK_COLUMNS, ablation_row, customised_row, mean_std
from cldyn.inference.fuse import Fuser
from cldyn.inference.sources import image_source
from cldyn.model.rsc import CLDyN
from cldyn.tasks import load_pretrained_task, load_task
from cldyn.tasks.evaluation import evaluate_bank
from cldyn.weights import (
    SHIPPED_RSC,
    SHIPPED_VFN,
    load_pretrained_vfn,
    load_rsc,
    read_manifest,
    shipped_file,
    shipped_task_file,
)
from cldyn.weights.checkpoint import sha256_file


@dataclass
class ExperimentConfig:
    """What ``cldyn experiment`` runs.

    ``rsc_weights``: RSC checkpoints of the method (several = seeds; empty = the shipped one). ``ablations``: name ->
    RSC checkpoints trained with an ablation switch (e.g. ``no_penalty``). ``other_rscs``: name -> RSC checkpoints
    of other runs of the full method (their own rows, e.g. the shipped weights). ``second_detector``: a detection
    network of another architecture that the RSC never saw (generalisation). ``unseen``: a folder of aligned pairs
    from a camera that no network saw (e.g. ``m3fd-samples``), where VFN and each run's customisations are fused,
    scored by the fusion metrics and shown side by side (artefacts). ``limit``: the first N pairs of the split.
    ``inspect_pairs``: the first N pairs on which each run's RSC is inspected (``cldyn inspect-rsc``).
    """

    data: str
    out: str = "cldyn-experiment"
    split: str = "val"
    tasks: list[str] = field(default_factory=lambda: ["detection", "segmentation", "saliency"])
    rsc_weights: list[str] = field(default_factory=list)
    task_weights: dict[str, str] = field(default_factory=dict)
    ablations: dict[str, list[str]] = field(default_factory=dict)
    other_rscs: dict[str, list[str]] = field(default_factory=dict)
    second_detector: str | None = None
    unseen: str | None = None
    limit: int | None = None
    gallery: int = 8
    workers: int = 1
    device: str = "cpu"
    timing_repeats: int = 3
    inspect_pairs: int = 6
    timing_size: tuple[int, int] = (480, 640)  # height, width of the pair the efficiency figures are measured on


class _Average(nn.Module):
    """Average fusion of the luminance (the chroma is the visible image's, as for every method here)."""

    def forward(self, ir: torch.Tensor, vis_y: torch.Tensor) -> torch.Tensor:
        return 0.5 * (ir + vis_y)


def seeded(prefix: str, runs: list[tuple[Any, str]]) -> dict[str, tuple[Any, str]]:
    """Method names of RSC runs: ``prefix`` (one run) or ``prefix_s<i>`` (several) -> (rsc, sha)."""
    return {prefix + (f"_s{i}" if len(runs) > 1 else ""): run for i, run in enumerate(runs)}


class Experiment:
    """The experiment's steps; :meth:`run` does them all (each skips what its cache already holds)."""

    def __init__(self, cfg: ExperimentConfig, log: Callable[[str], None] = print, progress: bool = True) -> None:
        self.cfg, self.log, self.progress = cfg, log, progress
        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        pairs, notes = discover_pairs([cfg.data], cfg.split)
        for n in notes:
            log(n)
        self.pairs: list[Pair] = sorted(pairs, key=lambda p: p.name)[:cfg.limit]
        self.vfn = load_pretrained_vfn()
        manifest = read_manifest()
        self.vfn_id = manifest[SHIPPED_VFN]["sha256"]
        if cfg.rsc_weights:
            self.rsc_paths = [Path(p) for p in cfg.rsc_weights]
        else:
            self.rsc_paths = [shipped_file(SHIPPED_RSC, "no shipped RSC weights in this cldyn release; pass "
                                                        "--rsc-weights FILE")[0]]
        self.rscs = [load_rsc(p) for p in self.rsc_paths]
        self.rsc_ids = [sha256_file(p) for p in self.rsc_paths]
        self.adapters, self.task_ids = {}, {}
        for t in cfg.tasks:
            path = cfg.task_weights.get(t)
            self.adapters[t] = (load_task(path) if path else load_pretrained_task(t)).freeze()
            self.task_ids[t] = sha256_file(path) if path else manifest[shipped_task_file(t)]["sha256"]
        # Ablations and other runs are fused and scored alike; only their row labels differ.
        self.ablations = {name: [(Path(p), load_rsc(p), sha256_file(p)) for p in paths]
                          for name, paths in {**cfg.ablations, **cfg.other_rscs}.items()}
        self.row_labels = {**{n: ablation_row(n) for n in cfg.ablations},
                           **{n: f"other run: {n}" for n in cfg.other_rscs}}
        self.second, self.second_id = None, None
        if cfg.second_detector:
            self.second = load_task(cfg.second_detector).freeze()
            self.second_id = sha256_file(cfg.second_detector)
            if self.second.task != "detection":
                raise CldynError(f"{cfg.second_detector}: holds a {self.second.task!r} network, not a detector")
        self.names = [p.name for p in self.pairs]
        self.unseen_pairs: list[Pair] = []
        if cfg.unseen:
            self.unseen_pairs = sorted(discover_pairs([cfg.unseen])[0], key=lambda p: p.name)
            if not self.unseen_pairs:
                raise CldynError(f"{cfg.unseen}: no image pairs found")
        self.timings: dict[str, float] = {}

    # -- fused images --------------------------------------------------------------------------------------------

    @staticmethod
    def _cached(folder: Path, identity: dict[str, Any], names: list[str]) -> bool:
        stamp = folder / ".identity.json"
        return stamp.is_file() and json.loads(stamp.read_text()) == {**identity, "pairs": names} and \
            all((folder / f"{n}.png").is_file() for n in names)

    def fuse(self, methods: dict[str, dict[str, Any]], make_fuser: Callable[[list[str]], Any],
             pairs: list[Pair] | None = None, root: str = "fused") -> dict[str, Path]:
        """``out/<root>/<method>`` for each method (name -> identity) on ``pairs`` (default: the split's); those
        whose cached folder has another identity are made in one pass by ``make_fuser(names)``, a fuser with one
        output per name (RSCs that share a task network share its base fusion and features)."""
        pairs = self.pairs if pairs is None else pairs
        names = [p.name for p in pairs]
        folders = {m: self.out / root / m for m in methods}
        todo = [m for m, ident in methods.items() if not self._cached(folders[m], ident, names)]
        if todo:
            for m in todo:
                if folders[m].exists():
                    shutil.rmtree(folders[m])
            self.log(f"fusing {len(pairs)} pairs: {', '.join(todo)}")
            report = make_fuser(todo).fuse_pairs(pairs, [folders[m] for m in todo], bits=8, progress=self.progress)
            if report.errors:
                raise CldynError(f"{todo[0]}: {len(report.errors)} pairs failed, first: {report.errors[0]}")
            for m in todo:
                atomic_write_bytes(folders[m] / ".identity.json",
                                   json.dumps({**methods[m], "pairs": names}).encode())
        return folders

    def _vfn(self, **where: Any) -> dict[str, Path]:
        dev = self.cfg.device
        return self.fuse({"vfn": {"vfn": self.vfn_id}}, lambda _: Fuser(self.vfn, device=dev), **where)

    def _customised(self, adapter, task_id: str, runs: dict[str, tuple[Any, str]], **where: Any) -> dict[str, Path]:
        """Each RSC run of ``runs`` (method -> (rsc, sha)) customised for ``adapter``, fused in one pass."""
        dev = self.cfg.device
        rscs = {m: r for m, (r, _) in runs.items()}
        return self.fuse({m: {"vfn": self.vfn_id, "rsc": rid, "task": task_id} for m, (_, rid) in runs.items()},
                         lambda names: Fuser(self.vfn, device=dev, task=adapter,
                                             rsc=[rscs[m] for m in names]), **where)

    def fused_methods(self) -> dict[str, Path]:
        """Every fused folder the tables need: vfn, average, cldyn_<task>[_s<seed>], ablations, second detector."""
        dev = self.cfg.device
        out = {**self._vfn(),
               **self.fuse({"average": {"average": 1}}, lambda _: Fuser(_Average(), device=dev))}
        main = list(zip(self.rscs, self.rsc_ids, strict=True))
        for t, adapter in self.adapters.items():
            runs = seeded(f"cldyn_{t}", main)
            for abl, abl_runs in self.ablations.items():
                runs.update(seeded(f"{abl}_{t}", [(r, rid) for _, r, rid in abl_runs]))
            out.update(self._customised(adapter, self.task_ids[t], runs))
        if self.second is not None:
            out.update(self._customised(self.second, self.second_id, seeded("cldyn_second_detector", main)))
        return out

    def unseen_methods(self) -> dict[str, Path]:
        """VFN and each run's task customisations on the ``unseen`` pairs, in ``out/unseen/fused``."""
        where = {"pairs": self.unseen_pairs, "root": "unseen/fused"}
        out = self._vfn(**where)
        main = list(zip(self.rscs, self.rsc_ids, strict=True))
        for t, adapter in self.adapters.items():
            out.update(self._customised(adapter, self.task_ids[t], seeded(f"cldyn_{t}", main), **where))
        return out

    # -- tables --------------------------------------------------------------------------------------------------

    @staticmethod
    def _sources(pairs: list[Pair], root: Path) -> Path:
        """``pairs`` as ``root/{ir,vi}`` (what the fusion metrics read)."""
        for sub, attr in (("ir", "ir"), ("vi", "vis")):
            d = root / sub
            d.mkdir(parents=True, exist_ok=True)
            keep = set()
            for p in pairs:
                src = getattr(p, attr)
                dst = d / f"{p.name}{src.suffix}"
                keep.add(dst.name)
                if not dst.is_file():
                    shutil.copyfile(src, dst)
            for extra in d.iterdir():
                if extra.name not in keep:
                    extra.unlink()
        return root

    def _scored(self, methods: dict[str, Path], pairs: list[Pair], sources: Path, out: Path,
                baselines: list[str]) -> dict[str, Any]:
        """Fusion-quality metrics of ``methods`` on ``pairs`` (+ ``baselines``), written to ``out``. Each method's
        per-image scores are cached in ``out/cache`` on its fused folder's identity, so a rerun with one more seed
        scores that seed alone."""
        ident = {**{m: json.loads((d / ".identity.json").read_text()) for m, d in methods.items()},
                 **{b: {"baseline": b, "pairs": [p.name for p in pairs]} for b in baselines}}
        stamp, summary = out / "identity.json", out / "metrics.json"
        if stamp.is_file() and summary.is_file() and json.loads(stamp.read_text()) == ident:
            return json.loads(summary.read_text())
        cache = out / "cache"
        per_image: dict[str, dict[str, dict[str, float]]] = {}
        for m, i in ident.items():
            f = cache / f"{m}.json"
            if f.is_file() and (held := json.loads(f.read_text()))["identity"] == i:
                per_image[m] = held["per_image"]
        todo = [m for m in methods if m not in per_image]
        todo_base = [b for b in baselines if b not in per_image]
        if todo or todo_base:
            src = self._sources(pairs, sources)
            self.log(f"fusion metrics: {len(todo)} methods + {len(todo_base)} baselines x {len(pairs)} pairs")
            # one method at a time, each cached as soon as it is scored: an interrupted run keeps what it finished
            for m in [*todo, *todo_base]:
                folder, base = ([methods[m]], []) if m in methods else ([], [m])
                ev = evaluate_folders(src / "ir", src / "vi", folder, names=[m] if folder else None, baselines=base,
                                      workers=self.cfg.workers, progress=self.progress)
                if ev.failures.get(m):
                    raise CldynError(f"fusion metrics of {m} failed: {ev.failures[m][0]}")
                per_image[m] = ev.per_image[m]
                atomic_write_bytes(cache / f"{m}.json",
                                   json.dumps({"identity": ident[m], "per_image": per_image[m]}).encode())
        order = [*methods, *baselines]
        # the experiment folder is a cache its rerun refreshes
        Evaluation(methods=order, per_image={m: per_image[m] for m in order}).write(out, overwrite=True)
        atomic_write_bytes(stamp, json.dumps(ident).encode())
        return json.loads(summary.read_text())

    def fusion_table(self, fused: dict[str, Path]) -> dict[str, Any]:
        """Fusion-quality metrics of VFN and CLDyN customised for each task, and the baselines (ablations and the
        second detector only enter the task table; average is scored as a baseline)."""
        methods = {m: d for m, d in fused.items() if m == "vfn" or
                   (m.startswith("cldyn_") and not m.startswith("cldyn_second_detector"))}
        return self._scored(methods, self.pairs, self.out / "sources", self.out / "fusion", list(BASELINES))

    def unseen_table(self, fused: dict[str, Path]) -> dict[str, Any]:
        """Fusion-quality metrics of VFN and the customisations on the ``unseen`` pairs (``out/unseen/fusion``)."""
        root = self.out / "unseen"
        return self._scored(fused, self.unseen_pairs, root / "sources", root / "fusion", [])

    def task_metrics(self, task: str, adapter, source: str, folder: Path | None) -> dict[str, Any]:
        """One task network on one image source (``visible``, ``infrared`` or a fused folder), cached."""
        primary = adapter is self.adapters.get(task)
        ident = {"task": self.task_ids.get(task) if primary else self.second_id,
                 "source": source, "pairs": self.names,
                 "folder": json.loads((folder / ".identity.json").read_text()) if folder else None}
        # the second detector scores the same sources (vfn): its own file, or the two would evict each other
        path = self.out / "tasks" / f"{task}{'' if primary else '_second'}__{source}.json"
        if path.is_file():
            cached = json.loads(path.read_text())
            if cached.get("identity") == ident:
                return cached["metrics"]
        spec = str(folder) if folder else source
        bank = load_task_bank(adapter.task, self.cfg.data, self.cfg.split, image_source(spec), adapter.config,
                              log=lambda m: None, names=self.names, classes=adapter.label_classes)
        metrics = evaluate_bank(adapter, bank)
        metrics = {k: v for k, v in metrics.items() if isinstance(v, (int, float, type(None)))}
        atomic_write_bytes(path, json.dumps({"identity": ident, "metrics": metrics}, indent=2).encode())
        return metrics

    def task_table(self, fused: dict[str, Path]) -> dict[str, dict[str, dict[str, Any]]]:
        """``{task: {row: {metric: [mean, std, n_runs]}}}``."""
        table: dict[str, dict[str, dict[str, Any]]] = {}
        for t, adapter in self.adapters.items():
            rows: dict[str, list[dict[str, Any]]] = {}
            for src in ("visible", "infrared"):
                rows[src] = [self.task_metrics(t, adapter, src, None)]
            for m in ("average", "vfn"):
                rows[m] = [self.task_metrics(t, adapter, m, fused[m])]
            for other in self.adapters:
                rows[customised_row(other, t)] = [self.task_metrics(t, adapter, m, d) for m, d in fused.items()
                               if m == f"cldyn_{other}" or m.startswith(f"cldyn_{other}_s")]
            for abl in self.ablations:
                rows[self.row_labels[abl]] = [self.task_metrics(t, adapter, m, d) for m, d in fused.items()
                                            if m == f"{abl}_{t}" or m.startswith(f"{abl}_{t}_s")]
            table[t] = {row: {k: [*mean_std([r.get(k) for r in runs]), len(runs)] for k in TASK_COLUMNS[t]}
                        for row, runs in rows.items()}
        if self.second is not None:
            rows = {"vfn": [self.task_metrics("detection", self.second, "vfn", fused["vfn"])],
                    SECOND_DETECTOR_ROW: [
                        self.task_metrics("detection", self.second, m, d) for m, d in fused.items()
                        if m.startswith("cldyn_second_detector")]}
            table["detection (second detector)"] = {
                row: {k: [*mean_std([r.get(k) for r in runs]), len(runs)] for k in TASK_COLUMNS["detection"]}
                for row, runs in rows.items()}
        return table

    def efficiency(self) -> dict[str, Any]:
        """:func:`~cldyn.evaluation.efficiency.measure_efficiency` of the VFN and the first RSC run."""
        return measure_efficiency(self.vfn, self.rscs[0], self.adapters, self.cfg.timing_size,
                                  self.cfg.timing_repeats)

    def inspection(self) -> list[dict[str, Any]]:
        """:func:`~cldyn.evaluation.inspect_rsc.inspect_rsc` of each run's RSC with the task networks on the first
        ``inspect_pairs`` pairs (with the gradient share from a ``log.csv`` beside the checkpoint), cached."""
        ident = {"rsc": self.rsc_ids, "tasks": self.task_ids, "pairs": self.names[:self.cfg.inspect_pairs]}
        path = self.out / "inspect_rsc.json"
        if path.is_file() and (cached := json.loads(path.read_text())).get("identity") == ident:
            return cached["runs"]
        pairs = pair_tensors(self.pairs[:self.cfg.inspect_pairs])
        runs = []
        for rsc_path, rsc in zip(self.rsc_paths, self.rscs, strict=True):
            log = rsc_path.parent / "log.csv"
            runs.append(inspect_rsc(CLDyN(self.vfn, rsc), self.adapters, pairs, log if log.is_file() else None,
                                    progress=self.progress))
        atomic_write_bytes(path, json.dumps({"identity": ident, "runs": runs}, indent=2).encode())
        return runs

    # -- everything ----------------------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        t0 = time.perf_counter()
        fused = self.fused_methods()
        self.timings["fuse_s"] = time.perf_counter() - t0
        fusion = self.fusion_table(fused)
        self.timings["fusion_metrics_s"] = time.perf_counter() - t0 - self.timings["fuse_s"]
        tasks = self.task_table(fused)
        self.timings["task_metrics_s"] = time.perf_counter() - t0 - sum(self.timings.values())
        eff = self.efficiency()
        result = {"config": asdict(self.cfg), "pairs": len(self.pairs), "fusion": fusion, "tasks": tasks,
                  "efficiency": eff, "inspect_rsc": self.inspection(), "rsc_weights": [str(p) for p in self.rsc_paths]}
        unseen: dict[str, Path] = {}
        if self.unseen_pairs:
            unseen = self.unseen_methods()
            result["unseen"] = self.unseen_table(unseen)
        write_experiment_report(self, result, fused, unseen)
        self.timings["total_s"] = time.perf_counter() - t0
        result["timings"] = self.timings
        atomic_write_bytes(self.out / "experiment.json", json.dumps(result, indent=2, default=str).encode())
        return result
