import json

import torch

from cldyn.cli import main
from cldyn.evaluation.inspect_rsc import format_inspection, inspect_rsc, load_pairs, separation
from cldyn.model.a2si import A2SIConfig
from cldyn.model.rsc import RSC, CLDyN, RSCConfig
from cldyn.model.vfn import VFN
from cldyn.tasks import create_task
from cldyn.weights import save_rsc


def test_separation_hand_computed():
    emb = {"a": torch.tensor([[0.0, 1.0], [0.0, -1.0]]), "b": torch.tensor([[3.0, 0.0], [5.0, 0.0]]),
           "c": torch.tensor([[0.0, 4.0], [0.0, 4.0]])}
    # centroids (0, 0), (4, 0), (0, 4): distances 4, 4, sqrt(32); spreads 1, 1, 0
    got = separation(emb)
    assert abs(got["between"] - (8 + 32 ** 0.5) / 3) < 1e-6 and abs(got["within"] - 2 / 3) < 1e-6


def _model(encoder: str, live: bool) -> CLDyN:
    torch.manual_seed(0)
    vfn = VFN().eval()
    rsc = RSC(RSCConfig(a2si=A2SIConfig(task_encoder=encoder)))
    if live:  # trained-looking: non-zero output convs and task FiLMs
        for block in [*rsc.ir_blocks, *rsc.vis_blocks]:
            torch.nn.init.normal_(block.out_conv.weight, std=0.3)
            if encoder == "semantic":
                for last in (block.task_encoder.film_global[-1], block.task_encoder.film_spatial[-1]):
                    torch.nn.init.normal_(last.weight, std=0.3)
    return CLDyN(vfn, rsc)


def _adapters():
    torch.manual_seed(1)
    return {"saliency": create_task("saliency", {"stages": 2, "width": 8}).freeze(),
            "segmentation": create_task("segmentation", {"arch": "lite0-fpn"}).freeze()}


def test_fresh_rsc_does_not_customise_and_a_live_semantic_one_does():
    torch.manual_seed(2)
    pairs = [(torch.rand(1, 1, 40, 48), torch.rand(1, 3, 40, 48)) for _ in range(3)]
    adapters = _adapters()
    fresh = inspect_rsc(_model("semantic", live=False), adapters, pairs)
    assert fresh["customisation_mean_abs_diff_grey"] == {"saliency-segmentation": 0.0}  # identity at init
    assert all(v < 1e-3 for v in fresh["customisation_vs_vfn_grey"].values())
    assert len(fresh["blocks"]) == 6 and fresh["pairs"] == 3
    assert fresh["signature"]["between"] > fresh["signature"]["within"]  # two networks, two signatures
    live = inspect_rsc(_model("semantic", live=True), adapters, pairs)
    assert live["customisation_mean_abs_diff_grey"]["saliency-segmentation"] > 0.01
    # a pair of customisations cannot lie further apart than both of them from the VFN (triangle inequality)
    vs = live["customisation_vs_vfn_grey"]
    assert min(vs.values()) > 0.01
    assert vs["saliency"] + vs["segmentation"] >= live["customisation_mean_abs_diff_grey"]["saliency-segmentation"]
    assert all(b["embedding_between"] > 0 for b in live["blocks"])
    text = format_inspection(live)
    assert "task encoder semantic" in text and "saliency-segmentation" in text


def test_cli_reads_the_training_log(labelled, tmp_path):
    rsc_path = tmp_path / "rsc.safetensors"
    model = _model("upstream", live=True)
    save_rsc(rsc_path, model.rsc)
    log = tmp_path / "log.csv"
    log.write_text("step,saliency_pathway_grad_share\n1,0.25\n2,0.75\n")
    sal = tmp_path / "sal.safetensors"
    _adapters()["saliency"].save(sal)
    out = tmp_path / "inspect.json"
    assert load_pairs(labelled, "val", 1)[0][1].shape[1] == 3
    assert main(["inspect-rsc", "--data", str(labelled), "--split", "val", "--tasks", "saliency", "--task-weights",
                 f"saliency={sal}", "--rsc-weights", str(rsc_path), "--log", str(log), "--json", str(out),
                 "--quiet"]) == 0
    result = json.loads(out.read_text())
    assert result["task_encoder"] == "upstream" and result["pathway_grad_share"] == {"saliency": 0.5}


def test_the_tone_heads_curves_are_reported_per_task():
    from cldyn.model.color import luma_of
    from cldyn.model.tone import ToneConfig

    torch.manual_seed(2)
    pairs = [(torch.rand(1, 1, 40, 48), torch.rand(1, 3, 40, 48)) for _ in range(2)]
    model = CLDyN(VFN().eval(), RSC(RSCConfig(tone=ToneConfig(knots=4, max_levels=20.0))))
    fresh = inspect_rsc(model, _adapters(), pairs)
    assert fresh["tone"]["knots_mean_abs_grey"] == {"saliency": 0.0, "segmentation": 0.0}
    torch.manual_seed(3)
    torch.nn.init.normal_(model.rsc.tone.net[-1].weight, std=1.0)
    live = inspect_rsc(model, _adapters(), pairs[:1])
    assert live["tone"]["knots_mean_abs_diff_grey"]["saliency-segmentation"] > 0
    assert "tone head" in format_inspection(live)
    # independent check: the head's own coefficients on that pair, recomputed outside the forward hook
    ir, vis = pairs[0]
    adapter = _adapters()["saliency"]
    with torch.no_grad():
        base, reach = model.base_and_reach(ir, vis)
        feats = model.features_of_base(base, adapter)
        untoned = model.untoned_luma(ir, luma_of(vis), feats, base_reach=reach)
        want = model.rsc.tone.coefficients(feats, untoned)[0] * 255
    got = torch.tensor(live["tone"]["knots_mean_grey"]["saliency"])
    assert got.abs().max() <= 20.0 and got.abs().max() > 0.1
    assert torch.allclose(got, want, atol=2e-3)  # rounded to 3 decimals in the report
