"""``cldyn report``: one self-contained HTML page (no network needed to view it) with, for sampled pairs, infrared |
visible | every method side by side, the metric table with the best value per column marked, and one bar chart per
metric. Images and charts are embedded as base64 PNG."""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from cldyn.data.io import atomic_write_bytes, read_image, refuse_to_replace, to_single_channel
from cldyn.data.pairs import Pair, list_images
from cldyn.errors import InputError
from cldyn.evaluation.baselines import BASELINES
from cldyn.evaluation.evaluate import Evaluation
from cldyn.evaluation.metrics import DIRECTION


def _png_data_uri(rgb01: np.ndarray, max_side: int = 320) -> str:
    img = np.rint(np.clip(rgb01, 0, 1) * 255).astype(np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    scale = max_side / max(img.shape[:2])
    if scale < 1:
        img = cv2.resize(img, (round(img.shape[1] * scale), round(img.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".png", img[:, :, ::-1])
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode()


def _bar_charts(ev: Evaluation) -> list[tuple[str, str]]:
    """(metric, data URI) of one bar chart per metric: mean ± std per method, best bar highlighted."""
    import matplotlib  # heavy (about 0.5 s): loaded only when a chart is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after matplotlib.use: the headless backend

    summ = ev.summary()
    charts = []
    for k in ev.metrics:
        means = [summ[m][k]["mean"] for m in ev.methods]
        stds = [summ[m][k]["std"] for m in ev.methods]
        if all(math.isnan(v) for v in means):
            continue
        finite = [v if not math.isnan(v) else -math.inf for v in means]
        best = int(np.argmax(finite)) if DIRECTION[k] == "higher" else int(
            np.argmin([v if not math.isnan(v) else math.inf for v in means]))
        fig, ax = plt.subplots(figsize=(4.2, 2.6), dpi=90)
        colours = ["#d62728" if i == best else "#1f77b4" for i in range(len(means))]
        ax.bar(range(len(means)), [0 if math.isnan(v) else v for v in means],
               yerr=[0 if math.isnan(s) else s for s in stds], color=colours, capsize=2)
        ax.set_xticks(range(len(means)), ev.methods, rotation=40, ha="right", fontsize=7)
        ax.set_title(f"{k.upper()} ({'higher' if DIRECTION[k] == 'higher' else 'lower'} is better)", fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        plt.close(fig)
        charts.append((k, "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()))
    return charts


def report_path(out: str | Path) -> Path:
    """The report's file: ``out`` itself when it ends in ``.html``/``.htm``, ``out.html`` when it has no extension.

    Raises:
        InputError: ``out`` has another extension, or is a folder.
    """
    out = Path(out)
    if out.is_dir():
        raise InputError(out, "is a folder; the report is one HTML file (e.g. --out report.html)")
    if out.suffix.lower() in (".html", ".htm"):
        return out
    if out.suffix:
        raise InputError(out, f"the report is one HTML file; give a name ending in .html, not {out.suffix!r}")
    return out.with_name(out.name + ".html")


def render_report(ev: Evaluation, pairs: Sequence[Pair], fused_dirs: dict[str, Path], baselines: Sequence[str],
                  out: str | Path, samples: int = 6, title: str = "cldyn fusion report",
                  convention: str = "cldyn", overwrite: bool = False) -> Path:
    """Write the HTML report to :func:`report_path` of ``out`` (an existing one is replaced only with ``overwrite``)
    and return its path; ``fused_dirs`` maps method names to folders, ``baselines`` are computed on the fly."""
    out = report_path(out)
    refuse_to_replace([out], overwrite)
    # Samples only from pairs every method could score (a broken pair is listed under failures instead).
    scored = set.intersection(*(set(ev.per_image.get(m, {})) for m in ev.methods)) if ev.methods else set()
    pairs = [p for p in pairs if p.name in scored]
    picks = [pairs[i] for i in np.linspace(0, len(pairs) - 1, min(samples, len(pairs))).round().astype(int)] \
        if pairs else []
    listings = {m: list_images(d) for m, d in fused_dirs.items()}
    rows_html = []
    for p in picks:
        ir, vis = read_image(p.ir), read_image(p.vis)
        ir_l, vis_l = to_single_channel(ir), to_single_channel(vis)
        cells = [("infrared", _png_data_uri(ir_l)), ("visible", _png_data_uri(vis.pixels))]
        for m, files in listings.items():
            f = files.get(p.name)
            cells.append((m, _png_data_uri(read_image(f).pixels) if f else ""))
        for b in baselines:
            cells.append((b, _png_data_uri(BASELINES[b](ir_l.astype(np.float64), vis_l.astype(np.float64)))))
        tds = "".join(f'<figure><img src="{uri}" alt="{html.escape(n)}"><figcaption>{html.escape(n)}</figcaption>'
                      f"</figure>" if uri else f"<figure><div class=missing>missing</div><figcaption>"
                      f"{html.escape(n)}</figcaption></figure>" for n, uri in cells)
        rows_html.append(f"<h3>{html.escape(p.name)}</h3><div class=row>{tds}</div>")
    table = _html_table(ev)
    charts = "".join(f'<img class=chart src="{uri}" alt="{k}">' for k, uri in _bar_charts(ev))
    failures = "".join(f"<li>[{html.escape(m)}] {html.escape(msg)}</li>" for m, msgs in ev.failures.items()
                       for msg in msgs)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:1.5em;color:#222}} table{{border-collapse:collapse;font-size:12px}}
td,th{{border:1px solid #ccc;padding:3px 6px;text-align:right}} th:first-child,td:first-child{{text-align:left}}
td.best{{background:#ffe9a8;font-weight:bold}} .row{{display:flex;flex-wrap:wrap;gap:6px}}
figure{{margin:0}} figure img{{max-width:240px;display:block}} figcaption{{font-size:11px;text-align:center}}
.missing{{width:240px;height:120px;background:#eee;display:flex;align-items:center;justify-content:center}}
img.chart{{margin:4px}}</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Convention: <b>{html.escape(convention)}</b> (see <code>cldyn.evaluation.evaluate</code>). Mean ± standard deviation
over {len(pairs)} pairs; the best mean per column is highlighted; ↑ higher is better, ↓ lower is better. Values that are
undefined for an image (e.g. SCD when the fused image equals a source) are excluded and counted.</p>
{table}
<h2>Metrics per method</h2><div>{charts}</div>
<h2>Sample pairs</h2>{''.join(rows_html)}
{f'<h2>Images that could not be scored</h2><ul>{failures}</ul>' if failures else ''}
</body></html>"""
    atomic_write_bytes(out, page.encode("utf-8", errors="replace"))  # undecodable file names show as "?"
    return out


def _html_table(ev: Evaluation) -> str:
    summ = ev.summary()
    best = {}
    for k in ev.metrics:
        vals = {m: summ[m][k]["mean"] for m in ev.methods if not math.isnan(summ[m][k]["mean"])}
        if vals:
            best[k] = (max if DIRECTION[k] == "higher" else min)(vals, key=vals.get)
    head = "".join(f"<th>{k.upper()} {'↑' if DIRECTION[k] == 'higher' else '↓'}</th>" for k in ev.metrics)
    rows = []
    for m in ev.methods:
        tds = []
        for k in ev.metrics:
            s = summ[m][k]
            txt = "n/a" if math.isnan(s["mean"]) else f"{s['mean']:.4f} ± {s['std']:.4f}"
            if s["undefined"]:
                txt += f" ({s['undefined']} undef.)"
            tds.append(f'<td class="{"best" if best.get(k) == m else ""}">{txt}</td>')
        rows.append(f"<tr><td>{html.escape(m)}</td>{''.join(tds)}<td>{len(ev.per_image.get(m, {}))}</td></tr>")
    return f"<table><tr><th>method</th>{head}<th>n</th></tr>{''.join(rows)}</table>"
