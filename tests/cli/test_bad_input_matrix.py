"""The bad-input matrix: every CLI command against broken data, unwritable output and broken checkpoints.

Each problem must give a one-line error that names the file and the cause, a non-zero exit where the command cannot
do its job (folder commands report, go on with the rest and exit 1; training and evaluation of labelled data stop
with exit 2), and no partial output. Images that are unusual but valid (16-bit and float TIFF, 3x3, RGBA, palette,
non-UTF-8 names) must just work.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from cldyn.cli import main

FIXTURE = Path(__file__).parents[1] / "fixtures" / "pairs"
NAME = "msrs_00004N_crop"


def _labelled_root(root: Path) -> Path:
    """The two fixture pairs with saliency/segmentation/detection labels, MSRS layout, no splits (all pairs)."""
    shutil.copytree(FIXTURE, root)
    for sub in ("labels/seg", "labels/sal", "labels/det/fusion"):
        (root / sub).mkdir(parents=True)
    for p in (root / "ir").iterdir():
        _labels(root, p.stem, (72, 96))
    return root


def _labels(root: Path, stem: str, hw: tuple[int, int]) -> None:
    sal = np.zeros(hw, np.uint8)
    sal[: max(1, hw[0] // 2), : max(1, hw[1] // 2)] = 255
    cv2.imwrite(str(root / "labels/sal" / f"{stem}.png"), sal)
    cv2.imwrite(str(root / "labels/seg" / f"{stem}.png"), np.zeros(hw, np.uint8))
    (root / "labels/det/fusion" / f"{stem}.txt").write_text("0 0.5 0.5 0.5 0.5\n")


def _ir() -> np.ndarray:
    return cv2.imread(str(FIXTURE / "ir" / f"{NAME}.png"), cv2.IMREAD_UNCHANGED)


def _vis() -> np.ndarray:
    return cv2.imread(str(FIXTURE / "vi" / f"{NAME}.png"), cv2.IMREAD_UNCHANGED)


def _add(root: Path, stem: str, ir, vis, ext: str = ".png") -> str:
    """Add a pair (arrays or raw bytes) with labels; returns the infrared file's path."""
    for sub, img in (("ir", ir), ("vi", vis)):
        p = root / sub / f"{stem}{ext}"
        if isinstance(img, bytes):
            p.write_bytes(img)
        else:
            assert cv2.imwrite(str(p), img)
    hw = ir.shape[:2] if isinstance(ir, np.ndarray) else (72, 96)
    _labels(root, stem, hw)
    return str(root / "ir" / f"{stem}{ext}")


def _palette_png(path: Path, rgb: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=64).save(path)


def _broken(case: str, root: Path) -> tuple[str, str]:
    """Make ``case`` in ``root``; returns (the offending file, the words of the cause)."""
    png = (FIXTURE / "vi" / f"{NAME}.png").read_bytes()
    jpg = cv2.imencode(".jpg", _vis())[1].tobytes()
    if case == "missing_partner":
        (root / "vi" / "extra.png").write_bytes(png)
        return str(root / "vi" / "extra.png"), "no infrared partner"
    if case == "size_mismatch":
        _add(root, "mis", _ir(), np.tile(_vis(), (2, 1, 1)))
        return str(root / "vi" / "mis.png"), "differs from its infrared partner"
    if case == "truncated_png":
        return _add(root, "trunc", png[: len(png) // 2], _vis()), "truncated/corrupt"
    if case == "truncated_jpeg":
        return _add(root, "trunc", jpg[: len(jpg) // 2], jpg, ext=".jpg"), "truncated/corrupt"
    if case == "zero_byte":
        return _add(root, "zero", b"", _vis()), "empty file"
    if case == "directory":
        (root / "ir" / "folder.png").mkdir()
        (root / "vi" / "folder.png").write_bytes(png)
        _labels(root, "folder", (72, 96))
        return str(root / "ir" / "folder.png"), "is a directory"
    if case == "1x1":  # one pixel is a constant image: nothing to fuse
        return _add(root, "one", _ir()[:1, :1], _vis()[:1, :1]), "image is constant"
    raise ValueError(case)


def _valid(case: str, root: Path) -> None:
    ir, vis = _ir(), _vis()
    if case == "tiff16":
        _add(root, "t16", ir.astype(np.uint16) * 257, vis.astype(np.uint16) * 257, ext=".tif")
    elif case == "tiff_float":
        _add(root, "tf", ir.astype(np.float32) / 255, vis.astype(np.float32) / 255, ext=".tif")
    elif case == "3x3":
        _add(root, "three", ir[30:33, 40:43], vis[30:33, 40:43])
    elif case == "rgba_palette":
        _add(root, "rgba", ir, cv2.cvtColor(vis, cv2.COLOR_BGR2BGRA))
        cv2.imwrite(str(root / "ir" / "pal.png"), ir)
        _palette_png(root / "vi" / "pal.png", vis[:, :, ::-1].copy())
        _labels(root, "pal", ir.shape[:2])
    elif case == "non_utf8":
        for sub, img in (("ir", ir), ("vi", vis)):
            ok, buf = cv2.imencode(".png", img)
            with open(os.path.join(os.fsencode(root / sub), b"caf\xe9.png"), "wb") as fh:
                fh.write(buf.tobytes())
        for sub, ext in (("labels/sal", b".png"), ("labels/seg", b".png")):
            src = root / sub / f"{NAME}.png"
            with open(os.path.join(os.fsencode(root / sub), b"caf\xe9" + ext), "wb") as fh:
                fh.write(src.read_bytes())
        with open(os.path.join(os.fsencode(root / "labels/det/fusion"), b"caf\xe9.txt"), "wb") as fh:
            fh.write(b"0 0.5 0.5 0.5 0.5\n")
    else:
        raise ValueError(case)


def _commands(root: Path, out: Path) -> dict[str, list[str]]:
    """Every command that reads a dataset, with settings small enough for a test."""
    tiny = ["--quiet", "--threads", "1"]
    return {
        "fuse": ["fuse", str(root), "-o", str(out / "fused"), *tiny],
        "evaluate": ["evaluate", "--ir", str(root / "ir"), "--vis", str(root / "vi"), "--baselines", "average",
                     "--out", str(out / "eval"), "--quiet"],
        "report": ["report", "--ir", str(root / "ir"), "--vis", str(root / "vi"), "--baselines", "average",
                   "--out", str(out / "report.html"), "--quiet"],
        "train-vfn": ["train-vfn", "--data", str(root), "--split", "all", "--epochs", "1", "--batch-size", "2",
                      "--crop", "32", "--num-blocks", "2", "--out", str(out / "vfn"), *tiny],
        "train-task": ["train-task", "--task", "saliency", "--data", str(root), "--split", "all", "--val-split", "all",
                       "--epochs", "1", "--batch-size", "2", "--crop", "32", "--max-steps", "1",
                       "--out", str(out / "task"), *tiny],
        "eval-task": ["eval-task", "--task", "saliency", "--data", str(root), "--split", "all", "--source", "vfn",
                      "--json", str(out / "eval.json"), *tiny],
        "train-rsc": ["train-rsc", "--tasks", "saliency", "--data", str(root), "--steps", "1", "--batch-size", "2",
                      "--crop", "32", "--out", str(out / "rsc"), *tiny],
    }


FOLDER_COMMANDS = {"fuse", "evaluate", "report"}  # report per file and go on (exit 1)


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


@pytest.mark.parametrize("case", ["missing_partner", "size_mismatch", "truncated_png", "truncated_jpeg",
                                  "zero_byte", "directory", "1x1"])
def test_broken_data_every_command(case, tmp_path, capsys):
    root = _labelled_root(tmp_path / "data")
    bad_file, cause = _broken(case, root)
    for command, args in _commands(root, tmp_path / "out" / "x").items():
        out = tmp_path / "out" / command
        args = [a.replace(str(tmp_path / "out" / "x"), str(out)) for a in args]
        rc = main(args)
        captured = capsys.readouterr()
        lines = [line for line in (captured.err + captured.out).splitlines() if bad_file in line]
        assert lines, f"{command}: {bad_file} not named\n{captured.err}"
        assert cause in lines[0], f"{command}: {lines[0]}"
        assert "Traceback" not in captured.err
        if case == "missing_partner":  # a skipped file is reported, the rest is used
            assert rc == (1 if command == "fuse" else 0), f"{command}: rc {rc}"
        elif command in FOLDER_COMMANDS:
            assert rc == 1, f"{command}: rc {rc}"
            assert not any(Path(bad_file).stem in f for f in _files(out))  # no output for the bad pair
        else:
            assert rc == 2, f"{command}: rc {rc}"
            assert _files(out) == [], f"{command}: partial output {_files(out)}"


@pytest.mark.parametrize("case", ["tiff16", "tiff_float", "3x3", "rgba_palette", "non_utf8"])
def test_unusual_valid_images_every_command(case, tmp_path, capsys):
    root = _labelled_root(tmp_path / "data")
    _valid(case, root)
    for command, args in _commands(root, tmp_path / "out").items():
        rc = main(args)
        captured = capsys.readouterr()
        assert rc == 0, f"{command}: rc {rc}\n{captured.err}"
        assert "error" not in captured.err, f"{command}: {captured.err}"
    pairs = len(list((root / "ir").iterdir()))
    assert len(list((tmp_path / "out" / "fused").iterdir())) == pairs


# -- unwritable output ----------------------------------------------------------------------------------------------

def _writing_commands(root: Path, out: Path) -> dict[str, list[str]]:
    """Every command that writes, aimed at ``out`` (which the test makes unwritable)."""
    cmds = _commands(root, out)
    cmds["fuse-pair"] = ["fuse", str(root / "ir" / f"{NAME}.png"), str(root / "vi" / f"{NAME}.png"),
                         "-o", str(out / "one.png")]
    cmds["demo"] = ["demo", "--out", str(out / "demo"), "--quiet", "--threads", "1"]
    cmds["export"] = ["export", "-o", str(out / "m.onnx")]
    cmds["bench"] = ["bench", "fuse", "--repeats", "1", "--no-compare", "--threads", "1", "--json",
                     str(out / "bench.json")]
    return cmds


DRIVER = textwrap.dedent("""
    import contextlib, io, json, sys
    from cldyn.cli import main
    results = {}
    for name, args in json.loads(sys.argv[1]).items():
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            rc = main(args)
        results[name] = [rc, err.getvalue()]
    print(json.dumps(results))
""")


def _drop_root_file_powers() -> None:
    """In the child: without CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH in the bounding set, root obeys file modes
    after exec, so a read-only folder is read-only for it too."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


@pytest.mark.skipif(sys.platform != "linux", reason="read-only folders for root need Linux capabilities")
def test_read_only_output_folder_every_command(tmp_path):
    root = _labelled_root(tmp_path / "data")
    ro = tmp_path / "ro"
    ro.mkdir()
    cmds = _writing_commands(root, ro / "sub")  # the commands must create ro/sub: refused
    cmds["fuse-into"] = ["fuse", str(root), "-o", str(ro), "--quiet"]  # writing into ro itself: refused per file
    ro.chmod(0o555)
    try:
        res = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(cmds)], capture_output=True, text=True,
                             timeout=600, preexec_fn=_drop_root_file_powers if os.geteuid() == 0 else None,
                             env={**os.environ, "YOLO_CONFIG_DIR": str(tmp_path / "yolo")})
    finally:
        ro.chmod(0o755)
    assert res.returncode == 0, res.stderr[-2000:]
    results = json.loads(res.stdout.strip().splitlines()[-1])
    for name, (rc, err) in results.items():
        errors = [line for line in err.splitlines() if "error" in line]
        assert rc in (1, 2), f"{name}: rc {rc}\n{err}"
        assert errors and all("Permission denied" in e and str(ro) in e for e in errors), f"{name}: {err}"
        assert "Traceback" not in err
    assert _files(ro) == []


def test_full_disk_every_command(tmp_path, monkeypatch, capsys):
    """Simulated: every write ends in an fsync that fails with ENOSPC (all cldyn outputs go through one atomic
    writer: temp file, fsync, rename)."""
    root = _labelled_root(tmp_path / "data")
    out = tmp_path / "out"

    def full_disk(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full_disk)
    for name, args in _writing_commands(root, out).items():
        rc = main(args)
        err = capsys.readouterr().err
        errors = [line for line in err.splitlines() if "error" in line]
        assert rc in (1, 2), f"{name}: rc {rc}"
        assert errors and all("No space left on device" in e and str(out) in e for e in errors), f"{name}: {err}"
        assert _files(out) == [], f"{name}: {_files(out)}"  # nothing half-written, no temp files left


# -- broken checkpoints ---------------------------------------------------------------------------------------------

@pytest.fixture
def checkpoints(tmp_path):
    """NaN and mismatched checkpoints of each kind."""
    from cldyn.model.rsc import RSC, RSCConfig
    from cldyn.model.vfn import VFN, VFNConfig
    from cldyn.tasks import create_task
    from cldyn.weights import load_pretrained_vfn, save_rsc, save_vfn

    d = tmp_path / "ckpt"
    d.mkdir()
    vfn = load_pretrained_vfn()
    with torch.no_grad():
        vfn.decoder.head[-1].weight.view(-1)[0] = float("nan")
    save_vfn(d / "vfn_nan.safetensors", vfn)
    task = create_task("saliency")
    with torch.no_grad():
        next(task.model.parameters()).view(-1)[0] = float("nan")
    task.save(d / "sal_nan.safetensors")
    create_task("tiny_adapter:TinyAdapter").save(d / "other_task.safetensors")
    rsc = RSC()
    with torch.no_grad():
        rsc.bank.weight.view(-1)[0] = float("nan")
    save_rsc(d / "rsc_nan.safetensors", rsc)
    save_rsc(d / "rsc_2stages.safetensors", RSC(RSCConfig(num_stages=1)))  # fits no shipped VFN (4 blocks)
    save_vfn(d / "vfn_2blocks.safetensors", VFN(VFNConfig(num_blocks=2)))
    return d


def test_broken_checkpoints_every_command(checkpoints, tmp_path, capsys):
    root = _labelled_root(tmp_path / "data")
    pair = [str(root / "ir" / f"{NAME}.png"), str(root / "vi" / f"{NAME}.png")]
    c = {k: str(checkpoints / f"{k}.safetensors") for k in
         ("vfn_nan", "sal_nan", "other_task", "rsc_nan", "rsc_2stages", "vfn_2blocks")}
    out = tmp_path / "out"
    nan, misfit = "NaN or infinite", "does not fit"
    cases = [
        (["info", "--weights", c["vfn_nan"]], c["vfn_nan"], nan),
        (["fuse", *pair, "-o", str(out / "a.png"), "--weights", c["vfn_nan"]], c["vfn_nan"], nan),
        (["export", "-o", str(out / "m.onnx"), "--weights", c["vfn_nan"]], c["vfn_nan"], nan),
        (["bench", "fuse", "--repeats", "1", "--weights", c["vfn_nan"]], c["vfn_nan"], nan),
        (["fuse", *pair, "-o", str(out / "b.png"), "--task", "saliency", "--task-weights", c["sal_nan"],
          "--rsc-weights", c["rsc_nan"]], c["sal_nan"], nan),
        (["fuse", *pair, "-o", str(out / "c.png"), "--task", "saliency", "--rsc-weights", c["rsc_nan"]],
         c["rsc_nan"], nan),
        (["fuse", *pair, "-o", str(out / "d.png"), "--task", "saliency", "--rsc-weights", c["rsc_2stages"]],
         c["rsc_2stages"], misfit),
        (["export", "-o", str(out / "n.onnx"), "--task", "saliency", "--rsc-weights", c["rsc_2stages"]],
         c["rsc_2stages"], misfit),
        (["eval-task", "--task", "saliency", "--data", str(root), "--split", "all", "--weights", c["sal_nan"]],
         c["sal_nan"], nan),
        (["eval-task", "--task", "saliency", "--data", str(root), "--split", "all", "--weights", c["other_task"]],
         c["other_task"], "not 'saliency'"),
        (["eval-task", "--task", "saliency", "--data", str(root), "--split", "all", "--source", "cldyn",
          "--rsc-weights", c["rsc_nan"]], c["rsc_nan"], nan),
        (["train-task", "--task", "saliency", "--data", str(root), "--split", "all", "--val-split", "all",
          "--batch-size", "2", "--init", c["sal_nan"], "--out", str(out / "t1"), "--quiet"], c["sal_nan"], nan),
        (["train-task", "--task", "saliency", "--data", str(root), "--split", "all", "--val-split", "all",
          "--batch-size", "2", "--init", c["other_task"], "--out", str(out / "t2"), "--quiet"], c["other_task"],
         "does not fit"),
        (["train-task", "--task", "saliency", "--data", str(root), "--split", "all", "--val-split", "all",
          "--batch-size", "2", "--vfn-weights", c["vfn_nan"], "--out", str(out / "t3"), "--quiet"], c["vfn_nan"], nan),
        (["train-rsc", "--tasks", "saliency", "--data", str(root), "--vfn-weights", c["vfn_nan"],
          "--out", str(out / "r1"), "--quiet"], c["vfn_nan"], nan),
        (["train-rsc", "--tasks", "saliency", "--data", str(root), "--task-weights", f"saliency={c['sal_nan']}",
          "--out", str(out / "r2"), "--quiet"], c["sal_nan"], nan),
        (["train-rsc", "--tasks", "saliency", "--data", str(root), "--task-weights", f"saliency={c['other_task']}",
          "--out", str(out / "r3"), "--quiet"], c["other_task"], "not 'saliency'"),
    ]
    for args, path, cause in cases:
        rc = main(args)
        err = capsys.readouterr().err.strip()
        assert rc == 2, f"{args}: rc {rc}\n{err}"
        assert len(err.splitlines()) == 1 and path in err and cause in err, f"{args}: {err}"
    assert _files(out) == []


@pytest.mark.parametrize("command", ["train-vfn", "train-task", "train-rsc"])
def test_resume_from_broken_or_other_config_checkpoint(command, tmp_path, capsys):
    root = _labelled_root(tmp_path / "data")
    out = tmp_path / "run"
    base = _commands(root, tmp_path / "x")[command]
    base = [a.replace(str(tmp_path / "x" / {"train-vfn": "vfn", "train-task": "task",
                                              "train-rsc": "rsc"}[command]), str(out)) for a in base]
    assert main(base) == 0
    capsys.readouterr()
    other = {"train-vfn": ["--num-blocks", "3"], "train-task": ["--set", "width=32"],
             "train-rsc": ["--aggregate", "mean", "--batch-size", "1"]}[command]
    last = out / "last.safetensors"
    if command == "train-rsc":  # the RSC architecture comes from the bank/filters: change the checkpoint's config
        from cldyn.weights.checkpoint import load_checkpoint, save_checkpoint

        tensors, meta = load_checkpoint(last)
        meta["rsc_config"]["a2si"]["filter_num"] = 2
        save_checkpoint(last, tensors, meta)
        other = []
    rc = main([*base, *other, "--resume"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and str(last) in err and "differ" in err, err
    from cldyn.weights.checkpoint import load_checkpoint, save_checkpoint

    tensors, meta = load_checkpoint(last)
    name = next(k for k, v in tensors.items() if v.is_floating_point())
    tensors[name] = tensors[name].clone().fill_(float("nan"))
    save_checkpoint(last, tensors, meta)
    rc = main([*base, "--resume"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and str(last) in err and "NaN" in err, err
