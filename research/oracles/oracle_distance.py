"""Mean |difference| (8-bit grey levels, BT.601 luminance) between each pair of task folders of a customisation
(an oracle's, or `cldyn fuse --task T` outputs laid out as DIR/T/NAME.png):

    python research/oracles/oracle_distance.py runs/oracle_tone/b3
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import cv2
import numpy as np

TASKS = ("detection", "segmentation", "saliency")


def luma(path: Path) -> np.ndarray:
    rgb = cv2.imread(str(path), cv2.IMREAD_COLOR)[..., ::-1].astype(np.float64)
    return rgb @ np.array([0.299, 0.587, 0.114])


def main() -> None:
    root = Path(sys.argv[1])
    names = sorted(p.name for p in (root / TASKS[0]).glob("*.png"))
    for a, b in itertools.combinations(TASKS, 2):
        d = [np.abs(luma(root / a / n) - luma(root / b / n)).mean() for n in names]
        print(f"{a}-{b}: {np.mean(d):.3f} (min {np.min(d):.3f}, max {np.max(d):.3f}, {len(d)} pairs)")


if __name__ == "__main__":
    main()
