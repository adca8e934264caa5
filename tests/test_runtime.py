"""cldyn.runtime: optional-extra checks and the installed-extras table."""

import io
import subprocess
import sys

import pytest
import torch

import cldyn.runtime as R
from cldyn.errors import MissingExtraError


def test_require_extra_names_the_pip_extra():
    R.require_extra("json", "none", "a test")  # importable: nothing happens
    with pytest.raises(MissingExtraError, match=r"^cldyn export needs no_such_mod_x, which is not installed: "
                                                r"pip install 'cldyn\[onnx\]'$"):
        R.require_extra("no_such_mod_x", "onnx", "cldyn export")
    with pytest.raises(MissingExtraError):  # a missing parent package
        R.require_extra("no_such_mod_x.sub", "yolo", "x")


def test_installed_extras_reads_versions_without_importing(monkeypatch):
    monkeypatch.setattr(R, "EXTRAS", {"fake": ("pytest", "no-such-distribution-x")})
    found = R.installed_extras()
    assert found["fake"]["pytest"] == pytest.__version__ and found["fake"]["no-such-distribution-x"] is None


def test_available_memory_is_positive_on_the_cpu():
    free = R.available_memory(torch.device("cpu"))
    assert free is None or free > 0


def test_progress_off_a_terminal_is_plain_lines(monkeypatch):
    monkeypatch.setattr(R, "PROGRESS_LOG_INTERVAL", 0.0)  # a line per update, to see every one
    out = io.StringIO()  # not a terminal
    with R.progress_bar(total=3, desc="fuse", unit="pair", stream=out) as bar:
        for _ in range(3):
            bar.update(1)
    text = out.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert lines[-1].startswith("fuse: 100%") and "3/3" in lines[-1]
    assert all(line.startswith("fuse:") for line in lines)


def test_progress_of_a_command_in_a_pipe_has_no_carriage_returns(pairs_dir, tmp_path):
    r = subprocess.run([sys.executable, "-m", "cldyn.cli", "fuse", str(pairs_dir), "-o", str(tmp_path / "o")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "\r" not in r.stderr and "fuse: 100%" in r.stderr and "2/2" in r.stderr
