"""``cldyn align``, ``cldyn fuse --align`` and ``cldyn bench align`` on the real pairs bundled with the package."""

import json

import cv2
import numpy as np
import pytest

from cldyn.cli import main
from cldyn.data.io import read_image, write_image
from cldyn.data.rig import random_warp, warped_visible
from cldyn.inference.demo import demo_dir
from cldyn.inference.fuse import Fuser


@pytest.fixture
def unaligned(tmp_path):
    """A folder dataset: ``good`` (RoadScene, visible redrawn by a second camera of twice the resolution, another
    size and aspect ratio) and ``unrelated`` (an MSRS infrared image with RoadScene's visible image)."""
    d = demo_dir()
    root = tmp_path / "rig"
    (root / "ir").mkdir(parents=True)
    (root / "vi").mkdir()
    ir = read_image(d / "ir" / "roadscene_FLIR_04514.jpg")
    vis = read_image(d / "vi" / "roadscene_FLIR_04514.jpg")
    true, canvas = random_warp(np.random.default_rng(0), ir.size)
    write_image(root / "ir" / "good.png", ir.pixels)
    write_image(root / "vi" / "good.png", warped_visible(vis.pixels, true, canvas))
    write_image(root / "ir" / "unrelated.png", read_image(d / "ir" / "msrs_01506D.png").pixels)
    write_image(root / "vi" / "unrelated.png", vis.pixels)
    return root


def test_align_writes_the_visible_image_in_the_infrared_frame(unaligned, tmp_path, capsys):
    out = tmp_path / "aligned.png"
    assert main(["align", str(unaligned / "ir" / "good.png"), str(unaligned / "vi" / "good.png"), "-o", str(out),
                 "--save-warp"]) == 0
    ir = cv2.imread(str(unaligned / "ir" / "good.png"))
    assert cv2.imread(str(out)).shape == ir.shape
    record = json.loads((tmp_path / "aligned.warp.json").read_text())
    assert record["model"] == "homography" and record["confidence"] >= 4 and np.array(record["warp"]).shape == (3, 3)
    assert "confidence" in capsys.readouterr().out


def test_an_unrelated_pair_is_one_line_and_nothing_is_written(unaligned, tmp_path, capsys):
    out = tmp_path / "aligned.png"
    code = main(["align", str(unaligned / "ir" / "unrelated.png"), str(unaligned / "vi" / "unrelated.png"), "-o",
                 str(out), "--save-warp"])
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert "unrelated.png: cannot be aligned to unrelated.png" in err
    assert not out.exists() and not (tmp_path / "aligned.warp.json").exists()


def test_fuse_a_folder_with_align_goes_on_past_a_pair_it_cannot_align(unaligned, tmp_path, capsys):
    out = tmp_path / "fused"
    code = main(["fuse", str(unaligned), "-o", str(out), "--align", "affine", "--save-warp", "--quiet"])
    err = capsys.readouterr().err
    assert code == 1
    assert [line for line in err.splitlines() if "error:" in line and "unrelated.png" in line]
    assert sorted(p.name for p in out.iterdir()) == ["good.png", "good.warp.json"]
    assert cv2.imread(str(out / "good.png")).shape == cv2.imread(str(unaligned / "ir" / "good.png")).shape


def test_align_none_is_bit_identical_to_plain_fusion(pairs_dir, tmp_path):
    ir, vis = pairs_dir / "ir" / "msrs_00004N_crop.png", pairs_dir / "vi" / "msrs_00004N_crop.png"
    assert main(["fuse", str(ir), str(vis), "-o", str(tmp_path / "plain.png")]) == 0
    assert main(["fuse", str(ir), str(vis), "-o", str(tmp_path / "none.png"), "--align", "none"]) == 0
    assert (tmp_path / "plain.png").read_bytes() == (tmp_path / "none.png").read_bytes()
    a = Fuser(device="cpu").fuse_images(read_image(ir), read_image(vis))
    b = Fuser(device="cpu", align="none").fuse_images(read_image(ir), read_image(vis))
    assert np.array_equal(a, b)


def test_bench_align_reports_errors_failures_and_unrelated_pairs(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "align", "--set", f"demo={demo_dir()}::1", "--limit", "2", "--unrelated", "1",
                 "--no-fusion", "--quiet", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "known median/p95 px" in text and "unrelated pairs refused" in text
    res = json.loads(out.read_text())
    assert len(res["warps"]) == 2 and res["unrelated"]["pairs"] == 1
    done = [w for w in res["warps"] if w["estimated"] is not None]
    assert done and all(w["published_px"] < 20 for w in done)  # the day pair; the dark night one may be refused
    assert res["sets"]["demo"]["failed"] == 2 - len(done)


def test_bench_align_needs_a_set(capsys):
    assert main(["bench", "align"]) == 2
    assert "--set NAME=ROOT" in capsys.readouterr().err
