"""Closed-loop RSC training runs: configuration, what trains, logs, caches, resume, ablations."""

import pytest
import torch
from closed_loop_helpers import small_networks

from cldyn.model.rsc import CLDyN
from cldyn.training.rsc import _score, train_rsc
from cldyn.training.rsc_config import RSCModelConfig, RSCRunConfig, TrainRSCConfig
from cldyn.weights import load_rsc


def config(**flat) -> TrainRSCConfig:
    """A configuration from flat keys (as the records of earlier runs hold them), routed to their parts."""
    return TrainRSCConfig.from_dict(flat)


_setup = small_networks


def test_val_limit_zero_means_every_val_image():
    # A limit of 0 once sliced the val banks to nothing and logged NaN metrics.
    assert RSCRunConfig(val_limit=0).val_limit is None
    assert RSCRunConfig().val_limit is None
    assert config(val_limit=16).run.val_limit == 16


def test_validation_score_hand_cases_and_nan_when_nothing_is_usable():
    base = {"segmentation": {"miou": 0.40}, "detection": {"map50_95": 0.20}}
    # +10% mIoU and -5% mAP: mean +2.5%
    assert _score({"segmentation": {"miou": 0.44}, "detection": {"map50_95": 0.19}}, base) == pytest.approx(0.025)
    nan = float("nan")
    assert _score({"segmentation": {"miou": 0.44}, "detection": {"map50_95": nan}}, base) == pytest.approx(0.10)
    # No usable metric (e.g. empty val banks) once scored 0.0 and was kept as the best checkpoint.
    score = _score({"segmentation": {"miou": nan}, "detection": {"map50_95": nan}}, base)
    assert score != score


def test_one_step_changes_only_rsc(labelled, tmp_path):
    vfn, adapters = _setup()
    frozen = {("vfn", k): v.clone() for k, v in vfn.state_dict().items()}
    for t, a in adapters.items():
        frozen.update({(t, k): v.clone() for k, v in a.model.state_dict().items()})
    cfg = config(tasks=["saliency", "segmentation"], data={"saliency": str(labelled),
                         "segmentation": str(labelled)}, out_dir=str(tmp_path / "rsc"), steps=2, batch_size=2,
                         crop=48, val_every=100, val_limit=1)
    torch.manual_seed(0)
    from cldyn.model.rsc import RSC, RSCConfig

    init = {k: v.clone() for k, v in RSC(RSCConfig()).state_dict().items()}  # same seed, same init as the run
    best = train_rsc(cfg, progress=False, log=lambda m: None, adapters=adapters, vfn=vfn)
    for (owner, k), v in frozen.items():
        now = vfn.state_dict()[k] if owner == "vfn" else adapters[owner].model.state_dict()[k]
        assert torch.equal(v, now), f"{owner}.{k} changed"
    trained = load_rsc(tmp_path / "rsc" / "last.safetensors").state_dict()
    changed = [k for k in init if not torch.equal(init[k], trained[k])]
    assert any("bank" in k for k in changed) and any("out_conv" in k for k in changed)
    assert best.is_file()
    from cldyn.data.io import read_csv

    rows = read_csv(tmp_path / "rsc" / "log.csv")
    assert len(rows) == 2 and "val_score" in rows[-1]
    for t in ("saliency", "segmentation"):  # per task: loss, penalty, and the share of steps it was active
        active = [float(r[f"{t}_penalty_active"]) for r in rows]
        assert float(rows[-1][f"{t}_penalty_share"]) == sum(active) / 2
        for r in rows:  # logged values are rounded to 6 decimals
            gap = float(r[f"{t}_loss"]) - float(r[f"{t}_base_loss"])
            assert abs(float(r[f"{t}_penalty"]) - 5.0 * max(0.0, gap)) < 1e-4


def test_other_task_rotates_over_the_other_tasks_and_is_off_without_the_term():
    three = config(specificity_weight=1.0)
    assert [[three.other_task(k, step) for step in range(4)] for k in range(3)] == \
        [[1, 2, 1, 2], [2, 0, 2, 0], [0, 1, 0, 1]]
    assert config(tasks=["saliency", "detection"], specificity_weight=1.0).other_task(0, 5) == 1
    assert config().other_task(0, 0) is None  # the term is off by default
    assert config(tasks=["saliency"], specificity_weight=1.0).other_task(0, 0) is None
    assert config(specificity_weight=1.0, closed_loop=False).other_task(0, 0) is None


def test_training_with_the_specificity_term_logs_it_per_task(labelled, tmp_path):
    from cldyn.data.io import read_csv

    vfn, adapters = _setup()
    cfg = config(tasks=["saliency", "segmentation"], data={"saliency": str(labelled),
                         "segmentation": str(labelled)}, out_dir=str(tmp_path / "rsc"), steps=2, batch_size=2,
                         crop=48, val_every=100, val_limit=1, specificity_weight=1.0, specificity_margin=0.1)
    train_rsc(cfg, progress=False, log=lambda m: None, adapters=adapters, vfn=vfn)
    rows = read_csv(tmp_path / "rsc" / "log.csv")
    # Step 1 starts from a fresh RSC: both compensations are the VFN's, so the hinge is the margin.
    for t in ("saliency", "segmentation"):
        assert float(rows[0][f"{t}_specificity"]) == pytest.approx(0.1, abs=1e-6)
        assert float(rows[0][f"{t}_other_loss"]) == pytest.approx(float(rows[0][f"{t}_loss"]), abs=1e-6)
        assert f"{t}_specific" in rows[1]


def test_init_starts_from_given_rsc_weights_and_refuses_another_configuration(labelled, tmp_path):
    from cldyn.errors import CldynError
    from cldyn.model.a2si import A2SIConfig
    from cldyn.model.rsc import RSC, RSCConfig
    from cldyn.weights import save_rsc

    vfn, adapters = _setup()
    torch.manual_seed(3)
    start = RSC(RSCConfig(num_stages=vfn.num_stages - 1))
    with torch.no_grad():
        start.ir_blocks[0].out_conv.weight.normal_()
    save_rsc(tmp_path / "start.safetensors", start)
    cfg = config(tasks=["saliency"], data={"saliency": str(labelled)}, out_dir=str(tmp_path / "rsc"),
                         steps=0, batch_size=2, crop=48, val_limit=1, init=str(tmp_path / "start.safetensors"))
    train_rsc(cfg, progress=False, log=lambda m: None, adapters=adapters, vfn=vfn)
    from cldyn.weights.checkpoint import load_checkpoint

    state, _ = load_checkpoint(tmp_path / "rsc" / "last.safetensors")
    saved = {k.split("/", 1)[1]: v for k, v in state.items() if k.startswith("rsc/")}
    assert all(torch.equal(saved[k], v) for k, v in start.state_dict().items())
    other = RSC(RSCConfig(num_stages=vfn.num_stages - 1, a2si=A2SIConfig(task_encoder="upstream")))
    save_rsc(tmp_path / "other.safetensors", other)
    cfg.run.out_dir, cfg.rsc.init = str(tmp_path / "rsc2"), str(tmp_path / "other.safetensors")
    with pytest.raises(CldynError, match="other.safetensors: its RSC configuration differs"):
        train_rsc(cfg, progress=False, log=lambda m: None, adapters=adapters, vfn=vfn)


def test_task_pathway_is_kept_out_of_weight_decay_and_its_gradient_logged(labelled, tmp_path):
    vfn, adapters = _setup()
    cfg = config(tasks=["saliency", "segmentation"], data={"saliency": str(labelled),
                         "segmentation": str(labelled)}, out_dir=str(tmp_path / "rsc"), steps=2, batch_size=2,
                         crop=48, val_every=100, val_limit=1, weight_decay=0.5)
    train_rsc(cfg, progress=False, log=lambda m: None, adapters=adapters, vfn=vfn)
    from cldyn.data.io import read_csv
    from cldyn.weights.checkpoint import load_checkpoint

    first, row = read_csv(tmp_path / "rsc" / "log.csv")
    for t in ("saliency", "segmentation"):
        # step 1: the zero output convs pass no gradient to anything before them
        assert float(first[f"{t}_pathway_grad_norm"]) == 0
        assert 0.0 < float(row[f"{t}_pathway_grad_share"]) < 1.0 and float(row[f"{t}_pathway_grad_norm"]) > 0
        assert float(row[f"{t}_fusion"]) > 0  # the default fusion_weight is on
    # The hidden layer of the global FiLM gets no gradient while the FiLM's last layer is still zero (both steps).
    state, _ = load_checkpoint(tmp_path / "rsc" / "last.safetensors")
    torch.manual_seed(0)
    from cldyn.model.rsc import RSC, RSCConfig

    init = RSC(RSCConfig()).state_dict()
    key = "ir_blocks.0.task_encoder.film_global.0.weight"
    saved = next(v for k, v in state.items() if k.endswith(key))
    # Adam's coupled decay of 0.5 would add 0.5 * w to its gradient and move it by about lr per step; kept out of
    # the decay, it does not move.
    assert torch.equal(saved, init[key])


def test_cached_base_pass_gives_the_same_run_and_is_computed_once_per_batch(labelled, tmp_path, monkeypatch):
    import cldyn.loop.step as loop_step

    def run(name: str, cache: int, steps: int) -> dict:
        vfn, adapters = _setup()
        cfg = config(tasks=["saliency", "segmentation"], data={"saliency": str(labelled),
                             "segmentation": str(labelled)}, out_dir=str(tmp_path / name), steps=steps, batch_size=2,
                             crop=48, val_every=100, val_limit=1, cache_batches=cache)
        train_rsc(cfg, progress=False, log=lambda m: None, adapters=adapters, vfn=vfn)
        return load_rsc(tmp_path / name / "last.safetensors").state_dict()

    plain, cached = run("plain", 0, 2), run("cached", 5, 2)  # 2 steps < 5 cached batches: the same data
    # (two uncached runs already differ by ~2e-6: float reductions in threads are not bit-reproducible)
    assert all(torch.allclose(plain[k].float(), cached[k].float(), atol=2e-5) for k in plain)
    calls = []
    real = loop_step.base_pass
    monkeypatch.setattr(loop_step, "base_pass", lambda *a: calls.append(1) or real(*a))
    run("cycle", 1, 3)  # one batch per task, used 3 times
    assert len(calls) == 2


def test_channels_last_training_gives_the_same_losses_and_gradients(labelled, tmp_path):
    from cldyn.data.io import read_csv

    def run(name: str, channels_last: bool) -> dict:
        vfn, adapters = _setup()
        cfg = config(tasks=["saliency"], data={"saliency": str(labelled)}, out_dir=str(tmp_path / name),
                             steps=1, batch_size=2, crop=48, val_every=100, val_limit=1, channels_last=channels_last)
        train_rsc(cfg, progress=False, log=lambda m: None, adapters=adapters, vfn=vfn)
        kernels = [p for p in adapters["saliency"].model.parameters() if p.dim() == 4 and p.shape[-1] > 1]
        assert all(p.is_contiguous(memory_format=torch.channels_last) == channels_last for p in kernels)
        return read_csv(tmp_path / name / "log.csv")

    plain, last = run("plain", False), run("cl", True)
    # The same losses and gradient norm. (Adam moves a parameter with a near-zero gradient by about lr whatever its
    # size, so the weights after a step are no fair comparison.)
    keys = [f"saliency_{k}" for k in ("loss", "base_loss", "total", "fusion", "change", "pathway_grad_norm")]
    for k in keys:
        a, b = float(plain[0][k]), float(last[0][k])
        assert abs(a - b) <= 1e-4 * abs(a) + 1e-6, (k, a, b)


def test_two_task_networks_choose_differently_after_a_few_steps_on_real_pairs(labelled, pairs_dir, tmp_path):
    from cldyn.evaluation.inspect_rsc import inspect_rsc, load_pairs

    vfn, adapters = _setup()
    cfg = config(tasks=["saliency", "segmentation"], data={"saliency": str(labelled),
                         "segmentation": str(labelled)}, out_dir=str(tmp_path / "rsc"), steps=3, batch_size=2,
                         crop=48, val_every=100, val_limit=1)
    torch.manual_seed(0)
    train_rsc(cfg, progress=False, log=lambda m: None, adapters=adapters, vfn=vfn)
    model = CLDyN(vfn, load_rsc(tmp_path / "rsc" / "last.safetensors"))
    pairs = load_pairs(pairs_dir, None)  # the two real fixture pairs
    result = inspect_rsc(model, adapters, pairs)
    agree = [b["choices_agree_share"] for b in result["blocks"]]
    assert min(agree) < 1.0, agree  # some block picks other kernels for the other network on the same image
    assert result["customisation_mean_abs_diff_grey"]["saliency-segmentation"] > 0
    # control: one network plugged in twice agrees everywhere, so the difference above comes from the network
    same = inspect_rsc(model, {"a": adapters["saliency"], "b": adapters["saliency"]}, pairs)
    assert all(b["choices_agree_share"] == 1.0 for b in same["blocks"])


def test_resume_reuses_the_vfn_validation_only_for_the_same_networks_and_data(labelled, tmp_path, monkeypatch):
    import cldyn.training.rsc as rsc_training

    vfn, adapters = _setup()
    base_calls = []
    real = rsc_training.evaluate_cldyn

    def counting(model, adapter, bank, limit=None, customised=True):
        if not customised:
            base_calls.append(adapter.task)
        return real(model, adapter, bank, limit, customised)

    monkeypatch.setattr(rsc_training, "evaluate_cldyn", counting)

    def run(steps: int, resume: bool, val_limit: int = 1) -> None:
        cfg = config(tasks=["saliency"], data={"saliency": str(labelled)}, out_dir=str(tmp_path / "rsc"),
                             steps=steps, batch_size=2, crop=48, val_every=1, val_limit=val_limit)
        train_rsc(cfg, resume=resume, progress=False, log=lambda m: None, adapters=adapters, vfn=vfn)

    run(2, False)
    assert base_calls == ["saliency"]  # computed once, for the first validation, then kept
    run(3, True)
    assert base_calls == ["saliency"]  # the resumed run's validation reuses the saved metrics
    run(4, True, val_limit=2)
    assert base_calls == ["saliency", "saliency"]  # another val set: computed again
    with torch.no_grad():
        next(vfn.parameters()).add_(0.01)
    run(5, True, val_limit=2)
    assert base_calls == ["saliency"] * 3  # another VFN: computed again


def test_frozen_fingerprint_follows_weights_of_any_dtype(labelled):
    from cldyn.training.rsc import frozen_fingerprint

    vfn, adapters = _setup()
    cfg = config(tasks=["saliency"], data={"saliency": str(labelled)})
    first = frozen_fingerprint(vfn, adapters, cfg)
    assert frozen_fingerprint(vfn, adapters, cfg) == first
    adapters["saliency"].model.to(torch.bfloat16)  # numpy has no bfloat16: hashed as bytes
    assert frozen_fingerprint(vfn, adapters, cfg) != first
    cfg.streams.val_split = "train"
    assert frozen_fingerprint(vfn, adapters, cfg) != frozen_fingerprint(
        vfn, adapters, config(tasks=["saliency"], data={"saliency": str(labelled)}))


def test_no_closed_loop_from_closed_loop_weights_trains_and_saves_the_ablation(labelled, tmp_path):
    from cldyn.model.rsc import RSC, RSCConfig
    from cldyn.weights import save_rsc

    vfn, adapters = _setup()
    save_rsc(tmp_path / "init.safetensors", RSC(RSCConfig()))
    cfg = config(tasks=["saliency"], data={"saliency": str(labelled)}, out_dir=str(tmp_path / "rsc"),
                         steps=1, batch_size=2, crop=48, val_every=100, val_limit=1, closed_loop=False,
                         init=str(tmp_path / "init.safetensors"))
    train_rsc(cfg, progress=False, log=lambda m: None, adapters=adapters, vfn=vfn)
    assert load_rsc(tmp_path / "rsc" / "last.safetensors").cfg.closed_loop is False
    cfg.optim.steps = 2
    train_rsc(cfg, resume=True, progress=False, log=lambda m: None, adapters=adapters, vfn=vfn)  # resumes
    assert load_rsc(tmp_path / "rsc" / "last.safetensors").cfg.closed_loop is False


def test_tone_only_training_moves_the_tone_head_alone_and_caches_the_frozen_compensation(labelled, tmp_path,
                                                                                         monkeypatch):
    import cldyn.model.rsc as rsc_model
    from cldyn.data.io import read_csv
    from cldyn.model.rsc import RSC, RSCConfig
    from cldyn.weights import save_rsc

    vfn, adapters = _setup()
    torch.manual_seed(4)
    start = RSC(RSCConfig(num_stages=vfn.num_stages - 1))
    with torch.no_grad():  # trained-looking blocks: a non-zero compensation that must stay as it is
        start.ir_blocks[0].out_conv.weight.normal_(0, 0.1)
    save_rsc(tmp_path / "start.safetensors", start)
    calls = []
    real = rsc_model.CLDyN.untoned_luma
    monkeypatch.setattr(rsc_model.CLDyN, "untoned_luma", lambda *a, **k: calls.append(1) or real(*a, **k))
    cfg = config(tasks=["saliency", "segmentation"], data={"saliency": str(labelled),
                         "segmentation": str(labelled)}, out_dir=str(tmp_path / "rsc"), steps=4, batch_size=2,
                         crop=48, val_every=100, val_limit=1, tone_knots=8, trainable="tone", cache_batches=1,
                         init=str(tmp_path / "start.safetensors"))
    train_rsc(cfg, progress=False, log=lambda m: None, adapters=adapters, vfn=vfn)
    trained = load_rsc(tmp_path / "rsc" / "last.safetensors")
    assert trained.cfg.tone.knots == 8 and trained.tone is not None
    before, after = start.state_dict(), trained.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # blocks, bank and BatchNorm statistics untouched
    assert trained.tone.net[-1].weight.abs().max() > 0  # the head left its zero start
    assert trained.tone.net[0].weight.grad is None
    # one batch per task cycled 4 times: the frozen compensation computed once per task by the training steps, plus
    # once per task by the validation at the last step (one val image each)
    assert len(calls) == 2 + 2
    rows = read_csv(tmp_path / "rsc" / "log.csv")
    assert all(0 < float(r["saliency_tone_grad_share"]) <= 1.0 + 1e-6 for r in rows[1:])


def test_tone_only_training_needs_a_tone_head():
    with pytest.raises(ValueError, match="needs a tone head"):
        RSCModelConfig(trainable="tone")
    with pytest.raises(ValueError, match="trainable"):
        RSCModelConfig(trainable="bank")



def test_config_parts_round_trip_and_flat_records_of_earlier_runs_load():
    cfg = config(tasks=["saliency"], steps=7, penalty=0.0, closed_loop=False, out_dir="x", cache_batches=3,
                 fusion_weight=0.5, bank={"set_num": 2, "vector_num": 8, "embed_dim": 16})
    assert (cfg.streams.tasks, cfg.optim.steps, cfg.loss.penalty, cfg.rsc.closed_loop, cfg.run.out_dir) == \
        (["saliency"], 7, 0.0, False, "x")
    assert cfg.streams.cache_batches == 3 and cfg.loss.fusion_weight == 0.5 and cfg.rsc.bank.set_num == 2
    nested = cfg.to_dict()
    assert set(nested) == {"streams", "rsc", "loss", "optim", "run"}
    assert TrainRSCConfig.from_dict(nested) == cfg
    from cldyn.weights.checkpoint import flat_train_config

    flat = flat_train_config(nested)  # what the readers of checkpoint records see
    assert flat["steps"] == 7 and flat["closed_loop"] is False and flat["data"] == {}


def test_build_rsc_starts_from_a_shipped_rsc_by_name():
    from cldyn.training.rsc import build_rsc
    from cldyn.weights import load_pretrained_vfn, load_rsc_or_shipped

    vfn = load_pretrained_vfn()
    started = build_rsc(RSCModelConfig(init="visible"), vfn).state_dict()
    shipped = load_rsc_or_shipped("visible", vfn).state_dict()
    default = build_rsc(RSCModelConfig(init="shipped"), vfn).state_dict()
    assert all(torch.equal(started[k], shipped[k]) for k in shipped)
    assert any(not torch.equal(started[k], default[k]) for k in shipped)  # not the default RSC
