import json
import shutil

import numpy as np
import pytest

from cldyn.cli import main
from cldyn.data.io import write_png
from cldyn.evaluation.evaluate import evaluate_folders, fusion_metrics, read_gray


@pytest.fixture
def fused_dir(tmp_path, pairs_dir):
    """'fused' images: the visible images themselves, plus one of the wrong size."""
    out = tmp_path / "vis_copy"
    shutil.copytree(pairs_dir / "vi", out)
    return out


def test_fused_equal_to_visible_scores_like_visible_only(pairs_dir, fused_dir):
    ev = evaluate_folders(pairs_dir / "ir", pairs_dir / "vi", [fused_dir], names=["copy"],
                          baselines=["visible_only", "average"], progress=False)
    js = ev.to_json()
    assert set(js) == {"copy", "visible_only", "average"}
    assert js["copy"]["n"] == 2 and js["copy"]["failed"] == 0
    for k in ("en", "sd", "sf", "ag", "mi", "vif", "qabf", "ssim", "cc", "psnr"):
        assert js["copy"][k] == pytest.approx(js["visible_only"][k], rel=1e-9), k
    assert js["copy"]["scd"] is None  # F - B is constant: undefined, excluded and counted
    assert ev.summary()["copy"]["scd"]["undefined"] == 2


def test_failures_are_counted_not_averaged(pairs_dir, fused_dir, tmp_path):
    (fused_dir / "msrs_00004N_crop.png").unlink()
    write_png(fused_dir / "roadscene_FLIR_00006_crop.png", np.random.default_rng(0).random((10, 10)))
    errors = []
    ev = evaluate_folders(pairs_dir / "ir", pairs_dir / "vi", [fused_dir], names=["bad"], progress=False,
                          on_error=errors.append)
    assert ev.to_json()["bad"]["n"] == 0 and ev.to_json()["bad"]["failed"] == 2
    assert any("no fused image named msrs_00004N_crop" in e for e in errors)
    assert any("size 10x10 differs" in e for e in errors)


def test_conventions_read_the_same_8bit_gray(pairs_dir):
    p = pairs_dir / "vi" / "msrs_00004N_crop.png"
    a, b = read_gray(p, "cldyn"), read_gray(p, "cddfuse")
    assert a.shape == b.shape and np.abs(a - b).max() <= 1  # same BT.601 weights; rounding may differ by 1
    f = read_gray(pairs_dir / "ir" / "msrs_00004N_crop.png", "cldyn")
    m1, m2 = fusion_metrics(f, f, a, "cldyn"), fusion_metrics(f, f, a, "cddfuse")
    assert m1["en"] == m2["en"] and m1["ssim"] != m2["ssim"]  # SSIM data range 255 vs 2


def test_cli_writes_table_files_and_json(pairs_dir, fused_dir, tmp_path, capsys):
    rc = main(["evaluate", "--ir", str(pairs_dir / "ir"), "--vis", str(pairs_dir / "vi"), "--fused", str(fused_dir),
               "--names", "copy", "--baselines", "max,dwt,laplacian", "--out", str(tmp_path / "ev"),
               "--json", str(tmp_path / "s.json"), "--quiet", "--workers", "2"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "convention: cldyn" in out and "laplacian" in out
    js = json.loads((tmp_path / "s.json").read_text())
    assert set(js) == {"copy", "max", "dwt", "laplacian"} and all(js[m]["n"] == 2 for m in js)
    assert sorted(p.name for p in (tmp_path / "ev").iterdir()) == ["metrics.csv", "metrics.json", "metrics.md",
                                                                   "per_image.json"]
    assert main(["evaluate", "--ir", str(pairs_dir / "ir"), "--vis", str(pairs_dir / "vi"),
                 "--baselines", "nope", "--out", str(tmp_path / "x")]) == 2


def test_report_is_self_contained(pairs_dir, fused_dir, tmp_path):
    out = tmp_path / "r.html"
    rc = main(["report", "--ir", str(pairs_dir / "ir"), "--vis", str(pairs_dir / "vi"), "--fused", str(fused_dir),
               "--names", "copy", "--baselines", "average,dwt", "--out", str(out), "--quiet", "--samples", "2"])
    assert rc == 0
    page = out.read_text()
    assert "http://" not in page and "https://" not in page  # viewable offline
    assert page.count('<img src="data:image/png;base64,') == 2 * 5  # 2 pairs x (IR, visible, 3 methods)
    assert page.count('class=chart') >= 10  # one bar chart per defined metric
    assert 'class="best"' in page and "<th>QCV ↓</th>" in page


def test_repeated_fused_options(pairs_dir, fused_dir, tmp_path):
    rc = main(["evaluate", "--ir", str(pairs_dir / "ir"), "--vis", str(pairs_dir / "vi"), "--fused", str(fused_dir),
               "--fused", str(pairs_dir / "ir"), "--names", "A", "--names", "B", "--out", str(tmp_path / "e"),
               "--quiet"])
    assert rc == 0
    assert set(json.loads((tmp_path / "e" / "metrics.json").read_text())) == {"A", "B"}
