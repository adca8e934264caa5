"""The ``cldyn`` command line: a thin layer over the Python API. Parsers are built only when ``main`` runs."""

from __future__ import annotations

import argparse
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
        max_steps=args.max_steps,
    )
    path = train_vfn(cfg, resume=args.resume, progress=not args.quiet)
    print(f"checkpoint: {path}")
    return 0


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
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_train_vfn)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cldyn`` console script."""
    # Keep third-party libraries off the network: everything cldyn needs ships with it.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("YOLO_OFFLINE", "1")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CldynError as exc:
        print(f"cldyn {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"cldyn {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
