"""The ``cldyn`` command line: a thin layer over the Python API (parse, call, print).

Each command module holds its commands and a ``register(subparsers)`` that adds their parsers; the parser is built
only when :func:`main` runs. A new command goes into the module of its kind (fusion, training, evaluation).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from cldyn.cli import align, app, evaluation, fusion, training
from cldyn.errors import CldynError, OutputExistsError
from cldyn.runtime import tune_malloc
from cldyn.version import __version__

# The help of options that mean the same in every command that has them (a command may say more itself).
GENERIC_HELP = {
    "--quiet": "no progress bar", "--threads": "torch CPU threads (default: torch's choice)",
    "--device": "cpu, cuda, cuda:N or auto", "--overwrite": "replace existing outputs",
    "--seed": "random seed (crops, flips, order)", "--epochs": "passes over the training pairs",
    "--steps": "optimiser steps", "--batch-size": "samples per optimiser step", "--lr": "Adam learning rate",
    "--crop": "square training crop side", "--num-blocks": "dense blocks per VFN encoder and decoder",
    "--out": "output folder", "--split": "the split file ROOT/splits/SPLIT.txt", "--val-split": "validation split",
    "--max-steps": "stop after this many steps", "--checkpoint-every": "steps between checkpoints",
    "--val-every": "steps between validations", "--task": "detection, segmentation, saliency or module:Class",
    "--data": "dataset root (e.g. ../shared/data/msrs)", "--tasks": "comma-separated task names",
    "--opset": "ONNX opset", "--repeats": "timed runs per figure (median)",
}

EXIT_CODES = """exit codes (every command):
  0    done
  1    done in part: some pairs or images of a folder could not be used (each named on stderr, the rest written)
  2    nothing done: a usage error, an input that stops the command (e.g. the one pair given cannot be read), an
       output that exists without --overwrite, or a missing optional extra; one line on stderr names the cause
  130  interrupted (Ctrl-C); files are written atomically, so none is half-written"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cldyn", description="CLDyN infrared-visible image fusion", epilog=EXIT_CODES,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"cldyn {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    for module in (fusion, align, training, evaluation, app):
        module.register(sub)
    summaries = {a.dest: a.help for a in sub._choices_actions}
    for name, command in sub.choices.items():  # every command's --help: a description, defaults, exit codes
        command.formatter_class = _HelpFormatter
        command.description = command.description or f"{summaries[name][0].upper()}{summaries[name][1:]}."
        for action in command._actions:
            if action.option_strings and not action.help:
                action.help = GENERIC_HELP.get(action.option_strings[-1], "")
        command.epilog = EXIT_CODES if command.epilog is None else f"{command.epilog}\n\n{EXIT_CODES}"
    return p


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Each option's default after its help (unless unset, a switch, or already said); description and epilog as
    written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        unset = default is None or default is False or default == argparse.SUPPRESS
        if unset or "default" in text or not action.option_strings:
            return text
        shown = ",".join(map(str, default)) if isinstance(default, (list, tuple)) else default
        return f"{text} (default: {shown})".lstrip()


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
        message = exc.for_command_line() if isinstance(exc, OutputExistsError) else str(exc)
        print(f"cldyn {args.command}: error: {message}", file=sys.stderr)
        return 2
    except OSError as exc:  # the system refused: a read-only folder, a full disk, a path that is a file
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"cldyn {args.command}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"cldyn {args.command}: interrupted", file=sys.stderr)
        return 130


__all__ = ["EXIT_CODES", "build_parser", "main"]
