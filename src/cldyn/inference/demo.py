"""``cldyn demo``: fuse the sample pairs bundled with the package and lay them out side by side, then fuse them once
for each built-in task (CLDyN's closed loop with the shipped task networks) and show what each customisation changed
and what its task network sees in it."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import cv2
import numpy as np
import torch

from cldyn.data.align import DEFAULT_ALIGN_MODEL, AlignmentError, align, checkerboard
from cldyn.data.io import read_image, refuse_to_replace, three_channels, to_single_channel, write_png
from cldyn.data.pairs import Pair, dataset_of, pair_folders
from cldyn.data.rig import random_warp, warped_visible
from cldyn.errors import CldynError
from cldyn.inference.fuse import Fuser
from cldyn.model.color import rgb_to_luma
from cldyn.model.vfn import VFN
from cldyn.runtime import progress_bar
from cldyn.tasks import load_pretrained_task
from cldyn.tasks.visualise import prediction_overlay
from cldyn.weights import load_rsc_or_shipped, load_vfn_or_shipped

DEMO_TASKS = ("detection", "segmentation", "saliency")
DIFF_GAIN = 8  # |customised - VFN| is a few grey levels: amplified so that it can be seen


def demo_dir() -> Path:
    """Folder of the bundled sample pairs (``ir/``, ``vi/``, ``ATTRIBUTION.md``)."""
    return Path(str(resources.files("cldyn") / "demo_data"))


def demo_pairs() -> list[Pair]:
    pairs, problems = pair_folders(demo_dir() / "ir", demo_dir() / "vi")
    if problems or not pairs:
        raise CldynError(f"bundled demo data is incomplete in {demo_dir()} (reinstall cldyn)")
    return pairs



def side_by_side(rows: list[list[np.ndarray]], labels: list[str] | list[list[str]], height: int = 240,
                 titles: list[str] | None = None) -> np.ndarray:
    """One row per pair of equally tall panels (resized to ``height``, aspect kept); every row is then scaled to
    the widest row's width, so rows of other aspect ratios fill the sheet with no blank strip. ``labels`` name the
    columns (written on each panel; a list of lists gives each row its own), ``titles`` the rows (a caption bar
    above each row, e.g. pair and dataset).

    Returns an RGB float array in [0, 1].
    """
    lines = []
    per_row = bool(labels) and isinstance(labels[0], list)
    for k, panels in enumerate(rows):
        names = labels[k] if per_row else labels
        scaled = []
        for i, p in enumerate(panels):
            rgb = three_channels(p)
            w = max(1, round(rgb.shape[1] * height / rgb.shape[0]))
            img = cv2.resize(np.rint(rgb * 255).astype(np.uint8), (w, height), interpolation=cv2.INTER_AREA)
            if i < len(names):
                _label(img, names[i], 8, 22)
            scaled.append(img)
        lines.append(np.concatenate(scaled, axis=1))
    width = max(line.shape[1] for line in lines)
    out = []
    for k, line in enumerate(lines):
        if line.shape[1] != width:
            h = max(1, round(line.shape[0] * width / line.shape[1]))
            line = cv2.resize(line, (width, h), interpolation=cv2.INTER_AREA)
        if titles:
            bar = np.full((26, width, 3), 32, np.uint8)
            cv2.putText(bar, titles[k], (8, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA)
            line = np.concatenate((bar, line), axis=0)
        out.append(np.pad(line, ((0, 4), (0, 0), (0, 0)), constant_values=255))
    return np.concatenate(out, axis=0).astype(np.float32) / 255.0


def _label(img: np.ndarray, text: str, x: int, y: int) -> None:
    """White text with a dark outline, which reads on any background."""
    cv2.putText(img, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(img, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)


def pair_title(pair: Pair) -> str:
    """``"msrs_00854N (MSRS)"``: the pair's name and its source dataset."""
    return f"{pair.name} ({dataset_of(pair)})"


def _luma(rgb: np.ndarray) -> np.ndarray:
    return rgb_to_luma(torch.from_numpy(np.ascontiguousarray(three_channels(rgb))).permute(2, 0, 1))[0].numpy()


def heat_map(diff: np.ndarray) -> np.ndarray:
    """``(H, W)`` grey-level differences -> RGB in [0, 1] (OpenCV's inferno map), ``DIFF_GAIN`` times brighter."""
    grey = np.clip(diff * DIFF_GAIN, 0, 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(grey, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB).astype(np.float32) / 255


def _saliency_tint(rgb: np.ndarray, drawn: np.ndarray) -> np.ndarray:
    """The image with its saliency map (``drawn``: the map as grey RGB) laid over it in red."""
    m = drawn[..., :1]
    return (rgb * (1 - 0.6 * m) + 0.6 * m * np.array([1.0, 0.0, 0.0], np.float32)).astype(np.float32)


def customisation_rows(pairs: list[Pair], device: str = "auto", tasks: tuple[str, ...] = DEMO_TASKS,
                       progress: bool = True, vfn: VFN | None = None
                       ) -> tuple[list[list[np.ndarray]], list[list[str]], list[str]]:
    """For each pair, two rows: the VFN fusion and each task's customised fusion with that task's prediction drawn;
    then the infrared image and each customisation's ``|customised - VFN|`` (luminance, ``DIFF_GAIN`` x). Returns
    ``(rows, labels per row, row titles)`` for :func:`side_by_side`; the titles give the mean differences in grey
    levels. ``vfn``: the shipped VFN when ``None``; the shipped RSC and task networks are loaded once."""
    images = [(read_image(p.ir), read_image(p.vis)) for p in pairs]
    vfn = vfn if vfn is not None else load_vfn_or_shipped(None)
    rsc = load_rsc_or_shipped(None, vfn)  # one VFN and one RSC serve every task network
    fused: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    drawn: dict[str, list[np.ndarray]] = {}
    for task in progress_bar(tasks, disable=not progress, desc="demo: task customisations"):
        fuser = Fuser(vfn, device=device, task=load_pretrained_task(task), rsc=rsc)
        fused[task] = [fuser.fuse_images_with_base(ir, vis) for ir, vis in images]
        drawn[task] = [prediction_overlay(fuser.task, three_channels(c)) for _, c in fused[task]]
    rows, labels, titles = [], [], []
    for k, pair in enumerate(pairs):
        vfn = three_channels(fused[tasks[0]][k][0])
        top = [vfn]
        for task in tasks:
            custom = three_channels(fused[task][k][1])
            top.append(_saliency_tint(custom, drawn[task][k]) if task == "saliency" else drawn[task][k])
        diffs = [np.abs(_luma(fused[t][k][1]) - _luma(vfn)) * 255 for t in tasks]
        rows += [top, [three_channels(images[k][0].pixels), *map(heat_map, diffs)]]
        labels += [["VFN", *(f"for {t}" for t in tasks)], ["infrared", *(f"{t} - VFN" for t in tasks)]]
        titles += [f"{pair_title(pair)}: fused for each task, with that task's prediction",
                   f"what each customisation changed, |customised - VFN| x{DIFF_GAIN}; mean "
                   + ", ".join(f"{t} {d.mean():.2f}" for t, d in zip(tasks, diffs, strict=True)) + " grey levels"]
    return rows, labels, titles


# Left in a demo's output folder: a later demo replaces that folder's outputs without --overwrite (they are its own),
# while files of the same names in any other folder are still refused.
DEMO_MARKER = ".cldyn-demo"


def alignment_rows(pairs: list[Pair], model: str = DEFAULT_ALIGN_MODEL, seed: int = 0, vfn: VFN | None = None
                   ) -> tuple[list[list[np.ndarray]], list[str], list[str]]:
    """``(rows, labels, titles)`` for ``aligned.png``: each bundled pair's visible image redrawn as a second camera
    of the rig would see it (a seeded random warp: :func:`cldyn.data.rig.random_warp`), a checkerboard of the pair
    before and after registration, and the fusion of the registered pair. A pair that cannot be registered says why
    and shows no fusion."""
    fuser = Fuser(vfn if vfn is not None else load_vfn_or_shipped(None), device="cpu")
    rows, titles = [], []
    for k, pair in enumerate(pairs):
        ir = to_single_channel(read_image(pair.ir))
        vis = read_image(pair.vis).pixels
        true, canvas = random_warp(np.random.default_rng(seed + k), ir.shape)
        moved = warped_visible(vis, true, canvas)
        before = checkerboard(ir, moved)
        try:
            result = align(ir, moved, model)
        except AlignmentError as exc:
            rows.append([before, np.zeros_like(before), np.zeros_like(before)])
            titles.append(f"{pair_title(pair)}: refused, {exc.reason}")
            continue
        rows.append([before, checkerboard(ir, result.aligned), three_channels(fuser.fuse_arrays(ir, result.aligned))])
        titles.append(f"{pair_title(pair)}: {model}, confidence {result.confidence:.1f}")
    return rows, ["before registration", "after registration", "fused (VFN)"], titles


def run_demo(out_dir: str | Path = "cldyn-demo", device: str = "auto", overwrite: bool = False,
             progress: bool = True, tasks: tuple[str, ...] = DEMO_TASKS, align: str = "none"
             ) -> tuple[Path, Path | None]:
    """Fuse the bundled pairs with the shipped VFN into ``out_dir/fused/`` and write ``out_dir/side_by_side.png``
    (columns IR | visible | fused, one row per pair, titled with the pair and its dataset); with ``tasks``, also
    ``out_dir/customised.png`` (:func:`customisation_rows`). Returns both paths (the second ``None`` without
    tasks). With ``align`` (a warp model), also ``out_dir/aligned.png`` (:func:`alignment_rows`). A folder that an
    earlier demo wrote is replaced without ``overwrite``."""
    out_dir = Path(out_dir)
    overwrite = overwrite or (out_dir / DEMO_MARKER).is_file()
    sheet, custom_sheet = out_dir / "side_by_side.png", out_dir / "customised.png"
    aligned_sheet = out_dir / "aligned.png"
    refuse_to_replace([sheet, *([custom_sheet] if tasks else []), *([aligned_sheet] if align != "none" else [])],
                      overwrite)
    pairs = demo_pairs()
    vfn = load_vfn_or_shipped(None)
    report = Fuser(vfn, device=device).fuse_pairs(pairs, out_dir / "fused", overwrite=overwrite, progress=progress)
    if not report.ok:
        raise report.errors[0]
    rows = [[read_image(p.ir).pixels, read_image(p.vis).pixels, read_image(f).pixels]
            for p, f in zip(pairs, report.written, strict=True)]
    write_png(sheet, side_by_side(rows, ["infrared", "visible", "fused (VFN)"], titles=[pair_title(p) for p in pairs]))
    (out_dir / DEMO_MARKER).write_text("written by cldyn demo: a later demo replaces these outputs\n")
    if align != "none":
        rows, labels, titles = alignment_rows(pairs, align, vfn=vfn)
        write_png(aligned_sheet, side_by_side(rows, labels, titles=titles))
    if not tasks:
        return sheet, None
    rows, labels, titles = customisation_rows(pairs, device, tasks, progress, vfn)
    write_png(custom_sheet, side_by_side(rows, labels, titles=titles))
    return sheet, custom_sheet
