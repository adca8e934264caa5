"""What the three trainers share: the run folder, resume or refuse, resumable checkpoints, the CSV log, the final
config, and the sharding of a global batch over processes.

A run folder holds ``last.safetensors`` (model + optimiser + position, written atomically, see
:meth:`cldyn.training.distributed.DistContext.save_training_state`), a CSV log, and for trainers that validate
``best.safetensors`` (the best checkpoint by a validation metric). ``resume=True`` continues from ``last`` and keeps
the log rows up to its step; without it an existing ``last`` is refused rather than overwritten.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cldyn.data.io import atomic_write_bytes, read_csv
from cldyn.errors import CheckpointError
from cldyn.training.distributed import DistContext
from cldyn.weights.checkpoint import load_training_state

LAST, BEST = "last.safetensors", "best.safetensors"


class TrainingRun:
    """One trainer's run folder and checkpoint bookkeeping.

    Args:
        out_dir: the run folder (created).
        kind: the checkpoint kind (``train_vfn``, ``train_task``, ``train_rsc``), checked on resume.
        prefix: name under which the trained module's tensors are stored (``model``, ``rsc``).
        ctx: the process context; only rank 0 writes.
        csv_name: the log file in ``out_dir``.
        write_log: called with the log rows after each checkpoint on rank 0 (CSV, plots).
    """

    def __init__(self, out_dir: str | Path, kind: str, prefix: str, ctx: DistContext, csv_name: str,
                 write_log: Callable[[Path, list[dict]], None]) -> None:
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.kind, self.prefix, self.ctx = kind, prefix, ctx
        self.last, self.best, self.csv = self.out / LAST, self.out / BEST, self.out / csv_name
        self.write_log = write_log
        self.rows: list[dict] = []
        self.saved_at: int | None = None
        self.resumed_at: int | None = None

    def start(self, resume: bool, module: nn.Module, opt: torch.optim.Optimizer,
              check: Callable[[dict], str | None], log: Callable[[str], None]) -> dict | None:
        """Resume from ``last`` (module, optimiser and log rows restored; returns its metadata), or start fresh
        (``None``). A fresh start over an existing ``last`` is refused.

        Raises:
            CheckpointError: ``last`` exists and ``resume`` is false, or it does not fit (``check``'s problem).
        """
        if resume and self.last.is_file():
            meta = load_training_state(self.last, self.kind, module, self.prefix, opt, check)
            step = int(meta["global_step"])
            self.rows = [r for r in read_csv(self.csv) if int(r["step"]) <= step]
            self.resumed_at = step
            log(f"resumed from {self.last} at step {step}")
            return meta
        if resume:
            log(f"no checkpoint in {self.out}; starting fresh")
        elif self.last.is_file():
            raise CheckpointError(self.last, "already exists; pass --resume to continue it or choose another --out")
        return None

    def save(self, step: int, module: nn.Module, opt: torch.optim.Optimizer, params: list[torch.Tensor],
             meta: dict[str, Any]) -> None:
        """Write ``last`` at ``step`` (every rank calls it at the same steps; rank 0 writes) and the log."""
        self.saved_at = step
        full = {"kind": self.kind, "global_step": step, **meta}
        if self.ctx.save_training_state(self.last, module, self.prefix, opt, params, full):
            self.write_log(self.csv, self.rows)

    def finish(self, step: int, save: Callable[[], None], config: dict[str, Any]) -> None:
        """The final checkpoint unless ``step`` was just saved or resumed at, and ``train_config.json``."""
        if self.saved_at != step and self.resumed_at != step:  # e.g. zero steps requested
            save()
        if self.ctx.is_main:
            atomic_write_bytes(self.out / "train_config.json", json.dumps(config, indent=2).encode())


def take_shard(ctx: DistContext, *batch: Any, dim: int = 0) -> tuple[Any, ...]:
    """This rank's rows of each part of a global batch (tensors along ``dim``, lists of per-sample targets)."""
    if not ctx.active:
        return batch
    n = next(len(b) if not isinstance(b, torch.Tensor) else b.shape[dim] for b in batch)
    rows = ctx.shard(list(range(n)))
    sl = slice(rows[0], rows[-1] + 1)
    return tuple(b.narrow(dim, sl.start, sl.stop - sl.start) if isinstance(b, torch.Tensor) else list(b)[sl]
                 for b in batch)


def average_parts(ctx: DistContext, parts: dict[str, float]) -> dict[str, float]:
    """Logged loss parts averaged over ranks (the global batch's values)."""
    if not ctx.active:
        return parts
    keys = sorted(parts)
    mean = ctx.average_(torch.tensor([float(parts[k]) for k in keys], dtype=torch.float64))
    return dict(zip(keys, mean.tolist(), strict=True))
