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
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from cldyn.a2si import A2SI
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
    conv_only_ms: float | None = None
    conv_only_ratio: float | None = None
    conv_shapes: list[dict] = field(default_factory=list)
    width_probe_ms: dict[str, float] = field(default_factory=dict)

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
    """Every ``nn.Conv2d`` call of one :func:`~cldyn.fuse.fuse_tensors` pass, re-run alone on its recorded input
    (best of ``repeats``), grouped by shape: what the convolutions cost with nothing else around them.

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
                         "gflop_each": round(gflop, 6), "gflops_per_s": round(gflop / ms * 1e3, 1)})
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
    import tempfile
    from pathlib import Path

    from cldyn.export import export_vfn_onnx
    from cldyn.fuse import Fuser

    with tempfile.TemporaryDirectory() as tmp:
        path = export_vfn_onnx(model, Path(tmp) / "vfn.onnx")
        fuser = Fuser(model, device="cpu", onnx=path)
        return statistics.median(time_ms(lambda: fuser.fuse_batch(ir, vis), repeats))


def _peak_rss_mb() -> float:
    import resource
    import sys

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB on Linux


def a2si_without_convolutions(block: A2SI, bank: torch.Tensor, task_features: torch.Tensor,
                              image_features: torch.Tensor) -> torch.Tensor:
    """One A2SI block with every filter's dynamic convolution replaced by a scaling of its sample's features.

    Everything else runs as in the block, on tensors of the same sizes: the selection (queries, type and basis
    choice), the kernel MLPs (the scale is the mean of each filter's kernel, so their gradients are computed),
    BatchNorm and LeakyReLU over the ``(B*F, C, H, W)`` filter outputs, the filter mean and the output conv. Its
    time is what the loop reference and any vectorised block share; only a benchmark uses it.
    """
    b, c, h, w = image_features.shape
    sel = block.select(bank, task_features, image_features)
    k1, k3 = block.kernels(sel.vectors)
    f = sel.types.shape[1]
    scale = (k1.mean(dim=(2, 3, 4, 5)) + k3.mean(dim=(2, 3, 4, 5))) * sel.type_weights.amax(-1)  # (B, F)
    dyn = image_features[:, None] * scale[..., None, None, None]  # (B, F, C, H, W), one pass instead of F convs
    post = block.post(dyn.reshape(b * f, c, h, w)).view(b, f, c, h, w).mean(1)
    return image_features + block.out_conv(post)


def bench_rsc(batch: int = 4, size: int = 320, repeats: int = 3, step_tasks: list[str] | None = None,
              log: Callable[[str], None] = print, device: str | torch.device = "cpu") -> dict:
    """A2SI forward+backward, vectorised against the loop reference, and one closed-loop training step.

    ``a2si_no_conv_ms`` times the block with its dynamic convolutions replaced by a scaling
    (:func:`a2si_without_convolutions`): the work that vectorising the filter loop cannot touch.
    ``a2si_speedup_bound = a2si_loop_ms / a2si_no_conv_ms`` is the speedup a vectorised block would reach if its
    convolutions cost nothing.

    Returns a dict with ``a2si_ms``, ``a2si_loop_ms``, ``a2si_speedup``, ``a2si_no_conv_ms``,
    ``a2si_speedup_bound``, ``a2si_max_abs_diff``, ``step_seconds``,
    ``step_tasks``, ``peak_mb`` (peak resident memory of the process; on CUDA the peak GPU memory allocated),
    ``threads``, ``device``.
    """
    from cldyn.basis_bank import BasisVectorBank
    from cldyn.fuse import resolve_device
    from cldyn.testing import reference_compensate

    dev = resolve_device(device)
    cuda = dev.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)  # CUDA calls return before the GPU is done
    torch.manual_seed(0)
    block, bank = A2SI().train(), BasisVectorBank()
    torch.nn.init.normal_(block.out_conv.weight, std=0.1)  # a live block, as after training
    block, bank = block.to(dev), bank.to(dev)
    x = torch.randn(batch, 8, size, size).to(dev)
    task = torch.randn(batch, 256, size // 32, size // 32).to(dev)

    def fast() -> None:
        block(bank.weight, task, x).square().mean().backward()
        sync()

    def loop() -> None:
        sel = block.select(bank.weight, task, x)
        reference_compensate(block, x, sel).square().mean().backward()
        sync()

    def no_conv() -> None:
        a2si_without_convolutions(block, bank.weight, task, x).square().mean().backward()
        sync()

    with torch.no_grad():
        sel = block.select(bank.weight, task, x)
        diff = float((block.compensate(x, sel) - reference_compensate(block, x, sel)).abs().max())
    t_fast = statistics.median(time_ms(fast, repeats, warmup=1))
    t_loop = statistics.median(time_ms(loop, repeats, warmup=1))
    t_rest = statistics.median(time_ms(no_conv, repeats, warmup=1))
    log(f"A2SI fwd+bwd (B={batch}, C=8, {size}x{size}): vectorised {t_fast:.1f} ms, loop {t_loop:.1f} ms, "
        f"without its convolutions {t_rest:.1f} ms (bound on the speedup: {t_loop / t_rest:.2f}x)")

    step_s, tasks = _closed_loop_step_seconds(batch, size, step_tasks, dev)
    log(f"closed-loop step ({', '.join(tasks)}; batch {batch}, {size}x{size}): {step_s:.2f} s")
    peak = torch.cuda.max_memory_allocated(dev) / 2**20 if cuda else _peak_rss_mb()
    return {"a2si_ms": round(t_fast, 2), "a2si_loop_ms": round(t_loop, 2), "a2si_speedup": round(t_loop / t_fast, 2),
            "a2si_no_conv_ms": round(t_rest, 2), "a2si_speedup_bound": round(t_loop / t_rest, 2),
            "a2si_max_abs_diff": diff, "step_seconds": round(step_s, 3), "step_tasks": tasks,
            "peak_mb": round(peak, 1), "peak_kind": "cuda_max_allocated" if cuda else "process_rss",
            "threads": torch.get_num_threads(), "device": torch.cuda.get_device_name(dev) if cuda else "cpu",
            "torch": torch.__version__}


def _closed_loop_step_seconds(batch: int, size: int, tasks: list[str] | None,
                              device: torch.device | None = None) -> tuple[float, list[str]]:
    """Seconds of one closed-loop step (all tasks' reward-penalty gradients, CAGrad, Adam) with random-init task
    networks of the shipped architectures (the cost does not depend on their weights)."""
    from cldyn.cagrad import combine
    from cldyn.closed_loop import closed_loop_losses
    from cldyn.rsc import CLDyN
    from cldyn.tasks import create_task

    if tasks is None:
        tasks = ["segmentation", "saliency"]
        try:
            import ultralytics  # noqa: F401

            tasks.insert(0, "detection")
        except ImportError:
            pass
    device = device or torch.device("cpu")
    adapters = {t: create_task(t).to(device).freeze() for t in tasks}
    model = CLDyN(VFN()).to(device).train()
    params = list(model.rsc.parameters())
    opt = torch.optim.Adam(params, lr=0.01)
    ir, vis = torch.rand(batch, 1, size, size, device=device), torch.rand(batch, 3, size, size, device=device)
    targets = {
        "detection": [torch.tensor([[0, 0.5, 0.5, 0.2, 0.4], [2, 0.3, 0.6, 0.1, 0.1]], device=device)] * batch,
        "segmentation": torch.randint(0, 9, (batch, size, size), device=device),
        "saliency": (torch.rand(batch, 1, size, size, device=device) > 0.9).float(),
    }

    def step() -> None:
        grads = []
        for t in tasks:
            total, _ = closed_loop_losses(model, adapters[t], ir, vis, targets[t], 5.0)
            g = torch.autograd.grad(total, params, allow_unused=True)
            grads.append(torch.cat([(gi if gi is not None else torch.zeros_like(p)).reshape(-1)
                                    for gi, p in zip(g, params, strict=True)]))
        d = combine(torch.stack(grads))
        offset = 0
        for p in params:
            p.grad = d[offset:offset + p.numel()].view_as(p).clone()
            offset += p.numel()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return statistics.median(time_ms(step, 2, warmup=1)) / 1e3, tasks


def bench_tile(side_w: int = 8000, side_h: int = 6000, tile: int = 1024, overlap: int = 64,
               log: Callable[[str], None] = print) -> dict:
    """Tiled fusion of a large pair (a real demo pair resized to ``side_w`` x ``side_h``, written as PNG files and
    fused from disk as a user would), with the process's peak resident memory; plus the deviation of tiled from
    whole-image fusion on the original 640x480 pair."""
    import tempfile
    from pathlib import Path

    import cv2
    import numpy as np

    from cldyn.checkpoint import load_pretrained_vfn
    from cldyn.demo import demo_pairs
    from cldyn.fuse import Fuser
    from cldyn.io import read_image, write_png

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
        import resource
        import subprocess
        import sys

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


def bench_tasks(batch: int = 4, size: int = 320, repeats: int = 3, log: Callable[[str], None] = print) -> dict:
    """Forward + backward to the input image for each built-in adapter (frozen, as in the closed loop), on CPU."""
    from cldyn.tasks import create_task, list_tasks

    targets = {
        "detection": [torch.tensor([[0, 0.5, 0.5, 0.2, 0.4], [2, 0.3, 0.6, 0.1, 0.1]])] * batch,
        "segmentation": torch.randint(0, 9, (batch, size, size)),
        "saliency": (torch.rand(batch, 1, size, size) > 0.9).float(),
    }
    res: dict = {"batch": batch, "size": size, "threads": torch.get_num_threads(), "ms": {}}
    for name in list_tasks():
        try:
            adapter = create_task(name).freeze()
        except Exception as exc:  # the optional YOLO extra may be missing
            log(f"{name}: skipped ({str(exc).splitlines()[0]})")
            continue
        image = torch.rand(batch, 3, size, size, requires_grad=True)

        def step(adapter=adapter, name=name, image=image) -> None:
            adapter.loss(image, targets[name]).backward()

        res["ms"][name] = round(statistics.median(time_ms(step, repeats, warmup=1)), 1)
        log(f"{name}: {res['ms'][name]:.1f} ms forward+backward to the image (batch {batch}, {size}x{size})")
    return res
