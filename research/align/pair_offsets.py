"""How far cross-modal ECC on edge maps moves pairs that are published as aligned (identity start, full size):
the floor under any corner error measured against them.  python research/align/pair_offsets.py ROOT"""
import sys

import cv2
import numpy as np

from cldyn.data.align import edge_map
from cldyn.data.io import luma, read_image, to_single_channel
from cldyn.data.pairs import discover_pairs
from cldyn.data.rig import corner_error

root = sys.argv[1]
pairs, _ = discover_pairs([root], "val" if "msrs" in root else None)
res = {"translation": [], "affine": []}
for p in pairs[:: max(1, len(pairs) // 35)]:
    ie, ve = edge_map(to_single_channel(read_image(p.ir))), edge_map(luma(read_image(p.vis).pixels))
    for model, mot in (("translation", cv2.MOTION_TRANSLATION), ("affine", cv2.MOTION_AFFINE)):
        try:
            crit = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-6)
            rho, w = cv2.findTransformECC(ie, ve, np.eye(2, 3, dtype=np.float32), mot, crit, None, 5)
        except cv2.error:
            continue
        res[model].append(corner_error(np.vstack([w, [0, 0, 1]]).astype(float), np.eye(3), ie.shape))
for k, v in res.items():
    print(root, k, len(v), "median", round(float(np.median(v)), 2), "p95", round(float(np.percentile(v, 95)), 2))
