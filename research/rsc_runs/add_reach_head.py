"""Give a max-skip VFN a reach head taken from a paper-form VFN's output head (see ``VFNConfig.reach_head``), so
that an RSC compensating its features can change the image.

    python research/rsc_runs/add_reach_head.py docs/training/candidates/vfn_maxdetail_v50.safetensors \
        vfn_stage2.safetensors -o docs/training/candidates/vfn_maxdetail_v50_reach.safetensors

where ``vfn_stage2.safetensors`` is the paper-form VFN shipped before 2026-12-03 (``git show
a244d68:src/cldyn/weights/vfn.safetensors``), the one the max-skip run was warm-started from.
"""

from __future__ import annotations

import argparse

from cldyn.model.vfn import with_reach_head
from cldyn.weights import load_vfn, save_vfn
from cldyn.weights.checkpoint import load_checkpoint

# the max-skip checkpoint's training record, kept so that the shipped manifest and `cldyn info` still show it
_RECORD_KEYS = ("global_step", "epoch", "train_config", "val", "val_reference", "val_score")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("maxskip", help="the skip='max' VFN")
    p.add_argument("head_source", help="the skip='none' VFN whose output head becomes the reach head")
    p.add_argument("-o", "--output", required=True)
    args = p.parse_args()
    vfn = with_reach_head(load_vfn(args.maxskip), load_vfn(args.head_source))
    _, meta = load_checkpoint(args.maxskip)
    record = {k: meta[k] for k in _RECORD_KEYS if k in meta}
    sha = save_vfn(args.output, vfn, {**record, "reach_head_from": args.head_source, "maxskip_from": args.maxskip})
    print(f"wrote {args.output} (sha256 {sha[:16]}...)")


if __name__ == "__main__":
    main()
