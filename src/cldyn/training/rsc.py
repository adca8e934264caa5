"""Closed-loop training of the RSC module (CLDyN stage 2).

Per step and task: base fusion by the frozen VFN (no gradient) -> the frozen task network's features and loss
``L_base`` on the base fused image -> compensated fusion with those features -> task loss ``L`` -> reward-penalty
loss ``L + penalty * max(0, L - L_base)``, plus ``fusion_weight`` times the VFN's own fusion loss on the compensated
luminance (what keeps fusion quality; 0 is the paper's loss), ``change_weight`` times its mean absolute change
from the base luminance, and ``specificity_weight`` times a hinge that asks the compensation made with this task's
features to serve this task better than the one made with another task network's features (what makes the
customisation specific to the task). The per-task gradients over the RSC parameters (bank
included) are combined with CAGrad (or the mean / PCGrad for ablations), clipped to norm 1 and applied with Adam.
The task-requirement pathway (:mod:`cldyn.model.task_encoder`) gets no weight decay: decay erased the upstream
pathway, whose gradient is small, in the first shipped weights.

Each task has its own data stream (dataset root and split), as in the paper. Batches are pure functions of
(seed, task, epoch, step), so a resumed run sees the same data. Gumbel noise in A2SI uses torch's global generator,
which is re-seeded from (seed, step) every step for the same reason.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from cldyn.data.bank import seeded_generator
from cldyn.data.io import write_csv
from cldyn.data.task_bank import TaskBank, load_task_bank
from cldyn.errors import CldynError
from cldyn.inference.sources import image_source
from cldyn.model.a2si import A2SIConfig
from cldyn.model.basis_bank import BankConfig
from cldyn.model.color import luma_of
from cldyn.model.rsc import RSC, CLDyN, RSCConfig
from cldyn.model.tone import ToneConfig
from cldyn.runtime import progress_bar
from cldyn.tasks import TaskAdapter, load_task_for
from cldyn.tasks.evaluation import PRIMARY_METRIC, evaluate_cldyn
from cldyn.training.cagrad import combine
from cldyn.training.closed_loop import (
    BasePass,
    base_pass,
    closed_loop_losses,
    features_of_base_luma,
    pathway_mask,
    to_training_memory,
    with_fresh_tone_head,
)
from cldyn.training.distributed import DistContext, convert_batchnorm, local_context
from cldyn.training.loop import TrainingRun, average_parts, take_shard
from cldyn.weights import load_pretrained_rsc, load_rsc, load_vfn_or_shipped, save_rsc


@dataclass
class TrainRSCConfig:
    """Closed-loop settings; defaults are the paper's (Adam lr 0.01, weight decay 1e-4, CAGrad c = 0.5, penalty
    weight 5, clipping 1.0; bank 4 x 32 x 256; 4 filters).

    ``data`` maps each task to its dataset root. Ablations: ``penalty=0`` (no penalty), ``closed_loop=False``
    (task features replaced by zeros), ``aggregate="mean"``, ``selection="upstream"``, ``task_encoder="upstream"``
    (the public code's task pathway), ``fusion_weight=0`` (the paper's loss, no fusion-quality term).
    """

    tasks: list[str] = field(default_factory=lambda: ["detection", "segmentation", "saliency"])
    data: dict[str, str] = field(default_factory=dict)
    task_weights: dict[str, str] = field(default_factory=dict)  # task -> checkpoint; absent: shipped network
    vfn_weights: str | None = None
    out_dir: str = "runs/rsc"
    train_split: str = "train"
    val_split: str = "val"
    steps: int = 2000
    batch_size: int = 4
    crop: int = 320
    lr: float = 0.01
    weight_decay: float = 1e-4
    aggregate: str = "cagrad"
    cagrad_c: float = 0.5
    penalty: float = 5.0
    clip: float = 1.0
    closed_loop: bool = True
    selection: str = "trainable"
    task_encoder: str = "semantic"
    fusion_weight: float = 1.0  # weight of the VFN fusion loss on the compensated image (0: the paper's loss)
    # weight of mean |compensated - base luminance| (in [0, 1] units), an L1 penalty on the customisation's change
    # of the image: it keeps the change where a task's loss asks for it. MI falls about 20% for any dense change of
    # 1.3 grey levels that is not a function of intensity, and under 2% for the same mean change on 2% of the pixels
    # (docs/training/mi_sensitivity.json). 0: off (the paper's loss).
    change_weight: float = 0.0
    # weight of the task-specificity hinge max(0, margin + (L - L_other) / L_base): L_other is this task's loss on the
    # compensation made with another task network's features of the same base image (the other task rotates over
    # steps). It costs one more compensated pass a task and step, and asks each task's customisation to serve its
    # own task better than the others' do (the cross-task table). 0: off (the paper's loss).
    specificity_weight: float = 0.0
    specificity_margin: float = 0.02  # the margin, relative to the base loss
    # knots of the tone head (cldyn.model.tone: a monotone tone curve of the compensated luminance, chosen from the
    # task features); 0: none (the paper's RSC). tone_max_levels: the largest move of one knot, 8-bit grey levels.
    tone_knots: int = 0
    tone_max_levels: float = 8.0
    # what trains: "all" (the RSC and bank) or "tone" (the tone head alone, the A2SI blocks and bank frozen as
    # loaded: a step then needs no backward pass through the VFN and the blocks)
    trainable: str = "all"
    # RSC weights to start from (a fresh optimiser at step 0): a checkpoint, or "shipped" (continue the shipped RSC
    # for another network, e.g. a user's own); None: a fresh RSC
    init: str | None = None
    # > 0: each task's stream cycles through its first N batches, whose base-fusion task features and base loss are
    # computed once and kept (the VFN and task networks are frozen: they depend on the crop alone). 0: a fresh crop
    # every step, as in the paper.
    cache_batches: int = 0
    filter_num: int = 4
    bank: BankConfig = field(default_factory=BankConfig)
    seed: int = 0
    checkpoint_every: int = 50
    val_every: int = 500
    val_limit: int | None = None  # validate on the first N val images of each task (None or 0: all)
    device: str = "cpu"  # cpu, cuda, cuda:N or auto (under torchrun: each process's own GPU)
    # on CPU, the VFN, RSC, task networks and batches in channels-last memory (closed_loop.to_training_memory;
    # same losses, gradients within 4e-6 relative)
    channels_last: bool = True

    def __post_init__(self) -> None:
        if self.trainable not in ("all", "tone"):
            raise ValueError(f"trainable must be 'all' or 'tone', got {self.trainable!r}")
        if self.trainable == "tone" and not self.tone_knots:
            raise ValueError("trainable='tone' needs a tone head (tone_knots >= 2)")
        if not self.val_limit:  # 0 means all, as for train-vfn (a slice [:0] would validate on nothing)
            self.val_limit = None

    def other_task(self, k: int, step: int) -> int | None:
        """Index of the task whose network's features give task ``k``'s contrasting compensation at ``step`` for
        the specificity term: the other tasks in turn (``None`` when the term is off, there is one task, or the
        closed loop is off: zero features are the same for every task)."""
        n = len(self.tasks)
        if not self.specificity_weight or n < 2 or not self.closed_loop:
            return None
        return (k + 1 + step % (n - 1)) % n

    def to_dict(self) -> dict:
        return asdict(self)


def frozen_fingerprint(vfn: torch.nn.Module, adapters: dict[str, TaskAdapter], cfg: TrainRSCConfig) -> str:
    """SHA-256 of everything the VFN's validation metrics depend on: the frozen VFN's and task networks' tensors,
    each task's dataset root, the val split and the val limit. A resumed run whose fingerprint matches the saved one
    reuses those metrics instead of computing them again (a full pass over the val split per task)."""
    h = hashlib.sha256(json.dumps([cfg.val_split, cfg.val_limit, {t: cfg.data[t] for t in cfg.tasks}],
                                  sort_keys=True).encode())
    for name, module in (("vfn", vfn), *sorted((t, adapters[t].model) for t in cfg.tasks)):
        h.update(name.encode())
        for key, tensor in module.state_dict().items():
            h.update(key.encode())
            h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _score(metrics: dict[str, dict[str, Any]], base: dict[str, dict[str, Any]]) -> float:
    """Mean relative change of each task's primary metric against plain VFN (higher is better); NaN when no task
    has a usable metric (such a validation never becomes the best checkpoint)."""
    gains = []
    for task, m in metrics.items():
        key, higher = PRIMARY_METRIC.get(task, ("loss", False))
        v, b = m.get(key), base[task].get(key)
        if v is None or b is None or b != b or v != v:
            continue
        gains.append(((v - b) if higher else (b - v)) / max(abs(b), 1e-6))
    return sum(gains) / len(gains) if gains else float("nan")


def train_rsc(cfg: TrainRSCConfig, resume: bool = False, progress: bool = True,
              log: Callable[[str], None] = print, adapters: dict[str, TaskAdapter] | None = None,
              vfn=None, dist_ctx: DistContext | None = None) -> Path:
    """Train RSC + bank in the closed loop; returns the best checkpoint's path.

    Under ``torchrun`` (``dist_ctx``), each process takes its shard of every task's global batch (with that shard's
    Gumbel noise), each task's gradient is averaged over processes before CAGrad, and only rank 0 validates and
    writes.
    """
    ctx = dist_ctx or local_context(cfg.device)
    device = torch.device(ctx.device)
    ctx.shard(list(range(cfg.batch_size)), "--batch-size")
    progress, log = progress and ctx.is_main, ctx.quiet(log)
    missing = [t for t in cfg.tasks if t not in cfg.data]
    if missing:
        raise CldynError(f"no dataset given for task(s) {missing}; use --data TASK=ROOT (or one ROOT for all)")
    vfn = vfn if vfn is not None else load_vfn_or_shipped(cfg.vfn_weights)
    adapters = adapters or {t: load_task_for(t, cfg.task_weights.get(t)) for t in cfg.tasks}
    for a in adapters.values():
        a.freeze()
    torch.manual_seed(cfg.seed)
    rsc_cfg = RSCConfig(num_stages=vfn.num_stages - 1,
                        a2si=A2SIConfig(channels=vfn.cfg.width, filter_num=cfg.filter_num, selection=cfg.selection,
                                        task_encoder=cfg.task_encoder),
                        bank=cfg.bank, closed_loop=cfg.closed_loop,
                        tone=ToneConfig(knots=cfg.tone_knots, max_levels=cfg.tone_max_levels))
    if cfg.init == "shipped":
        rsc = load_pretrained_rsc(vfn)
    else:
        rsc = load_rsc(cfg.init, vfn=vfn) if cfg.init else RSC(rsc_cfg)
    if cfg.init:  # the ablation switch is the run's, whatever the starting weights were trained with
        rsc.cfg = replace(rsc.cfg, closed_loop=cfg.closed_loop)
        untoned = replace(rsc_cfg, tone=ToneConfig()).to_dict()
        if rsc.tone is None and rsc_cfg.tone.knots and rsc.cfg.to_dict() == untoned:
            rsc = with_fresh_tone_head(rsc, rsc_cfg)
    if rsc.cfg.to_dict() != rsc_cfg.to_dict():
        raise CldynError(f"{cfg.init}: its RSC configuration differs from the requested one "
                         "(task encoder, selection, filters or bank)")
    model = CLDyN(vfn, rsc).to(device)
    for a in adapters.values():
        a.to(device)
    memory = to_training_memory(model, adapters.values(), device, cfg.channels_last)
    if ctx.active:
        convert_batchnorm(model.rsc)
    source = image_source("pair")
    train_banks: dict[str, TaskBank] = {}
    val_banks: dict[str, TaskBank] = {}
    for task in cfg.tasks:
        for split, banks in ((cfg.train_split, train_banks), (cfg.val_split, val_banks)):
            a = adapters[task]
            banks[task] = load_task_bank(a.task, cfg.data[task], split, source, a.config, log, classes=a.label_classes)
        log(f"{task}: {len(train_banks[task])} train / {len(val_banks[task])} val pairs from {cfg.data[task]}")
    if cfg.trainable == "tone":
        model.rsc.requires_grad_(False)
        model.rsc.tone.requires_grad_(True)
    params = [p for p in model.rsc.parameters() if p.requires_grad]
    pathway = {id(p) for p in model.rsc.task_pathway_parameters()}
    tone = {id(p) for p in model.rsc.tone.parameters()} if model.rsc.tone is not None else set()
    # Neither the task pathway nor the tone head is decayed: a part that starts at zero or learns slowly would be
    # erased by weight decay before it learns (what happened to the upstream pathway's embeddings).
    opt = torch.optim.Adam([{"params": [p for p in params if id(p) not in pathway | tone]},
                            {"params": [p for p in params if id(p) in pathway | tone], "weight_decay": 0.0}],
                           lr=cfg.lr, weight_decay=cfg.weight_decay)
    in_pathway = pathway_mask(params, pathway).to(device)
    in_tone = pathway_mask(params, tone).to(device) if tone else None

    def write_log(csv_path: Path, rows: list[dict]) -> None:
        if rows:
            write_csv(csv_path, rows)

    def check(meta: dict) -> str | None:
        # runs from before the keys existed
        saved = {"closed_loop": cfg.closed_loop, "tone": asdict(ToneConfig()), **(meta.get("rsc_config") or {})}
        return None if saved == rsc_cfg.to_dict() else "RSC configuration differs from the requested one"

    run = TrainingRun(cfg.out_dir, "train_rsc", "rsc", ctx, "log.csv", write_log)
    meta = run.start(resume, model.rsc, opt, check, log)
    step, best = (int(meta["global_step"]), meta.get("best")) if meta else (0, None)
    rows = run.rows
    fingerprint = frozen_fingerprint(vfn, adapters, cfg)
    saved = (meta or {}).get("vfn_val") or {}
    base_metrics: dict[str, dict[str, Any]] | None = \
        saved.get("metrics") if saved.get("fingerprint") == fingerprint else None
    if base_metrics is not None:
        log("the VFN's validation metrics: reused from the checkpoint (same networks, data and val split)")

    def save_last() -> None:
        vfn_val = {"fingerprint": fingerprint, "metrics": base_metrics} if base_metrics is not None else None
        run.save(step, model.rsc, opt, params, {"rsc_config": rsc_cfg.to_dict(), "best": best,
                                                "train_config": cfg.to_dict(), "vfn_val": vfn_val})

    cache: dict[tuple[str, int], BasePass] = {}  # (task, batch) -> base_pass
    untoned_cache: dict[tuple[str, int], torch.Tensor] = {}  # (task, batch) -> the frozen blocks' compensation
    other_cache: dict[tuple[str, int, int], torch.Tensor] = {}  # (task, batch, other task) -> its features
    bar = progress_bar(total=cfg.steps, initial=step, disable=not progress, desc="train-rsc", unit="step")
    t0 = time.perf_counter()
    while step < cfg.steps:
        torch.manual_seed(int(seeded_generator(cfg.seed, 7, step).initial_seed()))  # Gumbel noise per step
        model.train()
        if cfg.trainable == "tone":  # the frozen blocks run as at inference (running BatchNorm, no Gumbel noise)
            model.rsc.eval()
            model.rsc.tone.train()
        grads, row = [], {"step": step + 1}
        for k, task in enumerate(cfg.tasks):
            bank = train_banks[task]
            per_epoch = max(1, len(bank) // cfg.batch_size)
            stream = step % cfg.cache_batches if cfg.cache_batches else step
            epoch, j = divmod(stream, per_epoch)
            order = torch.randperm(len(bank), generator=seeded_generator(cfg.seed, k, epoch))
            idx = order[j * cfg.batch_size:(j + 1) * cfg.batch_size].tolist()
            x, y = bank.batch(idx, seeded_generator(cfg.seed, k, epoch, j), cfg.crop)
            # Gumbel noise for the whole global batch, so each sample gets the same noise on any process count.
            gumbel = -torch.empty(model.rsc.gumbel_shape(len(idx))).exponential_(
                generator=seeded_generator(cfg.seed, 11, k, step)).log()
            x, y = take_shard(ctx, x, y)
            (gumbel,) = take_shard(ctx, gumbel, dim=1)
            x, gumbel = x.to(device).contiguous(memory_format=memory), gumbel.to(device)
            y = y.to(device) if isinstance(y, torch.Tensor) else y  # box lists: the adapter moves them
            base = cache.get((task, stream))
            if base is None:
                base = base_pass(model, adapters[task], x[:, :1], x[:, 1:], y)
                if cfg.cache_batches:
                    cache[(task, stream)] = base
            other, other_feats = cfg.other_task(k, step), None
            if other is not None:
                other_feats = other_cache.get((task, stream, other))
                if other_feats is None:
                    other_feats = features_of_base_luma(adapters[cfg.tasks[other]], x[:, 1:], base[3])
                    if cfg.cache_batches:
                        other_cache[(task, stream, other)] = other_feats
            untoned = None
            if cfg.trainable == "tone":  # the frozen blocks' output depends on the crop alone, as the base pass
                untoned = untoned_cache.get((task, stream))
                if untoned is None:
                    with torch.no_grad():
                        untoned = model.untoned_luma(x[:, :1], luma_of(x[:, 1:]), base[0], base_reach=base[2])
                    if cfg.cache_batches:
                        untoned_cache[(task, stream)] = untoned
            total, parts = closed_loop_losses(model, adapters[task], x[:, :1], x[:, 1:], y, cfg.penalty,
                                              gumbel, cfg.fusion_weight, base, cfg.change_weight,
                                              other_feats, cfg.specificity_weight, cfg.specificity_margin, untoned)
            g = torch.autograd.grad(total, params, allow_unused=True)
            flat = ctx.average_(torch.cat([(gi if gi is not None else torch.zeros_like(p)).reshape(-1)
                                           for gi, p in zip(g, params, strict=True)]))
            grads.append(flat)
            parts = average_parts(ctx, parts)  # log the global batch's values
            # How much of this task's gradient reaches the task pathway (the upstream pathway's got ~none).
            pathway_norm = flat[in_pathway].norm()
            parts["pathway_grad_norm"] = float(pathway_norm)
            parts["pathway_grad_share"] = float(pathway_norm / flat.norm().clamp_min(1e-12))
            if in_tone is not None:
                parts["tone_grad_share"] = float(flat[in_tone].norm() / flat.norm().clamp_min(1e-12))
            row.update({f"{task}_{key}": round(v, 6) for key, v in parts.items()})
        direction = combine(torch.stack(grads), cfg.aggregate, cfg.cagrad_c, seeded_generator(cfg.seed, 9, step))
        offset = 0
        for p in params:
            p.grad = direction[offset:offset + p.numel()].view_as(p).clone()
            offset += p.numel()
        torch.nn.utils.clip_grad_norm_(params, cfg.clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        row["seconds"] = round(time.perf_counter() - t0, 1)
        rows.append(row)
        bar.update(1)
        bar.set_postfix({t[:3]: row[f"{t}_loss"] for t in cfg.tasks})
        if (step % cfg.val_every == 0 or step == cfg.steps) and not ctx.is_main:
            save_last()
        elif step % cfg.val_every == 0 or step == cfg.steps:
            if base_metrics is None:
                base_metrics = {t: evaluate_cldyn(model, adapters[t], val_banks[t], cfg.val_limit, customised=False)
                                for t in cfg.tasks}
            metrics = {t: evaluate_cldyn(model, adapters[t], val_banks[t], cfg.val_limit) for t in cfg.tasks}
            score = _score(metrics, base_metrics)
            row["val_score"] = round(score, 6)
            for t in cfg.tasks:
                key = PRIMARY_METRIC.get(t, ("loss", False))[0]
                row[f"{t}_val_{key}"] = metrics[t].get(key)
                row[f"{t}_vfn_{key}"] = base_metrics[t].get(key)
            # Share of steps since the previous validation in which each task's penalty was active.
            recent = [r for r in rows if int(r["step"]) > step - cfg.val_every]
            for t in cfg.tasks:
                row[f"{t}_penalty_share"] = round(sum(float(r[f"{t}_penalty_active"]) for r in recent) / len(recent), 4)
            bar.write(f"step {step}: val score {score:+.4f} " + " ".join(
                f"{t}:{row[f'{t}_val_' + PRIMARY_METRIC[t][0]]:.4f}(vfn {row[f'{t}_vfn_' + PRIMARY_METRIC[t][0]]:.4f},"
                f" penalty active {row[f'{t}_penalty_share']:.0%})" for t in cfg.tasks if t in PRIMARY_METRIC))
            if score == score and (best is None or score > best):
                best = score
                save_rsc(run.best, model.rsc, {"global_step": step, "val_score": score, "val": metrics,
                                                 "train_config": cfg.to_dict()})
            save_last()
        elif step % cfg.checkpoint_every == 0:
            save_last()
    bar.close()
    run.finish(step, save_last, cfg.to_dict())
    return run.best
