"""Each method of a `cldyn evaluate --json` file relative to its `vfn` row, in %:

    python research/fusion_quality/fusion_quality_relative.py docs/training/eval/oracle/fusion_quality_val_tone8_b3.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

METRICS = ("mi", "vif", "qabf", "ssim", "qcv", "nabf")


def main() -> None:
    for path in sys.argv[1:]:
        scores = json.loads(Path(path).read_text())
        vfn = scores["vfn"]
        print(Path(path).name)
        for method, row in scores.items():
            if method != "vfn":
                print("  ", method, "  ".join(f"{m} {100 * (row[m] / vfn[m] - 1):+.1f}%" for m in METRICS))


if __name__ == "__main__":
    main()
