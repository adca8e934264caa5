"""ONNX export, runnable in onnxruntime: the VFN alone (``cldyn export --task none``; dynamic batch, height and
width) and task-customised fusion, CLDyN with a fixed task network (``--task detection|segmentation|saliency``;
dynamic batch, height and width)."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from cldyn.data.io import atomic_write_bytes
from cldyn.errors import CldynError
from cldyn.inference.customise import DEFAULT_STRENGTH, check_max_change, check_strength
from cldyn.model.color import replace_luma, rgb_to_luma
from cldyn.model.folding import fold_batchnorm
from cldyn.model.rsc import AUTO_STRENGTH, DEFAULT_MAX_CHANGE, CLDyN, at_strength
from cldyn.model.vfn import VFN
from cldyn.runtime import require_extra


class _FuseLuma(nn.Module):
    """ONNX entry point: ``(ir, vis_y)`` both ``(B, 1, H, W)`` -> fused luminance ``(B, 1, H, W)``."""

    def __init__(self, vfn: VFN) -> None:
        super().__init__()
        self.vfn = vfn

    def forward(self, ir: torch.Tensor, vis_y: torch.Tensor) -> torch.Tensor:
        return self.vfn.forward_head(self.vfn.forward_features(ir, vis_y), ir, vis_y)


def export_vfn_onnx(vfn: VFN, path: str | Path, opset: int = 17) -> Path:
    """Write ``vfn`` (BatchNorm folded) as ONNX with inputs ``ir``, ``vis_y`` and output ``fused_y``.

    Sides must be at least 2 pixels (the PyTorch model pads smaller inputs itself; the exported graph does not).
    """
    require_extra("onnx", "onnx", "ONNX export")
    path = Path(path)
    model = _FuseLuma(fold_batchnorm(vfn).eval())
    example = (torch.rand(1, 1, 64, 80), torch.rand(1, 1, 64, 80))
    axes = {0: "batch", 2: "height", 3: "width"}
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about shape arithmetic that is constant here
        torch.onnx.export(model, example, buf, input_names=["ir", "vis_y"], output_names=["fused_y"],
                          dynamic_axes={"ir": axes, "vis_y": axes, "fused_y": axes}, opset_version=opset,
                          dynamo=False)
    atomic_write_bytes(path, buf.getvalue())
    return path


class _CustomisedFusion(nn.Module):
    """ONNX entry point of task-customised fusion: ``(ir (B, 1, H, W), vis (B, 3, H, W) RGB)`` -> fused luminance
    ``(B, 1, H, W)``; the closed loop of :meth:`cldyn.model.rsc.CLDyN.fuse` with the task network inside the graph."""

    def __init__(self, cldyn, task, strength: float = 1.0) -> None:
        super().__init__()
        self.cldyn, self.task, self.strength = cldyn, task, strength
        self.task_model = task.model  # registered, so the task network's weights go into the graph

    def forward(self, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        vis_y = rgb_to_luma(vis)
        base_y, reach = self.cldyn.vfn.forward_with_reach(ir, vis_y)
        base = replace_luma(vis, base_y)
        h, w = base.shape[-2:]
        # Replicate padding to multiples of 32 for the task network, as CLDyN.fuse; traced, so sizes stay dynamic.
        feats = self.task.features(F.pad(base, (0, (32 - w % 32) % 32, 0, (32 - h % 32) % 32), mode="replicate"))
        return at_strength(base_y, self.cldyn.compensated_luma(ir, vis_y, feats, base_reach=reach), self.strength,
                           self.cldyn.max_change)


def export_cldyn_onnx(vfn: VFN, rsc, task, path: str | Path, opset: int = 17, example_size: tuple[int, int] = (96, 128),
                      strength: float | str = DEFAULT_STRENGTH, max_change: float | None = DEFAULT_MAX_CHANGE) -> Path:
    """Write CLDyN customised for ``task`` (a frozen :class:`~cldyn.tasks.base.TaskAdapter`) as ONNX: inputs ``ir``
    ``(B, 1, H, W)`` and ``vis`` ``(B, 3, H, W)`` (RGB; repeat a gray image), output ``fused_y`` ``(B, 1, H, W)``;
    ``B``, ``H`` and ``W`` dynamic (sides >= 2); ``strength`` (see :meth:`cldyn.model.rsc.CLDyN.customised`) is
    fixed in the graph, and so is ``max_change`` (:func:`cldyn.model.rsc.at_strength`). The A2SI blocks run their
    static-shape path (:meth:`cldyn.model.a2si.A2SI.compensate_static`), which gives the same result."""
    h, w = example_size
    if h % 32 or w % 32:
        raise ValueError(f"example_size must be multiples of 32, got {example_size}")
    require_extra("onnx", "onnx", "ONNX export")
    path = Path(path)
    task.freeze()
    cldyn = CLDyN(vfn, rsc, check_max_change(max_change)).eval().requires_grad_(False)
    strength = check_strength(strength)
    if strength == AUTO_STRENGTH:
        raise CldynError("--strength auto chooses each image's strength by the task network's confidence, which an "
                         "exported graph does not do; give a number")
    model = _CustomisedFusion(cldyn, task, float(strength)).eval()
    example = (torch.rand(1, 1, h, w), torch.rand(1, 3, h, w))
    axes = {0: "batch", 2: "height", 3: "width"}
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, example, buf, input_names=["ir", "vis"], output_names=["fused_y"],
                          dynamic_axes={"ir": axes, "vis": axes, "fused_y": axes}, opset_version=opset, dynamo=False)
    atomic_write_bytes(path, buf.getvalue())
    return path
