"""Closed-loop training of the RSC module (CLDyN stage 2): the run around :mod:`cldyn.loop`.

:mod:`cldyn.loop` holds one step (base pass, reward-penalty loss, CAGrad); this module holds the run: each task's data
stream, the RSC that trains and its optimiser, checkpoints, ``--resume`` and validation against the VFN. The
task-requirement pathway (:mod:`cldyn.model.task_encoder`) gets no weight decay: decay erased the upstream pathway,
whose gradient is small, in the first shipped weights.

Each task has its own data stream (dataset root and split), as in the paper. Batches are pure functions of
(seed, task, epoch, step), so a resumed run sees the same data. Gumbel noise in A2SI uses torch's global generator,
which is re-seeded from (seed, step) every step for the same reason.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from cldyn.data.bank import seeded_generator
from cldyn.data.io import write_csv
from cldyn.data.task_bank import TaskBank, load_task_bank
from cldyn.errors import CldynError
from cldyn.inference.sources import image_source
from cldyn.loop.cache import FrozenPassCache
from cldyn.loop.step import TaskBatch, apply_combined, pathway_mask, task_gradient, to_training_memory
from cldyn.model.rsc import RSC, CLDyN, RSCConfig
from cldyn.model.tone import ToneConfig
from cldyn.runtime import progress_bar
from cldyn.tasks import TaskAdapter, load_task_for
from cldyn.tasks.evaluation import PRIMARY_METRIC, evaluate_cldyn
from cldyn.training.distributed import DistContext, convert_batchnorm, local_context
from cldyn.training.loop import TrainingRun, average_parts, take_shard
from cldyn.training.rsc_config import RSCModelConfig, RSCOptimConfig, TrainRSCConfig
from cldyn.weights import load_pretrained_rsc, load_rsc_or_shipped, load_vfn_or_shipped, save_rsc


def frozen_fingerprint(vfn: torch.nn.Module, adapters: dict[str, TaskAdapter], cfg: TrainRSCConfig) -> str:
    """SHA-256 of everything the VFN's validation metrics depend on: the frozen VFN's and task networks' tensors,
    each task's dataset root, the val split and the val limit. A resumed run whose fingerprint matches the saved one
    reuses those metrics instead of computing them again (a full pass over the val split per task)."""
    streams = cfg.streams
    h = hashlib.sha256(json.dumps([streams.val_split, cfg.run.val_limit, {t: streams.data[t] for t in streams.tasks}],
                                  sort_keys=True).encode())
    for name, module in (("vfn", vfn), *sorted((t, adapters[t].model) for t in streams.tasks)):
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


def with_fresh_tone_head(rsc: RSC, cfg: RSCConfig) -> RSC:
    """``rsc``'s weights in an RSC of configuration ``cfg``, which adds a fresh (identity) tone head: to train a
    tone head on top of trained A2SI blocks."""
    fresh = RSC(cfg)
    missing, unexpected = fresh.load_state_dict(rsc.state_dict(), strict=False)
    if unexpected or any(not k.startswith("tone.") for k in missing):
        raise CldynError(f"RSC weights do not fit the requested configuration (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]})")
    return fresh


def build_rsc(cfg: RSCModelConfig, vfn: torch.nn.Module) -> RSC:
    """The RSC that a run starts from: fresh, the shipped one, or a checkpoint (``cfg.init``), with the run's
    ablation switch and, where asked for and missing, a fresh tone head."""
    rsc_cfg = cfg.rsc_config(vfn.cfg.width, vfn.num_stages - 1)
    if cfg.init == "shipped":
        rsc = load_pretrained_rsc(vfn)
    else:  # a checkpoint, or a shipped RSC by name (visible)
        rsc = load_rsc_or_shipped(cfg.init, vfn) if cfg.init else RSC(rsc_cfg)
    if cfg.init:  # the ablation switch is the run's, whatever the starting weights were trained with
        rsc.cfg = replace(rsc.cfg, closed_loop=cfg.closed_loop)
        untoned = replace(rsc_cfg, tone=ToneConfig()).to_dict()
        if rsc.tone is None and rsc_cfg.tone.knots and rsc.cfg.to_dict() == untoned:
            rsc = with_fresh_tone_head(rsc, rsc_cfg)
    if rsc.cfg.to_dict() != rsc_cfg.to_dict():
        raise CldynError(f"{cfg.init}: its RSC configuration differs from the requested one "
                         "(task encoder, selection, filters or bank)")
    return rsc


def rsc_optimiser(rsc: RSC, optim: RSCOptimConfig) -> tuple[torch.optim.Adam, list[torch.nn.Parameter]]:
    """Adam over the RSC's trainable parameters, and those parameters. Neither the task pathway nor the tone head
    is decayed: a part that starts at zero or learns slowly would be erased by weight decay before it learns (what
    happened to the upstream pathway's embeddings)."""
    params = [p for p in rsc.parameters() if p.requires_grad]
    undecayed = {id(p) for p in rsc.task_pathway_parameters()}
    undecayed |= {id(p) for p in rsc.tone.parameters()} if rsc.tone is not None else set()
    opt = torch.optim.Adam([{"params": [p for p in params if id(p) not in undecayed]},
                            {"params": [p for p in params if id(p) in undecayed], "weight_decay": 0.0}],
                           lr=optim.lr, weight_decay=optim.weight_decay)
    return opt, params


def task_batch(bank: TaskBank, task: str, k: int, step: int, cfg: TrainRSCConfig, gumbel_shape: Callable[[int], Any]
               ) -> TaskBatch:
    """Task ``k``'s batch of ``step``: a pure function of (seed, task, epoch, step), so a resumed run sees the
    same data; with ``cache_batches`` the stream cycles through its first N batches. Its cache key is
    ``(task, batch index)``. Gumbel noise is drawn for the whole global batch, so each sample gets the same noise on
    any process count."""
    seed, size = cfg.optim.seed, cfg.optim.batch_size
    per_epoch = max(1, len(bank) // size)
    stream = step % cfg.streams.cache_batches if cfg.streams.cache_batches else step
    epoch, j = divmod(stream, per_epoch)
    order = torch.randperm(len(bank), generator=seeded_generator(seed, k, epoch))
    idx = order[j * size:(j + 1) * size].tolist()
    x, y = bank.batch(idx, seeded_generator(seed, k, epoch, j), cfg.optim.crop)
    gumbel = -torch.empty(gumbel_shape(len(idx))).exponential_(generator=seeded_generator(seed, 11, k, step)).log()
    return TaskBatch(x[:, :1], x[:, 1:], y, gumbel, (task, stream))


def train_rsc(cfg: TrainRSCConfig, resume: bool = False, progress: bool = True,
              log: Callable[[str], None] = print, adapters: dict[str, TaskAdapter] | None = None,
              vfn=None, dist_ctx: DistContext | None = None) -> Path:
    """Train RSC + bank in the closed loop; returns the best checkpoint's path.

    Under ``torchrun`` (``dist_ctx``), each process takes its shard of every task's global batch (with that shard's
    Gumbel noise), each task's gradient is averaged over processes before CAGrad, and only rank 0 validates and
    writes.
    """
    streams, run_cfg, optim = cfg.streams, cfg.run, cfg.optim
    tasks = streams.tasks
    ctx = dist_ctx or local_context(run_cfg.device)
    device = torch.device(ctx.device)
    ctx.shard(list(range(optim.batch_size)), "--batch-size")
    progress, log = progress and ctx.is_main, ctx.quiet(log)
    missing = [t for t in tasks if t not in streams.data]
    if missing:
        raise CldynError(f"no dataset given for task(s) {missing}; use --data TASK=ROOT (or one ROOT for all)")
    vfn = vfn if vfn is not None else load_vfn_or_shipped(streams.vfn_weights)
    adapters = adapters or {t: load_task_for(t, streams.task_weights.get(t)) for t in tasks}
    for a in adapters.values():
        a.freeze()
    torch.manual_seed(optim.seed)
    rsc_cfg = cfg.rsc.rsc_config(vfn.cfg.width, vfn.num_stages - 1)
    model = CLDyN(vfn, build_rsc(cfg.rsc, vfn)).to(device)
    for a in adapters.values():
        a.to(device)
    memory = to_training_memory(model, adapters.values(), device, run_cfg.channels_last)
    if ctx.active:
        convert_batchnorm(model.rsc)
    source = image_source("pair")
    train_banks: dict[str, TaskBank] = {}
    val_banks: dict[str, TaskBank] = {}
    for task in tasks:
        for split, banks in ((streams.train_split, train_banks), (streams.val_split, val_banks)):
            a = adapters[task]
            banks[task] = load_task_bank(a.task, streams.data[task], split, source, a.config, log,
                                         classes=a.label_classes)
        log(f"{task}: {len(train_banks[task])} train / {len(val_banks[task])} val pairs from {streams.data[task]}")
    tone_only = cfg.rsc.trainable == "tone"
    if tone_only:
        model.rsc.requires_grad_(False)
        model.rsc.tone.requires_grad_(True)
    opt, params = rsc_optimiser(model.rsc, optim)
    in_pathway = pathway_mask(params, {id(p) for p in model.rsc.task_pathway_parameters()}).to(device)
    in_tone = pathway_mask(params, {id(p) for p in model.rsc.tone.parameters()}).to(device) \
        if model.rsc.tone is not None else None

    def write_log(csv_path: Path, rows: list[dict]) -> None:
        if rows:
            write_csv(csv_path, rows)

    def check(meta: dict) -> str | None:
        # runs from before the keys existed
        saved = {"closed_loop": cfg.rsc.closed_loop, "tone": asdict(ToneConfig()), **(meta.get("rsc_config") or {})}
        return None if saved == rsc_cfg.to_dict() else "RSC configuration differs from the requested one"

    run = TrainingRun(run_cfg.out_dir, "train_rsc", "rsc", ctx, "log.csv", write_log)
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

    cache = FrozenPassCache(enabled=bool(streams.cache_batches))
    bar = progress_bar(total=optim.steps, initial=step, disable=not progress, desc="train-rsc", unit="step")
    t0 = time.perf_counter()
    while step < optim.steps:
        torch.manual_seed(int(seeded_generator(optim.seed, 7, step).initial_seed()))  # Gumbel noise per step
        model.train()
        if tone_only:  # the frozen blocks run as at inference (running BatchNorm, no Gumbel noise)
            model.rsc.eval()
            model.rsc.tone.train()
        grads, row = [], {"step": step + 1}
        for k, task in enumerate(tasks):
            batch = task_batch(train_banks[task], task, k, step, cfg, model.rsc.gumbel_shape)
            ir, vis, y = take_shard(ctx, batch.ir, batch.vis, batch.targets)
            (gumbel,) = take_shard(ctx, batch.gumbel, dim=1)
            batch = TaskBatch(ir.to(device).contiguous(memory_format=memory),
                              vis.to(device).contiguous(memory_format=memory),
                              y.to(device) if isinstance(y, torch.Tensor) else y,  # box lists: the adapter moves them
                              gumbel.to(device), batch.key)
            other = cfg.other_task(k, step)
            flat, parts = task_gradient(model, adapters[task], batch, params, cfg.loss, cache,
                                        other=adapters[tasks[other]] if other is not None else None,
                                        tone_only=tone_only)
            flat = ctx.average_(flat)
            grads.append(flat)
            parts = average_parts(ctx, parts)  # log the global batch's values
            # How much of this task's gradient reaches the task pathway (the upstream pathway's got ~none).
            pathway_norm = flat[in_pathway].norm()
            parts["pathway_grad_norm"] = float(pathway_norm)
            parts["pathway_grad_share"] = float(pathway_norm / flat.norm().clamp_min(1e-12))
            if in_tone is not None:
                parts["tone_grad_share"] = float(flat[in_tone].norm() / flat.norm().clamp_min(1e-12))
            row.update({f"{task}_{key}": round(v, 6) for key, v in parts.items()})
        apply_combined(params, torch.stack(grads), optim.aggregate, optim.cagrad_c, optim.clip,
                       seeded_generator(optim.seed, 9, step))
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        row["seconds"] = round(time.perf_counter() - t0, 1)
        rows.append(row)
        bar.update(1)
        bar.set_postfix({t[:3]: row[f"{t}_loss"] for t in tasks})
        validate = step % run_cfg.val_every == 0 or step == optim.steps
        if validate and not ctx.is_main:
            save_last()
        elif validate:
            if base_metrics is None:
                base_metrics = {t: evaluate_cldyn(model, adapters[t], val_banks[t], run_cfg.val_limit,
                                                  customised=False) for t in tasks}
            metrics = {t: evaluate_cldyn(model, adapters[t], val_banks[t], run_cfg.val_limit) for t in tasks}
            score = _score(metrics, base_metrics)
            _validation_row(row, rows, metrics, base_metrics, score, tasks, step, run_cfg.val_every)
            bar.write(f"step {step}: val score {score:+.4f} " + " ".join(
                f"{t}:{row[f'{t}_val_' + PRIMARY_METRIC[t][0]]:.4f}(vfn {row[f'{t}_vfn_' + PRIMARY_METRIC[t][0]]:.4f},"
                f" penalty active {row[f'{t}_penalty_share']:.0%})" for t in tasks if t in PRIMARY_METRIC))
            if score == score and (best is None or score > best):
                best = score
                save_rsc(run.best, model.rsc, {"global_step": step, "val_score": score, "val": metrics,
                                                 "train_config": cfg.to_dict()})
            save_last()
        elif step % run_cfg.checkpoint_every == 0:
            save_last()
    bar.close()
    run.finish(step, save_last, cfg.to_dict())
    return run.best


def _validation_row(row: dict, rows: list[dict], metrics: dict, base_metrics: dict, score: float, tasks: list[str],
                    step: int, every: int) -> None:
    """Add a validation's figures to the log row: the score, each task's primary metric on CLDyN and on VFN, and the
    share of steps since the previous validation in which each task's penalty was active."""
    row["val_score"] = round(score, 6)
    for t in tasks:
        key = PRIMARY_METRIC.get(t, ("loss", False))[0]
        row[f"{t}_val_{key}"] = metrics[t].get(key)
        row[f"{t}_vfn_{key}"] = base_metrics[t].get(key)
    recent = [r for r in rows if int(r["step"]) > step - every]
    for t in tasks:
        row[f"{t}_penalty_share"] = round(sum(float(r[f"{t}_penalty_active"]) for r in recent) / len(recent), 4)


__all__ = ["build_rsc", "frozen_fingerprint", "rsc_optimiser", "task_batch", "train_rsc", "with_fresh_tone_head"]
