"""Downstream task networks as pluggable adapters (see :mod:`cldyn.tasks.base` for the protocol).

Built-in tasks are registered by name and imported lazily, so ``import cldyn`` never pulls in ``transformers`` or
the optional ``ultralytics``. A user adapter is named ``module:Class`` (a :class:`TaskAdapter` subclass importable
from the current environment).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from cldyn.errors import CldynError
from cldyn.model.ops import as_rgb
from cldyn.tasks.base import TaskAdapter
from cldyn.weights import names_shipped_file, shipped_file, shipped_networks, shipped_task_file
from cldyn.weights.checkpoint import load_checkpoint

# The built-in detector needs core dependencies only; the Ultralytics YOLO adapter (AGPL extra cldyn[yolo]) stays
# available as "cldyn.tasks.detection:DetectionAdapter".
_BUILTIN: dict[str, str] = {
    "detection": "cldyn.tasks.detection_fcos:RetinaNetDetectionAdapter",
    "segmentation": "cldyn.tasks.segmentation:SegmentationAdapter",
    "saliency": "cldyn.tasks.saliency:SaliencyAdapter",
}


def list_tasks() -> list[str]:
    return sorted(_BUILTIN)


def task_class(spec: str) -> type[TaskAdapter]:
    """The adapter class for a built-in name or a ``module:Class`` path."""
    target = _BUILTIN.get(spec, spec)
    if ":" not in target:
        raise CldynError(f"unknown task {spec!r}; use one of {list_tasks()} or module:Class")
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise CldynError(f"task {spec!r}: cannot import {module_name} ({exc})") from None
    obj = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise CldynError(f"task {spec!r}: {module_name} has no attribute {attr!r}")
    if not (isinstance(obj, type) and issubclass(obj, TaskAdapter)):
        raise CldynError(f"task {spec!r}: {target} is not a cldyn.tasks.base.TaskAdapter subclass")
    obj.check_requires(f"task {spec!r}")
    return obj


def create_task(spec: str, config: dict[str, Any] | None = None) -> TaskAdapter:
    """A fresh (untrained) adapter from a name or ``module:Class`` and its config."""
    return task_class(spec)(config)


def load_task(path: str | Path, expected_sha256: str | None = None) -> TaskAdapter:
    """An adapter with weights, its class taken from the checkpoint's metadata."""
    _, meta = load_checkpoint(path, expected_sha256)
    return task_class(meta.get("adapter") or meta.get("task", "")).load(path, expected_sha256)


def load_pretrained_task(name: str) -> TaskAdapter:
    """A network shipped in the package (a built-in task's, or one of :func:`~cldyn.weights.shipped_networks` by
    name), SHA-256 verified; its adapter class comes from the file."""
    path, sha = shipped_file(shipped_task_file(name), f"no shipped network {name!r} (shipped: "
                                                      f"{', '.join(shipped_networks())}); pass --task-weights FILE")
    return load_task(path, expected_sha256=sha)


def is_shipped_network(weights: str | Path) -> bool:
    """``weights`` names a shipped network (``detection-visible``) rather than a file."""
    return isinstance(weights, str) and names_shipped_file(weights, shipped_task_file(weights))


def load_task_for(task: str, weights: str | Path | None = None, weights_flag: str = "--task-weights"
                  ) -> TaskAdapter:
    """The frozen network for ``task``: from ``weights`` (a file, or the name of a shipped network such as
    ``detection-visible``), or the one shipped for ``task`` when ``weights`` is ``None``.
    ``weights_flag`` is the option that gives ``weights`` in the caller's command, for the error message.

    Raises:
        CldynError: unknown task, a missing optional extra, or ``weights`` that hold another task's network.
    """
    if weights is None:
        if ":" in task:
            raise CldynError(f"--task {task}: a user adapter needs {weights_flag} FILE")
        task_class(task)  # a clear error for unknown names or a missing optional extra
        return load_pretrained_task(task).freeze()
    adapter = load_pretrained_task(str(weights)) if is_shipped_network(weights) else load_task(weights)
    expected = task_class(task).task if ":" in task else task  # a user adapter is named by its class
    if adapter.task != expected:
        raise CldynError(f"{weights}: holds a {adapter.task!r} network, not {expected!r}")
    return adapter.freeze()


__all__ = ["TaskAdapter", "as_rgb", "create_task", "is_shipped_network", "load_task", "load_pretrained_task",
           "load_task_for", "list_tasks", "task_class"]
