"""cldyn: CLDyN closed-loop dynamic network for multi-task-aware infrared-visible image fusion.

The public API, imported on first use (``import cldyn`` alone loads neither torch nor any model code)::

    import cldyn

    fuser = cldyn.Fuser(device="auto")              # shipped VFN weights
    fuser.fuse_files("ir.png", "vis.png", "fused.png")
    net = cldyn.create_vfn("vfn_maxdetail", pretrained=True)  # the shipped VFN, a plain nn.Module

Layers, lowest first (see docs/architecture.md): ``model`` -> ``weights`` / ``data`` -> ``tasks`` ->
``inference`` / ``training`` / ``evaluation`` -> ``cli``.
"""

from __future__ import annotations

import importlib
from typing import Any

from cldyn.version import __version__

# public name -> the module that defines it
_API: dict[str, str] = {
    # fusion
    "Fuser": "cldyn.inference.fuse",
    "FuseReport": "cldyn.inference.fuse",
    "fuse_tensors": "cldyn.inference.fuse",
    "fuse_tiled": "cldyn.inference.tiling",
    "load_customisation": "cldyn.inference.customise",
    "demo_pairs": "cldyn.inference.demo",
    "check_strength": "cldyn.inference.customise",
    # registration of unaligned pairs
    "align": "cldyn.data.align",
    "AlignConfig": "cldyn.data.align",
    "Alignment": "cldyn.data.align",
    "AlignmentError": "cldyn.data.align",
    # models and weights
    "VFN": "cldyn.model.vfn",
    "VFNConfig": "cldyn.model.vfn",
    "RSC": "cldyn.model.rsc",
    "RSCConfig": "cldyn.model.rsc",
    "CLDyN": "cldyn.model.rsc",
    "create_vfn": "cldyn.weights",
    "list_models": "cldyn.weights",
    "load_vfn": "cldyn.weights",
    "load_rsc": "cldyn.weights",
    "load_pretrained_vfn": "cldyn.weights",
    "load_pretrained_rsc": "cldyn.weights",
    # task networks
    "TaskAdapter": "cldyn.tasks.base",
    "create_task": "cldyn.tasks",
    "load_task": "cldyn.tasks",
    "load_pretrained_task": "cldyn.tasks",
    "load_task_for": "cldyn.tasks",
    "shipped_networks": "cldyn.weights",
    "list_tasks": "cldyn.tasks",
    # evaluation
    "evaluate_folders": "cldyn.evaluation.evaluate",
    "fusion_metrics": "cldyn.evaluation.evaluate",
    # errors
    "CldynError": "cldyn.errors",
    "InputError": "cldyn.errors",
    "CheckpointError": "cldyn.errors",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'cldyn' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # resolve once
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
