"""Shared fixtures. The fast suite needs only tests/data; tests that read ../shared/data skip when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

TESTS = Path(__file__).parent
FIXTURE_PAIRS = TESTS / "data" / "pairs"
SHARED_DATA = Path(os.environ.get("CLDYN_SHARED_DATA", TESTS.parent.parent / "shared" / "data"))


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
