"""Benchmarks of the closed loop: the A2SI block (vectorised against a loop), one training step, the task networks,
and task-customised fusion at inference against plain VFN fusion."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable

import torch

from cldyn.evaluation.bench import paired_time_ms, peak_rss_mb, time_ms
from cldyn.inference.fuse import fuse_tensors, prepare_for_inference
from cldyn.loop.cache import FrozenPassCache
from cldyn.loop.losses import LossWeights
from cldyn.loop.step import TaskBatch, apply_combined, base_pass, task_gradient, to_training_memory
from cldyn.model.a2si import A2SI
from cldyn.model.basis_bank import BasisVectorBank
from cldyn.model.reference import reference_compensate
from cldyn.model.rsc import RSC, CLDyN
from cldyn.model.vfn import VFN
from cldyn.runtime import resolve_device
from cldyn.tasks import TaskAdapter, create_task, load_task_for


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

    step_s, cached_s, tasks = _closed_loop_step_seconds(batch, size, step_tasks, dev)
    nchw_s = _closed_loop_step_seconds(batch, size, step_tasks, dev, channels_last=False, cached=False)[0]
    log(f"closed-loop step ({', '.join(tasks)}; batch {batch}, {size}x{size}): {step_s:.2f} s; with the base pass "
        f"cached (train-rsc --cache-batches): {cached_s:.2f} s ({step_s / cached_s:.2f}x faster); in NCHW memory "
        f"(train-rsc before channels-last): {nchw_s:.2f} s ({nchw_s / step_s:.2f}x slower)")
    peak = torch.cuda.max_memory_allocated(dev) / 2**20 if cuda else peak_rss_mb()
    return {"a2si_ms": round(t_fast, 2), "a2si_loop_ms": round(t_loop, 2), "a2si_speedup": round(t_loop / t_fast, 2),
            "a2si_no_conv_ms": round(t_rest, 2), "a2si_speedup_bound": round(t_loop / t_rest, 2),
            "a2si_max_abs_diff": diff, "step_seconds": round(step_s, 3),
            "step_seconds_cached": round(cached_s, 3), "step_cache_speedup": round(step_s / cached_s, 2),
            "step_seconds_nchw": round(nchw_s, 3), "step_channels_last_speedup": round(nchw_s / step_s, 2),
            "step_tasks": tasks,
            "peak_mb": round(peak, 1), "peak_kind": "cuda_max_allocated" if cuda else "process_rss",
            "threads": torch.get_num_threads(), "device": torch.cuda.get_device_name(dev) if cuda else "cpu",
            "torch": torch.__version__}


def _closed_loop_step_seconds(batch: int, size: int, tasks: list[str] | None, device: torch.device | None = None,
                              channels_last: bool = True, cached: bool = True) -> tuple[float, float, list[str]]:
    """Seconds of one closed-loop step (all tasks' reward-penalty gradients, CAGrad, Adam) with the shipped task
    networks: as it is, and with each task's base pass already computed (what ``train-rsc --cache-batches``
    saves; NaN unless ``cached``). ``channels_last``: models and images in channels-last memory on CPU, as
    train-rsc runs them."""
    tasks = tasks or ["detection", "segmentation", "saliency"]
    device = device or torch.device("cpu")
    adapters = {t: load_task_for(t).to(device).freeze() for t in tasks}
    model = CLDyN(VFN()).to(device).train()
    memory = to_training_memory(model, adapters.values(), device, channels_last)
    params = list(model.rsc.parameters())
    opt = torch.optim.Adam(params, lr=0.01)
    ir, vis = torch.rand(batch, 1, size, size, device=device), torch.rand(batch, 3, size, size, device=device)
    ir, vis = ir.contiguous(memory_format=memory), vis.contiguous(memory_format=memory)
    targets = {
        "detection": [torch.tensor([[0, 0.5, 0.5, 0.2, 0.4], [2, 0.3, 0.6, 0.1, 0.1]], device=device)] * batch,
        "segmentation": torch.randint(0, 9, (batch, size, size), device=device),
        "saliency": (torch.rand(batch, 1, size, size, device=device) > 0.9).float(),
    }

    batches = {t: TaskBatch(ir, vis, targets[t], key=t) for t in tasks}
    kept = FrozenPassCache(enabled=True)  # what --cache-batches keeps: each task's base pass, computed once here
    for t in tasks:
        kept.get("base", t, lambda t=t: base_pass(model, adapters[t], ir, vis, targets[t]))

    def step(cached: bool = False) -> None:
        cache = kept if cached else FrozenPassCache(enabled=False)
        grads = [task_gradient(model, adapters[t], batches[t], params, LossWeights(), cache)[0] for t in tasks]
        apply_combined(params, torch.stack(grads))
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    plain = statistics.median(time_ms(step, 2, warmup=1)) / 1e3
    with_cache = statistics.median(time_ms(lambda: step(cached=True), 2, warmup=1)) / 1e3 if cached else math.nan
    return plain, with_cache, tasks


# (label, adapter spec, config): the networks the closed loop can be given, the current built-ins and the pretrained
# architectures (cldyn convert-pretrained) side by side
BENCH_TASK_NETWORKS: tuple[tuple[str, str, dict], ...] = (
    ("detection: YOLO11n", "cldyn.tasks.detection:DetectionAdapter", {}),
    ("detection: FCOS EfficientNet-Lite0", "cldyn.tasks.detection_fcos:FCOSDetectionAdapter", {}),
    ("detection: RetinaNet EfficientNet-Lite0", "cldyn.tasks.detection_fcos:RetinaNetDetectionAdapter", {}),
    ("segmentation: SegFormer-B0", "segmentation", {}),
    ("segmentation: EfficientNet-Lite0 FPN", "segmentation", {"arch": "lite0-fpn"}),
    ("saliency: CTD ResNet-18", "saliency", {}),
    ("saliency: U2-Net-P", "saliency", {"arch": "u2netp"}),
    ("saliency: EfficientNet-Lite0 FPN", "saliency", {"arch": "lite0-fpn"}),
)


def bench_tasks(batch: int = 4, size: int = 320, repeats: int = 3, log: Callable[[str], None] = print) -> dict:
    """Forward + backward to the input image for each task network (frozen, as in the closed loop), on CPU, and its
    parameter count."""
    targets = {
        "detection": [torch.tensor([[0, 0.5, 0.5, 0.2, 0.4], [2, 0.3, 0.6, 0.1, 0.1]])] * batch,
        "segmentation": torch.randint(0, 9, (batch, size, size)),
        "saliency": (torch.rand(batch, 1, size, size) > 0.9).float(),
    }
    res: dict = {"batch": batch, "size": size, "threads": torch.get_num_threads(), "ms": {}, "parameters": {}}
    for label, spec, config in BENCH_TASK_NETWORKS:
        try:
            adapter = create_task(spec, config).freeze()
        except Exception as exc:  # the optional YOLO extra may be missing
            log(f"{label}: skipped ({str(exc).splitlines()[0]})")
            continue
        image = torch.rand(batch, 3, size, size, requires_grad=True)

        def step(adapter=adapter, image=image) -> None:
            adapter.loss(image, targets[adapter.task]).backward()

        res["ms"][label] = round(statistics.median(time_ms(step, repeats, warmup=1)), 1)
        res["parameters"][label] = sum(p.numel() for p in adapter.model.parameters())
        log(f"{label}: {res['ms'][label]:.1f} ms forward+backward to the image (batch {batch}, {size}x{size}), "
            f"{res['parameters'][label] / 1e6:.2f} M parameters")
    return res


def _base_then_compensated(model: CLDyN, ir: torch.Tensor, vis: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
    base, reach = model.base_and_reach(ir, vis)
    return model(ir, vis, feats, base_reach=reach)


def bench_customise(vfn: VFN, rsc: RSC, adapters: dict[str, TaskAdapter], ir: torch.Tensor, vis: torch.Tensor,
                    repeats: int = 5, log: Callable[[str], None] = print) -> dict:
    """CPU ms of task-customised fusion of one pair (``ir`` ``(1, 1, H, W)``, ``vis`` ``(1, 3, H, W)``) against
    plain VFN fusion, all in one run: per task, the whole closed loop (``ms``: base fusion, task network, compensated
    fusion), the same without the task network (``without_task_network_ms``: base and compensated fusion, the task
    features given), the compensated pass alone (``compensated_ms``) and the closed loop at strength ``auto``
    (``auto_ms``: three candidate images through the task network), each with its ratio to the VFN (``ratio``,
    ``without_task_network_ratio``, ``compensated_ratio``, ``auto_ratio``).

    Each of them runs ``repeats`` times alternately with the VFN (:func:`~cldyn.evaluation.bench.paired_time_ms`);
    ms are medians, a ratio is the median of the per-pair ratios, and ``vfn_ms`` is the median of all the VFN's runs
    (``vfn_ms_range``: their least and most)."""
    vfn = prepare_for_inference(vfn, torch.device("cpu"))
    model = CLDyN(vfn, rsc).eval().requires_grad_(False)
    ir, vis = ir.contiguous(memory_format=torch.channels_last), vis.contiguous(memory_format=torch.channels_last)
    res: dict = {"size": list(ir.shape[-2:]), "threads": torch.get_num_threads(), "repeats": repeats, "tasks": {}}
    vfn_runs: list[float] = []
    with torch.inference_mode():
        plain = lambda: fuse_tensors(vfn, ir, vis)  # noqa: E731
        base, reach = model.base_and_reach(ir, vis)  # the same for every task; the compensated pass reuses reach
        for t, a in adapters.items():
            feats = model.features_of_base(base, a)
            timed = {"": lambda a=a: model.fuse(ir, vis, a),
                     "auto_": lambda a=a: model.fuse(ir, vis, a, strength="auto"),
                     "without_task_network_": lambda f=feats: _base_then_compensated(model, ir, vis, f),
                     "compensated_": lambda f=feats, r=reach: model(ir, vis, f, base_reach=r)}
            r: dict[str, float] = {}
            for key, fn in timed.items():
                times, refs = paired_time_ms(fn, plain, repeats)
                vfn_runs += refs
                ratio = statistics.median(x / y for x, y in zip(times, refs, strict=True))
                r[f"{key}ms"], r[f"{key}ratio"] = round(statistics.median(times), 1), round(ratio, 3)
            res["tasks"][t] = r
            log(f"{t}: {r['ms']:.0f} ms ({r['ratio']:.2f}x VFN); at strength auto {r['auto_ms']:.0f} ms "
                f"({r['auto_ratio']:.2f}x); without the task network "
                f"{r['without_task_network_ms']:.0f} ms ({r['without_task_network_ratio']:.2f}x); compensated pass "
                f"alone {r['compensated_ms']:.0f} ms ({r['compensated_ratio']:.2f}x)")
        if not vfn_runs:  # no task: the VFN alone
            vfn_runs = time_ms(plain, repeats, 1)
    base_ms = statistics.median(vfn_runs)
    res["vfn_ms"], res["vfn_ms_range"] = round(base_ms, 1), [round(min(vfn_runs), 1), round(max(vfn_runs), 1)]
    log(f"VFN: {base_ms:.0f} ms per {ir.shape[-1]}x{ir.shape[-2]} pair ({torch.get_num_threads()} threads; "
        f"{min(vfn_runs):.0f}-{max(vfn_runs):.0f} ms over its {len(vfn_runs)} runs)")
    return res
