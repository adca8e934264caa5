"""The ``cldyn`` command line: a thin layer over the Python API (parse, call, print).

Each command module holds its commands and a ``register(subparsers)`` that adds their parsers; the parser is built
only when :func:`main` runs. A new command goes into the module of its kind (fusion, training, evaluation).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from cldyn.cli import evaluation, fusion, training
from cldyn.errors import CldynError
from cldyn.runtime import tune_malloc
from cldyn.version import __version__


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cldyn", description="CLDyN infrared-visible image fusion")
    p.add_argument("--version", action="version", version=f"cldyn {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    for module in (fusion, training, evaluation):
        module.register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cldyn`` console script."""
    # Keep third-party libraries off the network: everything cldyn needs ships with it.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("YOLO_OFFLINE", "1")
    args = build_parser().parse_args(argv)
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


__all__ = ["build_parser", "main"]
