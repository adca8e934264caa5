"""The ``cldyn`` command line: a thin layer over the Python API. Parsers are built only when ``main`` runs."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence

from cldyn.errors import CldynError


def _set_threads(n: int | None) -> None:
    import torch

    if n:
        torch.set_num_threads(n)


def cmd_info(args: argparse.Namespace) -> int:
    import torch

    from cldyn import __version__
    from cldyn.checkpoint import shipped_weights_dir
    from cldyn.vfn import count_parameters, create_vfn

    model = create_vfn("vfn", pretrained=args.weights is None) if args.weights is None else None
    if args.weights is not None:
        from cldyn.checkpoint import load_vfn

        model = load_vfn(args.weights)
    print(f"cldyn {__version__}  torch {torch.__version__}  threads {torch.get_num_threads()}  "
          f"cuda {'yes' if torch.cuda.is_available() else 'no'}")
    print(f"VFN config: {model.cfg.to_dict()}")
    print(f"VFN parameters: {count_parameters(model):,}")
    print(f"weights: {args.weights or shipped_weights_dir() / 'vfn.safetensors'}")
    return 0


def cmd_train_vfn(args: argparse.Namespace) -> int:
    from cldyn.data import AugmentConfig
    from cldyn.train_vfn import TrainVFNConfig, train_vfn
    from cldyn.vfn import VFNConfig

    _set_threads(args.threads)
    cfg = TrainVFNConfig(
        data=args.data, out_dir=args.out, split=None if args.split == "all" else args.split, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, seed=args.seed, checkpoint_every=args.checkpoint_every,
        augment=AugmentConfig(crop_size=args.crop), model=VFNConfig(num_blocks=args.num_blocks),
        max_steps=args.max_steps, device=args.device,
    )
    return _train(args, train_vfn, cfg, "checkpoint")


def _train(args: argparse.Namespace, train, cfg, what: str) -> int:
    """Run a training function in the torchrun process group (if any); rank 0 prints where the result is."""
    with _process_group(args.device) as ctx:
        path = train(cfg, resume=args.resume, progress=not args.quiet, dist_ctx=ctx)
    if ctx.is_main:
        print(f"{what}: {path}")
    return 0


@contextlib.contextmanager
def _process_group(device: str):
    """The torchrun process group when launched by torchrun (gloo, or NCCL on CUDA), else a single-process context."""
    from cldyn.distributed import init_distributed, shutdown_distributed

    ctx = init_distributed(device)
    try:
        yield ctx
    finally:
        shutdown_distributed(ctx)


def _load_model(weights: str | None):
    from cldyn.checkpoint import load_pretrained_vfn, load_vfn

    return load_pretrained_vfn() if weights is None else load_vfn(weights)


def _collect_pairs(args: argparse.Namespace):
    """Pairs (and per-file problems) from ``IR VIS`` folders, ``--ir/--vis``, or one dataset root."""
    from pathlib import Path

    from cldyn.io import find_layout, pair_folders

    inputs = list(args.inputs)
    if args.ir or args.vis:
        if not (args.ir and args.vis) or inputs:
            raise CldynError("give --ir DIR and --vis DIR together, and no positional inputs with them")
        return pair_folders(args.ir, args.vis)
    if len(inputs) == 1:
        return pair_folders(*find_layout(inputs[0]))
    if len(inputs) == 2 and all(Path(p).is_dir() for p in inputs):
        return pair_folders(*inputs)
    raise CldynError("expected IR VIS files, IR_DIR VIS_DIR, a dataset ROOT, or --ir DIR --vis DIR")


def _task_and_rsc(args: argparse.Namespace, vfn):
    """(adapter, rsc) for ``--task``, or (None, None) for plain VFN fusion; the RSC must fit ``vfn``."""
    if args.task in (None, "none"):
        return None, None
    from cldyn.closed_loop import load_rsc
    from cldyn.tasks import load_pretrained_task, load_task, task_class

    if args.task_weights:
        adapter = load_task(args.task_weights)
    elif ":" in args.task:
        raise CldynError(f"--task {args.task}: a user adapter needs --task-weights FILE")
    else:
        task_class(args.task)  # a clear error for unknown names or a missing optional extra
        adapter = load_pretrained_task(args.task)
    if args.rsc_weights:
        rsc_path = args.rsc_weights
        rsc = load_rsc(rsc_path)
    else:
        import json

        from cldyn.checkpoint import shipped_weights_dir

        wdir = shipped_weights_dir()
        manifest = json.loads((wdir / "manifest.json").read_text()) if (wdir / "manifest.json").is_file() else {}
        if "rsc.safetensors" not in manifest:
            raise CldynError("no shipped RSC weights in this cldyn release; pass --rsc-weights FILE "
                             "(trained with cldyn train-rsc)")
        rsc_path = wdir / "rsc.safetensors"
        rsc = load_rsc(rsc_path, manifest["rsc.safetensors"]["sha256"])
    if rsc.cfg.num_stages != vfn.num_stages - 1 or rsc.cfg.a2si.channels != vfn.cfg.width:
        from cldyn.errors import CheckpointError

        raise CheckpointError(rsc_path, f"RSC for a VFN of {rsc.cfg.num_stages + 1} blocks, width "
                              f"{rsc.cfg.a2si.channels}, does not fit the VFN in use ({vfn.num_stages} blocks, width "
                              f"{vfn.cfg.width})")
    return adapter, rsc


def cmd_fuse(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cldyn.fuse import Fuser

    _set_threads(args.threads)
    vfn = _load_model(args.weights)
    task, rsc = _task_and_rsc(args, vfn)
    onnx = None
    if args.backend == "onnxruntime":
        if not args.onnx:
            raise CldynError("--backend onnxruntime needs --onnx FILE (write one with: cldyn export -o FILE)")
        onnx = args.onnx
    bits = "auto" if args.bits == "auto" else int(args.bits)
    inputs = [Path(p) for p in args.inputs]
    single = len(inputs) == 2 and not args.ir and not any(p.is_dir() for p in inputs)
    if single:
        fuser = Fuser(vfn, device=args.device, workers=args.workers, task=task, rsc=rsc,
                      onnx=onnx, tile=args.tile, overlap=args.overlap)
        out = fuser.fuse_files(inputs[0], inputs[1], args.output, bits=bits, overwrite=args.overwrite)
        print(f"wrote {out}")
        return 0
    pairs, problems = _collect_pairs(args)
    out_dir = Path(args.output)
    if out_dir.exists() and not out_dir.is_dir():
        raise CldynError(f"{out_dir}: exists and is not a folder; folder inputs need an output folder")
    fuser = Fuser(vfn, device=args.device, batch_size=args.batch_size, workers=args.workers,
                  task=task, rsc=rsc, onnx=onnx, tile=args.tile, overlap=args.overlap)
    report = fuser.fuse_pairs(pairs, out_dir, bits=bits, overwrite=args.overwrite, progress=not args.quiet)
    report.errors[:0] = problems
    for err in report.errors:
        print(f"cldyn fuse: error: {err}", file=sys.stderr)
    print(f"{report.summary().split(' (first')[0]} -> {out_dir}")
    return 0 if report.ok else 1


def cmd_demo(args: argparse.Namespace) -> int:
    from cldyn.demo import run_demo

    _set_threads(args.threads)
    sheet = run_demo(args.out, device=args.device, overwrite=args.overwrite, progress=not args.quiet)
    print(f"side-by-side (IR | visible | fused): {sheet}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    import torch

    from cldyn.bench import bench_fuse
    from cldyn.demo import demo_pairs
    from cldyn.io import atomic_write_bytes, read_image, to_single_channel

    _set_threads(args.threads)
    if args.what == "tasks":
        from cldyn.bench import bench_tasks

        res = bench_tasks(batch=args.batch_size, size=args.size, repeats=min(args.repeats, 5))
        if args.json:
            atomic_write_bytes(Path(args.json), json.dumps(res, indent=2).encode())
        return 0
    if args.what == "tile":
        from cldyn.bench import bench_tile

        res = bench_tile()
        for k, v in res.items():
            print(f"  {k:36s} {v}")
        if args.json:
            atomic_write_bytes(Path(args.json), json.dumps(res, indent=2).encode())
        return 0
    if args.what == "rsc":
        from cldyn.bench import bench_rsc

        res = bench_rsc(batch=args.batch_size, size=args.size, repeats=min(args.repeats, 5), device=args.device)
        for k, v in res.items():
            print(f"  {k:20s} {v}")
        if args.json:
            atomic_write_bytes(Path(args.json), json.dumps(res, indent=2).encode())
            print(f"wrote {args.json}")
        return 0
    model = _load_model(args.weights)
    pair = next(p for p in demo_pairs() if p.name.startswith("msrs"))  # a real 640x480 pair
    ir = torch.from_numpy(to_single_channel(read_image(pair.ir)))[None, None]
    vis = torch.from_numpy(read_image(pair.vis).pixels).permute(2, 0, 1)[None].contiguous()
    res = bench_fuse(model, ir, vis, repeats=args.repeats, compare=not args.no_compare,
                     compile_model=args.compile)
    print(f"VFN fuse {res.width}x{res.height} on CPU, {res.threads} threads, torch {res.torch}")
    print(f"  ms_per_pair          {res.ms_per_pair:9.1f}   (median of {res.repeats}; BN folded, channels-last)")
    print(f"  gflops               {res.gflops:9.2f}   (FlopCounterMode, one forward)")
    print(f"  achieved GFLOP/s     {res.achieved_gflops_per_s:9.1f}")
    print(f"  matmul GFLOP/s       {res.matmul_gflops_per_s:9.1f}   (fp32 2048x2048, best of 5)")
    print(f"  floor_ms             {res.floor_ms:9.1f}")
    print(f"  floor_ratio          {res.floor_ratio:9.2f}   (target <= 1.25)")
    for k, v in res.variants_ms.items():
        print(f"  {k:20s} {v:9.1f}" + ("" if k.endswith("seconds") else f"   ({v / res.ms_per_pair:.2f}x default)"))
    if res.conv_only_ms is not None:
        print(f"  conv_only_ms         {res.conv_only_ms:9.1f}   (every conv alone, best of 5; "
              f"conv_only_ratio {res.conv_only_ratio:.2f})")
        print("    in->out k dil  calls  ms each  GFLOP/s")
        for r in res.conv_shapes:
            shape = f"{r['in_channels']:2d}->{r['out_channels']:<3d} {r['kernel']} {r['dilation']:3d}"
            print(f"    {shape} {r['calls']:6d} {r['ms_each']:8.2f} {r['gflops_per_s']:8.1f}")
    if res.width_probe_ms:
        probe = ", ".join(f"{k} {v:.2f} ms" for k, v in res.width_probe_ms.items())
        print(f"  width probe          3x3 dilation-2 conv alone: {probe}")
    if args.json:
        atomic_write_bytes(Path(args.json), json.dumps(res.to_dict(), indent=2).encode())
        print(f"wrote {args.json}")
    return 0


def _adapter_config(pairs: list[str] | None) -> dict:
    import json

    cfg = {}
    for item in pairs or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise CldynError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            cfg[key] = json.loads(value)
        except json.JSONDecodeError:
            cfg[key] = value
    return cfg


def cmd_train_task(args: argparse.Namespace) -> int:
    from cldyn.train_task import TrainTaskConfig, train_task

    _set_threads(args.threads)
    cfg = TrainTaskConfig(
        task=args.task, data=args.data, out_dir=args.out, input=args.input, train_split=args.split,
        val_split=args.val_split, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, crop=args.crop,
        seed=args.seed, adapter=_adapter_config(args.set), vfn_weights=args.vfn_weights, max_steps=args.max_steps,
        val_every=args.val_every, init=args.init, device=args.device,
    )
    return _train(args, train_task, cfg, "best checkpoint")


def cmd_eval_task(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from cldyn.io import atomic_write_bytes
    from cldyn.tasks import load_pretrained_task, load_task
    from cldyn.tasks.data import image_source, load_task_bank
    from cldyn.train_task import evaluate_bank

    _set_threads(args.threads)
    adapter = (load_pretrained_task(args.task) if args.weights is None else load_task(args.weights)).freeze()
    if adapter.task != args.task:
        raise CldynError(f"{args.weights}: holds a {adapter.task!r} network, not {args.task!r}")
    def note(msg: str) -> None:
        print(msg, file=sys.stderr)

    if args.source == "cldyn":  # task-customised fusion: base fusion -> task features -> compensated fusion
        from cldyn.closed_loop import evaluate_cldyn
        from cldyn.rsc import CLDyN

        args.task_weights = args.weights
        vfn = _load_model(args.vfn_weights)
        _, rsc = _task_and_rsc(args, vfn)
        bank = load_task_bank(args.task, args.data, args.split, image_source("pair"), adapter.config, note)
        metrics = evaluate_cldyn(CLDyN(vfn, rsc), adapter, bank)
    else:
        bank = load_task_bank(args.task, args.data, args.split, image_source(args.source, args.vfn_weights),
                              adapter.config, note)
        metrics = evaluate_bank(adapter, bank, progress=not args.quiet)
    result = {"task": args.task, "source": args.source, "n": len(bank), "metrics": metrics}
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        atomic_write_bytes(Path(args.json), text.encode())
    return 0


def _task_map(items: list[str], tasks: list[str], what: str) -> dict[str, str]:
    """``TASK=VALUE`` items (or one bare VALUE for every task) -> {task: value}."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if sep:
            if key not in tasks:
                raise CldynError(f"{what} {item!r} names task {key!r}, which is not in --tasks {','.join(tasks)}")
            out[key] = value
        else:
            out.update({t: item for t in tasks if t not in out})
    return out


def cmd_train_rsc(args: argparse.Namespace) -> int:
    from cldyn.closed_loop import TrainRSCConfig, train_rsc

    _set_threads(args.threads)
    tasks = [t for t in args.tasks.split(",") if t]
    cfg = TrainRSCConfig(
        tasks=tasks, data=_task_map(args.data, tasks, "--data"),
        task_weights=_task_map(args.task_weights, tasks, "--task-weights"), vfn_weights=args.vfn_weights,
        out_dir=args.out, steps=args.steps, batch_size=args.batch_size, crop=args.crop, lr=args.lr,
        aggregate=args.aggregate, penalty=0.0 if args.no_penalty else args.penalty,
        closed_loop=not args.no_closed_loop, selection=args.selection, seed=args.seed,
        checkpoint_every=args.checkpoint_every, val_every=args.val_every, val_limit=args.val_limit,
        device=args.device,
    )
    return _train(args, train_rsc, cfg, "best checkpoint")


def cmd_experiment(args: argparse.Namespace) -> int:
    from cldyn.experiment import Experiment, ExperimentConfig

    _set_threads(args.threads)
    def runs(specs: list[str] | None, flag: str) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for spec in specs or []:
            name, sep, files = spec.partition("=")
            if not sep or not files:
                raise CldynError(f"{flag} {spec!r}: expected NAME=FILE[,FILE...]")
            out[name] = files.split(",")
        return out

    ablations, others = runs(args.ablation, "--ablation"), runs(args.other_rsc, "--other-rsc")
    if set(ablations) & set(others):
        raise CldynError(f"--ablation and --other-rsc share the name {sorted(set(ablations) & set(others))[0]!r}")
    tasks = args.tasks.split(",")
    cfg = ExperimentConfig(data=args.data, out=args.out, split=args.split, tasks=tasks,
                           rsc_weights=args.rsc_weights or [],
                           task_weights=_task_map(args.task_weights, tasks, "--task-weights"),
                           ablations=ablations, other_rscs=others, second_detector=args.second_detector,
                           limit=args.limit,
                           gallery=args.gallery, workers=args.workers, device=args.device,
                           timing_repeats=args.timing_repeats)
    result = Experiment(cfg, log=print, progress=not args.quiet).run()
    print(f"{result['pairs']} pairs; {result['timings']['total_s']:.0f} s; wrote {cfg.out}/report.html, "
          f"{cfg.out}/results.md")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from cldyn.evaluate import evaluate_folders
    from cldyn.io import atomic_write_bytes

    baselines = [b for b in (args.baselines or "").split(",") if b]
    if not args.fused and not baselines:
        raise CldynError("nothing to evaluate: give --fused DIR (one or more) and/or --baselines")
    ev = evaluate_folders(args.ir, args.vis, args.fused or [], names=args.names, convention=args.convention,
                          baselines=baselines, workers=args.workers, progress=not args.quiet)
    _print_problems("evaluate", ev)
    print(f"convention: {args.convention}")
    print(ev.table())
    files = ev.write(Path(args.out))
    if args.json:
        atomic_write_bytes(Path(args.json), json.dumps(ev.to_json(), indent=2).encode())
        files.append(Path(args.json))
    print("wrote " + ", ".join(str(f) for f in files))
    failed = sum(len(v) for v in ev.failures.values())
    if failed:
        print(f"{failed} image(s) could not be scored (listed above)", file=sys.stderr)
    return 1 if failed else 0


def _print_problems(command: str, ev) -> None:
    """What evaluate_folders skipped (unpaired files: warnings) and could not score (errors), a line each."""
    for p in ev.problems:
        print(f"cldyn {command}: warning: {p}", file=sys.stderr)
    for method, msgs in ev.failures.items():
        for m in msgs:
            print(f"cldyn {command}: error: [{method}] {m}", file=sys.stderr)


def cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cldyn.evaluate import evaluate_folders
    from cldyn.io import pair_folders
    from cldyn.report import render_report

    baselines = [b for b in (args.baselines or "").split(",") if b]
    fused = [Path(d) for d in args.fused or []]
    names = args.names or [d.name for d in fused]
    if not fused and not baselines:
        raise CldynError("nothing to report: give --fused DIR (one or more) and/or --baselines")
    ev = evaluate_folders(args.ir, args.vis, fused, names=names, convention=args.convention, baselines=baselines,
                          workers=args.workers, progress=not args.quiet)
    _print_problems("report", ev)
    pairs, _ = pair_folders(args.ir, args.vis)
    out = render_report(ev, pairs, dict(zip(names, fused, strict=True)), baselines, args.out, samples=args.samples,
                        convention=args.convention)
    print(ev.table())
    print(f"wrote {out}")
    return 1 if any(ev.failures.values()) else 0


def cmd_export(args: argparse.Namespace) -> int:
    from cldyn.export import export_cldyn_onnx, export_vfn_onnx

    vfn = _load_model(args.weights)
    task, rsc = _task_and_rsc(args, vfn)
    if task is None:
        out = export_vfn_onnx(vfn, args.output, opset=args.opset)
        print(f"wrote {out} (inputs ir, vis_y: (B, 1, H, W) in [0, 1]; output fused_y; H, W >= 2)")
    else:
        out = export_cldyn_onnx(vfn, rsc, task, args.output, opset=args.opset)
        print(f"wrote {out} (CLDyN customised for {task.name}; inputs ir (B, 1, H, W), vis (B, 3, H, W) RGB in "
              "[0, 1]; output fused_y; H, W >= 2)")
    return 0


def _add_scoring_args(s: argparse.ArgumentParser) -> None:
    """Arguments shared by ``evaluate`` and ``report``."""
    s.add_argument("--ir", required=True, help="infrared folder")
    s.add_argument("--vis", required=True, help="visible folder (paired by file stem)")
    s.add_argument("--fused", nargs="+", action="extend",
                   help="folders of fused images (file stem = pair name); repeat or list several")
    s.add_argument("--names", nargs="+", action="extend",
                   help="method names for the --fused folders (default: folder names)")
    s.add_argument("--baselines", help="comma-separated: ir_only,visible_only,average,max,laplacian,dwt")
    s.add_argument("--convention", choices=("cldyn", "cddfuse"), default="cldyn",
                   help="what is scored and how (see cldyn.evaluate)")
    s.add_argument("--workers", type=int, default=1, help="processes (one image per process at a time)")
    s.add_argument("--quiet", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cldyn", description="CLDyN infrared-visible image fusion")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("info", help="print version, model configuration and parameter count")
    s.add_argument("--weights", help="a VFN checkpoint (default: the shipped weights)")
    s.set_defaults(func=cmd_info)

    s = sub.add_parser("train-vfn", help="stage-1 training of the visual fusion network")
    s.add_argument("--data", nargs="+", required=True, help="dataset roots (known layouts, e.g. ir/ + vi/)")
    s.add_argument("--out", default="runs/vfn", help="output folder for checkpoints and loss curves")
    s.add_argument("--split", default="train", help="use ROOT/splits/SPLIT.txt where present; 'all' for every pair")
    s.add_argument("--epochs", type=int, default=100)
    s.add_argument("--batch-size", type=int, default=16)
    s.add_argument("--lr", type=float, default=1e-3)
    s.add_argument("--crop", type=int, default=128, help="square training crop side")
    s.add_argument("--num-blocks", type=int, default=4)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--checkpoint-every", type=int, default=50, help="steps between checkpoints")
    s.add_argument("--max-steps", type=int, help="stop after this many steps")
    s.add_argument("--resume", action="store_true", help="continue from OUT/last.safetensors")
    s.add_argument("--threads", type=int, help="torch CPU threads")
    s.add_argument("--device", default="cpu",
                   help="cpu (default, reproducible), cuda, cuda:N or auto; under torchrun each process its own GPU")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_train_vfn)

    s = sub.add_parser("train-task", help="train a downstream task network (on VFN-fused images by default)")
    s.add_argument("--task", required=True, help="detection, segmentation, saliency or module:Class")
    s.add_argument("--data", required=True, help="dataset root with labels (e.g. ../shared/data/msrs)")
    s.add_argument("--input", default="fused", help="fused (shipped VFN), visible, infrared, or a folder of images")
    s.add_argument("--out", default="runs/task")
    s.add_argument("--split", default="train")
    s.add_argument("--val-split", default="val")
    s.add_argument("--epochs", type=int, default=60)
    s.add_argument("--batch-size", type=int, default=8)
    s.add_argument("--lr", type=float, default=1e-3)
    s.add_argument("--crop", type=int, default=320)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--set", nargs="*", metavar="KEY=VALUE", help="adapter config (JSON values), e.g. size=b0")
    s.add_argument("--vfn-weights", help="VFN checkpoint for --input fused (default: shipped)")
    s.add_argument("--max-steps", type=int)
    s.add_argument("--val-every", type=int, default=1, help="epochs between validations")
    s.add_argument("--init", help="start from these task weights with a fresh optimiser (warm start)")
    s.add_argument("--resume", action="store_true")
    s.add_argument("--threads", type=int)
    s.add_argument("--device", default="cpu",
                   help="cpu (default, reproducible), cuda, cuda:N or auto; under torchrun each process its own GPU")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_train_task)

    s = sub.add_parser("eval-task", help="evaluate a task network on an image source")
    s.add_argument("--task", required=True)
    s.add_argument("--data", required=True)
    s.add_argument("--split", default="val")
    s.add_argument("--source", default="vfn",
                   help="visible, infrared, vfn, cldyn (task-customised fusion, needs RSC weights), or a folder "
                        "of fused images")
    s.add_argument("--rsc-weights", help="RSC checkpoint for --source cldyn (default: the shipped one)")
    s.add_argument("--weights", help="task checkpoint (default: the shipped network)")
    s.add_argument("--vfn-weights", help="VFN checkpoint for --source vfn (default: shipped)")
    s.add_argument("--json", help="also write the result as JSON")
    s.add_argument("--threads", type=int)
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_eval_task)

    s = sub.add_parser("train-rsc", help="closed-loop training of the RSC module with frozen VFN and task networks")
    s.add_argument("--tasks", default="detection,segmentation,saliency", help="comma-separated task names")
    s.add_argument("--data", nargs="+", required=True, metavar="[TASK=]ROOT",
                   help="one dataset root for all tasks, or TASK=ROOT per task (one data stream per task)")
    s.add_argument("--task-weights", nargs="*", metavar="TASK=FILE", help="task networks (default: shipped)")
    s.add_argument("--vfn-weights", help="VFN checkpoint (default: shipped)")
    s.add_argument("--out", default="runs/rsc")
    s.add_argument("--steps", type=int, default=2000)
    s.add_argument("--batch-size", type=int, default=4)
    s.add_argument("--crop", type=int, default=320)
    s.add_argument("--lr", type=float, default=0.01)
    s.add_argument("--aggregate", choices=("cagrad", "mean", "pcgrad"), default="cagrad")
    s.add_argument("--penalty", type=float, default=5.0, help="reward-penalty weight")
    s.add_argument("--no-penalty", action="store_true", help="ablation: plain task loss")
    s.add_argument("--no-closed-loop", action="store_true", help="ablation: task features replaced by zeros")
    s.add_argument("--selection", choices=("trainable", "upstream"), default="trainable")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--checkpoint-every", type=int, default=50)
    s.add_argument("--val-every", type=int, default=500)
    s.add_argument("--val-limit", type=int, help="validate on the first N val images per task")
    s.add_argument("--resume", action="store_true")
    s.add_argument("--threads", type=int)
    s.add_argument("--device", default="cpu",
                   help="cpu (default, reproducible), cuda, cuda:N or auto; under torchrun each process its own GPU")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_train_rsc)

    s = sub.add_parser("experiment", help="fusion and task tables, efficiency, gallery and an HTML report in one run")
    s.add_argument("--data", required=True, help="labelled dataset root (e.g. ../shared/data/msrs)")
    s.add_argument("--split", default="val")
    s.add_argument("--out", default="cldyn-experiment")
    s.add_argument("--tasks", default="detection,segmentation,saliency")
    s.add_argument("--rsc-weights", nargs="+", help="RSC checkpoints (several: runs with different seeds)")
    s.add_argument("--task-weights", nargs="*", metavar="TASK=FILE", help="task networks (default: shipped)")
    s.add_argument("--ablation", nargs="*", metavar="NAME=FILE[,FILE]",
                   help="RSC weights trained with an ablation switch, e.g. no_penalty=runs/abl/best.safetensors")
    s.add_argument("--other-rsc", nargs="*", metavar="NAME=FILE[,FILE]",
                   help="RSC weights of other runs of the full method, shown as their own rows (e.g. the shipped "
                        "weights beside seeds trained with another protocol)")
    s.add_argument("--second-detector", help="a detection network the RSC never saw (generalisation row)")
    s.add_argument("--limit", type=int, help="only the first N pairs of the split")
    s.add_argument("--gallery", type=int, default=8, help="pairs in the gallery")
    s.add_argument("--workers", type=int, default=1, help="processes for the fusion metrics")
    s.add_argument("--timing-repeats", type=int, default=3, help="timed runs per efficiency figure (median)")
    s.add_argument("--device", default="cpu")
    s.add_argument("--threads", type=int)
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_experiment)

    s = sub.add_parser("evaluate", help="fusion-quality metrics of fused folders and classical baselines")
    _add_scoring_args(s)
    s.add_argument("--out", default="cldyn-evaluation", help="folder for metrics.csv/.json/.md and per_image.json")
    s.add_argument("--json", help="also write the summary JSON here")
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("report", help="self-contained HTML page: sample pairs side by side, metric table, charts")
    _add_scoring_args(s)
    s.add_argument("--samples", type=int, default=6, help="pairs shown side by side")
    s.add_argument("--out", default="cldyn-report.html")
    s.set_defaults(func=cmd_report)

    s = sub.add_parser("export", help="export the fusion network to ONNX (dynamic batch, height, width)")
    s.add_argument("--task", default="none",
                   help="none: the VFN alone; detection|segmentation|saliency|module:Class: CLDyN with that task "
                        "network inside the graph")
    s.add_argument("--task-weights", help="task network checkpoint (default: the shipped one)")
    s.add_argument("--rsc-weights", help="RSC checkpoint from train-rsc (default: the shipped one)")
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
    s.add_argument("--task", default="none",
                   help="customise the fusion for a task: none (plain VFN), detection, segmentation, saliency, "
                        "or module:Class")
    s.add_argument("--task-weights", help="task network checkpoint (default: the shipped one)")
    s.add_argument("--rsc-weights", help="RSC checkpoint from train-rsc (default: the shipped one)")
    s.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch")
    s.add_argument("--tile", type=int, help="fuse images larger than this in overlapping tiles (bounded memory)")
    s.add_argument("--overlap", type=int, default=64, help="tile overlap in pixels, blended linearly")
    s.add_argument("--onnx", help="the .onnx file for --backend onnxruntime (from cldyn export)")
    s.add_argument("--batch-size", type=int, default=1, help="pairs per forward pass (same-size pairs)")
    s.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    s.add_argument("--threads", type=int, help="torch CPU threads")
    s.add_argument("--workers", type=int, default=2, help="threads decoding/encoding images")
    s.add_argument("--bits", choices=("auto", "8", "16"), default="auto",
                   help="output bit depth; auto = 16 when an input has more than 8 bits")
    s.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_fuse)

    s = sub.add_parser("demo", help="fuse the bundled sample pairs and write a side-by-side PNG")
    s.add_argument("--out", default="cldyn-demo", help="output folder")
    s.add_argument("--device", default="auto")
    s.add_argument("--threads", type=int)
    s.add_argument("--overwrite", action="store_true")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("bench", help="speed benchmarks")
    s.add_argument("what", choices=("fuse", "rsc", "tile", "tasks"),
                   help="fuse: ms per 640x480 pair against the FLOP floor; rsc: A2SI vectorised vs loop, one "
                        "closed-loop step, peak memory; tile: an 8000x6000 pair in tiles, peak memory; tasks: "
                        "forward+backward of each task network")
    s.add_argument("--batch-size", type=int, default=4, help="rsc: batch")
    s.add_argument("--size", type=int, default=320, help="rsc: image side")
    s.add_argument("--json", help="also write the results as JSON")
    s.add_argument("--weights", help="VFN checkpoint (default: the shipped weights)")
    s.add_argument("--repeats", type=int, default=10)
    s.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    s.add_argument("--no-compare", action="store_true", help="skip the plain eager model")
    s.add_argument("--compile", action="store_true", help="also time torch.compile (slow to compile)")
    s.add_argument("--device", default="cpu", help="rsc: cpu (default), cuda, cuda:N or auto")
    s.set_defaults(func=cmd_bench)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cldyn`` console script."""
    # Keep third-party libraries off the network: everything cldyn needs ships with it.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("YOLO_OFFLINE", "1")
    args = build_parser().parse_args(argv)
    from cldyn.runtime import tune_malloc

    tune_malloc()  # fewer page faults per forward pass (see cldyn.runtime)
    try:
        return int(args.func(args) or 0)
    except CldynError as exc:
        print(f"cldyn {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the system refused: a read-only folder, a full disk, a path that is a file
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"cldyn {args.command}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"cldyn {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
