"""What customised fusion costs: parameters, GFLOPs and CPU time per pair of the VFN and of CLDyN with each task
network, and the peak memory of the process (the efficiency table of ``cldyn experiment``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from cldyn.evaluation.bench import peak_rss_mb
from cldyn.evaluation.bench_closed_loop import bench_customise
from cldyn.inference.backends import fuse_tensors, prepare_for_inference
from cldyn.model.ops import count_parameters
from cldyn.model.rsc import RSC, CLDyN
from cldyn.model.vfn import VFN
from cldyn.tasks import TaskAdapter


def gflops(fn: Callable[[], object]) -> float:
    """Floating-point operations of one call of ``fn`` (torch's FLOP counter, inference mode), in billions."""
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        fn()
    return counter.get_total_flops() / 1e9


def measure_efficiency(vfn: VFN, rsc: RSC, adapters: dict[str, TaskAdapter], size: tuple[int, int] = (480, 640),
                       repeats: int = 3) -> dict[str, Any]:
    """Parameters, GFLOPs on a random pair of ``size`` (height, width), CPU ms per pair (median of ``repeats``, timed
    by :func:`~cldyn.evaluation.bench_closed_loop.bench_customise`, as ``cldyn bench customise``) and peak memory."""
    torch.manual_seed(0)
    h, w = size
    ir, vis = torch.rand(1, 1, h, w), torch.rand(1, 3, h, w)
    folded = prepare_for_inference(vfn, torch.device("cpu"))
    timed = bench_customise(vfn, rsc, adapters, ir, vis, repeats, log=lambda _: None)
    res: dict[str, Any] = {
        "params": {"rsc_trainable": count_parameters(rsc), "vfn_frozen": count_parameters(vfn),
                   **{f"task_{t}": count_parameters(a.model) for t, a in adapters.items()}},
        "gflops": {"vfn": gflops(lambda: fuse_tensors(folded, ir, vis))},
        "ms_per_pair": {"vfn": timed["vfn_ms"]},
        "size": [h, w], "threads": torch.get_num_threads(),
    }
    model = CLDyN(folded, rsc).eval().requires_grad_(False)
    for t, a in adapters.items():
        res["gflops"][f"cldyn_{t}"] = gflops(lambda a=a: model.fuse(ir, vis, a))
        res["gflops"][f"task_{t}_features"] = gflops(lambda a=a: model.task_features(ir, vis, a))
        res["ms_per_pair"][f"cldyn_{t}"] = timed["tasks"][t]["ms"]
        res["ms_per_pair"][f"cldyn_{t}_without_task_network"] = timed["tasks"][t]["without_task_network_ms"]
    res["peak_rss_mb"] = peak_rss_mb()
    return res


__all__ = ["gflops", "measure_efficiency"]
