"""Multi-process training (torchrun, gloo on CPU): the ranks stay identical and compute what one process computes on
the whole batch."""

from __future__ import annotations

import multiprocessing
import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist

from cldyn.data.io import read_csv
from cldyn.training.distributed import CrossRankBatchNorm2d, DistContext, convert_batchnorm
from cldyn.weights.checkpoint import load_checkpoint

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is needed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                               torch.nn.Conv2d(4, 1, 1))


def _rank_step(rank: int, port: int, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        torch.manual_seed(1)
        x = torch.randn(4, 3, 9, 9)
        net = convert_batchnorm(_net())
        net(x[2 * rank:2 * rank + 2]).square().mean().backward()
        DistContext(rank, 2).average_gradients(list(net.parameters()))
        # numpy arrays travel by value (tensors would travel as shared-memory handles that die with this process)
        queue.put((rank, [p.grad.numpy().copy() for p in net.parameters()], net[1].running_mean.numpy().copy(),
                   net[1].running_var.numpy().copy()))
    finally:
        dist.destroy_process_group()


def test_cross_rank_batchnorm_and_gradient_average_match_one_process():
    ctx = multiprocessing.get_context("spawn")
    queue, port = ctx.Queue(), _free_port()
    procs = [ctx.Process(target=_rank_step, args=(r, port, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = dict((r, rest) for r, *rest in (queue.get(timeout=120) for _ in procs))
    for p in procs:
        p.join(timeout=60)
    torch.manual_seed(1)
    x = torch.randn(4, 3, 9, 9)
    ref = _net()
    ref(x).square().mean().backward()
    for rank in (0, 1):
        grads, mean, var = results[rank]
        for g, p in zip(grads, ref.parameters(), strict=True):
            assert torch.allclose(torch.from_numpy(g), p.grad, atol=1e-6)
        assert torch.allclose(torch.from_numpy(mean), ref[1].running_mean, atol=1e-6)
        assert torch.allclose(torch.from_numpy(var), ref[1].running_var, atol=1e-6)
    assert isinstance(convert_batchnorm(_net())[1], CrossRankBatchNorm2d)


# Both runs start through this script, with oneDNN off. oneDNN picks its convolution kernels by batch size, so a
# sample's activations differ by float rounding between a batch of 2 (one process) and a shard of 1 (two processes);
# at a ReLU kink that rounding can flip one activation's side, and its gradient path with it. Measured on this
# 2-core EPYC (torch 2.14.1): one pre-activation of the shipped saliency network (block 8 depthwise, 3e-6 from 0)
# flipped, which moved sample 0's input gradient by 2.3% and train-rsc's first Adam moment by 3.7% (relative L2).
# PyTorch's native CPU kernels compute each sample alike whatever the batch (there the two batch sizes gave
# bit-identical gradients), so the comparison below sees only what is under test: sharding, the cross-rank
# BatchNorm and the gradient average.
_LAUNCHER = """import sys
import torch
torch.backends.mkldnn.enabled = False
from cldyn.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _run(command: list[str], out, processes: int) -> None:
    launch = out.parent / "launch.py"
    launch.write_text(_LAUNCHER)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes)] \
        if processes > 1 else [sys.executable]
    res = subprocess.run([*launcher, str(launch), *command, "--out", str(out)], capture_output=True, text=True,
                         timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-3000:]


def _compare(one, two, log: str | None, loss_key: str | None) -> None:
    a, ma = load_checkpoint(one / "last.safetensors")
    b, mb = load_checkpoint(two / "last.safetensors")
    assert (ma["world_size"], mb["world_size"]) == (1, 2)
    assert mb["rank_max_abs_diff"] == 0.0  # the two ranks hold bit-identical parameters
    # After one Adam step, exp_avg = 0.1 * gradient: the averaged gradient of two half batches equals the gradient
    # of the whole batch (parameters themselves are a poor witness: Adam's first step turns the float noise of
    # gradients that are zero in exact arithmetic, e.g. conv biases before BatchNorm, into +-lr).
    moments = [k for k in a if k.endswith("/exp_avg")]
    assert moments
    # Tolerance on the global scale (noise-level entries have no scale of their own): float32 rounding. Measured for
    # train-vfn against a float64 recomputation: the 2-process gradient is within 4e-6 (relative) of the exact one,
    # the 1-process gradient (PyTorch's own BatchNorm) within 1.4e-3 on some conv weights; worst/scale = 2e-4.
    scale = max(float(a[k].abs().max()) for k in moments)
    worst = max(float((a[k] - b[k]).abs().max()) for k in moments)
    assert worst <= 1e-3 * scale, (worst, scale)
    if log:
        la = [float(r[loss_key]) for r in read_csv(one / log)]
        lb = [float(r[loss_key]) for r in read_csv(two / log)]
        assert la and len(la) == len(lb) and max(abs(p - q) for p, q in zip(la, lb, strict=True)) < 1e-5


def test_torchrun_train_vfn_matches_one_process(pairs_dir, tmp_path):
    cmd = ["train-vfn", "--data", str(pairs_dir), "--split", "all", "--epochs", "1", "--batch-size", "2",
           "--crop", "40", "--num-blocks", "2", "--max-steps", "1", "--threads", "1", "--quiet"]
    _run(cmd, tmp_path / "one", 1)
    _run(cmd, tmp_path / "two", 2)
    _compare(tmp_path / "one", tmp_path / "two", "loss.csv", "loss")


def test_torchrun_train_task_matches_one_process(labelled, tmp_path):
    # VFN-fused input (the default). With oneDNN on, this comparison was off by 4.4e-3 (relative L2 of the first Adam
    # moments, all in the saliency network's stem and first stage) although batches and initial weights were
    # bit-identical: the batch-size-dependent kernels of _LAUNCHER's note. With it off: 2.5e-6.
    cmd = ["train-task", "--task", "saliency", "--data", str(labelled), "--epochs", "1",
           "--batch-size", "2", "--crop", "48", "--max-steps", "1", "--threads", "1", "--quiet"]
    _run(cmd, tmp_path / "one", 1)
    _run(cmd, tmp_path / "two", 2)
    _compare(tmp_path / "one", tmp_path / "two", "metrics.csv", "loss")


def test_torchrun_train_rsc_matches_one_process(labelled, tmp_path):
    # Saliency: a per-pixel mean loss. (The shipped segmentation network's class-weighted cross-entropy divides by
    # the batch's total weight, and YOLO's loss by its matched anchors: for those the shards' mean is close to, not
    # equal to, the whole batch's loss.)
    cmd = ["train-rsc", "--tasks", "saliency", "--data", str(labelled), "--steps", "1",
           "--batch-size", "2", "--crop", "48", "--threads", "1", "--quiet"]
    _run(cmd, tmp_path / "one", 1)
    _run(cmd, tmp_path / "two", 2)
    _compare(tmp_path / "one", tmp_path / "two", "log.csv", "saliency_loss")


def test_context_checkpoint_and_log_only_on_rank_0(tmp_path):
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.Adam(model.parameters())
    said = []
    for rank in (0, 1):  # world_size 1 keeps the collectives local; only the rank decides who writes and talks
        ctx = DistContext(rank=rank)
        path = tmp_path / f"rank{rank}.safetensors"
        wrote = ctx.save_training_state(path, model, "model", opt, list(model.parameters()), {"kind": "x", "step": 3})
        ctx.quiet(said.append)(f"rank {rank}")
        assert wrote == (rank == 0) and path.is_file() == (rank == 0)
    _, meta = load_checkpoint(tmp_path / "rank0.safetensors")
    assert (meta["kind"], meta["step"], meta["world_size"], meta["rank_max_abs_diff"]) == ("x", 3, 1, 0.0)
    assert meta["torch"] == torch.__version__ and "cldyn_version" in meta
    assert said == ["rank 0"]
