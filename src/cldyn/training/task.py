"""Training and evaluation of downstream task networks (the frozen networks of CLDyN's closed loop).

The paper's set-up: task networks are trained on images fused by the VFN (``input="fused"``), or, for comparison,
on one modality. Training is deterministic given the seed (batches are pure functions of seed, epoch and step, as in
:mod:`cldyn.training.vfn`) and resumable; each epoch ends with validation on full images.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from cldyn.data.bank import seeded_generator
from cldyn.data.io import atomic_write_bytes, write_csv
from cldyn.data.task_bank import load_task_bank
from cldyn.errors import CheckpointError, CldynError
from cldyn.inference.sources import image_source
from cldyn.runtime import progress_bar
from cldyn.tasks import create_task, load_task
from cldyn.tasks.evaluation import PRIMARY_METRIC, evaluate_bank
from cldyn.training.distributed import DistContext, convert_batchnorm, local_context
from cldyn.training.loop import LAST, TrainingRun, take_shard


@dataclass
class TrainTaskConfig:
    """Settings of ``cldyn train-task``. AdamW with cosine decay; random crops and horizontal flips."""

    task: str = "saliency"
    data: str = ""
    out_dir: str = "runs/task"
    input: str = "fused"
    labels: str | None = None  # a label variant beside the default one, e.g. "visible" (MSRS labels/det/visible)
    train_split: str = "train"
    val_split: str = "val"
    epochs: int = 60
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    crop: int = 320
    seed: int = 0
    adapter: dict[str, Any] = field(default_factory=dict)
    vfn_weights: str | None = None
    max_steps: int | None = None
    val_every: int = 1  # epochs between validations (the last epoch is always validated)
    init: str | None = None  # start from these weights (a task checkpoint) with a fresh optimiser
    # start from converted pretrained weights (cldyn convert-pretrained: an ImageNet backbone or a whole network)
    pretrained: str | None = None
    device: str = "cpu"  # cpu, cuda, cuda:N or auto (under torchrun: each process's own GPU)

    def to_dict(self) -> dict:
        return asdict(self)


def _lr_at(cfg: TrainTaskConfig, step: int, total: int) -> float:
    warm = min(100, total // 10)
    if step < warm:
        return cfg.lr * (step + 1) / warm
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


def _flat_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float))}


def train_task(cfg: TrainTaskConfig, resume: bool = False, progress: bool = True,
               log: Callable[[str], None] = print, dist_ctx: DistContext | None = None) -> Path:
    """Train a task network; returns the path of the best checkpoint (by validation metric).

    Under ``torchrun`` (``dist_ctx``), each process trains on its shard of every global batch; rank 0 validates and
    writes. Saliency and unweighted segmentation losses are means over pixels, so the averaged gradient equals the
    single-process one; the YOLO loss (normalised by the batch's matched anchors) and class-weighted cross-entropy
    (by the batch's total weight) agree only approximately (as in Ultralytics' own DDP training).
    """
    ctx = dist_ctx or local_context(cfg.device)
    device = torch.device(ctx.device)
    ctx.shard(list(range(cfg.batch_size)), "--batch-size")
    progress, log = progress and ctx.is_main, ctx.quiet(log)
    out = Path(cfg.out_dir)
    torch.manual_seed(cfg.seed)
    adapter = create_task(cfg.task, cfg.adapter)
    task = adapter.task  # the task's name (labels, metric) also when cfg.task is a module:Class spec
    source = image_source(cfg.input, cfg.vfn_weights)
    train, val = (load_task_bank(task, cfg.data, split, source, adapter.config, log, progress, labels=cfg.labels,
                                 classes=adapter.label_classes)
                  for split in (cfg.train_split, cfg.val_split))
    if hasattr(adapter, "fit_class_weights"):  # e.g. segmentation class_weights="enet": from the train labels
        adapter.fit_class_weights([it.label for it in train.items])
    steps_per_epoch = len(train) // cfg.batch_size
    if steps_per_epoch == 0:
        raise CldynError(f"only {len(train)} training samples, fewer than one batch of {cfg.batch_size}")
    total = cfg.epochs * steps_per_epoch
    if cfg.max_steps is not None:
        total = min(total, cfg.max_steps)
    log(f"{adapter.describe()}")
    log(f"{len(train)} train / {len(val)} val samples, input {cfg.input}, labels {cfg.labels or 'default'}, "
        f"{steps_per_epoch} steps/epoch")

    fresh = not (resume and (out / LAST).is_file())
    if cfg.pretrained and fresh and not cfg.init:
        adapter.load_pretrained(cfg.pretrained)
        log(f"pretrained start: {cfg.pretrained}")
    if cfg.init and fresh:
        start = load_task(cfg.init)
        # Only the architecture must match: loss settings (e.g. class weights) may change on a warm start.
        try:
            if start.task != task:
                raise RuntimeError(f"holds a {start.task!r} network, not {task!r}")
            adapter.model.load_state_dict(start.model.state_dict())
        except RuntimeError as exc:
            msg = str(exc).splitlines()[0]
            raise CheckpointError(Path(cfg.init), f"does not fit {cfg.task!r} with {adapter.config}: {msg}") from None
        log(f"initialised from {cfg.init}")
    adapter.to(device)
    if ctx.active:
        convert_batchnorm(adapter.model)
    params = list(adapter.model.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)

    def write_log(csv_path: Path, rows: list[dict]) -> None:
        if rows:
            write_csv(csv_path, rows)
        plot_task_curves(rows, csv_path.with_suffix(".png"), task)

    def check(meta: dict) -> str | None:
        if meta.get("task") != task:
            return f"is a checkpoint for {meta.get('task')!r}, not {task!r}"
        if meta.get("config") != adapter.config:
            return f"adapter config {meta.get('config')} differs from {adapter.config}"
        return None

    run = TrainingRun(out, "train_task", "model", ctx, "metrics.csv", write_log)
    meta = run.start(resume, adapter.model, opt, check, log)
    step, best = (int(meta["global_step"]), meta.get("best")) if meta else (0, None)
    rows = run.rows
    metric_name, higher = PRIMARY_METRIC.get(task, ("loss", False))

    def save_last() -> None:
        run.save(step, adapter.model, opt, params, {"task": task, "config": adapter.config, "best": best,
                                                    "train_config": cfg.to_dict()})

    bar = progress_bar(total=total, initial=step, disable=not progress, desc=f"train {task}", unit="step")
    t0, run_loss, n_loss = time.perf_counter(), 0.0, 0
    while step < total:
        epoch, k = divmod(step, steps_per_epoch)
        order = torch.randperm(len(train), generator=seeded_generator(cfg.seed, epoch))
        idx = order[k * cfg.batch_size:(k + 1) * cfg.batch_size].tolist()
        x, y = train.batch(idx, seeded_generator(cfg.seed, epoch, k), cfg.crop)
        x, y = take_shard(ctx, x, y)  # the global batch is drawn identically everywhere; each rank keeps its shard
        x, y = x.to(device), (y.to(device) if isinstance(y, torch.Tensor) else y)  # box lists: the adapter moves them
        lr = _lr_at(cfg, step, total)
        for g in opt.param_groups:
            g["lr"] = lr
        adapter.model.train()
        loss = adapter.loss(x, y)
        if not torch.isfinite(loss):
            raise CldynError(f"loss became {float(loss)} at step {step}; lower --lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        ctx.average_gradients(params)
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        opt.step()
        step += 1
        loss_value = float(ctx.average_(loss.detach().double().reshape(1)))  # the global batch's loss
        run_loss, n_loss = run_loss + loss_value, n_loss + 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss_value:.4f}", epoch=epoch)
        end_of_epoch = step % steps_per_epoch == 0
        validate = (end_of_epoch and (epoch + 1) % cfg.val_every == 0) or step == total
        if validate and not ctx.is_main:
            save_last()
        elif validate:
            metrics = evaluate_bank(adapter, val)
            value = metrics.get(metric_name)
            row = {"step": step, "epoch": epoch, "loss": round(run_loss / n_loss, 6), "lr": lr,
                   "seconds": round(time.perf_counter() - t0, 1), **_flat_metrics(metrics)}
            rows.append(row)
            run_loss, n_loss = 0.0, 0
            log_line = " ".join(f"{k}={v:.4f}" for k, v in _flat_metrics(metrics).items() if k != "n")
            bar.write(f"epoch {epoch}: loss {row['loss']:.4f} val {log_line}")
            if value is not None and (best is None or (value > best if higher else value < best)):
                best = value
                adapter.save(run.best, {"epoch": epoch, "global_step": step, "val": _flat_metrics(metrics),
                                          "train_config": cfg.to_dict()})
            save_last()
        elif end_of_epoch:
            save_last()
    bar.close()
    run.finish(step, save_last, cfg.to_dict())
    return run.best


def plot_task_curves(rows: list[dict], png: Path, task: str) -> None:
    """Training loss and validation metrics against epoch."""
    import matplotlib  # heavy (about 0.5 s): loaded only when a curve is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after matplotlib.use: the headless backend

    if not rows:
        return
    epochs = [int(r["epoch"]) for r in rows]
    metric_keys = [k for k in rows[0] if k not in ("step", "epoch", "loss", "lr", "seconds", "n")]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    a1.plot(epochs, [float(r["loss"]) for r in rows], lw=1)
    a1.set(xlabel="epoch", ylabel="training loss", title=f"{task}: loss")
    for k in metric_keys:
        vals = [float(r[k]) if r.get(k) not in (None, "") else float("nan") for r in rows]
        a2.plot(epochs, vals, lw=1, label=k)
    a2.set(xlabel="epoch", title=f"{task}: validation")
    a2.legend(fontsize=7)
    for a in (a1, a2):
        a.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(png, buf.getvalue())
