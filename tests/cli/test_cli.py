"""End-to-end: the ``cldyn`` command on two tiny real pairs in a temp folder, with the shipped weights."""

import shutil
import subprocess
import sys

import numpy as np
import pytest

from cldyn.cli import main
from cldyn.data.io import read_image
from cldyn.version import __version__


@pytest.fixture
def dataset(tmp_path, pairs_dir):
    root = tmp_path / "data"
    shutil.copytree(pairs_dir, root)
    return root


def _run(*args):
    """The installed console entry point, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "cldyn.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def test_fuse_single_pair_and_folder(dataset, tmp_path, capsys):
    ir, vis = dataset / "ir" / "msrs_00004N_crop.png", dataset / "vi" / "msrs_00004N_crop.png"
    assert main(["fuse", str(ir), str(vis), "-o", str(tmp_path / "one.png")]) == 0
    out = read_image(tmp_path / "one.png")
    assert out.size == (72, 96) and not out.is_gray

    assert main(["fuse", str(dataset), "-o", str(tmp_path / "all"), "--quiet", "--batch-size", "2"]) == 0
    names = sorted(p.name for p in (tmp_path / "all").iterdir())
    assert names == ["msrs_00004N_crop.png", "roadscene_FLIR_00006_crop.png"]
    assert np.array_equal(read_image(tmp_path / "all" / names[0]).pixels, out.pixels)

    assert main(["fuse", "--ir", str(dataset / "ir"), "--vis", str(dataset / "vi"), "-o", str(tmp_path / "all"),
                 "--quiet"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["fuse", "--ir", str(dataset / "ir"), "--vis", str(dataset / "vi"), "-o", str(tmp_path / "all"),
                 "--quiet", "--overwrite", "--threads", "1"]) == 0


def test_fuse_customised_for_a_task_with_shipped_weights(dataset, tmp_path):
    ir, vis = dataset / "ir" / "msrs_00004N_crop.png", dataset / "vi" / "msrs_00004N_crop.png"
    assert main(["fuse", str(ir), str(vis), "-o", str(tmp_path / "plain.png")]) == 0
    assert main(["fuse", str(ir), str(vis), "-o", str(tmp_path / "none.png"), "--task", "none"]) == 0
    assert main(["fuse", str(ir), str(vis), "-o", str(tmp_path / "sal.png"), "--task", "saliency"]) == 0
    plain, none, sal = (read_image(tmp_path / f"{n}.png").pixels for n in ("plain", "none", "sal"))
    assert np.array_equal(plain, none)  # --task none is the VFN
    assert sal.shape == plain.shape and np.abs(sal - plain).max() > 0  # the shipped RSC compensates


def test_folder_with_problems_exits_nonzero_and_continues(dataset, tmp_path):
    (dataset / "vi" / "lonely.png").write_bytes((dataset / "vi" / "msrs_00004N_crop.png").read_bytes())
    (dataset / "ir" / "zero.png").write_bytes(b"")
    (dataset / "vi" / "zero.png").write_bytes((dataset / "vi" / "msrs_00004N_crop.png").read_bytes())
    res = _run("fuse", dataset, "-o", tmp_path / "out", "--quiet")
    assert res.returncode == 1
    errors = [line for line in res.stderr.splitlines() if line.startswith("cldyn fuse: error:")]
    assert len(errors) == 2 and any("lonely.png" in e and "no infrared partner" in e for e in errors)
    assert any("zero.png" in e and "empty" in e for e in errors)
    assert "Traceback" not in res.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["msrs_00004N_crop.png",
                                                                    "roadscene_FLIR_00006_crop.png"]


@pytest.mark.parametrize("args,needle", [
    (["fuse", "missing_ir.png", "missing_vis.png", "-o", "x.png"], "missing_ir.png: file not found"),
    (["fuse", "nowhere", "-o", "out"], "nowhere: dataset root not found"),
    (["fuse", "--ir", "a", "-o", "out"], "--ir DIR and --vis DIR together"),
    (["info", "--weights", "absent.safetensors"], "absent.safetensors: checkpoint not found"),
])
def test_user_mistakes_are_one_line(args, needle, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1


def test_size_mismatch(dataset, tmp_path, capsys):
    ir = dataset / "ir" / "msrs_00004N_crop.png"
    import cv2

    big = tmp_path / "big.png"
    cv2.imwrite(str(big), np.tile(cv2.imread(str(dataset / "vi" / "msrs_00004N_crop.png")), (2, 1, 1)))
    assert main(["fuse", str(ir), str(big), "-o", str(tmp_path / "o.png")]) == 2
    assert "differs from its infrared partner" in capsys.readouterr().err
    assert not (tmp_path / "o.png").exists()


def test_info_and_console_script():
    res = _run("info")
    assert res.returncode == 0, res.stderr
    assert "VFN parameters: 46,954" in res.stdout  # the paper's 46,617 + the shipped VFN's 337-parameter reach head
    for name in ("vfn.safetensors", "rsc.safetensors", "task_saliency.safetensors", "task_detection.safetensors"):
        line = next(li for li in res.stdout.splitlines() if li.strip().startswith(name))
        assert "(verified)" in line and "parameters" in line and " steps on msrs" in line
    assert "optional extras:" in res.stdout and "  yolo  ultralytics" in res.stdout and "onnxruntime" in res.stdout
    exe = shutil.which("cldyn")
    if exe is None:
        pytest.skip("cldyn console script not on PATH (package not installed in this environment)")
    assert subprocess.run([exe, "--help"], capture_output=True, text=True).returncode == 0


def test_evaluate_a_split_with_the_vfn_and_a_metric_subset(dataset, tmp_path, capsys):
    (dataset / "splits").mkdir()
    (dataset / "splits" / "val.txt").write_text("msrs_00004N_crop\n")
    out = tmp_path / "ev"
    assert main(["evaluate", "--data", str(dataset), "--split", "val", "--vfn", "--baselines", "average",
                 "--metrics", "en,ssim", "--out", str(out), "--quiet"]) == 0
    table = capsys.readouterr().out
    assert "EN ↑" in table and "SSIM ↑" in table and "MI ↑" not in table
    assert [p.name for p in (out / "fused" / "vfn").iterdir()] == ["msrs_00004N_crop.png"]
    assert main(["evaluate", "--data", str(dataset), "--ir", str(dataset / "ir"), "--vfn", "--out", str(out)]) == 2
    assert "either --data ROOT" in capsys.readouterr().err


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"cldyn {__version__}"


def test_a_second_demo_replaces_its_own_outputs_and_a_foreign_folder_is_refused(tmp_path, capsys):
    out = tmp_path / "demo"
    for _ in range(2):  # the second run needs no --overwrite: the folder is the first demo's
        assert main(["demo", "--out", str(out), "--quiet", "--no-tasks"]) == 0
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "side_by_side.png").write_bytes(b"a file of the user's")
    capsys.readouterr()
    assert main(["demo", "--out", str(foreign), "--quiet", "--no-tasks"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (foreign / "side_by_side.png").read_bytes() == b"a file of the user's"


@pytest.mark.parametrize("flag", ["--val-every", "--checkpoint-every"])
def test_train_rsc_refuses_a_period_under_one_step_in_one_line(labelled, tmp_path, capsys, flag):
    out = tmp_path / "rsc"
    rc = main(["train-rsc", "--tasks", "saliency", "--data", str(labelled), flag, "0", "--out", str(out), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "must be at least 1 step" in err, err
    assert not out.exists()
