"""cldyn frozen-table on real networks and a few real MSRS pairs."""

import json

import pytest

from cldyn.cli import main
from cldyn.evaluation.frozen_table import FrozenTable, FrozenTableConfig, markdown_table
from cldyn.model.rsc import CLDyN
from cldyn.weights import load_pretrained_vfn, save_rsc


@pytest.mark.shared_data
def test_the_table_from_shipped_networks_on_real_pairs(shared_data, tmp_path, capsys):
    msrs = shared_data / "msrs"
    fresh = tmp_path / "fresh_rsc.safetensors"  # zero-initialised: CLDyN is exactly the VFN
    save_rsc(fresh, CLDyN(load_pretrained_vfn()).rsc)
    out = tmp_path / "table"
    args = ["frozen-table", "--data", str(msrs), "--networks", "detection-visible", "segmentation-visible",
            "--rsc-weights", f"fresh={fresh}", "--limit", "3", "--resamples", "20", "--out", str(out), "--quiet"]
    assert main(args) == 0
    result = json.loads((out / "table.json").read_text())
    det, seg = result["networks"]
    assert det["task"] == "detection" and set(det["sources"]) == {"fusion", "visible"}  # both box sets
    assert set(det["sources"]["fusion"]) == {"visible", "infrared", "average", "max", "vfn", "fresh_s0"}
    assert set(seg["sources"]) == {"default"} and seg["metric"] == "miou" and seg["n"] == 3
    for net in (det, seg):
        for scores in net["sources"].values():
            assert scores["fresh_s0"] == scores["vfn"]  # a fresh RSC reproduces the VFN, so do its scores
            assert all(0.0 <= v["all"] <= 1.0 for v in scores.values())
        assert set(net["comparisons"]) == {"fresh_s0 vs vfn", f"fresh_s0 vs {net['best_camera']}"}
        assert net["comparisons"]["fresh_s0 vs vfn"]["difference"] == 0.0
    table = capsys.readouterr().out
    assert "| detection-visible | visible | all |" in table and "CLDyN fresh" in table
    # a rerun predicts nothing again: every prediction is in the cache
    cached = sorted(p.name for p in (out / "cache").iterdir())
    assert main(args) == 0 and sorted(p.name for p in (out / "cache").iterdir()) == cached


def test_markdown_groups_rsc_rows_and_bolds_the_best_plain_source():
    scores = {"visible": 0.3, "infrared": 0.1, "average": 0.2, "max": 0.25, "vfn": 0.22, "a_s0": 0.4, "a_s1": 0.2,
              "b_s0": 0.1}
    net = {"network": "n", "sources": {"default": {k: {"all": v} for k, v in scores.items()}},
           "comparisons": {"a_s0 vs vfn": {"difference": 0.18, "ci": [0.1, 0.2], "p_a_not_better": 0.0}}}
    md = markdown_table({"config": {"peers": {}}, "networks": [net]})
    assert "| network | labels | subset | visible | infrared | average | max | vfn | CLDyN a | CLDyN b |" in md
    assert "| n | - | all | **0.300** | 0.100 | 0.200 | 0.250 | 0.220 | 0.300 ± 0.100 | 0.100 |" in md
    assert "| n | a_s0 vs vfn | +0.1800 | [+0.1000, +0.2000] | 0.000 |" in md


def test_a_strength_outside_0_1_is_refused_before_loading_anything(tmp_path):
    from cldyn.errors import CldynError

    with pytest.raises(CldynError, match="--strength must be in"):
        FrozenTable(FrozenTableConfig(data=str(tmp_path), networks=["detection"], strength=2.0))
    with pytest.raises(CldynError, match="--max-change must be a number of grey levels > 0"):
        FrozenTable(FrozenTableConfig(data=str(tmp_path), networks=["detection"], max_change=-1.0))
