"""``cldyn report``: one self-contained HTML page (no network needed to view it).

- The metric table: one column per metric, the mean on the first line of each cell and ``± std`` in a smaller
  second line, the best mean per column highlighted.
- One bar chart per metric: mean ± std per method, the best bar in red (with a legend), the y-axis starting near the
  values where they are close (e.g. SSIM; the axis says so), zero and undefined bars marked.
- Sample pairs: one row per pair (scrolls sideways, never wraps), titled with the pair and its dataset: infrared |
  visible | every method, baselines in colour as the fused images are (the visible Cb/Cr put back), each image's
  metrics below it (all of them on hover), click to enlarge; under it a zoomed crop of the most detailed region.

Images and charts are embedded (JPEG for the sample images, PNG for crops and charts).
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from cldyn.data.io import atomic_write_bytes, read_image, refuse_to_replace, three_channels, to_single_channel
from cldyn.data.pairs import Pair, dataset_of, list_images
from cldyn.errors import InputError
from cldyn.evaluation.baselines import BASELINES
from cldyn.evaluation.evaluate import Evaluation
from cldyn.evaluation.metrics import DIRECTION
from cldyn.model.color import replace_luma

# Metrics written under each sample image (those the evaluation has, in this order); all of them show on hover.
CAPTION_METRICS = ("en", "mi", "vif", "qabf", "ssim")
BEST_COLOUR, OTHER_COLOUR = "#d62728", "#1f77b4"


def _as_uint8_rgb(rgb01: np.ndarray) -> np.ndarray:
    return three_channels(np.rint(np.clip(rgb01, 0, 1) * 255).astype(np.uint8))


def png_data_uri(rgb01: np.ndarray, max_side: int = 320) -> str:
    """A gray ``(H, W)`` or RGB ``(H, W, 3)`` image in [0, 1] as a PNG data URI, shrunk to ``max_side``."""
    return _data_uri(rgb01, max_side, ".png")


def _data_uri(rgb01: np.ndarray, max_side: int, ext: str) -> str:
    img = _as_uint8_rgb(rgb01)
    scale = max_side / max(img.shape[:2])
    if scale < 1:
        img = cv2.resize(img, (round(img.shape[1] * scale), round(img.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    params = [cv2.IMWRITE_JPEG_QUALITY, 92] if ext == ".jpg" else []
    _, buf = cv2.imencode(ext, img[:, :, ::-1], params)
    mime = "jpeg" if ext == ".jpg" else "png"
    return f"data:image/{mime};base64," + base64.b64encode(buf.tobytes()).decode()


def detail_window(ir: np.ndarray, vis: np.ndarray, frac: float = 0.25) -> tuple[slice, slice]:
    """The ``frac``-sized window (of each side) with the most Sobel gradient energy in both sources: where fusions
    differ most visibly. Ties go to the top-left window."""
    h, w = ir.shape
    wh, ww = max(1, round(h * frac)), max(1, round(w * frac))
    energy = np.zeros((h, w))
    for src in (ir, vis):
        g = src.astype(np.float64)
        energy += np.abs(cv2.Sobel(g, cv2.CV_64F, 1, 0, ksize=3)) + np.abs(cv2.Sobel(g, cv2.CV_64F, 0, 1, ksize=3))
    integral = cv2.integral(energy)
    sums = integral[wh:, ww:] - integral[:-wh, ww:] - integral[wh:, :-ww] + integral[:-wh, :-ww]
    top, left = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return slice(int(top), int(top) + wh), slice(int(left), int(left) + ww)


def _colour_like_fused(luma01: np.ndarray, vis_pixels: np.ndarray) -> np.ndarray:
    """A baseline's fused luminance with the visible Cb/Cr put back, as cldyn's fused images are made."""
    if vis_pixels.ndim == 2:
        return luma01
    rgb = torch.from_numpy(np.ascontiguousarray(vis_pixels, dtype=np.float32)).permute(2, 0, 1)[None]
    y = torch.from_numpy(np.asarray(luma01, dtype=np.float32))[None, None]
    return replace_luma(rgb, y)[0].permute(1, 2, 0).clamp(0, 1).numpy()


def _metrics_text(values: dict[str, float] | None, keys: Sequence[str]) -> tuple[str, str]:
    """(caption, hover text) of one image's metrics."""
    if not values:
        return "", ""

    def fmt(k: str) -> str:
        v = values.get(k, float("nan"))
        return f"{k.upper()} {'n/a' if not math.isfinite(v) else f'{v:.3f}'}"

    shown = [k for k in CAPTION_METRICS if k in values and k in keys]
    return " · ".join(fmt(k) for k in shown), ", ".join(fmt(k) for k in keys if k in values)


def _figure(name: str, uri: str, crop_uri: str, metrics: tuple[str, str]) -> str:
    if not uri:
        return (f"<figure><div class=missing>missing</div><figcaption><b>{html.escape(name)}</b></figcaption>"
                "</figure>")
    caption, hover = metrics
    return (f'<figure><img class=zoomable src="{uri}" alt="{html.escape(name)}" title="{html.escape(hover)}">'
            f'<img class="crop zoomable" src="{crop_uri}" alt="{html.escape(name)} (zoomed crop)">'
            f"<figcaption><b>{html.escape(name)}</b><br><span class=vals>{html.escape(caption)}</span>"
            "</figcaption></figure>")


def _sample_row(pair: Pair, listings: dict[str, dict[str, Path]], baselines: Sequence[str], ev: Evaluation) -> str:
    ir, vis = read_image(pair.ir), read_image(pair.vis)
    ir_l, vis_l = to_single_channel(ir), to_single_channel(vis)
    rows, cols = detail_window(ir_l, vis_l)
    images: list[tuple[str, np.ndarray | None]] = [("infrared", ir_l), ("visible", vis.pixels)]
    for m, files in listings.items():
        f = files.get(pair.name)
        images.append((m, read_image(f).pixels if f else None))
    for b in baselines:
        luma = BASELINES[b](ir_l.astype(np.float64), vis_l.astype(np.float64))
        images.append((b, _colour_like_fused(luma, vis.pixels)))
    figures = []
    for name, img in images:
        if img is None:
            figures.append(_figure(name, "", "", ("", "")))
            continue
        values = ev.per_image.get(name, {}).get(pair.name)
        figures.append(_figure(name, _data_uri(img, 640, ".jpg"), _data_uri(img[rows, cols], 640, ".png"),
                               _metrics_text(values, ev.metrics)))
    where = f"zoomed crop: rows {rows.start}-{rows.stop - 1}, columns {cols.start}-{cols.stop - 1}"
    return (f"<h3>{html.escape(pair.name)} <span class=ds>{html.escape(dataset_of(pair))}</span> "
            f"<span class=where>{where}</span></h3><div class=row>{''.join(figures)}</div>")


def _best(ev: Evaluation) -> dict[str, str]:
    """Metric -> the method with the best mean."""
    summ, best = ev.summary(), {}
    for k in ev.metrics:
        vals = {m: summ[m][k]["mean"] for m in ev.methods if not math.isnan(summ[m][k]["mean"])}
        if vals:
            best[k] = (max if DIRECTION[k] == "higher" else min)(vals, key=vals.get)
    return best


def axis_range(means: Sequence[float], stds: Sequence[float]) -> tuple[float, float] | None:
    """The y-range of a chart whose finite values are close (spread under a quarter of the largest, all
    positive): from a little below the lowest bar to a little above the highest, so the differences show.
    ``None``: start at 0."""
    pairs = [(m, 0.0 if not math.isfinite(s) else s) for m, s in zip(means, stds, strict=True) if math.isfinite(m)]
    if len(pairs) < 2:
        return None
    lo, hi = min(m - s for m, s in pairs), max(m + s for m, s in pairs)
    top = max(m for m, _ in pairs)
    if lo <= 0 or (hi - lo) >= 0.25 * top:
        return None
    pad = 0.08 * (hi - lo) or 0.01 * top
    return lo - pad, hi + pad


def _bar_charts(ev: Evaluation) -> list[tuple[str, str]]:
    """(metric, data URI) of one bar chart per metric."""
    import matplotlib  # heavy (about 0.5 s): loaded only when a chart is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after matplotlib.use: the headless backend
    from matplotlib.patches import Patch  # with pyplot, for the same reason

    summ, best = ev.summary(), _best(ev)
    charts = []
    for k in ev.metrics:
        means = [summ[m][k]["mean"] for m in ev.methods]
        stds = [summ[m][k]["std"] for m in ev.methods]
        if all(math.isnan(v) for v in means):
            continue
        fig, ax = plt.subplots(figsize=(4.4, 2.8), dpi=90)
        x = np.arange(len(means))
        heights = [0.0 if math.isnan(v) else v for v in means]
        colours = [BEST_COLOUR if best.get(k) == m else OTHER_COLOUR for m in ev.methods]
        ax.bar(x, heights, yerr=[0 if math.isnan(s) else s for s in stds], color=colours, capsize=2)
        rng = axis_range(means, stds)
        if rng:
            ax.set_ylim(*rng)
        bottom, top = ax.get_ylim()
        for i, v in enumerate(means):  # a bar too low to see (e.g. 0) or undefined is marked and labelled
            if math.isnan(v):
                ax.annotate("n/a", (i, bottom), ha="center", va="bottom", fontsize=7, color="#555")
            elif v - bottom < 0.015 * (top - bottom):
                ax.plot([i - 0.4, i + 0.4], [bottom] * 2, color=colours[i], lw=4, solid_capstyle="butt",
                        clip_on=False)
                ax.annotate(f"{v:.3g}", (i, bottom + 0.02 * (top - bottom)), ha="center", va="bottom", fontsize=7)
        ax.set_xticks(x, ev.methods, rotation=40, ha="right", fontsize=7)
        note = f"; axis from {rng[0]:.3g}" if rng else ""
        ax.set_title(f"{k.upper()} ({DIRECTION[k]} is better{note})", fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
        ax.legend(handles=[Patch(color=BEST_COLOUR, label="best mean"), Patch(color=OTHER_COLOUR, label="other")],
                  fontsize=6, loc="lower right" if DIRECTION[k] == "higher" else "upper right", framealpha=0.8)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        plt.close(fig)
        charts.append((k, "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()))
    return charts


def _html_table(ev: Evaluation) -> str:
    summ, best = ev.summary(), _best(ev)
    head = "".join(f"<th>{k.upper()} {'↑' if DIRECTION[k] == 'higher' else '↓'}</th>" for k in ev.metrics)
    rows = []
    for m in ev.methods:
        tds = []
        for k in ev.metrics:
            s = summ[m][k]
            if math.isnan(s["mean"]):
                txt = "n/a"
            else:
                txt = f"<span class=mean>{s['mean']:.4f}</span><small>± {s['std']:.4f}</small>"
            if s["undefined"]:
                txt += f"<small>{s['undefined']} undef.</small>"
            tds.append(f'<td class="{"best" if best.get(k) == m else ""}">{txt}</td>')
        rows.append(f"<tr><th class=method>{html.escape(m)}</th>{''.join(tds)}<td>{len(ev.per_image.get(m, {}))}</td>"
                    "</tr>")
    return (f"<div class=scroll><table><tr><th class=method>method</th>{head}<th>n</th></tr>{''.join(rows)}"
            "</table></div>")


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


STYLE = """body{font-family:sans-serif;margin:1.5em;color:#222;max-width:1600px}
.scroll{overflow-x:auto} table{border-collapse:collapse;font-size:13px}
td,th{border:1px solid #ccc;padding:3px 6px;text-align:right;vertical-align:top}
th.method{text-align:left;white-space:nowrap;position:sticky;left:0;background:#fff}
td .mean{white-space:nowrap} td small{display:block;color:#666;font-size:10px;white-space:nowrap}
td.best{background:#ffe9a8;font-weight:bold}
.row{display:flex;flex-wrap:nowrap;gap:8px;overflow-x:auto;padding-bottom:6px}
figure{margin:0;flex:0 0 auto} figure img{width:300px;display:block;cursor:zoom-in}
figure img.crop{margin-top:4px;image-rendering:pixelated}
figcaption{font-size:11px;text-align:center;max-width:300px} .vals{color:#444}
h3 .ds{font-weight:normal;background:#eef;padding:1px 6px;border-radius:3px} h3 .where{font-size:11px;color:#777}
.missing{width:300px;height:225px;background:#eee;display:flex;align-items:center;justify-content:center}
img.chart{margin:4px}
#lightbox{display:none;position:fixed;inset:0;background:rgba(0,0,0,.85);align-items:center;justify-content:center;
cursor:zoom-out;z-index:10} #lightbox img{max-width:96vw;max-height:96vh;image-rendering:pixelated}"""

SCRIPT = """const lb=document.getElementById('lightbox');
document.querySelectorAll('img.zoomable').forEach(i=>i.addEventListener('click',()=>{
lb.querySelector('img').src=i.src;lb.style.display='flex';}));
lb.addEventListener('click',()=>{lb.style.display='none';});"""


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
    rows_html = "".join(_sample_row(p, listings, baselines, ev) for p in picks)
    charts = "".join(f'<img class=chart src="{uri}" alt="{k}">' for k, uri in _bar_charts(ev))
    failures = "".join(f"<li>[{html.escape(m)}] {html.escape(msg)}</li>" for m, msgs in ev.failures.items()
                       for msg in msgs)
    datasets = ", ".join(sorted({dataset_of(p) for p in pairs})) or "none"
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{STYLE}</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Convention: <b>{html.escape(convention)}</b> (see <code>cldyn.evaluation.evaluate</code>). Mean (± standard
deviation below it) over {len(pairs)} pairs from {html.escape(datasets)}; the best mean per column is highlighted;
↑ higher is better, ↓ lower is better. Values that are undefined for an image (e.g. SCD when the fused image equals a
source) are excluded and counted.</p>
{_html_table(ev)}
<h2>Metrics per method</h2><div>{charts}</div>
<h2>Sample pairs</h2><p>Click an image to enlarge it; hover it for all its metrics. Under each image: a zoomed crop
of the region with the most detail in both sources.</p>{rows_html}
{f'<h2>Images that could not be scored</h2><ul>{failures}</ul>' if failures else ''}
<div id=lightbox><img alt="enlarged"></div><script>{SCRIPT}</script>
</body></html>"""
    atomic_write_bytes(out, page.encode("utf-8", errors="replace"))  # undecodable file names show as "?"
    return out
