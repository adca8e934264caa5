"""Stage-1 training of the VFN (unsupervised: intensity + gradient loss, optionally SSIM and a gradient noise floor).

Deterministic given the seed: model init from ``torch.manual_seed(seed)``, batches from :mod:`cldyn.data.bank`. A
checkpoint (model, Adam state, position) is written atomically every ``checkpoint_every`` steps and at the end of
every epoch; ``resume=True`` continues from ``out_dir/last.safetensors`` and reaches the same weights as an
uninterrupted run. With validation data (:class:`~cldyn.training.validation.ValidationConfig`), the run scores
held-out pairs with the fusion metrics every ``validation.every`` steps (``val.csv``, ``val.png``) and keeps the
best by :func:`~cldyn.training.validation.selection_score` as ``best.safetensors`` (a VFN weights file).
"""

from __future__ import annotations

import io
import math
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from cldyn.data.bank import AugmentConfig, PairBank, seeded_generator
from cldyn.data.io import atomic_write_bytes, read_csv, write_csv
from cldyn.data.pairs import discover_pairs
from cldyn.errors import CheckpointError, CldynError
from cldyn.loop.fusion_loss import FusionLossConfig, fusion_loss
from cldyn.model.vfn import VFN, VFNConfig
from cldyn.runtime import progress_bar
from cldyn.training.distributed import DistContext, convert_batchnorm, local_context
from cldyn.training.loop import TrainingRun, average_parts, take_shard
from cldyn.training.validation import VAL_METRICS, FusionValidator, ValidationConfig, selection_score
from cldyn.version import __version__
from cldyn.weights import load_vfn, save_vfn

CSV_FIELDS = ("step", "epoch", "loss", "intensity", "gradient", "ssim", "lr", "seconds")
LR_SCHEDULES = ("constant", "cosine")


def scheduled_lr(lr: float, step: int, total_steps: int, schedule: str = "constant", final: float = 0.01) -> float:
    """Learning rate of the update that follows ``step`` (0-based) of ``total_steps``.

    ``cosine``: ``lr * (final + (1 - final) * (1 + cos(pi * step / total_steps)) / 2)``, from ``lr`` at step 0 to
    ``lr * final`` at the end; ``constant``: ``lr``.

    Example:
        >>> scheduled_lr(1e-3, 50, 100, "cosine", 0.0)
        0.0005
    """
    if schedule == "constant":
        return lr
    if schedule != "cosine":
        raise ValueError(f"unknown lr schedule {schedule!r}; known: {', '.join(LR_SCHEDULES)}")
    t = min(max(step / max(total_steps, 1), 0.0), 1.0)
    return lr * (final + (1 - final) * 0.5 * (1 + math.cos(math.pi * t)))


@dataclass
class TrainVFNConfig:
    """Stage-1 training settings. Paper defaults: Adam, lr 1e-3, batch 16, 256 crops, 100 epochs.

    The defaults here keep the paper's optimiser, batch and loss; the crop is 128 so that an epoch takes under a
    minute on a 2-core CPU.
    """

    data: list[str] = field(default_factory=list)
    out_dir: str = "runs/vfn"
    split: str | None = "train"
    epochs: int = 100
    batch_size: int = 16
    lr: float = 1e-3
    seed: int = 0
    checkpoint_every: int = 50
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    loss: FusionLossConfig = field(default_factory=FusionLossConfig)
    model: VFNConfig = field(default_factory=VFNConfig)
    channels_last: bool = True
    max_steps: int | None = None  # stop after this many global steps (tests, smoke runs)
    device: str = "cpu"  # cpu, cuda, cuda:N or auto (under torchrun: each process's own GPU)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    init: str | None = None  # start from these VFN weights (same configuration) with a fresh optimiser
    # BatchNorm on its running statistics while training (affine weights still learn): the loss then sees the
    # network as inference runs it. Batch statistics of mixed dark/bright crops shift the output's mean by a
    # batch-dependent offset (-0.05 to +0.04 on three batches for the shipped VFN, -0.02 steadily in eval mode),
    # which the intensity loss cannot learn away; meant for warm starts (--init), whose statistics are trained.
    freeze_batchnorm: bool = False
    # "constant" (the paper's) or "cosine": lr decays from ``lr`` to ``lr * lr_final`` over all ``epochs`` (not
    # ``max_steps``, which only ends a sitting early), a function of the global step alone, so a run continued with
    # ``--resume`` follows the same curve.
    lr_schedule: str = "constant"
    lr_final: float = 0.01
    # also keep every validated model as ``out_dir/validated/step_N.safetensors`` (a VFN is about 120 kB), so a
    # checkpoint can be chosen afterwards on more pairs than the run validates on
    keep_validated: bool = False

    def __post_init__(self) -> None:
        if self.lr_schedule not in LR_SCHEDULES:
            raise CldynError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["model"] = self.model.to_dict()
        return d


def plot_val_curves(rows: Sequence[dict], png: Path) -> None:
    """Each validation metric and the selection score against step, one panel each, as a PNG."""
    import matplotlib  # heavy (about 0.5 s): loaded only when a curve is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after matplotlib.use: the headless backend

    keys = [*VAL_METRICS, "score"]
    fig, axes = plt.subplots(3, 3, figsize=(10, 7), dpi=100)
    steps = [int(r["step"]) for r in rows]
    for ax, key in zip(axes.flat, keys, strict=True):
        ax.plot(steps, [float(r[key]) for r in rows], marker=".", color="C3" if key == "score" else "C0")
        ax.set_title(key.upper() if key != "score" else "selection score (x average fusion)", fontsize=9)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    fig.supxlabel("step")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(png, buf.getvalue())


def plot_loss_curve(rows: Sequence[dict], png: Path, title: str = "VFN training loss") -> None:
    """Loss (total and parts) against step as a PNG."""
    import matplotlib  # heavy (about 0.5 s): loaded only when a curve is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after matplotlib.use: the headless backend

    if not rows:
        return
    steps = [int(r["step"]) for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for key, colour in (("loss", "C0"), ("intensity", "C1"), ("gradient", "C2")):
        vals = [float(r[key]) for r in rows]
        ax.plot(steps, vals, color=colour, lw=0.6, alpha=0.35)
        ema, smooth = vals[0], []
        for v in vals:  # exponential moving average: the trend through batch-to-batch noise
            ema = 0.95 * ema + 0.05 * v
            smooth.append(ema)
        ax.plot(steps, smooth, color=colour, lw=1.5, label=f"{key} (EMA 0.95)")
    ax.set_xlabel("step")
    ax.set_ylabel("L1")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(png, buf.getvalue())


def set_train_mode(model: nn.Module, freeze_batchnorm: bool = False) -> nn.Module:
    """``model.train()``, with every BatchNorm layer back in eval mode (running statistics used and kept) when
    ``freeze_batchnorm``."""
    model.train()
    if freeze_batchnorm:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
    return model


def _provenance(cfg: TrainVFNConfig) -> dict:
    return {
        "cldyn_version": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "threads": torch.get_num_threads(),
        "train_config": cfg.to_dict(),
    }


def train_vfn(cfg: TrainVFNConfig, resume: bool = False, progress: bool = True,
              log: Callable[[str], None] = print, dist_ctx: DistContext | None = None) -> Path:
    """Train a VFN; returns the path of the result: ``out_dir/best.safetensors`` with validation data, else the final
    checkpoint ``out_dir/last.safetensors``.

    With ``dist_ctx`` from :func:`cldyn.training.distributed.init_distributed` (under ``torchrun``), each process
    trains on its shard of every global batch of ``batch_size``; only rank 0 writes (and validates).

    Raises:
        CldynError: bad data, or a checkpoint that does not fit this configuration when resuming.
    """
    pairs, notes = discover_pairs(cfg.data, cfg.split)
    for n in notes:
        log(n)
    bank = PairBank(pairs)
    steps_per_epoch = len(bank) // cfg.batch_size
    if steps_per_epoch == 0:
        raise CldynError(f"only {len(bank)} pairs found, fewer than one batch of {cfg.batch_size}")
    log(f"{len(bank)} pairs, {steps_per_epoch} steps/epoch, crop {min(cfg.augment.crop_size, bank.min_side())}")

    ctx = dist_ctx or local_context(cfg.device)
    device = torch.device(ctx.device)
    ctx.shard(list(range(cfg.batch_size)), "--batch-size")  # fail early if it does not split over the processes
    progress, log = progress and ctx.is_main, ctx.quiet(log)
    torch.manual_seed(cfg.seed)
    model = VFN(cfg.model).to(device).train()
    if ctx.active:
        convert_batchnorm(model)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)

    def write_log(csv_path: Path, rows: list[dict]) -> None:
        write_csv(csv_path, rows, CSV_FIELDS)
        plot_loss_curve(rows, csv_path.with_suffix(".png"))

    def check(meta: dict) -> str | None:
        if meta.get("model_config") != cfg.model.to_dict():
            return f"model config {meta.get('model_config')} differs from the requested {cfg.model.to_dict()}"
        return None

    run = TrainingRun(cfg.out_dir, "train_vfn", "model", ctx, "loss.csv", write_log)
    meta = run.start(resume, model, opt, check, log)
    if cfg.init and meta is None:  # a warm start; a resumed run already holds its own weights
        start = load_vfn(cfg.init)
        state = start.state_dict()
        want, have = cfg.model.to_dict(), start.cfg.to_dict()
        # the detail gain has no weights; the reach head is not trained here (plain fusion never uses it)
        free = {"detail_gain": want["detail_gain"], "reach_head": want["reach_head"]}
        if {**have, **free} != want:
            if {**have, **free, "skip": want["skip"]} != want:
                raise CheckpointError(Path(cfg.init), f"VFN config {start.cfg.to_dict()} differs from the requested "
                                                      f"{cfg.model.to_dict()}")
            # another output form (skip): every layer but the decoder's last conv, which stays as built (for
            # skip="max": zero, so the run starts from max(IR, Y) with the source network's features)
            last = f"decoder.head.{len(model.decoder.head) - 1}."
            state = {**state, **{k: v for k, v in model.state_dict().items() if k.startswith(last)}}
        if have["reach_head"] != want["reach_head"]:  # a source's reach head is dropped, a wanted one kept as built
            state = {k: v for k, v in state.items() if not k.startswith("decoder.reach.")}
            state.update({k: v for k, v in model.state_dict().items() if k.startswith("decoder.reach.")})
        model.load_state_dict(state)  # in place: the optimiser keeps the same parameters
    global_step = int(meta["global_step"]) if meta else 0
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    rows = run.rows
    val = cfg.validation
    best = meta.get("best") if meta else None
    val_csv = run.out / "val.csv"
    val_rows = [r for r in read_csv(val_csv) if int(r["step"]) <= global_step] if meta else []
    validator = None
    if val.data and ctx.is_main:  # rank 0 validates; the others only keep to the same checkpoint steps
        val_pairs, notes = discover_pairs([val.data], None if val.split == "all" else val.split)
        for n in notes:
            log(n)
        validator = FusionValidator(sorted(val_pairs, key=lambda p: p.name)[:val.limit], val.convention)
        log(f"validation: {len(validator.pairs)} pairs of {val.data} ({val.split}) every {val.every} steps, "
            f"{val.convention} convention; average fusion: " +
            " ".join(f"{k} {v:.3f}" for k, v in validator.reference.items()))

    total_steps = cfg.epochs * steps_per_epoch
    if cfg.max_steps is not None:
        total_steps = min(total_steps, cfg.max_steps)

    params = list(model.parameters())

    def save() -> None:
        run.save(global_step, model, opt, params, {"model_config": cfg.model.to_dict(), "best": best,
                                                   "epoch": global_step // steps_per_epoch, **_provenance(cfg)})

    def validate() -> None:
        nonlocal best
        metrics = validator.metrics(model)
        score = selection_score(metrics, validator.reference)
        val_rows.append({"step": global_step, **{k: round(v, 5) for k, v in metrics.items()}, "score": round(score, 5)})
        write_csv(val_csv, val_rows)
        plot_val_curves(val_rows, run.out / "val.png")
        info = {"global_step": global_step, "val": metrics, "val_score": score,
                "val_reference": validator.reference, "train_config": cfg.to_dict()}
        if cfg.keep_validated:
            save_vfn(run.out / "validated" / f"step_{global_step}.safetensors", model, info)
        is_best = best is None or score > best
        log(f"step {global_step}: val score {score:.4f}{' (best)' if is_best else ''} " +
            " ".join(f"{k} {v:.3f}" for k, v in metrics.items()))
        if is_best:
            best = score
            save_vfn(run.best, model, info)

    bar = progress_bar(total=total_steps, initial=global_step, disable=not progress, desc="train-vfn", unit="step")
    if validator is not None and meta is None:  # the starting point (random or --init weights) is a candidate too
        validate()
    t0 = time.perf_counter()
    while global_step < total_steps:
        epoch, step = divmod(global_step, steps_per_epoch)
        order = torch.randperm(len(bank), generator=seeded_generator(cfg.seed, epoch))
        idx = order[step * cfg.batch_size:(step + 1) * cfg.batch_size].tolist()
        batch = bank.batch(idx, seeded_generator(cfg.seed, epoch, step), cfg.augment)
        (batch,) = take_shard(ctx, batch)  # the global batch is drawn identically everywhere; each rank keeps its shard
        batch = batch.to(device)
        if cfg.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        ir, vis_y = batch[:, :1], batch[:, 1:]
        set_train_mode(model, cfg.freeze_batchnorm)  # again after each validation, which switches to eval
        lr = scheduled_lr(cfg.lr, global_step, cfg.epochs * steps_per_epoch, cfg.lr_schedule, cfg.lr_final)
        for group in opt.param_groups:
            group["lr"] = lr
        fused = model(ir, vis_y)
        loss, parts = fusion_loss(fused, ir, vis_y, cfg.loss)
        if not torch.isfinite(loss):
            raise CldynError(f"loss became {float(loss)} at step {global_step}; lower --lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        ctx.average_gradients(params)
        opt.step()
        global_step += 1
        parts = average_parts(ctx, parts)  # log the global batch's loss
        rows.append({"step": global_step, "epoch": epoch, **{k: f"{v:.6f}" for k, v in parts.items()},
                     "lr": f"{lr:.3g}", "seconds": f"{time.perf_counter() - t0:.2f}"})
        bar.update(1)
        bar.set_postfix(loss=f"{parts['loss']:.4f}", epoch=epoch)
        validates = bool(val.data) and (global_step % val.every == 0 or global_step == total_steps)
        if validates and validator is not None:
            validate()
        if validates or global_step % cfg.checkpoint_every == 0 or global_step % steps_per_epoch == 0 \
                or global_step == total_steps:
            save()
    bar.close()
    run.finish(global_step, save, cfg.to_dict())
    return run.best if val.data else run.last
