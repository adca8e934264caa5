"""Shared fixtures. The fast suite needs only tests/fixtures; tests that read ../shared/data skip when it is absent."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

TESTS = Path(__file__).parent
FIXTURE_PAIRS = TESTS / "fixtures" / "pairs"
SHARED_DATA = Path(os.environ.get("CLDYN_SHARED_DATA", TESTS.parent.parent / "shared" / "data"))

if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest-xdist runs one worker per core: one torch thread each, for the tests and for the commands they start
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


@pytest.fixture
def pairs_dir() -> Path:
    """Folder with ``ir/`` and ``vi/``: two real 96x72 pairs (MSRS and RoadScene crops)."""
    return FIXTURE_PAIRS


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "msrs").is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA} (set CLDYN_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)


@pytest.fixture
def labelled(tmp_path, pairs_dir):
    """The two fixture pairs with segmentation, saliency and detection labels, MSRS layout."""
    root = tmp_path / "msrs_like"
    shutil.copytree(pairs_dir, root)
    rng = np.random.default_rng(0)
    for sub in ("labels/seg", "labels/sal", "labels/det/fusion", "splits"):
        (root / sub).mkdir(parents=True)
    names = sorted(p.stem for p in (root / "ir").iterdir())
    for n in names:
        seg = rng.integers(0, 9, (72, 96), dtype=np.uint8)
        cv2.imwrite(str(root / "labels/seg" / f"{n}.png"), seg)
        sal = np.zeros((72, 96), np.uint8)
        sal[20:40, 30:60] = 255
        cv2.imwrite(str(root / "labels/sal" / f"{n}.png"), sal)
        (root / "labels/det/fusion" / f"{n}.txt").write_text("0 0.5 0.5 0.25 0.5\n2 0.2 0.3 0.1 0.1\n")
    (root / "splits/train.txt").write_text("\n".join(names))
    (root / "splits/val.txt").write_text(names[0])
    return root


@pytest.fixture
def cli():
    """Run ``cldyn ARGS...`` in a subprocess, as a user does: ``cli(*args, cwd=None) -> CompletedProcess``."""
    def run(*args, cwd=None):
        return subprocess.run([sys.executable, "-m", "cldyn.cli", *map(str, args)], capture_output=True, text=True,
                              timeout=600, cwd=cwd)
    return run
