"""What every command module shares: argument groups and the small parsers of ``KEY=VALUE`` arguments."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from cldyn.data.io import atomic_write_bytes
from cldyn.errors import CldynError
from cldyn.training.distributed import DistContext, init_distributed, shutdown_distributed

DEVICE_HELP = "cpu (default, reproducible), cuda, cuda:N or auto; under torchrun each process its own GPU"


def set_threads(n: int | None) -> None:
    if n:
        torch.set_num_threads(n)


def add_run_args(s: argparse.ArgumentParser, device: str = "cpu", device_help: str = DEVICE_HELP,
                 resume: bool = False) -> None:
    """``[--resume] --threads --device --quiet``: the options every long-running command takes."""
    if resume:
        s.add_argument("--resume", action="store_true", help="continue from OUT/last.safetensors")
    s.add_argument("--threads", type=int, help="torch CPU threads")
    s.add_argument("--device", default=device, help=device_help)
    s.add_argument("--quiet", action="store_true", help="no progress bar")


def write_json(path: str | None, data: Any) -> None:
    """``--json FILE``: the result as indented JSON, written atomically (nothing when ``path`` is ``None``)."""
    if path:
        atomic_write_bytes(Path(path), json.dumps(data, indent=2, default=str).encode())


@contextlib.contextmanager
def process_group(device: str) -> Iterator[DistContext]:
    """The torchrun process group when launched by torchrun (gloo, or NCCL on CUDA), else a single process."""
    ctx = init_distributed(device)
    try:
        yield ctx
    finally:
        shutdown_distributed(ctx)


def run_training(args: argparse.Namespace, train: Callable[..., Path], cfg: Any, what: str) -> int:
    """Run a training function in the torchrun process group (if any); rank 0 prints where the result is."""
    set_threads(args.threads)
    with process_group(args.device) as ctx:
        path = train(cfg, resume=args.resume, progress=not args.quiet, dist_ctx=ctx)
    if ctx.is_main:
        print(f"{what}: {path}")
    if ctx.active:
        # Under torchrun, leave before the C++ static destructors run: with everything saved and the group destroyed,
        # a gloo/store thread still joinable there aborts one rank now and then ("terminate called without an active
        # exception", SIGABRT), which torchrun reports as a failed run.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


def key_values(items: list[str] | None, flag: str = "--set") -> dict[str, Any]:
    """``KEY=VALUE`` items -> dict, each value parsed as JSON where it is JSON (else kept as a string)."""
    cfg: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise CldynError(f"{flag} expects KEY=VALUE, got {item!r}")
        try:
            cfg[key] = json.loads(value)
        except json.JSONDecodeError:
            cfg[key] = value
    return cfg


def task_map(items: list[str] | None, tasks: list[str], what: str) -> dict[str, str]:
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


def named_runs(specs: list[str] | None, flag: str) -> dict[str, list[str]]:
    """``NAME=FILE[,FILE...]`` items -> {name: [files]} (several files: runs with different seeds)."""
    out: dict[str, list[str]] = {}
    for spec in specs or []:
        name, sep, files = spec.partition("=")
        if not sep or not files:
            raise CldynError(f"{flag} {spec!r}: expected NAME=FILE[,FILE...]")
        out[name] = files.split(",")
    return out
