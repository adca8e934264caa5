"""Tables, gallery and HTML page of ``cldyn experiment`` (see :mod:`cldyn.evaluation.experiment`)."""

from __future__ import annotations

import html
import json
import math
import re
from dataclasses import asdict
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from cldyn.data.io import atomic_write_bytes, read_image, three_channels, to_single_channel
from cldyn.evaluation.baselines import BASELINES
from cldyn.evaluation.claims import verdict_markdown, verdicts
from cldyn.evaluation.inspect_rsc import inspection_markdown
from cldyn.evaluation.metrics import DIRECTION
from cldyn.evaluation.report import png_data_uri
from cldyn.evaluation.tables import FUSION_COLUMNS, TASK_COLUMNS, mean_std, percent_change
from cldyn.tasks.visualise import prediction_overlay
from cldyn.weights.checkpoint import flat_train_config, load_checkpoint

LOWER_BETTER = {"mae"}


def _fmt(mean: float, std: float | None = None, runs: int = 1) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "n/a"
    return f"{mean:.4f}" + (f" ± {std:.4f}" if runs > 1 else "")


def fusion_rows(fusion: dict[str, dict[str, Any]]) -> dict[str, dict[str, tuple[float, float, int]]]:
    """Rows of the fusion table: baselines, VFN, CLDyN per task (seeds pooled as mean ± std)."""
    groups: dict[str, list[str]] = {}
    for m in fusion:
        groups.setdefault(re.sub(r"_s\d+$", "", m), []).append(m)
    order = [*BASELINES, "vfn", *sorted(g for g in groups if g not in (*BASELINES, "vfn"))]
    rows = {}
    for g in order:
        if g not in groups:
            continue
        members = groups[g]
        rows[g] = {k: (*mean_std([fusion[m].get(k) for m in members]), len(members)) for k in FUSION_COLUMNS}
    return rows


def fusion_markdown(rows: dict[str, dict[str, tuple[float, float, int]]]) -> str:
    best = {}
    for k in FUSION_COLUMNS:
        vals = {r: v[k][0] for r, v in rows.items() if not math.isnan(v[k][0])}
        if vals:
            best[k] = (max if DIRECTION[k] == "higher" else min)(vals, key=vals.get)
    head = ["method", *[f"{k.upper()} {'↑' if DIRECTION[k] == 'higher' else '↓'}" for k in FUSION_COLUMNS]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r, vals in rows.items():
        cells = [r]
        for k in FUSION_COLUMNS:
            c = _fmt(*vals[k])
            cells.append(f"**{c}**" if best.get(k) == r else c)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def vfn_relative_markdown(rows: dict[str, dict[str, tuple[float, float, int]]]) -> str:
    """CLDyN rows as the percentage change from VFN per metric (the claim: within a few percent)."""
    if "vfn" not in rows:
        return ""
    head = ["method", *[k.upper() for k in FUSION_COLUMNS], "largest |change|"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r, vals in rows.items():
        if r in (*BASELINES, "vfn"):
            continue
        changes = [percent_change(vals[k][0], rows["vfn"][k][0]) for k in FUSION_COLUMNS]
        finite = [abs(c) for c in changes if not math.isnan(c)]
        lines.append("| " + " | ".join([r, *[f"{c:+.1f}%" for c in changes],
                                        f"{max(finite):.1f}%" if finite else "n/a"]) + " |")
    return "\n".join(lines)


def task_markdown(tasks: dict[str, dict[str, dict[str, list]]]) -> str:
    out = []
    for t, rows in tasks.items():
        cols = TASK_COLUMNS["detection" if t.startswith("detection") else t]
        head = ["image source", *[f"{c} {'↓' if c in LOWER_BETTER else '↑'}" for c in cols], "runs"]
        lines = [f"**{t}**", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r, vals in rows.items():
            runs = max(v[2] for v in vals.values())
            lines.append("| " + " | ".join([r, *[_fmt(*vals[c]) for c in cols], str(runs)]) + " |")
        out.append("\n".join(lines))
    return "\n\n".join(out)


def customisation_distances(exp, fused: dict[str, Path]) -> list[dict[str, float]]:
    """Per RSC run, the mean absolute difference in 8-bit levels over all pixels of the split between CLDyN's images
    customised for each pair of task networks (``"a vs b"``) and between each and VFN (``"a vs VFN"``)."""
    tasks = list(exp.adapters)
    n_runs = len(exp.rscs)
    names = [f"{a} vs {b}" for a, b in combinations(tasks, 2)] + [f"{t} vs VFN" for t in tasks]
    runs = []
    for i in range(n_runs):
        folders = {t: fused[f"cldyn_{t}" + (f"_s{i}" if n_runs > 1 else "")] for t in tasks}
        folders["VFN"] = fused["vfn"]
        sums = dict.fromkeys(names, 0.0)
        count = 0
        for n in exp.names:
            img = {k: read_image(d / f"{n}.png").pixels.astype(np.float64) * 255 for k, d in folders.items()}
            count += img["VFN"].size
            for a, b in combinations(["VFN", *tasks], 2):
                key = f"{b} vs {a}" if a == "VFN" else f"{a} vs {b}"
                sums[key] += float(np.abs(img[a] - img[b]).sum())
        runs.append({k: v / count for k, v in sums.items()})
    return runs


def customisation_markdown(distances: list[dict[str, float]]) -> str:
    """How much CLDyN's images differ when customised for different task networks, against how much they differ
    from VFN (:func:`customisation_distances`), one row per RSC run."""
    if not distances:
        return "(no RSC run)"
    names = list(distances[0])
    lines = ["| RSC run | " + " | ".join(names) + " |", "|" + "---|" * (len(names) + 1)]
    lines += [f"| {i} | " + " | ".join(f"{d[k]:.3f}" for k in names) + " |" for i, d in enumerate(distances)]
    return "\n".join(lines)


def _training_record(path: Path) -> dict[str, Any]:
    """What a checkpoint says about how it was trained (its own metadata, or that of the checkpoint it was packed
    from)."""
    _, meta = load_checkpoint(path)
    src = meta.get("source_meta") or {}
    return {"step": meta.get("global_step", src.get("global_step")), "epoch": meta.get("epoch", src.get("epoch")),
            "train_config": flat_train_config(meta.get("train_config") or src.get("train_config"))}


# what tells the runs behind the rows apart (older checkpoints lack the later keys: they are left out)
_SWITCHES = ("aggregate", "penalty", "closed_loop", "selection", "task_encoder", "fusion_weight", "change_weight",
             "split")


def runs_markdown(exp) -> str:
    """One row per trained checkpoint the tables use: which run, its switches, seed, steps and device."""
    lines = ["| rows | checkpoint | seed | training steps (best kept) | switches | device |",
             "|---|---|---|---|---|---|"]
    groups = [("cldyn", exp.rsc_paths)] + [(name, [p for p, _, _ in runs]) for name, runs in exp.ablations.items()]
    for name, paths in groups:
        for path in paths:
            rec = _training_record(path)
            cfg = rec["train_config"]
            switches = ", ".join(f"{k}={Path(str(cfg[k])).stem if k == 'split' else cfg[k]}"
                                 for k in _SWITCHES if k in cfg) or "n/a"
            lines.append(f"| {name} | `{path}` | {cfg.get('seed', 'n/a')} | {cfg.get('steps', 'n/a')} "
                         f"({rec['step']}) | {switches} | {cfg.get('device', 'cpu')} |")
    if exp.second is not None:
        rec = _training_record(Path(exp.cfg.second_detector))
        cfg = rec["train_config"]
        lines.append(f"| second detector ({exp.second.config.get('model')}) | `{exp.cfg.second_detector}` | "
                     f"{cfg.get('seed', 'n/a')} | {cfg.get('epochs', 'n/a')} epochs (epoch {rec['epoch']}) | "
                     f"trained on VFN-fused images | {cfg.get('device', 'cpu')} |")
    return "\n".join(lines)


def efficiency_markdown(eff: dict[str, Any]) -> str:
    lines = ["| item | value |", "|---|---|"]
    for k, v in eff["params"].items():
        lines.append(f"| parameters: {k} | {v:,} |")
    for k, v in eff["gflops"].items():
        lines.append(f"| GFLOPs at {eff['size'][1]}×{eff['size'][0]}: {k} | {v:.2f} |")
    for k, v in eff["ms_per_pair"].items():
        lines.append(f"| CPU ms per {eff['size'][1]}×{eff['size'][0]} pair ({eff['threads']} threads): {k} | {v:.1f} |")
    lines.append(f"| peak resident memory of the experiment process | {eff['peak_rss_mb']:.0f} MB |")
    return "\n".join(lines)


# -- gallery ---------------------------------------------------------------------------------------------------


def _uri(rgb01: np.ndarray) -> str:
    return png_data_uri(rgb01, max_side=240)


def _overlays(adapters: dict, rgb: np.ndarray) -> dict[str, np.ndarray]:
    """The image with each task network's prediction drawn on it: boxes, a class overlay, the saliency map."""
    return {t: prediction_overlay(a, rgb) for t, a in adapters.items()}


def gallery_html(exp, fused: dict[str, Path]) -> str:
    n = min(exp.cfg.gallery, len(exp.pairs))
    if n == 0:
        return ""
    picks = [exp.pairs[i] for i in np.linspace(0, len(exp.pairs) - 1, n).round().astype(int)]
    columns = ["vfn", *[f"cldyn_{t}" for t in exp.adapters if f"cldyn_{t}" in fused or f"cldyn_{t}_s0" in fused]]
    blocks = []
    for p in picks:
        ir = to_single_channel(read_image(p.ir))
        vis = read_image(p.vis).pixels
        images = {"infrared": three_channels(ir), "visible": three_channels(vis)}
        for c in columns:
            folder = fused.get(c) or fused[f"{c}_s0"]
            f = read_image(folder / f"{p.name}.png").pixels
            images[c] = three_channels(f)
        drawn = {name: _overlays(exp.adapters, img) for name, img in images.items()}
        rows = []
        for t in exp.adapters:
            cells = "".join(f'<figure><img src="{_uri(drawn[name][t])}" alt="{html.escape(name)}">'
                            f"<figcaption>{html.escape(name)}</figcaption></figure>" for name in images)
            rows.append(f"<div class=row><span class=lab>{html.escape(t)}</span>{cells}</div>")
        blocks.append(f"<h3>{html.escape(p.name)}</h3>" + "".join(rows))
    return "".join(blocks)


def unseen_gallery_html(exp, unseen: dict[str, Path]) -> str:
    """Each unseen pair side by side: infrared, visible, VFN and CLDyN customised for each task (first run)."""
    columns = [m for m in unseen if m == "vfn" or re.fullmatch(r"cldyn_[a-z]+(_s0)?", m)]
    rows = []
    for p in exp.unseen_pairs:
        images = {"infrared": three_channels(to_single_channel(read_image(p.ir))),
                  "visible": three_channels(read_image(p.vis).pixels),
                  **{re.sub(r"_s0$", "", m): three_channels(read_image(unseen[m] / f"{p.name}.png").pixels)
                     for m in columns}}
        cells = "".join(f'<figure><img src="{_uri(img)}" alt="{html.escape(name)}">'
                        f"<figcaption>{html.escape(name)}</figcaption></figure>" for name, img in images.items())
        rows.append(f"<div class=row><span class=lab>{html.escape(p.name)}</span>{cells}</div>")
    return "".join(rows)


def write_experiment_report(exp, result: dict[str, Any], fused: dict[str, Path],
                            unseen: dict[str, Path] | None = None) -> None:
    """``results.md``, ``report.html``, ``claims.json`` and the task and efficiency tables, into ``exp.out``."""
    out = exp.out
    frows = fusion_rows(result["fusion"])
    fusion_md, rel_md = fusion_markdown(frows), vfn_relative_markdown(frows)
    tasks_md, eff_md = task_markdown(result["tasks"]), efficiency_markdown(result["efficiency"])
    distances = customisation_distances(exp, fused)
    custom_md, runs_md = customisation_markdown(distances), runs_markdown(exp)
    inspect_md = inspection_markdown(result.get("inspect_rsc", []))
    unseen_rows = fusion_rows(result["unseen"]) if "unseen" in result else None
    unseen_md = vfn_relative_markdown(unseen_rows) if unseen_rows else ""
    checks = verdicts(result["tasks"], frows, distances, result.get("inspect_rsc", []), unseen=unseen_rows)
    checks_md = verdict_markdown(checks)
    atomic_write_bytes(out / "claims.json", json.dumps([asdict(v) for v in checks], indent=2).encode())
    atomic_write_bytes(out / "tasks.json", json.dumps(result["tasks"], indent=2).encode())
    atomic_write_bytes(out / "tasks.md", (tasks_md + "\n").encode())
    atomic_write_bytes(out / "efficiency.json", json.dumps(result["efficiency"], indent=2).encode())
    atomic_write_bytes(out / "efficiency.md", (eff_md + "\n").encode())
    cfg = exp.cfg
    seeds = len(exp.rscs)
    notes = (f"Data: `{cfg.data}`, split `{cfg.split}`, {len(exp.pairs)} pairs. RSC weights: "
             f"{', '.join(str(p) for p in exp.rsc_paths)} ({seeds} run{'s' if seeds > 1 else ''}; mean ± std over "
             f"runs where there are several). Nothing is retrained by this command: every row uses the given or "
             f"shipped weights (listed with their training runs below); ablation rows use RSC weights trained with "
             f"the named switch. Task networks are "
             f"frozen and were trained on VFN-fused images. Segmentation and saliency labels of the shared MSRS set "
             f"are pseudo-labels (see its README).")
    results_md = "\n\n".join([
        "## Results", notes, "### The claims, measured", checks_md,
        "### Fusion quality (mean over pairs; best per column in bold)", fusion_md,
        "### CLDyN against VFN (change per metric)", rel_md,
        *([f"### A camera no network saw (`{exp.cfg.unseen}`, {len(exp.unseen_pairs)} pairs): CLDyN against VFN",
           unseen_md] if unseen_md else []),
        "### Does the customisation depend on the task? (mean |difference| in 8-bit levels)", custom_md,
        f"### Does the RSC read the task? (`cldyn inspect-rsc`, first {exp.cfg.inspect_pairs} pairs)", inspect_md,
        "### Task networks on each image source", tasks_md,
        "### Efficiency", eff_md, "### Trained weights behind the rows", runs_md]) + "\n"
    atomic_write_bytes(out / "results.md", results_md.encode())

    def md_table_to_html(md: str) -> str:
        lines = [ln for ln in md.splitlines() if ln.startswith("|")]
        if not lines:
            return f"<p>{html.escape(md)}</p>"
        rows = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines if not set(ln) <= set("|-")]
        head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
        body = "".join("<tr>" + "".join(
            f"<td class=best>{html.escape(c[2:-2])}</td>" if c.startswith("**") else f"<td>{html.escape(c)}</td>"
            for c in r) + "</tr>" for r in rows[1:])
        return f"<table><tr>{head}</tr>{body}</table>"

    unseen_html = "" if not unseen_md else (
        f"<h2>A camera no network saw</h2><p>{html.escape(str(exp.cfg.unseen))}: CLDyN against VFN, and every pair side"
        f" by side (look for artefacts).</p>{md_table_to_html(unseen_md)}{unseen_gallery_html(exp, unseen or {})}")
    task_html = "".join(f"<h3>{html.escape(block.splitlines()[0].strip('*'))}</h3>" + md_table_to_html(block)
                        for block in tasks_md.split("\n\n**"))
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>cldyn experiment</title>
<style>body{{font-family:sans-serif;margin:1.5em;color:#222}} table{{border-collapse:collapse;font-size:12px;
margin-bottom:1em}} td,th{{border:1px solid #ccc;padding:3px 6px;text-align:right}} td:first-child,th:first-child{{
text-align:left}} td.best{{background:#ffe9a8;font-weight:bold}} .row{{display:flex;gap:4px;align-items:center}}
figure{{margin:0}} figure img{{max-width:200px;display:block}} figcaption{{font-size:10px;text-align:center}}
.lab{{width:90px;font-size:11px}}</style></head><body><h1>cldyn experiment</h1>
<p>{html.escape(notes)}</p><h2>The claims, measured</h2>{md_table_to_html(checks_md)}
<h2>Fusion quality</h2>{md_table_to_html(fusion_md)}
<h2>CLDyN against VFN</h2>{md_table_to_html(rel_md)}
{unseen_html}<h2>Does the customisation depend on the task?</h2><p>Mean absolute difference in 8-bit levels between
CLDyN's images customised for different task networks, and between each and VFN.</p>{md_table_to_html(custom_md)}
<h2>Does the RSC read the task?</h2><p><code>cldyn inspect-rsc</code> on the first {exp.cfg.inspect_pairs} pairs: the
share of pairs whose kernel choices agree across the task networks, how far apart the task embeddings lie, and how much
the customisations differ.</p>{md_table_to_html(inspect_md)}
<h2>Task networks</h2>{task_html}
<h2>Efficiency</h2>{md_table_to_html(eff_md)}<h2>Trained weights behind the rows</h2>
{md_table_to_html(runs_md)}<h2>Gallery</h2>
<p>Each row: one task network's predictions (boxes with score ≥ 0.25, class overlay, saliency map) on every image.</p>
{gallery_html(exp, fused)}</body></html>"""
    atomic_write_bytes(out / "report.html", page.encode("utf-8", errors="replace"))
