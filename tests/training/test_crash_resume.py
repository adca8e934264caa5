"""Crash-safe training: SIGKILL a training process (train-vfn, train-rsc) at a random step, resume, and reach the
weights of an uninterrupted run with the same seed, bit for bit (CPU, same thread count)."""

import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from cldyn.weights.checkpoint import load_checkpoint

STEPS = 8
ARGS = {
    "train-vfn": ["--split", "all", "--epochs", str(STEPS), "--batch-size", "2", "--crop", "40", "--num-blocks", "2",
                  "--checkpoint-every", "1", "--threads", "1", "--quiet"],
    # The shipped VFN and saliency network, the fixture pairs with labels; validation only at the end.
    "train-rsc": ["--tasks", "saliency", "--steps", str(STEPS), "--batch-size", "2", "--crop", "48",
                  "--checkpoint-every", "1", "--val-every", "100", "--threads", "1", "--quiet"],
}


def _train(command, data, out, *extra):
    cmd = [sys.executable, "-m", "cldyn.cli", command, "--data", str(data), "--out", str(out), *ARGS[command], *extra]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")
@pytest.mark.parametrize("command", ["train-vfn", "train-rsc"])
def test_sigkill_then_resume_is_bit_identical(command, labelled, tmp_path):
    full = _train(command, labelled, tmp_path / "full")
    assert full.wait(timeout=600) == 0, full.stderr.read()

    victim = _train(command, labelled, tmp_path / "killed")
    ckpt = tmp_path / "killed" / "last.safetensors"
    kill_after = random.Random(os.getpid()).randint(1, 5)  # checkpoints written before the kill
    deadline = time.time() + 300
    while time.time() < deadline and victim.poll() is None:
        if ckpt.is_file() and load_checkpoint(ckpt)[1]["global_step"] >= kill_after:
            break
        time.sleep(0.05)
    if victim.poll() is not None:
        pytest.fail("training finished before it could be killed; raise --epochs")
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=60)
    killed_at = load_checkpoint(ckpt)[1]["global_step"]  # the last good checkpoint survived the kill
    assert 1 <= killed_at < STEPS

    resumed = _train(command, labelled, tmp_path / "killed", "--resume")
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()
    a, ma = load_checkpoint(tmp_path / "full" / "last.safetensors")
    b, mb = load_checkpoint(ckpt)
    assert ma["global_step"] == mb["global_step"] == STEPS
    for k in a:
        assert torch.equal(a[k], b[k]), k
