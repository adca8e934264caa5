"""cldyn serve's backend: one pair through VFN and CLDyN, and the one-line errors the page shows."""

import base64
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from cldyn.app.backend import AppConfig, ModelCache, Upload, difference_map, run_pair
from cldyn.data.io import read_image
from cldyn.errors import CldynError, InputError
from cldyn.inference.fuse import Fuser


@pytest.fixture(scope="module")
def models():
    return ModelCache(AppConfig())


def _up(path: Path) -> Upload:
    return Upload(path.name, path.read_bytes())


def _decode(uri: str) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(base64.b64decode(uri.split(",", 1)[1]), np.uint8), cv2.IMREAD_UNCHANGED)


def test_pair_with_a_task(pairs_dir, models, monkeypatch):
    made = []
    real = tempfile.TemporaryDirectory

    def recording(*a, **k):
        made.append(real(*a, **k))
        return made[-1]

    monkeypatch.setattr(tempfile, "TemporaryDirectory", recording)
    ir, vis = pairs_dir / "ir" / "msrs_00004N_crop.png", pairs_dir / "vi" / "msrs_00004N_crop.png"
    r = run_pair(_up(ir), _up(vis), "saliency", models)
    assert set(r["images"]) == {"infrared", "visible", "vfn", "cldyn", "saliency on VFN", "saliency on CLDyN",
                                "difference"}
    assert set(r["metrics"]) == {"vfn", "cldyn"} and set(r["metrics"]["vfn"]) == set(AppConfig().metrics)
    # the download is the full-size fused image, equal to what the CLI's fuser writes
    expected = Fuser(device="cpu", task="saliency").fuse_images(read_image(ir), read_image(vis))
    got = _decode(r["downloads"]["cldyn"])[:, :, ::-1]
    assert got.shape == (72, 96, 3) and np.abs(got.astype(int) - np.rint(expected * 255)).max() <= 1
    assert r["size"] == [96, 72] and r["bits"] == 8 and r["timings_ms"]["total"] > 0
    assert len(made) == 1 and not Path(made[0].name).exists()  # uploads lived in a folder that is gone


def test_plain_fusion_has_no_task_outputs(pairs_dir, models):
    ir, vis = pairs_dir / "ir" / "msrs_00004N_crop.png", pairs_dir / "vi" / "msrs_00004N_crop.png"
    r = run_pair(_up(ir), _up(vis), "none", models)
    assert set(r["images"]) == {"infrared", "visible", "vfn"} and set(r["metrics"]) == {"vfn"}
    assert r["difference_max_levels"] is None


def test_bad_inputs_give_the_cli_messages(pairs_dir, models, tmp_path):
    ir = _up(pairs_dir / "ir" / "msrs_00004N_crop.png")
    other = _up(pairs_dir / "vi" / "roadscene_FLIR_00006_crop.png")
    with pytest.raises(InputError, match=r"^notes.txt: "):
        run_pair(ir, Upload("notes.txt", b"hello"), "none", models)
    cv2.imwrite(str(tmp_path / "small.png"), np.random.default_rng(0).integers(0, 255, (10, 12), np.uint8))
    with pytest.raises(InputError, match=r"small.png: size 12x10 differs"):
        run_pair(ir, _up(tmp_path / "small.png"), "none", models)
    tight = ModelCache(AppConfig(max_upload_bytes=1000))
    with pytest.raises(InputError, match=r"msrs_00004N_crop.png: .* MB is over the upload limit of 0 MB"):
        run_pair(ir, ir, "none", tight)
    tiny = ModelCache(AppConfig(max_pixels=100))
    with pytest.raises(InputError, match=r"96x72 is over the size limit of 0.0 megapixels"):
        run_pair(ir, ir, "none", tiny)
    with pytest.raises(CldynError, match="unknown network 'depth'"):
        run_pair(ir, other, "depth", models)


def test_difference_map_scale():
    a, b = np.zeros((2, 2)), np.zeros((2, 2))
    b[0, 0] = 10 / 255
    img, peak = difference_map(a, b)
    assert peak == pytest.approx(10) and img.shape == (2, 2, 3)
    assert difference_map(a, a)[1] == 0
    # one scale for every pair, the demo's: 10 levels x 8 = 80 on the map, not the map's own maximum (255)
    from cldyn.inference.demo import heat_map

    np.testing.assert_array_equal(img, heat_map(np.array([[10.0, 0], [0, 0]])))
    b[0, 0] = 40 / 255  # 40 x 8 saturates
    assert (difference_map(a, b)[0][0, 0] == heat_map(np.array([[255.0]]))[0, 0]).all()
    assert not (img[0, 0] == heat_map(np.array([[255.0]]))[0, 0]).all()


def test_strength_and_a_user_network_on_the_page(pairs_dir, tmp_path):
    from cldyn.tasks import create_task

    net = tmp_path / "person.safetensors"
    create_task("ssdlite_person:SSDLitePersonAdapter").save(net)
    cache = ModelCache(AppConfig(networks={"person": ("ssdlite_person:SSDLitePersonAdapter", str(net))}))
    assert cache.cfg.choices()[-1] == "person" and "detection" in cache.cfg.choices()
    ir, vis = _up(pairs_dir / "ir" / "msrs_00004N_crop.png"), _up(pairs_dir / "vi" / "msrs_00004N_crop.png")
    r = run_pair(ir, vis, "person", cache, strength=0.0)
    assert r["strength"] == 0.0 and "person on CLDyN" in r["images"]
    assert r["downloads"]["cldyn"] == r["downloads"]["vfn"]  # strength 0: the VFN's image, bit for bit
    with pytest.raises(CldynError, match=r"--strength must be in \[0, 1\]"):
        run_pair(ir, vis, "person", cache, strength=2.0)
    # auto: the detector's own top score picks one of strengths 0, 0.5 and 1 (CocoScored gives the confidence)
    auto = run_pair(ir, vis, "person", cache, strength="auto")
    fixed = [run_pair(ir, vis, "person", cache, strength=s)["downloads"]["cldyn"] for s in ("0", "0.5", "1")]
    assert auto["strength"] == "auto" and auto["downloads"]["cldyn"] in fixed  # numbers as text too, as the form
    with pytest.raises(CldynError, match="unknown network 'nobody'; choose one of none, detection"):
        run_pair(ir, vis, "nobody", cache)


def test_align_first_registers_the_pair_and_shows_it_before_and_after(models):
    from cldyn.data.io import encode_png
    from cldyn.data.rig import random_warp, warped_visible
    from cldyn.inference.demo import demo_dir

    d = demo_dir()
    ir = read_image(d / "ir" / "roadscene_FLIR_04514.jpg")
    vis = read_image(d / "vi" / "roadscene_FLIR_04514.jpg")
    true, canvas = random_warp(np.random.default_rng(0), ir.size)
    moved = Upload("moved.png", encode_png(warped_visible(vis.pixels, true, canvas)))
    r = run_pair(_up(d / "ir" / "roadscene_FLIR_04514.jpg"), moved, "none", models, align="affine")
    assert r["alignment"]["model"] == "affine" and r["alignment"]["confidence"] >= 4
    assert r["size"] == [ir.size[1], ir.size[0]] and "registration (affine)" in r["timings_ms"]
    after = _decode(r["images"]["checkerboard after registration"])
    assert after.shape[:2] == _decode(r["images"]["infrared"]).shape[:2]
    assert "checkerboard before registration" in r["images"]
    with pytest.raises(InputError, match="cannot be aligned"):
        run_pair(_up(d / "ir" / "msrs_01506D.png"), _up(d / "vi" / "roadscene_FLIR_04514.jpg"), "none", models,
                 align="affine")
    with pytest.raises(CldynError, match="unknown alignment"):
        run_pair(moved, moved, "none", models, align="elastic")
