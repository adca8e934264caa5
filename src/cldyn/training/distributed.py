"""Multi-process data-parallel training (``torchrun``): gloo on CPU, NCCL on GPU.

Every rank computes the same global batch (batches are pure functions of seed, epoch and step), keeps its own
contiguous shard of it, and after the backward pass the gradients are averaged across ranks with one all-reduce
over a flat buffer, which is what :class:`torch.nn.parallel.DistributedDataParallel` does. It is done explicitly
here because the closed loop combines *per-task* gradients with CAGrad (it needs each task's averaged gradient,
not their sum) and the task adapters call their bare networks (hooks, loss functions) rather than a wrapper.

BatchNorm layers being trained are replaced by :class:`CrossRankBatchNorm2d`, which normalises with the statistics
of the global batch (PyTorch's ``SyncBatchNorm`` only runs on GPUs), so a run on ``N`` processes computes what one
process computes on the whole batch, up to floating-point summation order.

Launch (one machine, 2 processes; several machines: add ``--nnodes``, ``--node-rank`` and
``--rdzv-endpoint HOST:PORT`` as in the torchrun documentation)::

    torchrun --nproc-per-node 2 -m cldyn.cli train-vfn --data ROOT --batch-size 16 ...
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from cldyn.errors import CldynError
from cldyn.runtime import resolve_device
from cldyn.version import __version__
from cldyn.weights.checkpoint import save_training_state


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: ``rank`` of ``world_size`` (1: a plain single-process run)."""

    rank: int = 0
    world_size: int = 1
    device: str = "cpu"  # where collectives run: CUDA tensors for NCCL, CPU for gloo

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def shard(self, items: list, what: str = "batch") -> list:
        """This rank's contiguous share of a global batch (its size must divide evenly)."""
        if not self.active:
            return items
        if len(items) % self.world_size:
            raise CldynError(f"{what} of {len(items)} does not split evenly over {self.world_size} processes")
        n = len(items) // self.world_size
        return items[self.rank * n:(self.rank + 1) * n]

    def average_(self, flat: torch.Tensor) -> torch.Tensor:
        """Average a tensor over ranks in place (one all-reduce)."""
        if self.active:
            work = flat.to(self.device)
            dist.all_reduce(work, op=dist.ReduceOp.SUM)
            flat.copy_(work.div_(self.world_size))
        return flat

    def average_gradients(self, params: list[nn.Parameter]) -> None:
        """Average ``.grad`` of ``params`` over ranks with one all-reduce over a flat buffer."""
        if not self.active:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = self.average_(torch.cat([g.reshape(-1) for g in grads]))
        offset = 0
        for p in params:
            n = p.numel()
            p.grad = flat[offset:offset + n].view_as(p).clone()
            offset += n

    def quiet(self, log: Callable[[str], None]) -> Callable[[str], None]:
        """``log`` on rank 0; a no-op elsewhere, so that only one process talks."""
        return log if self.is_main else _silent

    def save_training_state(self, path: str | Path, module: nn.Module, prefix: str, opt: torch.optim.Optimizer,
                            params: list[torch.Tensor], meta: dict[str, Any]) -> bool:
        """Write a resumable checkpoint (:func:`cldyn.weights.checkpoint.save_training_state`) from rank 0.

        Every rank must call it at the same step: the check that all ranks hold the same ``params`` is collective.
        ``meta`` gets ``world_size``, ``rank_max_abs_diff`` (that check's result) and the cldyn and torch versions.
        Returns whether this process wrote the file.
        """
        divergence = self.max_divergence(params)
        if not self.is_main:
            return False
        save_training_state(path, module, prefix, opt, {
            "cldyn_version": __version__, "torch": torch.__version__, **meta,
            "world_size": self.world_size, "rank_max_abs_diff": divergence})
        return True

    def max_divergence(self, params: list[torch.Tensor]) -> float:
        """Largest absolute difference between this rank's parameters and rank 0's (0 on one process)."""
        if not self.active:
            return 0.0
        flat = torch.cat([p.detach().reshape(-1).float() for p in params]).to(self.device)
        ref = flat.clone()
        dist.broadcast(ref, src=0)
        diff = (flat - ref).abs().max().reshape(1)
        dist.all_reduce(diff, op=dist.ReduceOp.MAX)
        return float(diff)


def _silent(_msg: str) -> None:
    pass


def init_distributed(device: str | torch.device = "auto") -> DistContext:
    """Join the process group that ``torchrun`` describes in the environment (NCCL when training on CUDA, gloo
    otherwise); a single process without it. ``device``: what the training will run on (``auto``, ``cpu``,
    ``cuda``); on CUDA each process takes the GPU of its ``LOCAL_RANK``."""
    dev = resolve_device(device)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext(device=str(dev))
    if dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(), device=str(dev))


def local_context(device: str | torch.device = "cpu") -> DistContext:
    """A single-process context on ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``)."""
    return DistContext(device=str(resolve_device(device)))


def shutdown_distributed(ctx: DistContext) -> None:
    if ctx.active and dist.is_initialized():
        dist.destroy_process_group()


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks; the gradient of each rank's input is the sum of every rank's output gradient."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: ARG004
        y = x.clone()
        dist.all_reduce(y, op=dist.ReduceOp.SUM)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: ARG004
        g = grad.clone()
        dist.all_reduce(g, op=dist.ReduceOp.SUM)
        return g


class CrossRankBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d that, in training mode inside a process group, normalises with the mean and variance of the
    whole global batch (two differentiable all-reduces: the mean, then the squared deviations). Same parameters,
    buffers and state-dict keys as ``nn.BatchNorm2d``; in eval mode, or on one process, it is ``nn.BatchNorm2d``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        if x.dim() != 4:
            raise ValueError(f"CrossRankBatchNorm2d expects (B, C, H, W), got {tuple(x.shape)}")
        c = x.shape[1]
        count = _AllReduceSum.apply(torch.tensor([x.numel() / c], dtype=x.dtype, device=x.device))
        mean = _AllReduceSum.apply(x.sum((0, 2, 3))) / count
        var = _AllReduceSum.apply((x - mean.view(1, c, 1, 1)).square().sum((0, 2, 3))) / count  # biased
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                n = float(count)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * (n / max(n - 1, 1.0)), alpha=m)
        y = (x - mean.view(1, c, 1, 1)) * torch.rsqrt(var.view(1, c, 1, 1) + self.eps)
        if self.affine:
            y = y * self.weight.view(1, c, 1, 1) + self.bias.view(1, c, 1, 1)
        return y


def convert_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``nn.BatchNorm2d`` in ``module`` by :class:`CrossRankBatchNorm2d` with the same state
    (in place for children; returns the module, or its replacement if it is a BatchNorm itself)."""
    if isinstance(module, nn.BatchNorm2d) and not isinstance(module, CrossRankBatchNorm2d):
        new = CrossRankBatchNorm2d(module.num_features, module.eps, module.momentum, module.affine,
                                   module.track_running_stats, device=_device_of(module), dtype=_dtype_of(module))
        new.load_state_dict(module.state_dict())
        new.train(module.training)
        new.requires_grad_(any(p.requires_grad for p in module.parameters()) or not list(module.parameters()))
        return new
    for name, child in module.named_children():
        new = convert_batchnorm(child)
        if new is not child:
            setattr(module, name, new)
    return module


def _device_of(m: nn.Module) -> torch.device | None:
    t = next(iter([*m.parameters(), *m.buffers()]), None)
    return None if t is None else t.device


def _dtype_of(m: nn.Module) -> torch.dtype | None:
    t = next(iter(m.parameters()), None)
    return None if t is None else t.dtype


__all__ = ["DistContext", "init_distributed", "local_context", "shutdown_distributed", "CrossRankBatchNorm2d",
           "convert_batchnorm"]
