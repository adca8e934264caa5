"""Every code block of the README runs as pasted: the opening block's demo, the command-line quick start (bash) and
the Python quick start, each in a temporary folder; and the README stays a front door."""

import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from cldyn.data.io import read_image
from cldyn.inference.demo import demo_pairs

README = Path(__file__).resolve().parents[1] / "README.md"


def code_blocks() -> list[tuple[str, str]]:
    """``(language, code)`` of every fenced block, in order."""
    return re.findall(r"```(\w*)\n(.*?)```", README.read_text(), re.S)


def test_the_readme_is_a_front_door():
    text = README.read_text()
    assert len(text.splitlines()) <= 250
    assert "issue" not in text.lower()  # the project's issues live elsewhere
    lang, first = code_blocks()[0]
    # .ci/run runs the second line; the first installs and runs the demo
    assert lang == "bash" and first.splitlines() == ["pip install . && cldyn demo",
                                                    'pip install -e ".[dev,yolo,pretrained]" && python -m pytest']
    for link in re.findall(r"\]\((docs/[^)#]+)", text):
        assert (README.parent / link).exists(), link


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=900)


def _last_column_white_runs(pixels: np.ndarray) -> np.ndarray:
    """Lengths of the white stretches down the last column of an ``(H, W, C)`` image in [0, 1]."""
    white = (pixels[:, -1] > 0.99).all(axis=-1)
    edges = np.flatnonzero(np.diff(np.r_[0, white.astype(int), 0]))
    return edges[1::2] - edges[::2]


def test_the_opening_demo_runs(tmp_path):
    demo = code_blocks()[0][1].splitlines()[0].split("&&")[1].strip()
    r = _run(["bash", "-c", f"{demo} --quiet"], tmp_path)  # the demo as the README runs it, without the bar
    assert r.returncode == 0, r.stderr
    assert "side_by_side.png" in r.stdout and "customised.png" in r.stdout
    out = tmp_path / "cldyn-demo"
    sheet = read_image(out / "side_by_side.png")
    # three rows, each scaled to the widest row (no white strip), each titled with the pair and its dataset
    white_runs = _last_column_white_runs(sheet.pixels)
    # a strip would whiten a whole row (>= 200 px); the 4-pixel gaps between rows are white, as are a few
    # saturated sky pixels of the fused images themselves
    assert (white_runs == 4).sum() >= 3 and white_runs.max() < 20, white_runs
    assert abs(float(sheet.pixels[:26, -20:].mean()) - 32 / 255) < 1e-6  # the first row's title bar
    assert len(list((out / "fused").iterdir())) == 3
    # the task customisations: per pair a row of fusions (VFN + one per task) and a row of differences, 4 panels
    custom = read_image(out / "customised.png").pixels
    widest = max(round(im.shape[1] * 240 / im.shape[0]) for im in (read_image(p.ir).pixels for p in demo_pairs()))
    # 6 rows (3 pairs x fusions + differences) leave 6 white gaps of 4 px, the only rows white across the whole
    # sheet; saturated pixels of a fused image whiten a few pixels of the last column, a strip (a row narrower
    # than the sheet) a long run of it
    assert int((custom > 0.99).all(axis=(1, 2)).sum()) == 6 * 4
    white_runs = _last_column_white_runs(custom)
    assert (white_runs == 4).sum() >= 6 and white_runs.max() < 20, white_runs
    assert custom.shape[1] == 4 * widest


def test_the_command_line_quick_start_runs_twice(tmp_path):
    blocks = [code for lang, code in code_blocks()[1:] if lang == "bash"]
    assert blocks, "no command-line quick start"
    for _ in range(2):  # a second run replaces its outputs (--overwrite)
        for code in blocks:
            r = _run(["bash", "-euo", "pipefail", "-c", code], tmp_path)
            assert r.returncode == 0, f"{code}\n{r.stderr}"
    assert sorted(p.name for p in (tmp_path / "fused").iterdir())[:1] == ["msrs_00854N.png"]
    day, plain = cv2.imread(str(tmp_path / "day_for_detection.png")), cv2.imread(str(tmp_path / "fused" /
                                                                                      "msrs_01506D.png"))
    assert day.shape == plain.shape == (480, 640, 3) and (day != plain).any()  # customised, not the VFN's image


def test_the_python_quick_start_runs_twice(tmp_path):
    blocks = [code for lang, code in code_blocks() if lang == "python"]
    assert len(blocks) == 1
    (tmp_path / "quick_start.py").write_text(blocks[0])
    for _ in range(2):
        r = _run([sys.executable, "quick_start.py"], tmp_path)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "detection 0.5"
    fused, custom = cv2.imread(str(tmp_path / "fused.png")), cv2.imread(str(tmp_path / "fused_for_detection.png"))
    assert fused.shape == custom.shape and (fused != custom).any()
