"""Copy trained weights into the package (fp16 safetensors) and record their SHA-256 in weights/manifest.json.

    python scripts/ship_weights.py vfn runs/vfn_ship/last.safetensors
    python scripts/ship_weights.py task runs/task_saliency/best.safetensors --name task_saliency
    python scripts/ship_weights.py rsc runs/rsc/best.safetensors

The manifest entry also keeps where the weights came from (source checkpoint, its training step and config), so the
README's training record can be checked against the shipped file.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cldyn.tasks import load_task
from cldyn.weights import load_rsc, load_vfn, record_shipped, save_vfn, shipped_weights_dir
from cldyn.weights.checkpoint import load_checkpoint, save_checkpoint


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("kind", choices=("vfn", "task", "rsc"))
    p.add_argument("checkpoint")
    p.add_argument("--name", help="file stem in the package (default: vfn / task_<task> / rsc)")
    p.add_argument("--fp32", action="store_true", help="keep fp32 (default: fp16 to halve the package size)")
    p.add_argument("--dest", help="folder to ship into, with its manifest.json (default: the package's weights)")
    p.add_argument("--strength", type=float, help="rsc: the strength it is meant to run at (default: the package's)")
    p.add_argument("--max-change", type=float, help="rsc: its limit on each image's mean change, grey levels (0: none; "
                                                   "default: the package's)")
    args = p.parse_args(argv)
    src = Path(args.checkpoint)
    tensors, meta = load_checkpoint(src)
    provenance = {"source": str(src), "source_meta": {k: meta.get(k) for k in
                                                       ("global_step", "epoch", "train_config", "val", "val_score")
                                                       if k in meta}}
    wdir = Path(args.dest) if args.dest else shipped_weights_dir()
    half = not args.fp32
    if args.kind == "vfn":
        name = args.name or "vfn"
        sha = save_vfn(wdir / f"{name}.safetensors", load_vfn(src), provenance, half=half)
    elif args.kind == "task":
        adapter = load_task(src)
        name = args.name or f"task_{adapter.task}"
        sha = adapter.save(wdir / f"{name}.safetensors", provenance, half=half)
    else:
        rsc = load_rsc(src)
        name = args.name or "rsc"
        state = {f"rsc/{k}": (v.half() if half and v.is_floating_point() else v) for k, v in rsc.state_dict().items()}
        sha = save_checkpoint(wdir / f"{name}.safetensors", state,
                              {"kind": "rsc", "rsc_config": rsc.cfg.to_dict(), **provenance})
    (wdir / f"{name}.json").unlink(missing_ok=True)  # the manifest is the package's record
    settings = {k: v for k, v in (("strength", args.strength), ("max_change", args.max_change)) if v is not None}
    if settings and args.kind != "rsc":
        p.error("--strength and --max-change are settings of an RSC")
    entry = {"sha256": sha, "kind": args.kind, **provenance, **({"settings": settings} if settings else {})}
    record_shipped(f"{name}.safetensors", entry, wdir)
    size = (wdir / f"{name}.safetensors").stat().st_size
    print(f"shipped {name}.safetensors ({size / 1024:.0f} KiB, sha256 {sha[:16]}...)")


if __name__ == "__main__":
    main()
