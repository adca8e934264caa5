"""How close is the shipped VFN's fused luminance to the pixel-wise max(IR, Y) and to the average (IR + Y) / 2?
    python research/vfn/vfn_vs_max.py [DATA_ROOT] [SPLIT]
Prints the share of pixels within 1, 2 and 5 grey levels of each, and the mean absolute distance in grey levels."""
import sys

import numpy as np
import torch

from cldyn.data.io import luma, read_pair, to_single_channel
from cldyn.data.pairs import discover_pairs
from cldyn.inference.fuse import fuse_tensors
from cldyn.weights import load_pretrained_vfn

root = sys.argv[1] if len(sys.argv) > 1 else "../shared/data/msrs"
split = sys.argv[2] if len(sys.argv) > 2 else "val"
pairs, _ = discover_pairs([root], split)
vfn = load_pretrained_vfn()
dist = {"max": [], "average": []}
with torch.inference_mode():
    for p in pairs:
        ir, vis = read_pair(p.ir, p.vis)
        i, y = to_single_channel(ir), luma(vis.pixels)
        f = fuse_tensors(vfn, torch.from_numpy(i)[None, None], torch.from_numpy(y)[None, None])[0, 0].numpy()
        dist["max"].append(np.abs(f - np.maximum(i, y)).ravel() * 255)
        dist["average"].append(np.abs(f - (i + y) / 2).ravel() * 255)
print(f"{len(pairs)} pairs of {root} ({split})")
for k, d in dist.items():
    d = np.concatenate(d)
    print(f"VFN vs {k}: within 1 / 2 / 5 levels {100 * (d <= 1).mean():.1f} / {100 * (d <= 2).mean():.1f} / "
          f"{100 * (d <= 5).mean():.1f}% of pixels, mean |difference| {d.mean():.2f} levels")
