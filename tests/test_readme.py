"""The README's Python snippet runs as written (twice: the second run replaces its outputs) on a real pair."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_snippet() -> str:
    text = README.read_text()
    section = text[text.index("### Python API"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_python_api_snippet_runs_twice(pairs_dir, tmp_path):
    shutil.copy(pairs_dir / "ir" / "msrs_00004N_crop.png", tmp_path / "ir.png")
    shutil.copy(pairs_dir / "vi" / "msrs_00004N_crop.png", tmp_path / "vis.png")
    (tmp_path / "snippet.py").write_text(python_snippet())
    for _ in range(2):
        r = subprocess.run([sys.executable, "snippet.py"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "torch.Size([1, 3, 480, 640]) False"
    assert (tmp_path / "fused.png").is_file() and (tmp_path / "fused_for_saliency.png").is_file()
    assert (tmp_path / "fused.png").read_bytes() != (tmp_path / "fused_for_saliency.png").read_bytes()
