"""A comparison on a dataset split: the VFN fused on the spot beside other methods' folders."""

import shutil

import numpy as np
import pytest

from cldyn.data.io import write_image
from cldyn.errors import CldynError
from cldyn.evaluation.compare import evaluate_split, vfn_method_name
from cldyn.evaluation.evaluate import fusion_metrics, read_gray


def _root(tmp_path, pairs_dir):
    root = tmp_path / "data"
    shutil.copytree(pairs_dir, root)
    names = sorted(p.stem for p in (root / "ir").iterdir())
    (root / "splits").mkdir()
    (root / "splits" / "val.txt").write_text(names[0] + "\n")
    return root, names


def test_vfn_and_a_peer_folder_on_the_split_only(tmp_path, pairs_dir):
    root, names = _root(tmp_path, pairs_dir)
    peer = tmp_path / "peer"
    for n in names:  # the peer published outputs for every pair; only the split's are scored
        ir = read_gray(root / "ir" / f"{n}.png", "cldyn") / 255.0
        write_image(peer / f"{n}.png", ir, 8)
    keys = ["en", "mi", "ssim"]
    ev = evaluate_split(root, "val", tmp_path / "out", [peer], ["peer"], vfns=[None], metrics=keys,
                        convention="cddfuse", device="cpu", progress=False)
    assert ev.methods == ["peer", "vfn"] and ev.metrics == tuple(keys)
    assert {m: sorted(v) for m, v in ev.per_image.items()} == {"peer": [names[0]], "vfn": [names[0]]}
    fused = sorted((tmp_path / "out" / "fused" / "vfn").iterdir())
    assert [f.name for f in fused] == [f"{names[0]}.png"]
    # The VFN's row is what cldyn evaluate computes from the written file.
    a = read_gray(root / "ir" / f"{names[0]}.png", "cddfuse")
    b = read_gray(root / "vi" / f"{names[0]}.png", "cddfuse")
    expect = fusion_metrics(read_gray(fused[0], "cddfuse"), a, b, "cddfuse", keys)
    assert ev.per_image["vfn"][names[0]] == expect
    assert "SSIM ↑" in ev.table() and "QABF" not in ev.table()
    with pytest.raises(CldynError, match="given twice"):
        evaluate_split(root, "val", tmp_path / "out", [peer], ["vfn"], vfns=[None], progress=False)


def test_vfn_method_names():
    assert vfn_method_name(None) == "vfn"
    assert vfn_method_name("runs/vfn_b/best.safetensors") == "vfn:vfn_b"
    assert vfn_method_name("weights/my_vfn.safetensors") == "vfn:my_vfn"


def test_unknown_metric_is_one_line(tmp_path, pairs_dir):
    root, _ = _root(tmp_path, pairs_dir)
    with pytest.raises(CldynError, match="unknown metric"):
        evaluate_split(root, "val", tmp_path / "out", baselines=["average"], metrics=["nope"], progress=False)
    assert np.isfinite(evaluate_split(root, None, tmp_path / "o2", baselines=["average"], metrics=["en"],
                                      progress=False).summary()["average"]["en"]["mean"])


def test_the_terminal_table_fits_100_columns_and_the_markdown_keeps_the_stds(pairs_dir):
    from cldyn.evaluation.evaluate import evaluate_folders

    ev = evaluate_folders(pairs_dir / "ir", pairs_dir / "vi", [], baselines=("average", "max"), progress=False)
    text = ev.table()
    assert max(len(line) for line in text.splitlines()) <= 100
    assert text.count("method") >= 2 and "±" not in text.splitlines()[1]  # several blocks; means only
    assert all(name in text for name in ("EN ↑", "QC ↑", "average", "max"))
    assert "±" in ev.table(markdown=True)
