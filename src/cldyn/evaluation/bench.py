"""Speed benchmark of VFN fusion against the machine's own compute floor.

``floor_ratio = measured ms / (forward FLOPs / measured fp32 matmul FLOP/s)``: how far one forward pass is from
what the CPU's best dense kernel could do with the same arithmetic. FLOPs are counted by
``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matrix products; element-wise work is not counted,
so it shows up in the ratio).
"""

from __future__ import annotations

import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from cldyn.data.io import read_image, to_single_channel, write_png
from cldyn.inference.demo import demo_pairs
from cldyn.inference.export import export_vfn_onnx
from cldyn.inference.fuse import Fuser, fuse_tensors, prepare_for_inference
from cldyn.model.folding import fold_batchnorm
from cldyn.model.vfn import VFN
from cldyn.weights import load_pretrained_vfn


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
    """GFLOPs of one :func:`~cldyn.inference.fuse.fuse_tensors` call (multiply and add counted separately)."""
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        fuse_tensors(model, ir, vis)
    return counter.get_total_flops() / 1e9


def time_ms(fn: Callable[[], object], repeats: int, warmup: int = 2) -> list[float]:
    for _ in range(warmup):
        fn()
    return [1e3 * _time(fn) for _ in range(repeats)]


def paired_time_ms(fn: Callable[[], object], reference: Callable[[], object], repeats: int, warmup: int = 1
                   ) -> tuple[list[float], list[float]]:
    """``(fn ms, reference ms)``, ``repeats`` of each, run alternately (reference, fn, reference, fn, ...): a ratio
    taken per pair sees the same machine state on both sides, so a machine that slows down or speeds up over the
    run (other processes, frequency scaling) moves both. Measured apart, minutes apart, the VFN alone took 483 to
    666 ms on the same 2-core machine on one day."""
    for _ in range(warmup):
        reference()
        fn()
    refs, times = [], []
    for _ in range(repeats):
        refs.append(1e3 * _time(reference))
        times.append(1e3 * _time(fn))
    return times, refs


@dataclass
class FuseBenchResult:
    """What ``cldyn bench fuse`` reports; the first four keys are the benchmark's contract."""

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
    conv_only_ms: float | None = None
    conv_only_ratio: float | None = None
    conv_shapes: list[dict] = field(default_factory=list)
    width_probe_ms: dict[str, float] = field(default_factory=dict)

    def report(self) -> list[str]:
        """The lines ``cldyn bench fuse`` prints."""
        out = [f"VFN fuse {self.width}x{self.height} on CPU, {self.threads} threads, torch {self.torch}",
               f"  ms_per_pair          {self.ms_per_pair:9.1f}   (median of {self.repeats}; BN folded, channels-last)",
               f"  gflops               {self.gflops:9.2f}   (FlopCounterMode, one forward)",
               f"  achieved GFLOP/s     {self.achieved_gflops_per_s:9.1f}",
               f"  matmul GFLOP/s       {self.matmul_gflops_per_s:9.1f}   (fp32 2048x2048, best of 5)",
               f"  floor_ms             {self.floor_ms:9.1f}",
               f"  floor_ratio          {self.floor_ratio:9.2f}   (target <= 1.25)"]
        for k, v in self.variants_ms.items():
            out.append(f"  {k:20s} {v:9.1f}" + ("" if k.endswith("seconds") else
                                                  f"   ({v / self.ms_per_pair:.2f}x default)"))
        if self.conv_only_ms is not None:
            out.append(f"  conv_only_ms         {self.conv_only_ms:9.1f}   (every conv alone, best of 5; "
                       f"conv_only_ratio {self.conv_only_ratio:.2f})")
            out.append("    in->out k dil  calls  ms each  GFLOP/s")
            for r in self.conv_shapes:
                shape = f"{r['in_channels']:2d}->{r['out_channels']:<3d} {r['kernel']} {r['dilation']:3d}"
                out.append(f"    {shape} {r['calls']:6d} {r['ms_each']:8.2f} {r['gflops_per_s']:8.1f}")
        if self.width_probe_ms:
            probe = ", ".join(f"{k} {v:.2f} ms" for k, v in self.width_probe_ms.items())
            out.append(f"  width probe          3x3 dilation-2 conv alone: {probe}")
        return out

    def to_dict(self) -> dict:
        return asdict(self)


def width_probe(height: int, width: int, pairs: tuple[tuple[int, int], ...] = ((8, 8), (8, 16), (16, 8), (16, 16)),
                repeats: int = 5) -> dict[str, float]:
    """Best-of-``repeats`` ms of a 3x3, dilation-2, channels-last convolution at ``height`` x ``width`` for each
    ``(in, out)`` channel pair: shows how the convolution's cost depends on its width (the VFN's are 8 wide)."""
    g = torch.Generator().manual_seed(0)
    out = {}
    with torch.inference_mode():
        for cin, cout in pairs:
            x = torch.randn(1, cin, height, width, generator=g).contiguous(memory_format=torch.channels_last)
            w = torch.randn(cout, cin, 3, 3, generator=g).contiguous(memory_format=torch.channels_last)
            out[f"{cin}->{cout}"] = round(min(time_ms(lambda x=x, w=w: F.conv2d(x, w, None, 1, 2, 2), repeats,
                                                      warmup=1)), 3)
    return out


def conv_timings(model: torch.nn.Module, ir: torch.Tensor, vis: torch.Tensor, repeats: int = 5) -> list[dict]:
    """Every ``nn.Conv2d`` call of one :func:`~cldyn.inference.fuse.fuse_tensors` pass, re-run alone on its recorded
    input (best of ``repeats``), grouped by shape: what the convolutions cost with nothing else around them.

    One dict per distinct (input shape, conv settings), in order of total time: ``in_channels``, ``out_channels``,
    ``kernel``, ``dilation``, ``groups``, ``calls``, ``ms_each``, ``ms_total``, ``gflop_each`` and
    ``gflops_per_s``. Reflection padding is applied before timing (it is a copy, not convolution work). Only the
    first input of each shape is kept, so the memory cost is one feature map per shape.
    """
    seen: dict[tuple, dict] = {}

    def record(conv: torch.nn.Conv2d, args: tuple, _out: torch.Tensor) -> None:
        x = args[0]
        key = (tuple(x.shape), conv.in_channels, conv.out_channels, conv.kernel_size, conv.dilation, conv.stride,
               conv.padding, conv.groups, conv.padding_mode)
        if key in seen:
            seen[key]["calls"] += 1
            return
        if conv.padding_mode != "zeros":
            x, padding = F.pad(x, conv._reversed_padding_repeated_twice, mode=conv.padding_mode), 0
        else:
            padding = conv.padding
        seen[key] = {"conv": conv, "x": x.clone(), "padding": padding, "calls": 1}

    handles = [m.register_forward_hook(record) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    try:
        with torch.inference_mode():
            fuse_tensors(model, ir, vis)
    finally:
        for h in handles:
            h.remove()

    rows = []
    with torch.inference_mode():
        for entry in seen.values():
            conv, x = entry["conv"], entry["x"]

            def run(conv=conv, x=x, padding=entry["padding"]) -> torch.Tensor:
                return F.conv2d(x, conv.weight, conv.bias, conv.stride, padding, conv.dilation, conv.groups)

            ms = min(time_ms(run, repeats, warmup=1))
            y = run()
            gflop = 2.0 * y.numel() * conv.weight[0].numel() / 1e9  # each output: in/groups * k * k multiply-adds
            rows.append({"in_channels": conv.in_channels, "out_channels": conv.out_channels,
                         "kernel": conv.kernel_size[0], "dilation": conv.dilation[0], "groups": conv.groups,
                         "calls": entry["calls"], "ms_each": round(ms, 3), "ms_total": round(ms * entry["calls"], 2),
                         "gflop_each": round(gflop, 6), "gflops_per_s": round(gflop / ms * 1e3, 3)})
    return sorted(rows, key=lambda r: -r["ms_total"])


def bench_fuse(model: VFN, ir: torch.Tensor, vis: torch.Tensor, repeats: int = 10, compare: bool = True,
               compile_model: bool = False) -> FuseBenchResult:
    """Time CPU fusion of one pair (``ir`` ``(1, 1, H, W)``, ``vis`` ``(1, 3, H, W)``) with the default inference
    path (BatchNorm folded, channels-last) and, with ``compare``, the plain eager model and onnxruntime in the same
    run, and every convolution alone (:func:`conv_timings`): ``conv_only_ratio`` is the floor ratio the network
    would have if everything but its convolutions were free."""
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
        if compare:
            ort_ms = _onnxruntime_ms(model, ir, vis, max(3, repeats // 2))
            if ort_ms is not None:
                variants["onnxruntime"] = ort_ms
        if compile_model:
            compiled = torch.compile(fast)
            t0 = time.perf_counter()
            fuse_tensors(compiled, ir_cl, vis_cl)
            variants["compile_seconds"] = time.perf_counter() - t0
            variants["compiled"] = statistics.median(time_ms(lambda: fuse_tensors(compiled, ir_cl, vis_cl), repeats))

        shapes = conv_timings(fast, ir_cl, vis_cl) if compare else []
        probe = width_probe(ir.shape[-2], ir.shape[-1]) if compare else {}

    ms = statistics.median(times)
    floor_ms = gflops / peak * 1e3
    conv_ms = sum(r["ms_each"] * r["calls"] for r in shapes) if shapes else None
    return FuseBenchResult(
        ms_per_pair=round(ms, 2), gflops=round(gflops, 3), matmul_gflops_per_s=round(peak, 1),
        floor_ratio=round(ms / floor_ms, 3), threads=torch.get_num_threads(), height=ir.shape[-2],
        width=ir.shape[-1], repeats=repeats, achieved_gflops_per_s=round(gflops / ms * 1e3, 1),
        floor_ms=round(floor_ms, 2), device="cpu", torch=torch.__version__,
        variants_ms={k: round(v, 2) for k, v in variants.items()},
        conv_only_ms=None if conv_ms is None else round(conv_ms, 2),
        conv_only_ratio=None if conv_ms is None else round(conv_ms / floor_ms, 3), conv_shapes=shapes,
        width_probe_ms=probe,
    )


def _onnxruntime_ms(model: VFN, ir: torch.Tensor, vis: torch.Tensor, repeats: int) -> float | None:
    """Median ms of the exported VFN in onnxruntime (luma path plus the same colour handling), or None without
    onnxruntime."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return None


    with tempfile.TemporaryDirectory() as tmp:
        path = export_vfn_onnx(model, Path(tmp) / "vfn.onnx")
        fuser = Fuser(model, device="cpu", onnx=path)
        return statistics.median(time_ms(lambda: fuser.fuse_batch(ir, vis), repeats))


def peak_rss_mb() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB on Linux


def bench_tile(side_w: int = 8000, side_h: int = 6000, tile: int = 1024, overlap: int = 64,
               log: Callable[[str], None] = print) -> dict:
    """Tiled fusion of a large pair (a real demo pair resized to ``side_w`` x ``side_h``, written as PNG files and
    fused from disk as a user would), with the process's peak resident memory; plus the deviation of tiled from
    whole-image fusion on the original 640x480 pair."""


    pair = next(p for p in demo_pairs() if p.name.startswith("msrs"))
    model = load_pretrained_vfn()
    ir, vis = read_image(pair.ir), read_image(pair.vis)
    whole = Fuser(model, device="cpu").fuse_images(ir, vis)
    tiled = Fuser(model, device="cpu", tile=256, overlap=overlap).fuse_images(ir, vis)
    diff = np.abs(whole - tiled)
    with tempfile.TemporaryDirectory() as tmp:
        big_ir, big_vis = Path(tmp) / "ir.png", Path(tmp) / "vis.png"
        write_png(big_ir, cv2.resize(ir.pixels, (side_w, side_h), interpolation=cv2.INTER_CUBIC))
        write_png(big_vis, cv2.resize(vis.pixels, (side_w, side_h), interpolation=cv2.INTER_CUBIC))
        # The fusion runs as the user's command in a child process, so its peak memory is measured alone.

        cmd = [sys.executable, "-m", "cldyn.cli", "fuse", str(big_ir), str(big_vis), "-o", str(Path(tmp) / "out.png"),
               "--tile", str(tile), "--overlap", str(overlap), "--device", "cpu"]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        seconds = time.perf_counter() - t0
        child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    res = {"width": side_w, "height": side_h, "tile": tile, "overlap": overlap, "seconds": round(seconds, 1),
           "peak_mb": round(child_kb / 1024, 1), "threads": torch.get_num_threads(),
           "tile256_vs_whole_640x480_mean_abs": float(diff.mean()),
           "tile256_vs_whole_640x480_max_abs": float(diff.max())}
    log(f"{side_w}x{side_h} in {tile}px tiles: {seconds:.1f} s, peak RSS {res['peak_mb']:.0f} MB")
    return res




def demo_pair_tensors() -> tuple[torch.Tensor, torch.Tensor]:
    """A real 640x480 pair (the bundled MSRS demo pair) as ``ir`` (1, 1, H, W) and ``vis`` (1, 3, H, W)."""
    pair = next(p for p in demo_pairs() if p.name.startswith("msrs"))
    ir = torch.from_numpy(to_single_channel(read_image(pair.ir)))[None, None]
    vis = torch.from_numpy(read_image(pair.vis).pixels).permute(2, 0, 1)[None].contiguous()
    return ir, vis
