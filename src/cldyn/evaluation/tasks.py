"""A task network scored on one image source: visible, infrared, VFN-fused, a folder of fused images, or CLDyN
customised for the network (``cldyn eval-task``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from cldyn.data.task_bank import load_task_bank
from cldyn.inference.sources import image_source
from cldyn.model.rsc import CLDyN
from cldyn.tasks import load_task_for
from cldyn.tasks.evaluation import evaluate_bank, evaluate_cldyn
from cldyn.weights import load_rsc_or_shipped, load_vfn_or_shipped


def evaluate_task(task: str, data: str | Path, split: str = "val", source: str = "vfn",
                  weights: str | Path | None = None, vfn_weights: str | Path | None = None,
                  rsc_weights: str | Path | None = None, log: Callable[[str], None] = print,
                  progress: bool = False) -> dict[str, Any]:
    """``{"task", "source", "n", "metrics"}`` for the task network (``weights``, default: shipped) on ``source``.

    ``source="cldyn"`` fuses each pair with the closed loop (base fusion -> the network's features -> compensated
    fusion) using ``rsc_weights`` (default: shipped) on the VFN ``vfn_weights`` (default: shipped).
    """
    adapter = load_task_for(task, weights)
    if source == "cldyn":
        vfn = load_vfn_or_shipped(vfn_weights)
        rsc = load_rsc_or_shipped(rsc_weights, vfn)
        bank = load_task_bank(task, data, split, image_source("pair"), adapter.config, log)
        metrics = evaluate_cldyn(CLDyN(vfn, rsc), adapter, bank)
    else:
        bank = load_task_bank(task, data, split, image_source(source, vfn_weights), adapter.config, log)
        metrics = evaluate_bank(adapter, bank, progress=progress)
    return {"task": task, "source": source, "n": len(bank), "metrics": metrics}
