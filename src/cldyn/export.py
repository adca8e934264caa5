"""ONNX export of the VFN (``cldyn export --task none``), runnable in onnxruntime with dynamic batch, height and
width. Task-customised (CLDyN) export is not available yet."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from cldyn.vfn import VFN, fold_batchnorm


class _FuseLuma(nn.Module):
    """ONNX entry point: ``(ir, vis_y)`` both ``(B, 1, H, W)`` -> fused luminance ``(B, 1, H, W)``."""

    def __init__(self, vfn: VFN) -> None:
        super().__init__()
        self.vfn = vfn

    def forward(self, ir: torch.Tensor, vis_y: torch.Tensor) -> torch.Tensor:
        return self.vfn.forward_head(self.vfn.forward_features(ir, vis_y))


def export_vfn_onnx(vfn: VFN, path: str | Path, opset: int = 17) -> Path:
    """Write ``vfn`` (BatchNorm folded) as ONNX with inputs ``ir``, ``vis_y`` and output ``fused_y``.

    Sides must be at least 2 pixels (the PyTorch model pads smaller inputs itself; the exported graph does not).
    """
    path = Path(path)
    model = _FuseLuma(fold_batchnorm(vfn).eval())
    example = (torch.rand(1, 1, 64, 80), torch.rand(1, 1, 64, 80))
    axes = {0: "batch", 2: "height", 3: "width"}
    tmp = path.with_name(f".{path.name}.tmp")
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about shape arithmetic that is constant here
        torch.onnx.export(model, example, str(tmp), input_names=["ir", "vis_y"], output_names=["fused_y"],
                          dynamic_axes={"ir": axes, "vis_y": axes, "fused_y": axes}, opset_version=opset,
                          dynamo=False)
    tmp.replace(path)
    return path
