"""Commands that fuse: ``info``, ``fuse``, ``demo``, ``export``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from cldyn.cli.common import set_threads
from cldyn.data.align import ALIGN_MODELS
from cldyn.data.pairs import pairs_from_inputs
from cldyn.errors import CldynError
from cldyn.inference.customise import DEFAULT_STRENGTH, customisation_settings, load_customisation, strength_arg
from cldyn.inference.demo import DEMO_TASKS, demo_dir, run_demo
from cldyn.inference.export import export_cldyn_onnx, export_vfn_onnx
from cldyn.inference.fuse import Fuser
from cldyn.model.ops import count_parameters
from cldyn.model.rsc import DEFAULT_MAX_CHANGE
from cldyn.runtime import installed_extras
from cldyn.version import __version__
from cldyn.weights import (
    SHIPPED_VFN,
    load_vfn_or_shipped,
    shipped_networks,
    shipped_weights_dir,
    shipped_weights_info,
)

TASK_HELP = ("customise the fusion for a task: none (plain VFN), detection, segmentation, saliency, or "
             "module:Class")


def cmd_info(args: argparse.Namespace) -> int:
    if args.demo_data:  # for scripts: DEMO=$(cldyn info --demo-data)
        print(demo_dir())
        return 0
    model = load_vfn_or_shipped(args.weights)
    print(f"cldyn {__version__}  torch {torch.__version__}  threads {torch.get_num_threads()}  "
          f"cuda {'yes' if torch.cuda.is_available() else 'no'}")
    print(f"VFN config: {model.cfg.to_dict()}")
    print(f"VFN parameters: {count_parameters(model):,}")
    print(f"weights: {args.weights or shipped_weights_dir() / SHIPPED_VFN}")
    print(f"shipped weights ({shipped_weights_dir()}):")
    for row in shipped_weights_info():
        check = "verified" if row["sha256_ok"] else "MISMATCH: reinstall cldyn"
        print(f"  {row['file']:38s} {row['kind']:5s} {row['parameters']:>10,} parameters  sha256 "
              f"{row['sha256'][:16]}... ({check})  {row['trained']}")
    print("shipped task networks (--task-weights NAME): " + ", ".join(shipped_networks()))
    print("optional extras:")
    for extra, dists in installed_extras().items():
        found = ", ".join(f"{d} {v}" if v else f"{d} not installed" for d, v in dists.items())
        hint = "" if all(dists.values()) else f"  (pip install 'cldyn[{extra}]')"
        print(f"  {extra:5s} {found}{hint}")
    return 0


def _settings(args: argparse.Namespace) -> tuple[float, float | None]:
    """The strength and change limit: as given, else the shipped RSC's own (said on stderr), else the defaults."""
    strength, max_change, from_rsc = customisation_settings(args.rsc_weights, args.strength, args.max_change)
    if from_rsc and args.task != "none":
        said = {"strength": f"strength {strength:g}",
                "max_change": "no change limit" if max_change is None else f"change limit {max_change:g}"}
        print(f"cldyn {args.command}: note: the {args.rsc_weights} RSC's own settings: "
              f"{', '.join(said[k] for k in from_rsc)} (--strength, --max-change to change)", file=sys.stderr)
    return strength, max_change


def cmd_fuse(args: argparse.Namespace) -> int:
    set_threads(args.threads)
    strength, max_change = _settings(args)
    vfn = load_vfn_or_shipped(args.weights)
    task, rsc = load_customisation(args.task, vfn, args.task_weights, args.rsc_weights)
    if args.backend == "onnxruntime" and not args.onnx:
        raise CldynError("--backend onnxruntime needs --onnx FILE (write one with: cldyn export -o FILE)")
    onnx = args.onnx if args.backend == "onnxruntime" else None
    bits = "auto" if args.bits == "auto" else int(args.bits)
    inputs = [Path(p) for p in args.inputs]
    single = len(inputs) == 2 and not args.ir and not any(p.is_dir() for p in inputs)
    fuser = Fuser(vfn, device=args.device, batch_size=1 if single else args.batch_size, io_threads=args.io_threads,
                  task=task, rsc=rsc, onnx=onnx, tile=args.tile, overlap=args.overlap, strength=strength,
                  align=args.align, save_warp=args.save_warp, max_change=max_change)
    if single:
        written = fuser.fuse_files(inputs[0], inputs[1], args.output, bits=bits, overwrite=args.overwrite)
        for note in fuser.notes:
            print(f"cldyn fuse: note: {note}", file=sys.stderr)
        print(f"wrote {written}")
        return 0
    pairs, problems = pairs_from_inputs(inputs, args.ir, args.vis)
    out_dir = Path(args.output)
    if out_dir.exists() and not out_dir.is_dir():
        raise CldynError(f"{out_dir}: exists and is not a folder; folder inputs need an output folder")
    report = fuser.fuse_pairs(pairs, out_dir, bits=bits, overwrite=args.overwrite, progress=not args.quiet)
    report.errors[:0] = problems
    for note in report.notes:
        print(f"cldyn fuse: note: {note}", file=sys.stderr)
    for err in report.errors:
        print(f"cldyn fuse: error: {err}", file=sys.stderr)
    print(f"{report.summary().split(' (first')[0]} -> {out_dir}")
    return 0 if report.ok else 1


def cmd_demo(args: argparse.Namespace) -> int:
    set_threads(args.threads)
    sheet, custom = run_demo(args.out, device=args.device, overwrite=args.overwrite, progress=not args.quiet,
                             tasks=() if args.no_tasks else DEMO_TASKS, align=args.align)
    print(f"side-by-side (IR | visible | fused): {sheet}")
    if args.align != "none":
        print(f"registration of each pair's visible image, redrawn by a simulated second camera (before | after | "
              f"fused): {Path(args.out) / 'aligned.png'}")
    if custom is not None:
        print(f"task customisations (VFN | for detection | for segmentation | for saliency): {custom}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    strength, max_change = _settings(args)
    vfn = load_vfn_or_shipped(args.weights)
    task, rsc = load_customisation(args.task, vfn, args.task_weights, args.rsc_weights)
    if task is None:
        out = export_vfn_onnx(vfn, args.output, opset=args.opset)
        print(f"wrote {out} (inputs ir, vis_y: (B, 1, H, W) in [0, 1]; output fused_y; H, W >= 2)")
    else:
        out = export_cldyn_onnx(vfn, rsc, task, args.output, opset=args.opset, strength=strength,
                                max_change=max_change)
        print(f"wrote {out} (CLDyN customised for {task.name} at strength {strength:g}; inputs ir (B, 1, H, W), "
              "vis (B, 3, H, W) RGB in [0, 1]; output fused_y; H, W >= 2)")
    return 0


def _add_customisation_args(s: argparse.ArgumentParser, task_help: str) -> None:
    s.add_argument("--task", default="none", help=task_help)
    s.add_argument("--task-weights", help="task network checkpoint, or the name of a shipped network such as "
                                          "detection-visible (cldyn info lists them; default: the task's own)")
    s.add_argument("--rsc-weights", help="RSC checkpoint from train-rsc, or a shipped one by name: visible (trained "
                                         "with networks that saw visible images only), infrared (with networks "
                                         "that saw infrared images only; default: the shipped RSC)")
    s.add_argument("--strength", type=strength_arg,
                   help=f"how far the customisation goes: 0 = the VFN's image, 1 = full, auto = per image the one of "
                        f"0, 0.5 and 1 that the task network is surest of (default: {DEFAULT_STRENGTH:g}, or a shipped "
                        "RSC's own: infrared 1)")
    s.add_argument("--max-change", type=float, metavar="LEVELS",
                   help="the most the full customisation may move an image's luminance, as a mean over its pixels in "
                        f"grey levels; at strength s, s times that (0: no limit; default: {DEFAULT_MAX_CHANGE:g}, or "
                        "a shipped RSC's own: infrared none)")


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("info", help="print versions, the VFN's configuration, the shipped weights and the extras")
    s.add_argument("--weights", help="a VFN checkpoint (default: the shipped weights)")
    s.add_argument("--demo-data", action="store_true",
                   help="print only the folder of the bundled sample pairs (ir/ and vi/), e.g. for cldyn fuse")
    s.set_defaults(func=cmd_info)

    s = sub.add_parser("export", help="export the fusion network to ONNX (dynamic batch, height, width)")
    _add_customisation_args(s, "none: the VFN alone; detection|segmentation|saliency|module:Class: CLDyN with "
                               "that task network inside the graph")
    s.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    s.add_argument("--weights", help="VFN checkpoint (default: the shipped weights)")
    s.add_argument("--opset", type=int, default=17)
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("fuse", help="fuse one pair, two folders, or a dataset root",
                       description="cldyn fuse IR VIS -o OUT | cldyn fuse --ir DIR --vis DIR -o DIR | "
                                   "cldyn fuse ROOT -o DIR (layouts: ir/+vi/, Infrared/+Visible/, T/+RGB/ ...)")
    s.add_argument("inputs", nargs="*", help="IR VIS files, IR_DIR VIS_DIR folders, or a dataset ROOT")
    s.add_argument("--ir", help="folder of infrared images")
    s.add_argument("--vis", help="folder of visible images (paired with --ir by file stem)")
    s.add_argument("-o", "--output", required=True, help="output file (single pair) or folder")
    s.add_argument("--weights", help="VFN checkpoint (default: the shipped weights)")
    _add_customisation_args(s, TASK_HELP)
    s.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch",
                   help="onnxruntime runs a graph from cldyn export (--onnx FILE; extra cldyn[onnx])")
    s.add_argument("--tile", type=int, help="fuse images larger than this in overlapping tiles (bounded memory)")
    s.add_argument("--overlap", type=int, default=64, help="tile overlap in pixels, blended linearly")
    s.add_argument("--onnx", help="the .onnx file for --backend onnxruntime (from cldyn export)")
    s.add_argument("--batch-size", type=int, default=1,
                   help="pairs per forward pass (same-size pairs; lowered to what half the free memory holds; on "
                        "the CPU 1 is usually fastest)")
    s.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    s.add_argument("--threads", type=int, help="torch CPU threads")
    s.add_argument("--io-threads", type=int, default=2,
                   help="threads that decode and encode images while the network runs")
    s.add_argument("--bits", choices=("auto", "8", "16"), default="auto",
                   help="output bit depth; auto = 16 when an input has more than 8 bits")
    s.add_argument("--align", choices=ALIGN_MODELS, default="none",
                   help="register each visible image into its infrared frame first (pairs may differ in size); a "
                        "pair that cannot be registered is reported and not fused (default: none, pairs must be "
                        "aligned)")
    s.add_argument("--save-warp", action="store_true",
                   help="with --align: write each pair's warp and confidence beside its output (NAME.warp.json)")
    s.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_fuse)

    s = sub.add_parser("demo", help="fuse the bundled sample pairs and write a side-by-side PNG, and one of the task "
                                    "customisations with each task's prediction")
    s.add_argument("--out", default="cldyn-demo", help="output folder")
    s.add_argument("--no-tasks", action="store_true", help="VFN fusion only (no customised.png)")
    s.add_argument("--align", choices=ALIGN_MODELS, default="none",
                   help="also register each pair's visible image, redrawn as a second camera of the rig would see "
                        "it, and write aligned.png (before | after | fused)")
    s.add_argument("--device", default="auto")
    s.add_argument("--threads", type=int)
    s.add_argument("--overwrite", action="store_true")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_demo)
