"""Frozen networks against image sources (``cldyn frozen-table``): which input serves a network that nobody retrains?

Each network (a shipped name such as ``detection-visible``, or a checkpoint) is scored on every source: the visible
image, the infrared image, the average and the maximum of the luminance (colour put back), the shipped VFN, peers'
fused folders, and CLDyN customised for that very network (one row per RSC, e.g. seeds). Detection is scored against
each label variant asked for (MSRS: ``fusion`` boxes, what either camera shows, and ``visible`` boxes), every score
also by day and by night (MSRS names end in ``D`` or ``N``). A paired bootstrap compares CLDyN with the VFN and with
the better single camera.

Predictions are cached per network, source and RSC (``OUT/cache``), so a rerun with one more network or seed
predicts only that.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cldyn.data.io import atomic_write_bytes
from cldyn.data.labels import discover_task_samples, read_yolo_boxes
from cldyn.data.task_bank import TaskBank, load_task_bank, select_box_classes
from cldyn.evaluation.bootstrap import COMPARED_METRIC, metric_scorer, paired_bootstrap
from cldyn.inference.customise import DEFAULT_STRENGTH, check_max_change, check_strength
from cldyn.inference.sources import image_source
from cldyn.model.rsc import DEFAULT_MAX_CHANGE, CLDyN
from cldyn.tasks import TaskAdapter, is_shipped_network, load_pretrained_task, load_task
from cldyn.tasks.evaluation import predict_bank, predict_cldyn
from cldyn.weights import load_rsc_or_shipped, load_vfn_or_shipped, shipped_file, shipped_task_file
from cldyn.weights.checkpoint import sha256_file

PLAIN_SOURCES = ("visible", "infrared", "average", "max", "vfn")
CAMERAS = ("visible", "infrared")


@dataclass
class FrozenTableConfig:
    """What ``cldyn frozen-table`` scores.

    Attributes:
        data: dataset root with labels (MSRS layout).
        networks: shipped network names or checkpoint paths.
        peers: name -> a folder of a peer's fused images for the same pairs (scored as one more source).
        rsc_weights: one CLDyN row per file (``None``: the shipped RSC), ``NAME=FILE`` to group rows (e.g. the
            seeds of one method, ``cldyn=a cldyn=b no_closed_loop=c``): the table shows each group's mean and std.
        strength, max_change: the customisation's strength and its limit on each image's mean change
            (:func:`cldyn.model.rsc.at_strength`; ``None`` or 0: no limit).
        det_labels: detection label variants (``fusion`` is the default folder).
    """

    data: str
    networks: list[str]
    out: str = "frozen-table"
    split: str = "val"
    peers: dict[str, str] = field(default_factory=dict)
    rsc_weights: list[str | None] = field(default_factory=lambda: [None])
    vfn_weights: str | None = None
    strength: float | str = DEFAULT_STRENGTH
    max_change: float | None = DEFAULT_MAX_CHANGE
    det_labels: tuple[str, ...] = ("fusion", "visible")
    resamples: int = 1000
    seed: int = 0
    limit: int | None = None  # the first N pairs of the split (None: all)


def _network(spec: str) -> tuple[TaskAdapter, str]:
    """The frozen network and its SHA-256 (the cache key)."""
    if is_shipped_network(spec):
        return load_pretrained_task(spec).freeze(), shipped_file(shipped_task_file(spec), "")[1]
    return load_task(spec).freeze(), sha256_file(spec)


def _subsets(names: Sequence[str]) -> dict[str, np.ndarray]:
    """Positions of all images, and of the day (``...D``) and night (``...N``) ones where names say so."""
    out = {"all": np.arange(len(names))}
    for key, suffix in (("day", "D"), ("night", "N")):
        idx = np.array([i for i, n in enumerate(names) if n.endswith(suffix)], dtype=np.int64)
        if 0 < len(idx) < len(names):
            out[key] = idx
    return out


def _targets(adapter: TaskAdapter, cfg: FrozenTableConfig, variant: str, bank: TaskBank) -> list[Any]:
    """The bank's targets, or for another detection label variant the same pairs' boxes read from it."""
    if variant == "fusion" or adapter.task != "detection":
        return [it.label for it in bank.items]
    found = {s.name: s.label for s in discover_task_samples(cfg.data, "detection", cfg.split, variant).samples}
    out = []
    for it in bank.items:
        boxes = read_yolo_boxes(found.get(it.name), None)
        if adapter.label_classes is not None:
            boxes = select_box_classes(boxes, adapter.label_classes)
        out.append(torch.from_numpy(boxes))
    return out


class FrozenTable:
    """Scores, caches and tabulates (see the module docstring)."""

    def __init__(self, cfg: FrozenTableConfig, log: Callable[[str], None] = print, progress: bool = True) -> None:
        check_strength(cfg.strength)
        cfg = replace(cfg, max_change=check_max_change(cfg.max_change))  # 0 and None alike: no limit
        self.cfg, self.log, self.progress = cfg, log, progress
        self.out = Path(cfg.out)
        self.vfn = load_vfn_or_shipped(cfg.vfn_weights)
        self.rscs: dict[str, tuple[Any, str]] = {}  # row -> (RSC, its SHA-256)
        groups: dict[str, int] = {}
        for item in cfg.rsc_weights:
            group, _, path = (item or "").rpartition("=") if item and "=" in item else ("cldyn", "", item)
            k = groups[group] = groups.get(group, -1) + 1
            self.rscs[f"{group}_s{k}"] = (load_rsc_or_shipped(path or None, self.vfn),
                                         sha256_file(path) if path else "shipped")

    def _cached(self, key: dict[str, Any], compute: Callable[[], list[Any]]) -> list[Any]:
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
        path = self.out / "cache" / f"{digest}.pt"
        if path.is_file():
            return torch.load(path, weights_only=False)
        preds = compute()
        buf = io.BytesIO()
        torch.save(preds, buf)
        atomic_write_bytes(path, buf.getvalue())
        return preds

    def _sources(self) -> list[tuple[str, str | None]]:
        """``(row name, image source)``; ``None``: through CLDyN (``vfn``: its base fusion, the others customised),
        so that the VFN and CLDyN rows see their images the same way (in float, never rounded to 8 bits)."""
        rows = [(s, None if s == "vfn" else s) for s in PLAIN_SOURCES]
        rows += [(name, folder) for name, folder in self.cfg.peers.items()]
        return rows + [(row, None) for row in self.rscs]

    def score_network(self, spec: str) -> dict[str, Any]:
        adapter, sha = _network(spec)
        cfg = self.cfg
        names = [s.name for s in discover_task_samples(cfg.data, adapter.task, cfg.split).samples][:cfg.limit]
        bank_of: dict[str, TaskBank] = {}
        results: dict[str, Any] = {"network": spec, "task": adapter.task, "sha256": sha, "sources": {}}
        metric = COMPARED_METRIC[adapter.task]
        preds_of: dict[str, list[Any]] = {}
        for row, source in self._sources():
            spec_src = "pair" if source is None else source
            if spec_src not in bank_of:
                bank_of[spec_src] = load_task_bank(adapter.task, cfg.data, cfg.split,
                                                   image_source(spec_src, cfg.vfn_weights), adapter.config,
                                                   log=lambda _m: None, names=names, classes=adapter.label_classes)
            bank = bank_of[spec_src]
            if source is None:
                rsc, rsc_sha = self.rscs[row] if row != "vfn" else (None, "none")
                key = {"net": sha, "source": "cldyn", "rsc": rsc_sha, "split": cfg.split, "limit": cfg.limit,
                       "vfn": cfg.vfn_weights, **({"strength": cfg.strength} if rsc is not None else {}),
                       **({"max_change": cfg.max_change} if rsc is not None and cfg.max_change is not None else {})}
                model = CLDyN(self.vfn, rsc, cfg.max_change).eval()
                preds_of[row] = self._cached(key, lambda model=model, bank=bank, c=rsc is not None: predict_cldyn(
                    model, adapter, bank, customised=c, strength=cfg.strength, progress=self.progress))
            else:
                key = {"net": sha, "source": str(source), "split": cfg.split, "limit": cfg.limit,
                       "vfn": cfg.vfn_weights}
                preds_of[row] = self._cached(key, lambda bank=bank: predict_bank(adapter, bank,
                                                                                  progress=self.progress))
            self.log(f"{spec}: {row} predicted")
        names = [it.name for it in bank_of["visible"].items]  # the bank's order
        subsets = _subsets(names)
        variants = cfg.det_labels if adapter.task == "detection" else ("default",)
        scorers = {}  # (variant, row) -> score(index): each one's matching is done once, for table and bootstrap
        for variant in variants:
            targets = _targets(adapter, cfg, variant if variant != "default" else "fusion", bank_of["visible"])
            table = results["sources"].setdefault(variant, {})
            for row, preds in preds_of.items():
                scorer = scorers[variant, row] = metric_scorer(adapter, preds, targets, metric)
                table[row] = {k: float(scorer(idx)) for k, idx in subsets.items()}
        # paired bootstrap on all images, against the first label set
        variant = variants[0]
        best_camera = max(CAMERAS, key=lambda c: results["sources"][variant][c]["all"])
        comparisons = {}
        for row in self.rscs:
            for other in ("vfn", best_camera):
                comparisons[f"{row} vs {other}"] = paired_bootstrap(
                    scorers[variant, row], scorers[variant, other], len(names), cfg.resamples, cfg.seed)
        results.update(metric=metric, labels=variant, best_camera=best_camera, n=len(names),
                       comparisons=comparisons, subsets={k: len(v) for k, v in subsets.items()})
        return results

    def run(self) -> dict[str, Any]:
        rows = [self.score_network(spec) for spec in self.cfg.networks]
        result = {"config": asdict(self.cfg), "networks": rows}
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.out / "table.json", (json.dumps(result, indent=2) + "\n").encode())
        atomic_write_bytes(self.out / "table.md", markdown_table(result).encode())
        return result


def rsc_groups(rows: Sequence[str], plain: Sequence[str]) -> dict[str, list[str]]:
    """CLDyN rows (``GROUP_sK``) by group, in order.

    >>> rsc_groups(["vfn", "cldyn_s0", "cldyn_s1", "nocl_s0"], ["vfn"])
    {'cldyn': ['cldyn_s0', 'cldyn_s1'], 'nocl': ['nocl_s0']}
    """
    out: dict[str, list[str]] = {}
    for r in rows:
        if r not in plain:
            out.setdefault(r.rpartition("_s")[0], []).append(r)
    return out


def markdown_table(result: dict[str, Any]) -> str:
    """One line per network, label variant and subset (all, day, night): each plain source's score (the best in
    bold) and each CLDyN group's mean (and std over its RSCs); then the bootstraps of every CLDyN row."""
    lines = []
    plain_names = [*PLAIN_SOURCES, *result["config"]["peers"]]
    for net in result["networks"]:
        for variant, sources in net["sources"].items():
            plain = [k for k in sources if k in plain_names]
            groups = rsc_groups(list(sources), plain)
            named = [f"CLDyN {g}" if g != "cldyn" else "CLDyN" for g in groups]
            header = ["network", "labels", "subset", *plain, *named]
            if not lines or lines[-1] == "":
                lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            for subset in sources["vfn"]:
                values = [sources[k][subset] for k in plain]
                best = max(values)
                cells = [f"**{v:.3f}**" if v == best else f"{v:.3f}" for v in values]
                for rows in groups.values():
                    cl = np.array([sources[k][subset] for k in rows])
                    cells.append(f"{cl.mean():.3f}" + (f" ± {cl.std():.3f}" if len(cl) > 1 else ""))
                label = variant if variant != "default" else "-"
                lines.append(f"| {net['network']} | {label} | {subset} | " + " | ".join(cells) + " |")
        lines.append("")
    lines.append("Bootstrap (all images, first label set): CLDyN minus the source, 95% interval, share of resamples "
                 "where CLDyN is not better.")
    lines.append("")
    lines += ["| network | comparison | difference | 95% interval | p |", "|---|---|---|---|---|"]
    for net in result["networks"]:
        for name, c in net["comparisons"].items():
            lines.append(f"| {net['network']} | {name} | {c['difference']:+.4f} | [{c['ci'][0]:+.4f}, "
                         f"{c['ci'][1]:+.4f}] | {c['p_a_not_better']:.3f} |")
    return "\n".join(lines) + "\n"


__all__ = ["FrozenTable", "FrozenTableConfig", "markdown_table"]
