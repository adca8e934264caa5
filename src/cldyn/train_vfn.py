"""Stage-1 training of the VFN (unsupervised: intensity + gradient loss).

Deterministic given the seed: model init from ``torch.manual_seed(seed)``, batches from :mod:`cldyn.data`. A
checkpoint (model, Adam state, position) is written atomically every ``checkpoint_every`` steps and at the end of
every epoch; ``resume=True`` continues from ``out_dir/last.safetensors`` and reaches the same weights as an
uninterrupted run.
"""

from __future__ import annotations

import io
import json
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from cldyn import __version__
from cldyn.checkpoint import load_training_state
from cldyn.data import AugmentConfig, PairBank, discover_pairs, seeded_generator
from cldyn.distributed import DistContext, convert_batchnorm, local_context
from cldyn.errors import CheckpointError, CldynError
from cldyn.io import atomic_write_bytes, read_csv, write_csv
from cldyn.losses import FusionLossConfig, fusion_loss
from cldyn.vfn import VFN, VFNConfig

LAST = "last.safetensors"
CSV_FIELDS = ("step", "epoch", "loss", "intensity", "gradient", "lr", "seconds")


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

    def to_dict(self) -> dict:
        d = asdict(self)
        d["model"] = self.model.to_dict()
        return d


def plot_loss_curve(rows: Sequence[dict], png: Path, title: str = "VFN training loss") -> None:
    """Loss (total and parts) against step as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    """Train a VFN; returns the path of the final checkpoint (``out_dir/last.safetensors``).

    With ``dist_ctx`` from :func:`cldyn.distributed.init_distributed` (under ``torchrun``), each process trains on
    its shard of every global batch of ``batch_size``; only rank 0 writes.

    Raises:
        CldynError: bad data, or a checkpoint that does not fit this configuration when resuming.
    """
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
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
    global_step, resumed_at = 0, None
    ckpt_path = out / LAST
    if resume and ckpt_path.is_file():
        def check(meta: dict) -> str | None:
            if meta.get("model_config") != cfg.model.to_dict():
                return f"model config {meta.get('model_config')} differs from the requested {cfg.model.to_dict()}"
            return None

        meta = load_training_state(ckpt_path, "train_vfn", model, "model", opt, check)
        global_step = resumed_at = int(meta["global_step"])
        log(f"resumed from {ckpt_path} at step {global_step}")
    elif resume:
        log(f"no checkpoint in {out}; starting fresh")
    elif ckpt_path.is_file():
        raise CheckpointError(ckpt_path, "already exists; pass --resume to continue it or choose another --out")

    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    csv_path, png_path = out / "loss.csv", out / "loss.png"
    rows = [r for r in read_csv(csv_path) if int(r["step"]) <= global_step] if resume else []

    total_steps = cfg.epochs * steps_per_epoch
    if cfg.max_steps is not None:
        total_steps = min(total_steps, cfg.max_steps)

    params = list(model.parameters())
    saved_at = None

    def save() -> None:  # every rank, same steps (see DistContext.save_training_state)
        nonlocal saved_at
        saved_at = global_step
        meta = {"kind": "train_vfn", "model_config": cfg.model.to_dict(), "global_step": global_step,
                "epoch": global_step // steps_per_epoch, **_provenance(cfg)}
        if ctx.save_training_state(ckpt_path, model, "model", opt, params, meta):
            write_csv(csv_path, rows, CSV_FIELDS)
            plot_loss_curve(rows, png_path)

    bar = tqdm(total=total_steps, initial=global_step, disable=not progress, desc="train-vfn", unit="step")
    t0 = time.perf_counter()
    while global_step < total_steps:
        epoch, step = divmod(global_step, steps_per_epoch)
        order = torch.randperm(len(bank), generator=seeded_generator(cfg.seed, epoch))
        idx = order[step * cfg.batch_size:(step + 1) * cfg.batch_size].tolist()
        batch = bank.batch(idx, seeded_generator(cfg.seed, epoch, step), cfg.augment)
        if ctx.active:  # the global batch is drawn identically everywhere; each rank keeps its shard
            rows_of_rank = ctx.shard(list(range(len(idx))))
            batch = batch[rows_of_rank[0]:rows_of_rank[-1] + 1]
        batch = batch.to(device)
        if cfg.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        ir, vis_y = batch[:, :1], batch[:, 1:]
        fused = model(ir, vis_y)
        loss, parts = fusion_loss(fused, ir, vis_y, cfg.loss)
        if not torch.isfinite(loss):
            raise CldynError(f"loss became {float(loss)} at step {global_step}; lower --lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        ctx.average_gradients(params)
        opt.step()
        global_step += 1
        if ctx.active:  # log the global batch's loss
            keys = sorted(parts)
            mean = ctx.average_(torch.tensor([float(parts[k]) for k in keys], dtype=torch.float64))
            parts = dict(zip(keys, mean.tolist(), strict=True))
        rows.append({"step": global_step, "epoch": epoch, **{k: f"{v:.6f}" for k, v in parts.items()},
                     "lr": cfg.lr, "seconds": f"{time.perf_counter() - t0:.2f}"})
        bar.update(1)
        bar.set_postfix(loss=f"{parts['loss']:.4f}", epoch=epoch)
        if global_step % cfg.checkpoint_every == 0 or global_step % steps_per_epoch == 0 \
                or global_step == total_steps:
            save()
    bar.close()
    if saved_at != global_step and resumed_at != global_step:  # e.g. zero steps requested
        save()
    if ctx.is_main:
        atomic_write_bytes(out / "train_config.json", json.dumps(cfg.to_dict(), indent=2).encode())
    return ckpt_path

