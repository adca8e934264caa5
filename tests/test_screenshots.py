"""Issue 17: screenshots of the report and the demo picture in headless Chromium (Debian's ``chromium``) at
1400 px, kept in ``docs/screenshots/``. Slow (two Chromium runs and a demo):
``python -m pytest -m slow tests/test_screenshots.py``.
"""

import shutil
import subprocess
from pathlib import Path

import pytest

from cldyn.cli import main
from cldyn.data.io import read_image

DOCS = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
pytestmark = pytest.mark.slow


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium)")
    return exe


def _screenshot(url: str, png: Path, height: int) -> Path:
    png.parent.mkdir(parents=True, exist_ok=True)
    r = subprocess.run([_chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--window-size=1400,{height}", f"--screenshot={png}", url],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0 and png.is_file(), r.stderr[-2000:]
    return png


def test_report_and_demo_screenshots(pairs_dir, tmp_path):
    fused = tmp_path / "fused"
    assert main(["fuse", str(pairs_dir), "-o", str(fused), "--quiet"]) == 0
    report = tmp_path / "report.html"
    assert main(["report", "--ir", str(pairs_dir / "ir"), "--vis", str(pairs_dir / "vi"), "--fused", str(fused),
                 "--names", "vfn", "--baselines", "average,max", "--samples", "2", "--out", str(report),
                 "--quiet"]) == 0
    shot = read_image(_screenshot(report.as_uri(), DOCS / "report.png", 2000))
    assert shot.pixels.shape[:2] == (2000, 1400) and shot.pixels.std() > 0.05  # a rendered page, not a blank one

    assert main(["demo", "--out", str(tmp_path / "demo"), "--quiet", "--no-tasks"]) == 0
    page = tmp_path / "demo.html"
    page.write_text(f'<html><body style="margin:0"><img src="{(tmp_path / "demo" / "side_by_side.png").as_uri()}" '
                    'style="width:1400px"></body></html>')
    shot = read_image(_screenshot(page.as_uri(), DOCS / "demo.png", 1120))
    assert shot.pixels.std() > 0.05
