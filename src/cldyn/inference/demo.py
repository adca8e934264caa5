"""``cldyn demo``: fuse the sample pairs bundled with the package and lay them out side by side."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import cv2
import numpy as np

from cldyn.data.io import read_image, refuse_to_replace, write_png
from cldyn.data.pairs import Pair, pair_folders
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


def _as_rgb(pixels: np.ndarray) -> np.ndarray:
    return np.repeat(pixels[:, :, None], 3, axis=2) if pixels.ndim == 2 else pixels


def side_by_side(rows: list[list[np.ndarray]], labels: list[str], height: int = 240) -> np.ndarray:
    """One row per pair of equally tall panels (resized to ``height``, aspect kept), rows padded to one width.

    Returns an RGB float array in [0, 1].
    """
    lines = []
    for panels in rows:
        scaled = []
        for i, p in enumerate(panels):
            rgb = _as_rgb(p)
            w = max(1, round(rgb.shape[1] * height / rgb.shape[0]))
            img = cv2.resize(np.rint(rgb * 255).astype(np.uint8), (w, height), interpolation=cv2.INTER_AREA)
            if i < len(labels):  # white text with a dark outline reads on any background
                cv2.putText(img, labels[i], (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 3, cv2.LINE_AA)
                cv2.putText(img, labels[i], (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
            scaled.append(img)
        lines.append(np.concatenate(scaled, axis=1))
    width = max(line.shape[1] for line in lines)
    lines = [np.pad(line, ((0, 4), (0, width - line.shape[1]), (0, 0)), constant_values=255) for line in lines]
    return np.concatenate(lines, axis=0).astype(np.float32) / 255.0


def run_demo(out_dir: str | Path = "cldyn-demo", device: str = "auto", overwrite: bool = False,
             progress: bool = True) -> Path:
    """Fuse the bundled pairs with the shipped VFN into ``out_dir/fused/`` and write ``out_dir/side_by_side.png``
    (columns IR | visible | fused, one row per pair). Returns the side-by-side path."""
    out_dir = Path(out_dir)
    sheet = out_dir / "side_by_side.png"
    refuse_to_replace([sheet], overwrite)
    pairs = demo_pairs()
    report = Fuser(device=device).fuse_pairs(pairs, out_dir / "fused", overwrite=overwrite, progress=progress)
    if not report.ok:
        raise report.errors[0]
    rows = [[read_image(p.ir).pixels, read_image(p.vis).pixels, read_image(f).pixels]
            for p, f in zip(pairs, report.written, strict=True)]
    write_png(sheet, side_by_side(rows, ["infrared", "visible", "fused (VFN)"]))
    return sheet
