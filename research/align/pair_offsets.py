"""How far cross-modal ECC on edge maps moves pairs that are published as aligned (identity start, full size):
the floor under any corner error measured against them.  python research/align/pair_offsets.py ROOT"""
import sys

import align as A
import cv2
import numpy as np
from bench_align import _pair_images, corner_error

from cldyn.data.io import luma
from cldyn.data.pairs import discover_pairs

root = sys.argv[1]
pairs, _ = discover_pairs([root], "val" if "msrs" in root else None)
res = {"translation": [], "affine": []}
for p in pairs[:: max(1, len(pairs)//35)]:
    ir, vis = _pair_images(p)
    ie, ve = A.edge_map(ir), A.edge_map(luma(vis))
    for model, mot in (("translation", cv2.MOTION_TRANSLATION), ("affine", cv2.MOTION_AFFINE)):
        w = np.eye(2,3,dtype=np.float32)
        try:
            crit = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-6)
            rho, w = cv2.findTransformECC(ie, ve, w, mot, crit, None, 5)
        except cv2.error:
            continue
        res[model].append(corner_error(np.vstack([w,[0,0,1]]).astype(float), np.eye(3), ir.shape))
for k, v in res.items():
    print(root, k, len(v), "median", round(float(np.median(v)),2), "p95", round(float(np.percentile(v,95)),2))
