"""Shared parts of the crop-loss probes (``task_memorisation.py``, ``rsc_loss_change.py``): their common options and
the seeded stream of random crop batches both draw from a task bank."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import Any

import torch

from cldyn.cli.common import task_map


def probe_parser(description: str, batches: int) -> argparse.ArgumentParser:
    """``--data``, ``--tasks``, ``--task-weights``, ``--batches``, ``--batch-size``, ``--crop``, ``--threads``,
    ``--json``; the caller adds its own."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--data", required=True)
    ap.add_argument("--tasks", default="detection,segmentation,saliency")
    ap.add_argument("--task-weights", nargs="*", action="extend", default=[], metavar="TASK=FILE")
    ap.add_argument("--batches", type=int, default=batches)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json")
    return ap


def parse(ap: argparse.ArgumentParser) -> tuple[argparse.Namespace, list[str], dict[str, str]]:
    """Parsed options, the task list and the ``--task-weights`` map; sets the torch thread count."""
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tasks = args.tasks.split(",")
    return args, tasks, task_map(args.task_weights, tasks, "--task-weights")


def crop_batches(bank, batches: int, batch_size: int, crop: int, seed: int = 0) -> Iterator[tuple[torch.Tensor, Any]]:
    """``batches`` batches of ``batch_size`` random pairs of ``bank``, each a random ``crop`` crop (seeded)."""
    gen = torch.Generator().manual_seed(seed)
    for _ in range(batches):
        idx = torch.randint(0, len(bank), (batch_size,), generator=gen).tolist()
        yield bank.batch(idx, gen, crop)
