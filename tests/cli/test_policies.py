"""Issue 17 items 2-5 and 10: one overwrite policy, folder outputs, the batch cap, exit codes, help text."""

import argparse
import shutil
import subprocess
import sys

import pytest

from cldyn.cli import EXIT_CODES, build_parser
from cldyn.data.pairs import pair_folders
from cldyn.inference.fuse import Fuser, FuseReport


def test_evaluate_refuses_to_replace_without_overwrite(pairs_dir, tmp_path, cli):
    args = ["evaluate", "--ir", pairs_dir / "ir", "--vis", pairs_dir / "vi", "--baselines", "average",
            "--metrics", "en,sd", "--out", tmp_path / "ev", "--quiet"]
    assert cli(*args).returncode == 0
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "ev").iterdir()}
    r = cli(*args)
    err = r.stderr.strip()
    assert r.returncode == 2 and len(err.splitlines()) == 1, err
    assert err.endswith("; pass --overwrite to replace them")
    assert "metrics.csv: already exists (4 of 4 outputs do)" in err
    assert "overwrite=True" not in err  # the command line names its own switch, the API its own
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "ev").iterdir()} == before  # nothing touched
    assert cli(*args, "--overwrite").returncode == 0


def test_report_adds_html_and_refuses_to_replace(pairs_dir, tmp_path, cli):
    args = ["report", "--ir", pairs_dir / "ir", "--vis", pairs_dir / "vi", "--baselines", "average",
            "--metrics", "en", "--samples", "1", "--quiet", "--out"]
    assert cli(*args, tmp_path / "rep2").returncode == 0
    assert [p.name for p in tmp_path.iterdir()] == ["rep2.html"]
    r = cli(*args, tmp_path / "rep2")
    assert r.returncode == 2 and "rep2.html: already exists" in r.stderr
    assert cli(*args, tmp_path / "rep2", "--overwrite").returncode == 0
    r = cli(*args, tmp_path / "rep.png")
    assert r.returncode == 2 and "give a name ending in .html" in r.stderr
    assert not (tmp_path / "rep.png").exists()


def test_folder_input_refuses_an_image_file_name_as_output(pairs_dir, tmp_path, cli):
    r = cli("fuse", pairs_dir, "-o", tmp_path / "out.png", "--quiet")
    assert r.returncode == 2 and "out.png: is an image file name" in r.stderr and "give a folder name" in r.stderr
    assert not (tmp_path / "out.png").exists()


def test_batch_size_is_clamped_to_the_free_memory(pairs_dir, tmp_path, monkeypatch):
    pairs, _ = pair_folders(pairs_dir / "ir", pairs_dir / "vi")
    fuser = Fuser(device="cpu", batch_size=1_000_000)
    report = FuseReport()
    assert fuser._memory_cap((72, 96), 2, report) == 2 and not report.notes  # fits: unchanged
    free = 10 * 72 * 96 * 1024 * 2  # room (at half the free memory) for 10 pairs of 96x72
    monkeypatch.setattr("cldyn.inference.fuse.available_memory", lambda device: free)
    assert fuser._memory_cap((72, 96), 1_000_000, report) == 10
    assert report.notes == ["batch size 1000000 lowered to 10 for 96x72 pairs: 0.1 GiB free, about 7 MiB per pair"]
    monkeypatch.setattr("cldyn.inference.fuse.available_memory", lambda device: 1)
    assert fuser._memory_cap((72, 96), 4, FuseReport()) == 1  # never below one pair
    report = fuser.fuse_pairs(pairs, tmp_path / "o", progress=False)  # a whole run with the cap in force
    assert report.ok and len(report.written) == 2 and report.notes


def test_exit_codes_single_pair_2_folder_1(pairs_dir, tmp_path, cli):
    """The documented rule: a problem that stops the command is 2; a folder that is done in part is 1."""
    root = tmp_path / "data"
    shutil.copytree(pairs_dir, root)
    bad = root / "vi" / "msrs_00004N_crop.png"
    bad.write_bytes(bad.read_bytes()[:100])  # truncated
    single = cli("fuse", root / "ir" / bad.name, bad, "-o", tmp_path / "one.png")
    assert single.returncode == 2 and f"{bad}:" in single.stderr and not (tmp_path / "one.png").exists()
    folder = cli("fuse", root, "-o", tmp_path / "all", "--quiet")
    assert folder.returncode == 1 and f"{bad}:" in folder.stderr
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == ["roadscene_FLIR_00006_crop.png"]
    for code in ("0 ", "1 ", "2 ", "130 "):
        assert f"\n  {code}" in "\n" + EXIT_CODES


def test_every_command_help_has_description_defaults_and_exit_codes():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in sub.choices.items():
        text = command.format_help()
        assert command.description, name
        assert "exit codes (every command):" in text, name
        undocumented = [a.option_strings[-1] for a in command._actions if a.option_strings and not a.help]
        assert not undocumented, f"{name}: {undocumented}"
    report = sub.choices["report"].format_help()
    assert "(default: cldyn-report.html)" in " ".join(report.split())
    assert "(default: None)" not in report and "(default: False)" not in report
    r = subprocess.run([sys.executable, "-m", "cldyn.cli", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "exit codes" in r.stdout


@pytest.mark.parametrize("command", ["fuse", "demo", "evaluate", "report"])
def test_every_writing_command_has_overwrite(command):
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert "--overwrite" in sub.choices[command].format_help()


def test_repeated_list_options_accumulate_instead_of_replacing():
    """``--set a=1 --set b=2`` keeps both (nargs="*" alone kept only the last one: a setting silently lost)."""
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    argv = ["--task", "saliency", "--set", "arch=\"lite0-fpn\"", "--set", "x=1", "y=2", "--data", "d"]
    args = sub.choices["train-task"].parse_args(argv)
    assert args.set == ['arch="lite0-fpn"', "x=1", "y=2"]
    for name, command in sub.choices.items():
        lists = [a.option_strings[-1] for a in command._actions
                 if a.option_strings and a.nargs in ("*", "+") and not isinstance(a, argparse._ExtendAction)]
        assert not lists, f"{name}: {lists} replace earlier values when repeated"


@pytest.mark.parametrize("command,field", [("train-rsc", "streams.train_split"), ("train-task", "train_split")])
def test_training_split_option_reaches_the_config(command, field, monkeypatch):
    import cldyn.cli.training as training

    seen = {}
    monkeypatch.setattr(training, "run_training", lambda args, fn, cfg, what: seen.setdefault("cfg", cfg) and 0)
    extra = ["--task", "saliency"] if command == "train-task" else []
    args = build_parser().parse_args([command, *extra, "--data", "d", "--split", "splits/half_b.txt"])
    args.func(args)
    value = seen["cfg"]
    for part in field.split("."):
        value = getattr(value, part)
    assert value == "splits/half_b.txt"


def test_the_api_names_its_own_overwrite_switch(tmp_path):
    from cldyn.data.io import refuse_to_replace
    from cldyn.errors import OutputExistsError

    (tmp_path / "a.png").write_bytes(b"x")
    with pytest.raises(OutputExistsError, match=r"a.png: already exists; pass overwrite=True to replace it$") as e:
        refuse_to_replace([tmp_path / "a.png"])
    assert e.value.for_command_line().endswith("a.png: already exists; pass --overwrite to replace it")
    refuse_to_replace([tmp_path / "a.png"], overwrite=True)


def test_a_corrupt_png_gets_one_line_and_no_opencv_chatter(pairs_dir, tmp_path, cli):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(50))  # a PNG signature, then no IHDR chunk
    r = cli("fuse", pairs_dir / "ir" / "msrs_00004N_crop.png", bad, "-o", tmp_path / "o.png")
    assert r.returncode == 2 and not (tmp_path / "o.png").exists()
    assert r.stderr.strip().splitlines() == [f"cldyn fuse: error: {bad}: not a readable image (unknown format or "
                                             "truncated/corrupt data)"]


def test_an_image_too_large_for_memory_is_fused_in_tiles_and_says_so(pairs_dir, tmp_path, monkeypatch, capsys):
    from cldyn.cli import main
    from cldyn.data.io import read_image

    ir, vis = pairs_dir / "ir" / "msrs_00004N_crop.png", pairs_dir / "vi" / "msrs_00004N_crop.png"
    assert main(["fuse", str(ir), str(vis), "-o", str(tmp_path / "whole.png")]) == 0
    # 96x72 needs about 7 MiB: with 2 MiB free, the fuser picks the smallest tile side and notes it
    monkeypatch.setattr("cldyn.inference.fuse.available_memory", lambda device: 2 * 2**20)
    capsys.readouterr()
    assert main(["fuse", str(ir), str(vis), "-o", str(tmp_path / "tiled.png")]) == 0
    err = capsys.readouterr().err
    assert "note: fused 96x72 pairs in 256-pixel tiles: the whole image needs about 0.0 GiB" in err
    # a 256-pixel tile holds this whole small image: the same result
    whole, tiled = read_image(tmp_path / "whole.png").pixels, read_image(tmp_path / "tiled.png").pixels
    assert (whole == tiled).all()


def test_tiles_are_chosen_to_fit_and_noted_once(monkeypatch):
    import torch

    from cldyn.model.vfn import VFN

    fuser = Fuser(VFN().eval(), device="cpu")
    monkeypatch.setattr("cldyn.inference.fuse.available_memory", lambda device: 8 * 2**30)
    # 6000x4000 needs about 23 GiB: 4 GiB (half the free memory) holds a tile of about 2048 pixels
    assert fuser._tile_to_fit((4000, 6000), 1) == 2048
    assert fuser._tile_to_fit((4000, 6000), 1) == 2048 and len(fuser.notes) == 1
    assert fuser._tile_to_fit((480, 640), 1) is None  # fits whole
    x = torch.rand(1, 1, 600, 300)
    monkeypatch.setattr("cldyn.inference.fuse.available_memory", lambda device: 1 * 2**20)
    assert fuser.fuse_batch(x, x).shape == (1, 1, 600, 300)  # fused in 256-pixel tiles


def test_an_unwritable_output_format_is_refused_before_any_work(pairs_dir, tmp_path, capsys, monkeypatch):
    from cldyn.cli import main

    def no_fusion(*_a, **_k):
        raise AssertionError("fused before the output name was checked")

    monkeypatch.setattr(Fuser, "fuse_images", no_fusion)
    ir, vis = pairs_dir / "ir" / "msrs_00004N_crop.png", pairs_dir / "vi" / "msrs_00004N_crop.png"
    assert main(["fuse", str(ir), str(vis), "-o", str(tmp_path / "out.xyz")]) == 2
    assert "out.xyz: cannot write '.xyz' files; use one of .bmp, .jpeg, .jpg, .png, .tif, .tiff" in \
        capsys.readouterr().err
    assert main(["fuse", str(ir), str(vis), "-o", str(tmp_path / "out.jpg"), "--bits", "16"]) == 2
    assert "out.jpg: .jpg files hold 8-bit pixels, not 16" in capsys.readouterr().err


def test_workers_means_processes_wherever_it_exists():
    """``--workers`` once meant threads in ``fuse`` and processes in ``evaluate``; fuse's threads are --io-threads."""
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    having = {name: next(a for a in cmd._actions if "--workers" in a.option_strings)
              for name, cmd in sub.choices.items() if "--workers" in cmd.format_help()}
    assert set(having) == {"evaluate", "experiment", "report"}
    assert all("processes" in a.help for a in having.values())
    assert "--io-threads" in sub.choices["fuse"].format_help()
