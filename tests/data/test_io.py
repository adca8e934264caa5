from pathlib import Path

import cv2
import numpy as np
import pytest

from cldyn.data.io import atomic_write_bytes, encode_image, read_image, to_single_channel, write_image
from cldyn.data.pairs import DATASET_LAYOUTS, find_layout, pair_folders
from cldyn.errors import InputError


def _write(path: Path, array: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), array)
    return path


def test_read_8bit_gray_and_rgb(tmp_path):
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    img = read_image(_write(tmp_path / "g.png", gray))
    assert img.bits == 8 and img.is_gray and img.pixels.dtype == np.float32
    assert np.allclose(img.pixels, gray / 255.0)
    bgr = np.zeros((2, 2, 3), np.uint8)
    bgr[..., 0] = 255  # blue in OpenCV's BGR order
    rgb = read_image(_write(tmp_path / "c.png", bgr)).pixels
    assert rgb.shape == (2, 2, 3) and np.all(rgb[..., 2] == 1.0) and np.all(rgb[..., 0] == 0.0)


def test_read_16bit_tiff_and_rgba(tmp_path):
    a16 = (np.arange(20, dtype=np.uint16) * 3000).reshape(4, 5)
    img = read_image(_write(tmp_path / "a.tif", a16))
    assert img.bits == 16 and np.allclose(img.pixels, a16 / 65535.0)
    rgba = np.dstack([np.full((3, 3), v, np.uint8) for v in (10, 20, 30, 255)])
    rgba[0, 0, :3] = 0
    px = read_image(_write(tmp_path / "a.png", rgba)).pixels
    assert px.shape == (3, 3, 3)
    assert np.allclose(px[1, 1], np.array([30, 20, 10]) / 255.0)


def test_read_float_tiff(tmp_path):
    f = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    img = read_image(_write(tmp_path / "f.tif", f))
    assert img.bits == 32 and np.allclose(img.pixels, f)
    bad = f.copy()
    bad[0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        read_image(_write(tmp_path / "nan.tif", bad))
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        read_image(_write(tmp_path / "big.tif", f * 3))


def test_bad_files_one_line_errors(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "dir.png").mkdir()
    good = cv2.imencode(".png", np.arange(64, dtype=np.uint8).reshape(8, 8))[1].tobytes()
    (tmp_path / "trunc.png").write_bytes(good[: len(good) // 2])
    (tmp_path / "text.jpg").write_text("not an image")
    _write(tmp_path / "const.png", np.full((4, 4), 7, np.uint8))
    cases = {"missing.png": "not found", "empty.png": "empty", "dir.png": "directory",
             "trunc.png": "not a readable image", "text.jpg": "not a readable image", "const.png": "constant"}
    for name, problem in cases.items():
        with pytest.raises(InputError, match=problem) as info:
            read_image(tmp_path / name)
        msg = str(info.value)
        assert "\n" not in msg and msg.startswith(str(tmp_path / name))


def test_non_utf8_name(tmp_path):
    name = b"caf\xe9.png"  # Latin-1, not valid UTF-8
    import os

    path = Path(os.fsdecode(os.path.join(os.fsencode(tmp_path), name)))
    path.write_bytes(cv2.imencode(".png", np.arange(16, dtype=np.uint8).reshape(4, 4))[1].tobytes())
    assert read_image(path).size == (4, 4)


def test_ir_rgb_reduced_to_one_channel(tmp_path):
    g = np.arange(16, dtype=np.uint8).reshape(4, 4)
    img = read_image(_write(tmp_path / "ir.png", np.dstack([g, g, g])))
    assert np.allclose(to_single_channel(img), g / 255.0, atol=1e-6)


@pytest.mark.parametrize("bits,ext", [(8, ".png"), (16, ".png"), (16, ".tif"), (8, ".bmp")])
def test_encode_round_trip_exact(tmp_path, bits, ext):
    levels = 2**bits - 1
    px = (np.arange(60).reshape(4, 5, 3) * 997 % (levels + 1)).astype(np.float64) / levels
    write_image(tmp_path / f"x{ext}", px, bits)
    back = read_image(tmp_path / f"x{ext}")
    assert back.bits == bits
    assert np.array_equal(np.rint(back.pixels * levels), np.rint(px * levels))


def test_encode_refuses_bad_depth():
    with pytest.raises(ValueError, match="8-bit"):
        encode_image(np.zeros((2, 2)), 16, ".jpg")


def test_atomic_write_leaves_nothing_on_failure(tmp_path, monkeypatch):
    import errno
    import os

    target = tmp_path / "x.png"
    target.write_bytes(b"previous")

    def full_disk(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(InputError, match="No space left on device") as info:
        atomic_write_bytes(target, b"new data")
    assert str(info.value).startswith(str(target)) and "\n" not in str(info.value)
    assert target.read_bytes() == b"previous"  # the old file survives
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]  # no temp file left behind


def test_pair_folders(tmp_path):
    (tmp_path / "ir").mkdir()
    (tmp_path / "vi").mkdir()
    img = np.arange(16, dtype=np.uint8).reshape(4, 4)
    for n in ("a", "b", "only_ir"):
        _write(tmp_path / "ir" / f"{n}.png", img)
    for n in ("a", "b", "only_vis"):
        _write(tmp_path / "vi" / f"{n}.jpg", img)
    (tmp_path / "vi" / "notes.txt").write_text("ignored")
    pairs, problems = pair_folders(tmp_path / "ir", tmp_path / "vi")
    assert [p.name for p in pairs] == ["a", "b"]
    assert sorted(e.path.name for e in problems) == ["only_ir.png", "only_vis.jpg"]
    (tmp_path / "e1").mkdir()
    (tmp_path / "e2").mkdir()
    with pytest.raises(InputError, match="no images"):
        pair_folders(tmp_path / "e1", tmp_path / "e2")


@pytest.mark.parametrize("ir_name,vis_name", [("ir", "vi"), ("Infrared", "Visible"), ("T", "RGB"),
                                              ("T_GRAY", "RGB"), ("Ir", "Vis")])
def test_find_layout(tmp_path, ir_name, vis_name):
    (tmp_path / ir_name).mkdir()
    (tmp_path / vis_name).mkdir()
    (tmp_path / "Label").mkdir()
    ir, vis = find_layout(tmp_path)
    assert (ir.name, vis.name) == (ir_name, vis_name)
    assert any(i == ir_name.lower() for i, _, _ in DATASET_LAYOUTS)


def test_find_layout_unknown(tmp_path):
    (tmp_path / "left").mkdir()
    with pytest.raises(InputError, match="no known infrared/visible"):
        find_layout(tmp_path)
