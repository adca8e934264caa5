"""``cldyn demo``: fuse the sample pairs bundled with the package and lay them out side by side."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import cv2
import numpy as np

from cldyn.data.io import read_image, refuse_to_replace, three_channels, write_png
from cldyn.data.pairs import Pair, dataset_of, pair_folders
from cldyn.errors import CldynError
from cldyn.inference.fuse import Fuser


def demo_dir() -> Path:
    """Folder of the bundled sample pairs (``ir/``, ``vi/``, ``ATTRIBUTION.md``)."""
    return Path(str(resources.files("cldyn") / "demo_data"))


def demo_pairs() -> list[Pair]:
    pairs, problems = pair_folders(demo_dir() / "ir", demo_dir() / "vi")
    if problems or not pairs:
        raise CldynError(f"bundled demo data is incomplete in {demo_dir()} (reinstall cldyn)")
    return pairs



def side_by_side(rows: list[list[np.ndarray]], labels: list[str], height: int = 240,
                 titles: list[str] | None = None) -> np.ndarray:
    """One row per pair of equally tall panels (resized to ``height``, aspect kept); every row is then scaled to
    the widest row's width, so rows of other aspect ratios fill the sheet with no blank strip. ``labels`` name the
    columns (written on each panel), ``titles`` the rows (a caption bar above each row, e.g. pair and dataset).

    Returns an RGB float array in [0, 1].
    """
    lines = []
    for panels in rows:
        scaled = []
        for i, p in enumerate(panels):
            rgb = three_channels(p)
            w = max(1, round(rgb.shape[1] * height / rgb.shape[0]))
            img = cv2.resize(np.rint(rgb * 255).astype(np.uint8), (w, height), interpolation=cv2.INTER_AREA)
            if i < len(labels):
                _label(img, labels[i], 8, 22)
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


def run_demo(out_dir: str | Path = "cldyn-demo", device: str = "auto", overwrite: bool = False,
             progress: bool = True) -> Path:
    """Fuse the bundled pairs with the shipped VFN into ``out_dir/fused/`` and write ``out_dir/side_by_side.png``
    (columns IR | visible | fused, one row per pair, titled with the pair and its dataset). Returns the
    side-by-side path."""
    out_dir = Path(out_dir)
    sheet = out_dir / "side_by_side.png"
    refuse_to_replace([sheet], overwrite)
    pairs = demo_pairs()
    report = Fuser(device=device).fuse_pairs(pairs, out_dir / "fused", overwrite=overwrite, progress=progress)
    if not report.ok:
        raise report.errors[0]
    rows = [[read_image(p.ir).pixels, read_image(p.vis).pixels, read_image(f).pixels]
            for p, f in zip(pairs, report.written, strict=True)]
    write_png(sheet, side_by_side(rows, ["infrared", "visible", "fused (VFN)"], titles=[pair_title(p) for p in pairs]))
    return sheet
