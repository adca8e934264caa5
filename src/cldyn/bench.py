"""Speed benchmark of VFN fusion against the machine's own compute floor.

``floor_ratio = measured ms / (forward FLOPs / measured fp32 matmul FLOP/s)``: how far one forward pass is from
what the CPU's best dense kernel could do with the same arithmetic. FLOPs are counted by
``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matrix products; element-wise work is not counted,
so it shows up in the ratio).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch.utils.flop_counter import FlopCounterMode

from cldyn.fuse import fuse_tensors, prepare_for_inference
from cldyn.vfn import VFN, fold_batchnorm


def matmul_gflops_per_s(n: int = 2048, repeats: int = 5) -> float:
    """Best-of-``repeats`` fp32 ``n x n`` matmul rate in GFLOP/s on the CPU (the machine's practical peak)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)  # warm-up: thread pool, caches
    best = min(_time(lambda: torch.mm(a, b)) for _ in range(repeats))
    return 2.0 * n**3 / best / 1e9


def _time(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def count_gflops(model: torch.nn.Module, ir: torch.Tensor, vis: torch.Tensor) -> float:
    """GFLOPs of one :func:`~cldyn.fuse.fuse_tensors` call (multiply and add counted separately)."""
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        fuse_tensors(model, ir, vis)
    return counter.get_total_flops() / 1e9


def time_ms(fn: Callable[[], object], repeats: int, warmup: int = 2) -> list[float]:
    for _ in range(warmup):
        fn()
    return [1e3 * _time(fn) for _ in range(repeats)]


@dataclass
class FuseBenchResult:
    """What ``cldyn bench fuse`` reports; the first four keys are the issue's contract."""

    ms_per_pair: float
    gflops: float
    matmul_gflops_per_s: float
    floor_ratio: float
    threads: int
    height: int
    width: int
    repeats: int
    achieved_gflops_per_s: float
    floor_ms: float
    device: str
    torch: str
    variants_ms: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def bench_fuse(model: VFN, ir: torch.Tensor, vis: torch.Tensor, repeats: int = 10, compare: bool = True,
               compile_model: bool = False) -> FuseBenchResult:
    """Time CPU fusion of one pair (``ir`` ``(1, 1, H, W)``, ``vis`` ``(1, 3, H, W)``) with the default inference
    path (BatchNorm folded, channels-last) and, with ``compare``, the plain eager model in the same run."""
    device = torch.device("cpu")
    fast = prepare_for_inference(model, device)
    cl = torch.channels_last
    ir_cl, vis_cl = ir.contiguous(memory_format=cl), vis.contiguous(memory_format=cl)
    gflops = count_gflops(fold_batchnorm(model), ir, vis)
    peak = matmul_gflops_per_s()

    with torch.inference_mode():
        times = time_ms(lambda: fuse_tensors(fast, ir_cl, vis_cl), repeats)
        variants: dict[str, float] = {}
        if compare:
            plain = model.eval()
            variants["eager_nchw_unfolded"] = statistics.median(
                time_ms(lambda: fuse_tensors(plain, ir, vis), max(3, repeats // 2)))
        if compile_model:
            compiled = torch.compile(fast)
            t0 = time.perf_counter()
            fuse_tensors(compiled, ir_cl, vis_cl)
            variants["compile_seconds"] = time.perf_counter() - t0
            variants["compiled"] = statistics.median(time_ms(lambda: fuse_tensors(compiled, ir_cl, vis_cl), repeats))

    ms = statistics.median(times)
    floor_ms = gflops / peak * 1e3
    return FuseBenchResult(
        ms_per_pair=round(ms, 2), gflops=round(gflops, 3), matmul_gflops_per_s=round(peak, 1),
        floor_ratio=round(ms / floor_ms, 3), threads=torch.get_num_threads(), height=ir.shape[-2],
        width=ir.shape[-1], repeats=repeats, achieved_gflops_per_s=round(gflops / ms * 1e3, 1),
        floor_ms=round(floor_ms, 2), device="cpu", torch=torch.__version__,
        variants_ms={k: round(v, 2) for k, v in variants.items()},
    )
