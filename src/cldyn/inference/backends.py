"""What runs the fusion of a batch: one backend object per backend, behind one small protocol.

- :class:`VFNBackend`: the VFN in PyTorch (BatchNorm folded, channels-last on CPU);
- :class:`CLDyNBackend`: task-customised fusion, the VFN with a frozen task network and one or more RSCs;
- :class:`~cldyn.inference.onnx_backend.OnnxBackend`: a graph from ``cldyn export`` run by onnxruntime.

:func:`make_backend` turns :class:`~cldyn.inference.fuse.Fuser`'s arguments into one of them; the fuser then only
batches, tiles, reads and writes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from cldyn.errors import CldynError
from cldyn.inference.customise import DEFAULT_STRENGTH, check_max_change, check_strength
from cldyn.inference.onnx_backend import OnnxBackend
from cldyn.model.color import luma_of, with_colour_of
from cldyn.model.folding import fold_batchnorm
from cldyn.model.rsc import DEFAULT_MAX_CHANGE, RSC, CLDyN
from cldyn.model.vfn import VFN, check_pair_tensors
from cldyn.tasks import load_task_for
from cldyn.tasks.base import TaskAdapter
from cldyn.weights import load_pretrained_vfn, load_rsc_or_shipped


def fuse_tensors(model: nn.Module, ir: torch.Tensor, vis: torch.Tensor, grad: bool = False) -> torch.Tensor:
    """Fuse infrared with a gray or colour visible image.

    Args:
        model: a VFN (or anything with its call signature ``model(ir, vis_y) -> fused_y``).
        ir: ``(B, 1, H, W)`` in [0, 1].
        vis: ``(B, 1, H, W)`` gray or ``(B, 3, H, W)`` RGB in [0, 1].
        grad: keep the autograd graph (e.g. to back-propagate through the fusion); by default the fusion runs
            under ``torch.inference_mode()`` and the result is a plain tensor (``.numpy()`` works).

    Returns:
        ``(B, C, H, W)`` with ``C`` the visible image's channel count: the fused luminance, recoloured with the
        visible chroma when ``vis`` is RGB.

    Example:
        >>> net = VFN().eval()
        >>> fuse_tensors(net, torch.rand(2, 1, 9, 7), torch.rand(2, 3, 9, 7)).shape
        torch.Size([2, 3, 9, 7])
    """
    if vis.dim() != 4 or vis.shape[1] not in (1, 3):
        raise ValueError(f"fuse_tensors: vis must be (B, 1, H, W) or (B, 3, H, W), got {tuple(vis.shape)}")
    vis_y = luma_of(vis)
    check_pair_tensors(ir, vis_y)
    with contextlib.nullcontext() if grad else torch.inference_mode():
        return with_colour_of(vis, model(ir, vis_y))


def prepare_for_inference(model: nn.Module, device: torch.device) -> nn.Module:
    """Eval-mode copy with BatchNorm folded into the convs, on ``device``; channels-last memory on CPU (faster
    for these narrow convs with oneDNN)."""
    model = fold_batchnorm(model).to(device)
    if device.type == "cpu":
        model = model.to(memory_format=torch.channels_last)
    return model.requires_grad_(False)


class FusionBackend(Protocol):
    """A backend fuses a batch ``ir`` ``(B, 1, H, W)``, ``vis`` ``(B, 1 or 3, H, W)`` on its device into
    :attr:`outputs` fused batches (CPU float tensors with the visible image's channels)."""

    outputs: int  # fused images per pair (one per RSC for task-customised fusion)
    customised: bool  # runs the closed loop: the memory estimate of task-customised fusion applies
    auto_tiles: bool  # may be tiled automatically when an image does not fit in memory

    def fuse_all(self, ir: torch.Tensor, vis: torch.Tensor) -> list[torch.Tensor]: ...


class VFNBackend:
    """The VFN in PyTorch, prepared for inference on ``device`` (:func:`prepare_for_inference`)."""

    outputs, customised, auto_tiles = 1, False, True

    def __init__(self, model: VFN, device: torch.device) -> None:
        self.model = prepare_for_inference(model, device)

    def fuse_all(self, ir: torch.Tensor, vis: torch.Tensor) -> list[torch.Tensor]:
        return [fuse_tensors(self.model, ir, vis).float().cpu()]


class CLDyNBackend:
    """Task-customised fusion: the VFN, a frozen task network and one or more RSCs at ``strength``. Several RSCs
    (e.g. seeds or ablations) share the base fusion and the task features."""

    customised = True

    def __init__(self, model: VFN, task: TaskAdapter, rscs: Sequence[RSC], device: torch.device,
                 strength: float | str = DEFAULT_STRENGTH, max_change: float | None = DEFAULT_MAX_CHANGE) -> None:
        if not rscs:
            raise CldynError("task-customised fusion needs RSC weights; the list given is empty")
        vfn = prepare_for_inference(model, device)
        self.task, self.strength = task.to(device).freeze(), check_strength(strength)
        self.cldyns = [CLDyN(vfn, r.to(device), check_max_change(max_change)).eval().requires_grad_(False)
                       for r in rscs]
        self.outputs = len(self.cldyns)
        self.auto_tiles = self.outputs == 1  # a tile runs one RSC

    def fuse_all(self, ir: torch.Tensor, vis: torch.Tensor) -> list[torch.Tensor]:
        if self.outputs == 1:
            return [self.cldyns[0].fuse(ir, vis, self.task, strength=self.strength).float().cpu()]
        base_y, reach = self.cldyns[0].base_luma_and_reach(ir, vis)
        feats = self.cldyns[0].features_of_base(with_colour_of(vis, base_y), self.task)
        return [m.customised(ir, vis, feats, base_y, reach, self.strength, self.task).float().cpu()
                for m in self.cldyns]

    def fuse_with_base(self, ir: torch.Tensor, vis: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(vfn, customised)`` of the first RSC, from one pass of the closed loop."""
        return self.cldyns[0].fuse_with_base(ir, vis, self.task, strength=self.strength)


RSCInput = RSC | str | Path | Sequence[RSC]


def make_backend(model: VFN | None, device: torch.device, task: str | TaskAdapter | None = None,
                 rsc: RSCInput | None = None, onnx: str | Path | None = None,
                 strength: float | str = DEFAULT_STRENGTH, max_change: float | None = DEFAULT_MAX_CHANGE
                 ) -> FusionBackend:
    """The backend for :class:`~cldyn.inference.fuse.Fuser`'s arguments.

    Args:
        model: a trained VFN; ``None``: the shipped one.
        task: a task name (its shipped network), a :class:`TaskAdapter`, or ``None`` / ``"none"`` (plain VFN).
        rsc: for a task: an RSC, the path or shipped name of its weights, a list of RSCs, or ``None`` (shipped).
        onnx: an exported graph for onnxruntime (which holds its task network already: no ``task``).
        strength, max_change: how far the customisation goes (:func:`cldyn.model.rsc.at_strength`).
    """
    check_strength(strength)
    if task == "none":
        task = None
    if onnx is not None:
        if task is not None:
            raise CldynError("--backend onnxruntime runs the exported graph, which already holds its task network "
                             "(cldyn export --task T); drop --task")
        return OnnxBackend(onnx)
    model = model if model is not None else load_pretrained_vfn()
    if task is None:
        return VFNBackend(model, device)
    if isinstance(task, str):
        task = load_task_for(task)
    if isinstance(rsc, (str, Path)) or rsc is None:
        rsc = load_rsc_or_shipped(rsc, model)
    return CLDyNBackend(model, task, [rsc] if isinstance(rsc, RSC) else list(rsc), device, strength, max_change)


__all__ = ["CLDyNBackend", "FusionBackend", "OnnxBackend", "VFNBackend", "fuse_tensors", "make_backend",
           "prepare_for_inference"]
