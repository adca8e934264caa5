"""Commands that score: ``eval-task``, ``frozen-table``, ``experiment``, ``evaluate``, ``report``, ``bench``."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from cldyn.cli.align import bench_align_command
from cldyn.cli.common import add_run_args, key_values, named_runs, set_threads, task_map, write_json
from cldyn.data.align import ALIGN_MODELS, DEFAULT_ALIGN_MODEL
from cldyn.data.io import refuse_to_replace
from cldyn.data.pairs import discover_pairs, pair_folders
from cldyn.errors import CldynError
from cldyn.evaluation.bench import bench_fuse, bench_tile, demo_pair_tensors
from cldyn.evaluation.bench_closed_loop import bench_customise, bench_rsc, bench_tasks
from cldyn.evaluation.compare import evaluate_split
from cldyn.evaluation.evaluate import METRIC_KEYS, Evaluation, evaluate_folders, evaluation_outputs
from cldyn.evaluation.experiment import Experiment, ExperimentConfig
from cldyn.evaluation.frozen_table import FrozenTable, FrozenTableConfig
from cldyn.evaluation.inspect_rsc import format_inspection, inspect_rsc, load_pairs
from cldyn.evaluation.report import render_report, report_path
from cldyn.evaluation.tasks import evaluate_task, format_comparison
from cldyn.inference.customise import DEFAULT_STRENGTH, strength_arg
from cldyn.model.rsc import DEFAULT_MAX_CHANGE, CLDyN
from cldyn.tasks import load_task_for
from cldyn.weights import load_rsc_or_shipped, load_vfn_or_shipped, shipped_networks


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


def cmd_eval_task(args: argparse.Namespace) -> int:
    set_threads(args.threads)
    result = evaluate_task(args.task, args.data, args.split, args.source, weights=args.weights,
                           vfn_weights=args.vfn_weights, rsc_weights=args.rsc_weights, log=_stderr,
                           progress=not args.quiet, against=args.against, metric=args.metric,
                           resamples=args.resamples, seed=args.seed, labels=args.labels)
    print(json.dumps(result, indent=2))
    if "comparison" in result:
        _stderr(format_comparison(result))
    write_json(args.json, result)
    return 0


def cmd_frozen_table(args: argparse.Namespace) -> int:
    set_threads(args.threads)
    peers = dict(key_values(args.peer, "--peer"))
    cfg = FrozenTableConfig(data=args.data, networks=args.networks or shipped_networks(), out=args.out,
                            split=args.split, peers={k: str(v) for k, v in peers.items()},
                            rsc_weights=args.rsc_weights or [None], vfn_weights=args.vfn_weights,
                            strength=args.strength, max_change=args.max_change,
                            det_labels=tuple(args.det_labels.split(",")),
                            resamples=args.resamples, seed=args.seed, limit=args.limit)
    result = FrozenTable(cfg, log=_stderr if not args.quiet else lambda _m: None, progress=not args.quiet).run()
    print((Path(args.out) / "table.md").read_text(), end="")
    print(f"wrote {Path(args.out) / 'table.md'} and table.json ({len(result['networks'])} networks)")
    return 0


def cmd_inspect_rsc(args: argparse.Namespace) -> int:
    set_threads(args.threads)
    tasks = [t for t in args.tasks.split(",") if t]
    weights = task_map(args.task_weights, tasks, "--task-weights")
    adapters = {t: load_task_for(t, weights.get(t)) for t in tasks}
    vfn = load_vfn_or_shipped(args.vfn_weights)
    model = CLDyN(vfn, load_rsc_or_shipped(args.rsc_weights, vfn))
    pairs = load_pairs(args.data, args.split, args.limit)
    if not pairs:
        raise CldynError(f"{args.data}: no pairs in split {args.split!r}")
    result = inspect_rsc(model, adapters, pairs, args.log, progress=not args.quiet)
    print(format_inspection(result))
    write_json(args.json, result)
    return 0


def cmd_experiment(args: argparse.Namespace) -> int:
    set_threads(args.threads)
    ablations, others = named_runs(args.ablation, "--ablation"), named_runs(args.other_rsc, "--other-rsc")
    if set(ablations) & set(others):
        raise CldynError(f"--ablation and --other-rsc share the name {sorted(set(ablations) & set(others))[0]!r}")
    tasks = args.tasks.split(",")
    cfg = ExperimentConfig(data=args.data, out=args.out, split=args.split, tasks=tasks,
                           rsc_weights=args.rsc_weights or [],
                           task_weights=task_map(args.task_weights, tasks, "--task-weights"),
                           ablations=ablations, other_rscs=others, second_detector=args.second_detector,
                           unseen=args.unseen, limit=args.limit, gallery=args.gallery, workers=args.workers,
                           device=args.device, timing_repeats=args.timing_repeats, inspect_pairs=args.inspect_pairs,
                           timing_size=_size(args.timing_size))
    result = Experiment(cfg, log=print, progress=not args.quiet).run()
    print(f"{result['pairs']} pairs; {result['timings']['total_s']:.0f} s; wrote {cfg.out}/report.html, "
          f"{cfg.out}/results.md")
    return 0


def _scored(args: argparse.Namespace, command: str, outputs: list[Path], work: str | Path | None = None
            ) -> tuple[Evaluation, list[Path], list[str], list[str]]:
    """The fusion metrics of ``--fused`` folders, ``--vfn`` and ``--baselines``, with what was skipped printed a
    line each. ``outputs`` that exist are refused (without ``--overwrite``) after the usage checks, before the
    minutes-long scoring."""
    baselines = [b for b in (args.baselines or "").split(",") if b]
    metrics = [m for m in (args.metrics or "").split(",") if m] or None
    fused = [Path(d) for d in args.fused or []]
    names = args.names or [d.name for d in fused]
    data, vfn = getattr(args, "data", None), getattr(args, "vfn", None)  # evaluate has them, report not
    vfns = [None] if vfn == [] else (vfn or [])  # --vfn alone: the shipped VFN
    if not fused and not baselines and not vfns:
        raise CldynError(f"nothing to {command}: give --fused DIR (one or more), --vfn and/or --baselines")
    if bool(data) == bool(args.ir or args.vis):
        raise CldynError("give either --data ROOT [--split SPLIT] or --ir DIR --vis DIR" if hasattr(args, "data")
                         else "give --ir DIR and --vis DIR")
    if vfns and not data:
        raise CldynError("--vfn needs --data ROOT (the pairs to fuse)")
    if not data and not (args.ir and args.vis):
        raise CldynError("--ir and --vis go together")
    refuse_to_replace(outputs, args.overwrite)
    if data:
        ev = evaluate_split(data, None if args.split == "all" else args.split, work, fused, names, vfns,
                            args.convention, baselines, metrics, args.workers, progress=not args.quiet)
    else:
        ev = evaluate_folders(args.ir, args.vis, fused, names=names, convention=args.convention, baselines=baselines,
                              workers=args.workers, progress=not args.quiet, metrics=metrics)
    for p in ev.problems:  # unpaired files: warnings; images that could not be scored: errors
        _stderr(f"cldyn {command}: warning: {p}")
    for method, msgs in ev.failures.items():
        for m in msgs:
            _stderr(f"cldyn {command}: error: [{method}] {m}")
    return ev, fused, names, baselines


def cmd_evaluate(args: argparse.Namespace) -> int:
    outputs = [*(evaluation_outputs(args.out) if args.out else []), *([Path(args.json)] if args.json else []),
               *([report_path(args.report)] if args.report else [])]
    # --vfn fuses the pairs into OUT/fused, or without --out into a folder deleted at the end
    with tempfile.TemporaryDirectory(prefix="cldyn-evaluate-") as scratch:
        ev, fused, names, _ = _scored(args, "evaluate", outputs, args.out or scratch)
        print(f"convention: {args.convention}")
        print(ev.table())
        files = ev.write(Path(args.out), overwrite=args.overwrite) if args.out else []
        if args.json:
            write_json(args.json, ev.to_json())
            files.append(Path(args.json))
        if args.report:  # from the metrics just computed
            files.append(_render(args, ev, fused, names, args.report))
    if files:
        print("wrote " + ", ".join(str(f) for f in files))
    failed = sum(len(v) for v in ev.failures.values())
    if failed:
        _stderr(f"{failed} image(s) could not be scored (listed above)")
    return 1 if failed else 0


def _render(args: argparse.Namespace, ev: Evaluation, fused: list[Path], names: list[str], out: str) -> Path:
    """The HTML report of ``ev``, with sample pairs from the --ir/--vis folders (or --data's) and ``fused``."""
    data = getattr(args, "data", None)
    if data:
        pairs, _ = discover_pairs([data], None if args.split == "all" else args.split)
    else:
        pairs, _ = pair_folders(args.ir, args.vis)
    baselines = [b for b in (args.baselines or "").split(",") if b]
    return render_report(ev, pairs, dict(zip(names, fused, strict=True)), baselines, out, samples=args.samples,
                         convention=args.convention, overwrite=args.overwrite)


def _size(text: str) -> tuple[int, int]:
    """``"480x640"`` -> ``(480, 640)``, or a one-line error."""
    h, sep, w = text.lower().partition("x")
    if not (sep and h.isdigit() and w.isdigit() and int(h) >= 2 and int(w) >= 2):
        raise CldynError(f"--timing-size expects HxW with sides of at least 2, e.g. 480x640, got {text!r}")
    return int(h), int(w)


def cmd_report(args: argparse.Namespace) -> int:
    if args.scores:  # the metrics of an earlier cldyn evaluate --out DIR, not computed again
        if not (args.ir and args.vis):
            raise CldynError("--scores needs --ir DIR and --vis DIR (the pairs shown)")
        refuse_to_replace([report_path(args.out)], args.overwrite)
        ev = Evaluation.read(args.scores)
        fused = [Path(d) for d in args.fused or []]
        names = args.names or [d.name for d in fused]
    else:
        ev, fused, names, _ = _scored(args, "report", [report_path(args.out)])
    out = _render(args, ev, fused, names, args.out)
    print(ev.table())
    print(f"wrote {out}")
    return 1 if any(ev.failures.values()) else 0


def cmd_bench(args: argparse.Namespace) -> int:
    set_threads(args.threads)
    if args.what == "align":
        return bench_align_command(args)
    if args.what == "tasks":
        write_json(args.json, bench_tasks(batch=args.batch_size, size=args.size, repeats=min(args.repeats, 5)))
        return 0
    if args.what == "customise":
        vfn = load_vfn_or_shipped(args.weights)
        adapters = {t: load_task_for(t) for t in ("detection", "segmentation", "saliency")}
        write_json(args.json, bench_customise(vfn, load_rsc_or_shipped(args.rsc_weights, vfn), adapters,
                                              *demo_pair_tensors(), repeats=min(args.repeats, 5)))
        return 0
    if args.what in ("tile", "rsc"):
        res = bench_tile() if args.what == "tile" else \
            bench_rsc(batch=args.batch_size, size=args.size, repeats=min(args.repeats, 5), device=args.device)
        width = 36 if args.what == "tile" else 20
        for k, v in res.items():
            print(f"  {k:{width}s} {v}")
    else:
        res = bench_fuse(load_vfn_or_shipped(args.weights), *demo_pair_tensors(), repeats=args.repeats,
                         compare=not args.no_compare, compile_model=args.compile)
        print("\n".join(res.report()))
        res = res.to_dict()
    if args.json:
        write_json(args.json, res)
        print(f"wrote {args.json}")
    return 0


def _add_scoring_args(s: argparse.ArgumentParser) -> None:
    """Arguments shared by ``evaluate`` and ``report``."""
    s.add_argument("--ir", help="infrared folder")
    s.add_argument("--vis", help="visible folder (paired by file stem)")
    s.add_argument("--fused", nargs="+", action="extend",
                   help="folders of fused images (file stem = pair name); repeat or list several")
    s.add_argument("--names", nargs="+", action="extend",
                   help="method names for the --fused folders (default: folder names)")
    s.add_argument("--baselines", help="comma-separated: ir_only,visible_only,average,max,laplacian,dwt")
    s.add_argument("--convention", choices=("cldyn", "cddfuse"), default="cldyn",
                   help="what is scored and how (see cldyn.evaluation.evaluate)")
    s.add_argument("--metrics", help=f"comma-separated subset (default: all of {','.join(METRIC_KEYS)})")
    s.add_argument("--workers", type=int, default=1, help="processes (one image per process at a time)")
    s.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    s.add_argument("--quiet", action="store_true")


def _add_json_threads_quiet(s: argparse.ArgumentParser) -> None:
    s.add_argument("--json", help="also write the result as JSON")
    s.add_argument("--threads", type=int)
    s.add_argument("--quiet", action="store_true")


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("eval-task", help="evaluate a task network on an image source")
    s.add_argument("--task", required=True)
    s.add_argument("--data", required=True)
    s.add_argument("--split", default="val")
    s.add_argument("--source", default="vfn",
                   help="visible, infrared, average or max (a pixel rule on the luminance), vfn, cldyn "
                        "(task-customised fusion), or a folder of fused images")
    s.add_argument("--labels", help="a label variant beside the default folder, e.g. visible (MSRS: the boxes of what "
                                    "the visible image alone shows)")
    s.add_argument("--rsc-weights", help="RSC checkpoint for --source cldyn (default: the shipped one)")
    s.add_argument("--weights", help="task checkpoint (default: the shipped network)")
    s.add_argument("--vfn-weights", help="VFN checkpoint for --source vfn (default: shipped)")
    s.add_argument("--against", help="a second source (same choices), scored on the same images and compared by a "
                                     "paired bootstrap over the images")
    s.add_argument("--metric", help="metric of the comparison (default: map50_95, miou, max_f for detection, "
                                    "segmentation, saliency)")
    s.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default: 1000)")
    s.add_argument("--seed", type=int, default=0, help="seed of the resampling (default: 0)")
    _add_json_threads_quiet(s)
    s.set_defaults(func=cmd_eval_task)

    s = sub.add_parser("frozen-table", help="score frozen task networks on every input: each camera, average, max, "
                                            "VFN, peers' fusion and CLDyN customised for the network")
    s.add_argument("--data", required=True, help="dataset root with labels (e.g. ../shared/data/msrs)")
    s.add_argument("--networks", nargs="+", action="extend",
                   help="shipped network names or checkpoints (default: every shipped one)")
    s.add_argument("--split", default="val")
    s.add_argument("--peer", nargs="*", action="extend", metavar="NAME=FOLDER",
                   help="a peer's fused images for the same pairs, e.g. "
                        "seafusion=../shared/data/peers/seafusion/msrs-val")
    s.add_argument("--rsc-weights", nargs="+", action="extend",
                   help="RSC checkpoints, one CLDyN row each; NAME=FILE groups rows (seeds of one method: mean and "
                        "std in the table; default: the shipped RSC)")
    s.add_argument("--vfn-weights", help="VFN checkpoint (default: shipped)")
    s.add_argument("--strength", type=strength_arg, default=DEFAULT_STRENGTH,
                   help="the customisation's strength, 0..1, or auto (per image, by the network's confidence)")
    s.add_argument("--max-change", type=float, default=DEFAULT_MAX_CHANGE, metavar="LEVELS",
                   help="the most the full customisation moves an image, mean grey levels (0: no limit)")
    s.add_argument("--det-labels", default="fusion,visible", help="detection label variants to score against")
    s.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples")
    s.add_argument("--seed", type=int, default=0, help="seed of the resampling")
    s.add_argument("--limit", type=int, help="the first N pairs of the split")
    s.add_argument("--out", default="frozen-table", help="folder for table.md, table.json and the prediction cache")
    s.add_argument("--threads", type=int)
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_frozen_table)

    s = sub.add_parser("inspect-rsc", help="does the RSC customise for the task? kernel choices, task embeddings "
                                           "and customisation differences per A2SI block")
    s.add_argument("--data", required=True, help="dataset root")
    s.add_argument("--split", default="val")
    s.add_argument("--limit", type=int, default=6, help="the first N pairs of the split (by name)")
    s.add_argument("--tasks", default="detection,segmentation,saliency")
    s.add_argument("--task-weights", nargs="*", action="extend",
                   help="TASK=FILE task networks (default: the shipped ones)")
    s.add_argument("--rsc-weights", help="RSC checkpoint (default: the shipped one)")
    s.add_argument("--vfn-weights", help="VFN checkpoint (default: the shipped one)")
    s.add_argument("--log", help="the train-rsc log.csv, for the gradient share of the task pathway")
    _add_json_threads_quiet(s)
    s.set_defaults(func=cmd_inspect_rsc)

    e = ExperimentConfig(data="")
    s = sub.add_parser("experiment", help="fusion and task tables, efficiency, gallery and an HTML report in one run")
    s.add_argument("--data", required=True, help="labelled dataset root (e.g. ../shared/data/msrs)")
    s.add_argument("--split", default=e.split)
    s.add_argument("--out", default=e.out)
    s.add_argument("--tasks", default=",".join(e.tasks))
    s.add_argument("--rsc-weights", nargs="+", action="extend",
                   help="RSC checkpoints (several: runs with different seeds)")
    s.add_argument("--task-weights", nargs="*", action="extend", metavar="TASK=FILE",
                   help="task networks (default: shipped)")
    s.add_argument("--ablation", nargs="*", action="extend", metavar="NAME=FILE[,FILE]",
                   help="RSC weights trained with an ablation switch, e.g. no_penalty=runs/abl/best.safetensors")
    s.add_argument("--other-rsc", nargs="*", action="extend", metavar="NAME=FILE[,FILE]",
                   help="RSC weights of other runs of the full method, shown as their own rows (e.g. the shipped "
                        "weights beside seeds trained with another protocol)")
    s.add_argument("--second-detector", help="a detection network the RSC never saw (generalisation row)")
    s.add_argument("--unseen", metavar="DIR", help="pairs from a camera no network saw (e.g. "
                   "../shared/data/m3fd-samples): fused, scored against VFN and shown side by side (artefacts)")
    s.add_argument("--limit", type=int, help="only the first N pairs of the split")
    s.add_argument("--gallery", type=int, default=e.gallery, help="pairs in the gallery")
    s.add_argument("--workers", type=int, default=e.workers, help="processes for the fusion metrics")
    s.add_argument("--timing-size", default="x".join(map(str, e.timing_size)), metavar="HxW",
                   help="the random pair the efficiency figures are measured on (height x width)")
    s.add_argument("--timing-repeats", type=int, default=e.timing_repeats,
                   help="timed runs per efficiency figure (median)")
    s.add_argument("--inspect-pairs", type=int, default=e.inspect_pairs,
                   help="pairs on which each RSC run is inspected (as cldyn inspect-rsc)")
    add_run_args(s, device=e.device, device_help="cpu (default), cuda, cuda:N or auto")
    s.set_defaults(func=cmd_experiment)

    s = sub.add_parser("evaluate", help="fusion-quality metrics of fused folders and classical baselines",
                       description="Score fused folders against --ir/--vis, or the pairs of a dataset --split (with "
                                   "--vfn fused here): see cldyn.evaluation.compare for the comparison with a peer.")
    _add_scoring_args(s)
    s.add_argument("--data", help="dataset root instead of --ir/--vis (e.g. ../shared/data/msrs)")
    s.add_argument("--split", default="all", help="with --data: score only the pairs of ROOT/splits/SPLIT.txt")
    s.add_argument("--vfn", nargs="*", action="extend", metavar="FILE",
                   help="with --data: fuse the pairs with the shipped VFN (no FILE) or these checkpoints, and score "
                        "them as methods vfn / vfn:<run>")
    s.add_argument("--out", help="write metrics.csv/.json/.md and per_image.json (and --vfn's fused images) into this "
                                 "folder (default: the table is printed, nothing is written)")
    s.add_argument("--json", help="also write the summary JSON here")
    s.add_argument("--report", metavar="HTML", help="also write the HTML report of these metrics (as cldyn report)")
    s.add_argument("--samples", type=int, default=6, help="with --report: pairs shown side by side")
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("report", help="self-contained HTML page: sample pairs side by side, metric table, charts")
    _add_scoring_args(s)
    s.add_argument("--samples", type=int, default=6, help="pairs shown side by side")
    s.add_argument("--scores", metavar="DIR", help="the --out folder of a cldyn evaluate run: its metrics are shown, "
                                                   "not computed again")
    s.add_argument("--out", default="cldyn-report.html", help="the HTML file (.html added when NAME has no extension)")
    s.set_defaults(func=cmd_report)

    s = sub.add_parser("bench", help="speed benchmarks")
    s.add_argument("what", choices=("fuse", "rsc", "tile", "tasks", "customise", "align"),
                   help="fuse: ms per 640x480 pair against the FLOP floor; rsc: A2SI vectorised vs loop, one "
                        "closed-loop step, peak memory; tile: an 8000x6000 pair in tiles, peak memory; tasks: "
                        "forward+backward of each task network; customise: task-customised fusion of a 640x480 "
                        "pair with and without the task network, against the VFN; align: registration of aligned "
                        "pairs given random known warps (--set), and of unrelated pairs")
    s.add_argument("--batch-size", type=int, default=4, help="rsc: batch")
    s.add_argument("--size", type=int, default=320, help="rsc: image side")
    s.add_argument("--json", help="also write the results as JSON")
    s.add_argument("--weights", help="VFN checkpoint (default: the shipped weights)")
    s.add_argument("--rsc-weights", help="customise: RSC checkpoint (default: the shipped weights)")
    s.add_argument("--repeats", type=int, default=10)
    s.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    s.add_argument("--no-compare", action="store_true", help="skip the plain eager model")
    s.add_argument("--compile", action="store_true", help="also time torch.compile (slow to compile)")
    s.add_argument("--device", default="cpu", help="rsc: cpu (default), cuda, cuda:N or auto")
    s.add_argument("--set", action="append", metavar="NAME=ROOT[:SPLIT][:WARPS]",
                   help="align: a dataset of aligned pairs and the random warps per pair (repeat for several)")
    s.add_argument("--model", choices=ALIGN_MODELS[1:], default=DEFAULT_ALIGN_MODEL, help="align: the warp model")
    s.add_argument("--seed", type=int, default=0, help="align: the seed of the random warps")
    s.add_argument("--unrelated", type=int, default=50, help="align: unrelated pairs that must be refused")
    s.add_argument("--limit", type=int, help="align: the first N pairs of each set")
    s.add_argument("--no-fusion", action="store_true", help="align: skip the fusion quality and time")
    s.add_argument("--quiet", action="store_true", help="align: no progress bar")
    s.set_defaults(func=cmd_bench)
