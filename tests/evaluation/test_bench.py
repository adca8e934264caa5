"""The benchmark's diagnostics: per-convolution timings and the A2SI block without its convolutions."""

import pytest
import torch

from cldyn.evaluation.bench import bench_fuse, conv_timings
from cldyn.evaluation.bench_closed_loop import a2si_without_convolutions, bench_rsc
from cldyn.inference.fuse import prepare_for_inference
from cldyn.model.a2si import A2SI
from cldyn.model.basis_bank import BasisVectorBank
from cldyn.weights import create_vfn


def _pair(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(1, 1, h, w, generator=g), torch.rand(1, 3, h, w, generator=g)


def test_conv_timings_cover_every_conv_with_its_flops():
    model = prepare_for_inference(create_vfn("vfn_small"), torch.device("cpu"))
    ir, vis = _pair(40, 56)
    rows = conv_timings(model, ir, vis, repeats=1)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert sum(r["calls"] for r in rows) == len(convs) == 29  # each conv module runs once per forward
    # Hand count: every conv keeps the size, so one forward costs 2 * H * W * out * in/groups * k * k.
    expected = sum(2 * 40 * 56 * m.out_channels * m.in_channels // m.groups * m.kernel_size[0] ** 2 for m in convs)
    got = sum(r["gflop_each"] * r["calls"] for r in rows) * 1e9
    assert got == pytest.approx(expected, rel=1e-3)
    assert all(r["ms_each"] > 0 and r["gflops_per_s"] > 0 for r in rows)
    assert [r["ms_total"] for r in rows] == sorted((r["ms_total"] for r in rows), reverse=True)


def test_bench_fuse_reports_conv_only_ratio():
    ir, vis = _pair(48, 64)
    res = bench_fuse(create_vfn("vfn_small"), ir, vis, repeats=1, compare=True)
    assert res.conv_only_ms == pytest.approx(sum(r["ms_each"] * r["calls"] for r in res.conv_shapes), abs=0.02)
    assert res.conv_only_ratio == pytest.approx(res.conv_only_ms / res.floor_ms, rel=1e-2)
    assert res.floor_ratio == pytest.approx(res.ms_per_pair / res.floor_ms, rel=1e-2)
    assert set(res.width_probe_ms) == {"8->8", "8->16", "16->8", "16->16"}
    assert all(v > 0 for v in res.width_probe_ms.values())
    lines = res.report()  # what cldyn bench fuse prints
    assert lines[0] == f"VFN fuse 64x48 on CPU, {res.threads} threads, torch {res.torch}"
    assert f"  ms_per_pair          {res.ms_per_pair:9.1f}" in lines[1]
    assert sum(line.startswith("    ") for line in lines) == 1 + len(res.conv_shapes)  # header + one per shape
    assert lines[-1].startswith("  width probe") and "16->16" in lines[-1]


def test_a2si_without_convolutions_is_the_block_minus_its_convs():
    torch.manual_seed(0)
    block, bank = A2SI().train(), BasisVectorBank()
    x, task = torch.randn(2, 8, 24, 24), torch.randn(2, 32, 3, 3)
    # A fresh block's output conv is zero: both the block and its stand-in are the identity.
    assert torch.equal(a2si_without_convolutions(block, bank.weight, task, x), x)
    torch.nn.init.normal_(block.out_conv.weight, std=0.1)
    out = a2si_without_convolutions(block, bank.weight, task, x)
    assert out.shape == x.shape
    out.square().mean().backward()
    # The work it keeps has gradients everywhere the real block has them: kernel MLPs, both queries, the bank.
    for name in ("kernel_3x3.0.weight", "kernel_1x1.0.weight", "basis_query.0.weight", "type_query.0.weight",
                 "post.0.weight", "out_conv.weight"):
        grad = dict(block.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
    assert bank.weight.grad is not None and bank.weight.grad.abs().sum() > 0


def test_bench_rsc_keys_small():
    res = bench_rsc(batch=2, size=32, repeats=1, step_tasks=["saliency"], log=lambda _: None)
    for key in ("a2si_speedup", "a2si_max_abs_diff", "step_seconds", "peak_mb", "a2si_no_conv_ms",
                "a2si_speedup_bound"):
        assert key in res
    assert res["a2si_speedup_bound"] == pytest.approx(res["a2si_loop_ms"] / res["a2si_no_conv_ms"], rel=0.02)
    assert res["a2si_max_abs_diff"] < 1e-4
    assert res["step_cache_speedup"] == pytest.approx(res["step_seconds"] / res["step_seconds_cached"], rel=0.02)
    # (rounded to 0.01: at this toy size channels-last is slower, the ratio small)
    assert res["step_channels_last_speedup"] == pytest.approx(res["step_seconds_nchw"] / res["step_seconds"],
                                                              rel=0.02, abs=0.006)


def test_bench_tasks_times_and_counts_each_network():
    from cldyn.evaluation.bench_closed_loop import bench_tasks

    res = bench_tasks(batch=1, size=64, repeats=1, log=lambda _: None)
    assert res["parameters"]["saliency: U2-Net-P"] == 1_125_485
    assert res["parameters"]["detection: FCOS EfficientNet-Lite0"] == 4_092_424
    assert res["ms"].keys() == res["parameters"].keys() and all(v > 0 for v in res["ms"].values())


def test_bench_customise_times_each_task_against_the_vfn():
    from cldyn.evaluation.bench_closed_loop import bench_customise
    from cldyn.model.rsc import RSC, RSCConfig
    from cldyn.model.vfn import VFN
    from cldyn.tasks import create_task

    torch.manual_seed(0)
    adapters = {"saliency": create_task("saliency", {"stages": 2, "width": 8}).freeze()}
    ir, vis = torch.rand(1, 1, 40, 56), torch.rand(1, 3, 40, 56)
    lines = []
    res = bench_customise(VFN(), RSC(RSCConfig()), adapters, ir, vis, repeats=1, log=lines.append)
    r = res["tasks"]["saliency"]
    assert res["size"] == [40, 56] and res["vfn_ms"] > 0
    assert all(r[f"{key}ms"] > 0 and r[f"{key}ratio"] > 0
               for key in ("", "auto_", "without_task_network_", "compensated_"))
    assert lines[-1].startswith("VFN:") and "saliency:" in lines[0]


def test_paired_timing_alternates_and_ratios_are_per_pair(monkeypatch):
    from cldyn.evaluation import bench, bench_closed_loop
    from cldyn.model.rsc import RSC, RSCConfig
    from cldyn.model.vfn import VFN
    from cldyn.tasks import create_task

    calls, clock = [], iter([0.1, 0.3, 0.2, 0.5, 0.4, 0.6])  # seconds: ref, fn, ref, fn, ...
    monkeypatch.setattr(bench, "_time", lambda fn: (fn(), next(clock))[1])
    times, refs = bench.paired_time_ms(lambda: calls.append("fn"), lambda: calls.append("ref"), 3, warmup=1)
    assert calls == ["ref", "fn"] * 4  # one warm-up pair, then three timed pairs
    assert times == pytest.approx([300, 500, 600]) and refs == pytest.approx([100, 200, 400])

    # bench_customise: each ratio is the median of its per-pair ratios (3, 2.5, 1.5 -> 2.5), not a ratio of medians
    monkeypatch.setattr(bench_closed_loop, "paired_time_ms", lambda fn, ref, n: ([300.0, 500.0, 600.0],
                                                                                  [100.0, 200.0, 400.0]))
    adapters = {"saliency": create_task("saliency", {"stages": 2, "width": 8}).freeze()}
    res = bench_closed_loop.bench_customise(VFN(), RSC(RSCConfig()), adapters, torch.rand(1, 1, 32, 32),
                                            torch.rand(1, 3, 32, 32), repeats=3, log=lambda m: None)
    r = res["tasks"]["saliency"]
    assert r["ratio"] == r["auto_ratio"] == r["compensated_ratio"] == pytest.approx(2.5)
    assert r["ms"] == pytest.approx(500.0)
    assert res["vfn_ms"] == pytest.approx(200.0) and res["vfn_ms_range"] == [100.0, 400.0]
