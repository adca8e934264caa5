import base64
import json
import shutil
from html.parser import HTMLParser

import cv2
import numpy as np
import pytest

from cldyn.cli import main
from cldyn.data.io import write_png
from cldyn.evaluation.evaluate import Evaluation, evaluate_folders, fusion_metrics, read_gray
from cldyn.evaluation.report import axis_range, detail_window


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


class _Page(HTMLParser):
    """The parts of a report page the tests look at."""

    def __init__(self):
        super().__init__()
        self.images, self.cells, self.h3, self.captions, self._in = [], [], [], [], None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append(a)
        if tag in ("td", "h3", "figcaption"):
            self._in = tag
            {"td": self.cells, "h3": self.h3, "figcaption": self.captions}[tag].append("")

    def handle_endtag(self, tag):
        if tag == self._in:
            self._in = None

    def handle_data(self, data):
        if self._in:
            {"td": self.cells, "h3": self.h3, "figcaption": self.captions}[self._in][-1] += data


def _decode(uri):
    data = base64.b64decode(uri.split(",", 1)[1])
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def test_report_is_self_contained(pairs_dir, fused_dir, tmp_path):
    out = tmp_path / "r.html"
    rc = main(["report", "--ir", str(pairs_dir / "ir"), "--vis", str(pairs_dir / "vi"), "--fused", str(fused_dir),
               "--names", "copy", "--baselines", "average,dwt", "--out", str(out), "--quiet", "--samples", "2"])
    assert rc == 0
    text = out.read_text()
    assert "http://" not in text and "https://" not in text  # viewable offline
    page = _Page()
    page.feed(text)
    full = [i for i in page.images if i.get("class") == "zoomable"]
    crops = [i for i in page.images if i.get("class") == "crop zoomable"]
    assert len(full) == len(crops) == 2 * 5  # 2 pairs x (IR, visible, 3 methods), each with its zoomed crop
    assert all(i["src"].startswith("data:image/jpeg;base64,") for i in full)
    assert sum(i.get("class") == "chart" for i in page.images) >= 10  # one bar chart per defined metric
    assert 'class="best"' in text and "<th>QCV ↓</th>" in text
    # item 12: mean on its own line, the std in a smaller second line
    assert all(c.count("±") == 1 for c in page.cells if "±" in c) and "<small>± " in text
    # item 15: each pair titled with its dataset; item 14: rows do not wrap, click to enlarge
    assert [h.split()[:2] for h in page.h3] == [["msrs_00004N_crop", "MSRS"],
                                                ["roadscene_FLIR_00006_crop", "RoadScene"]]
    assert "flex-wrap:nowrap" in text and "id=lightbox" in text and "addEventListener('click'" in text
    # item 14: per-image metrics under each fused image and on hover
    copy_caption = next(c for c in page.captions if c.startswith("copy"))
    assert "EN " in copy_caption and "SSIM " in copy_caption
    assert "QCV " in next(i for i in full if i["alt"] == "copy")["title"]
    # item 14: baselines in colour, as the fused images (RoadScene's visible image is RGB)
    average = [i for i in full if i["alt"] == "average"][1]
    img = _decode(average["src"]).astype(int)
    assert np.abs(img[..., 0] - img[..., 2]).mean() > 2


def test_close_values_get_a_raised_axis():
    assert axis_range([0.98, 0.99, 0.97], [0.01, 0.01, 0.01]) == pytest.approx((0.9568, 1.0032))
    assert axis_range([6.5, 1.8], [0.5, 0.3]) is None  # far apart: from 0
    assert axis_range([0.0, 0.01], [0, 0]) is None and axis_range([0.9], [0.1]) is None


def test_detail_window_finds_the_textured_region():
    flat = np.zeros((40, 80))
    tex = flat.copy()
    tex[20:30, 60:80] = np.indices((10, 20)).sum(0) % 2  # a checkerboard in the lower right
    rows, cols = detail_window(tex, flat)
    assert (rows.stop - rows.start, cols.stop - cols.start) == (10, 20)
    assert rows.start >= 18 and cols.start >= 58


def test_repeated_fused_options(pairs_dir, fused_dir, tmp_path):
    rc = main(["evaluate", "--ir", str(pairs_dir / "ir"), "--vis", str(pairs_dir / "vi"), "--fused", str(fused_dir),
               "--fused", str(pairs_dir / "ir"), "--names", "A", "--names", "B", "--out", str(tmp_path / "e"),
               "--quiet"])
    assert rc == 0
    assert set(json.loads((tmp_path / "e" / "metrics.json").read_text())) == {"A", "B"}


def test_evaluate_without_out_writes_nothing_and_runs_again(pairs_dir, fused_dir, tmp_path, monkeypatch, capsys):
    """Without --out the table is printed and nothing lands in the working folder, so a second run is no refusal."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    argv = ["evaluate", "--ir", str(pairs_dir / "ir"), "--vis", str(pairs_dir / "vi"), "--baselines", "max",
            "--metrics", "en,ssim", "--quiet"]
    assert main(argv) == 0 and main(argv) == 0
    assert "max" in capsys.readouterr().out and list(work.iterdir()) == []


def test_report_reads_evaluates_metrics_instead_of_computing_them(pairs_dir, fused_dir, tmp_path, monkeypatch):
    import cldyn.cli.evaluation as cli_evaluation

    ev_dir = tmp_path / "ev"
    args = ["--ir", str(pairs_dir / "ir"), "--vis", str(pairs_dir / "vi"), "--fused", str(fused_dir), "--names",
            "copy", "--baselines", "average", "--metrics", "en,ssim,qabf", "--quiet"]
    assert main(["evaluate", *args, "--out", str(ev_dir), "--report", str(tmp_path / "at_once.html")]) == 0
    computed = Evaluation.read(ev_dir)
    assert computed.methods == ["copy", "average"] and computed.metrics == ("en", "ssim", "qabf")

    def no_scoring(*a, **k):
        raise AssertionError("the metrics were computed again")

    monkeypatch.setattr(cli_evaluation, "evaluate_folders", no_scoring)
    out = tmp_path / "later.html"
    assert main(["report", *args, "--scores", str(ev_dir), "--out", str(out), "--samples", "2"]) == 0
    page = _Page()
    page.feed(out.read_text())
    assert sum(i.get("class") == "zoomable" for i in page.images) == 2 * 4  # IR, visible, copy, average
    # the same table as the report written by evaluate --report from the metrics it had just computed
    first = _Page()
    first.feed((tmp_path / "at_once.html").read_text())
    assert first.cells == page.cells
    assert main(["report", "--scores", str(tmp_path / "nowhere"), *args[:4], "--out", str(out), "--overwrite"]) == 2
