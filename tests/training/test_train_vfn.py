import csv

import pytest
import torch

from cldyn.data.bank import AugmentConfig, PairBank, seeded_generator
from cldyn.data.pairs import discover_pairs
from cldyn.errors import CheckpointError, CldynError
from cldyn.model.vfn import VFN, VFNConfig, with_reach_head
from cldyn.training.vfn import TrainVFNConfig, scheduled_lr, set_train_mode, train_vfn
from cldyn.weights import load_vfn, save_vfn
from cldyn.weights.checkpoint import load_checkpoint


def _cfg(pairs_dir, out, max_steps):
    return TrainVFNConfig(data=[str(pairs_dir)], out_dir=str(out), split=None, epochs=10, batch_size=2,
                          augment=AugmentConfig(crop_size=48), model=VFNConfig(num_blocks=2),
                          checkpoint_every=1, max_steps=max_steps)


def _quiet(_msg):
    pass


def test_resume_reaches_same_state(tmp_path, pairs_dir):
    full = train_vfn(_cfg(pairs_dir, tmp_path / "full", 4), progress=False, log=_quiet)
    train_vfn(_cfg(pairs_dir, tmp_path / "split", 2), progress=False, log=_quiet)
    resumed = train_vfn(_cfg(pairs_dir, tmp_path / "split", 4), resume=True, progress=False, log=_quiet)
    a, meta_a = load_checkpoint(full)
    b, meta_b = load_checkpoint(resumed)
    assert meta_a["global_step"] == meta_b["global_step"] == 4
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k  # model and Adam state, bit for bit
    rows = list(csv.DictReader((tmp_path / "split" / "loss.csv").open()))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert (tmp_path / "split" / "loss.png").stat().st_size > 0
    assert load_vfn(resumed).cfg.num_blocks == 2  # a training checkpoint also loads as a model


def test_refuses_to_clobber_and_checks_config(tmp_path, pairs_dir):
    train_vfn(_cfg(pairs_dir, tmp_path / "r", 1), progress=False, log=_quiet)
    with pytest.raises(CheckpointError, match="already exists"):
        train_vfn(_cfg(pairs_dir, tmp_path / "r", 2), progress=False, log=_quiet)
    other = _cfg(pairs_dir, tmp_path / "r", 2)
    other.model = VFNConfig(num_blocks=3)
    with pytest.raises(CheckpointError, match="differs"):
        train_vfn(other, resume=True, progress=False, log=_quiet)


def test_batches_are_pure_functions_of_seed(pairs_dir):
    pairs, _ = discover_pairs([pairs_dir])
    bank = PairBank(pairs)
    aug = AugmentConfig(crop_size=32)
    b1 = bank.batch([0, 1], seeded_generator(0, 1, 2), aug)
    b2 = bank.batch([0, 1], seeded_generator(0, 1, 2), aug)
    b3 = bank.batch([0, 1], seeded_generator(0, 1, 3), aug)
    assert b1.shape == (2, 2, 32, 32) and torch.equal(b1, b2) and not torch.equal(b1, b3)


def test_init_warm_starts_and_checks_the_config(tmp_path, pairs_dir):
    torch.manual_seed(5)
    start = VFN(VFNConfig(num_blocks=2))
    save_vfn(tmp_path / "start.safetensors", start)
    cfg = _cfg(pairs_dir, tmp_path / "warm", 0)
    cfg.init = str(tmp_path / "start.safetensors")
    last = train_vfn(cfg, progress=False, log=_quiet)  # zero steps: the checkpoint holds the starting weights
    loaded = load_vfn(last).state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in start.state_dict().items())
    other = _cfg(pairs_dir, tmp_path / "other", 1)
    other.init = cfg.init
    other.model = VFNConfig(num_blocks=3)
    with pytest.raises(CheckpointError, match="differs from the requested"):
        train_vfn(other, progress=False, log=_quiet)


def test_set_train_mode_freezes_only_batchnorm():
    net = set_train_mode(VFN(VFNConfig(num_blocks=1)), freeze_batchnorm=True)
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert net.training and bns and not any(m.training for m in bns)
    assert all(m.training for m in net.modules() if not isinstance(m, torch.nn.BatchNorm2d))
    assert all(m.training for m in set_train_mode(net).modules())  # plain train() again


def test_frozen_batchnorm_keeps_running_statistics_and_learns_affine(tmp_path, pairs_dir):
    torch.manual_seed(3)
    start = VFN(VFNConfig(num_blocks=2))
    save_vfn(tmp_path / "start.safetensors", start)

    def trained(name, freeze):
        cfg = _cfg(pairs_dir, tmp_path / name, 3)
        cfg.init, cfg.freeze_batchnorm = str(tmp_path / "start.safetensors"), freeze
        return load_vfn(train_vfn(cfg, progress=False, log=_quiet)).state_dict()

    s0 = start.state_dict()
    frozen, free = trained("frozen", True), trained("free", False)
    stats = [k for k in s0 if k.endswith(("running_mean", "running_var"))]
    affine = [k for k in s0 if k.endswith(".weight") and k.replace(".weight", ".running_mean") in s0]
    assert stats and affine
    assert all(torch.equal(frozen[k], s0[k]) for k in stats)  # running statistics untouched
    assert not all(torch.equal(free[k], s0[k]) for k in stats)  # (they move without the switch)
    assert not all(torch.equal(frozen[k], s0[k]) for k in affine)  # the BN scale still learns


def test_scheduled_lr_cosine_hand_computed():
    assert scheduled_lr(1e-3, 0, 100, "cosine", 0.01) == pytest.approx(1e-3)
    assert scheduled_lr(1e-3, 100, 100, "cosine", 0.01) == pytest.approx(1e-5)
    # quarter way: (1 + cos(pi/4)) / 2 = 0.853553; 0.01 + 0.99 * 0.853553 = 0.855018
    assert scheduled_lr(1e-3, 25, 100, "cosine", 0.01) == pytest.approx(8.55018e-4, rel=1e-5)
    assert scheduled_lr(2e-3, 37, 100) == 2e-3  # constant: the paper's
    with pytest.raises(ValueError, match="unknown lr schedule"):
        scheduled_lr(1e-3, 0, 10, "step")


def test_cosine_schedule_reaches_the_optimiser_and_survives_resume(tmp_path, pairs_dir):
    def cfg(out, steps):
        c = _cfg(pairs_dir, out, steps)
        c.lr_schedule, c.epochs = "cosine", 4
        return c

    horizon = 4 * (len(discover_pairs([pairs_dir])[0]) // 2)  # all epochs, whatever --max-steps says
    full = train_vfn(cfg(tmp_path / "full", 4), progress=False, log=_quiet)
    rows = list(csv.DictReader((tmp_path / "full" / "loss.csv").open()))
    expected = [scheduled_lr(1e-3, s, horizon, "cosine", 0.01) for s in range(4)]
    assert [float(r["lr"]) for r in rows] == pytest.approx(expected, rel=1e-2)
    assert float(rows[-1]["lr"]) < 1e-3
    # a sitting of 2 steps continued with resume reaches the same weights as the uninterrupted run
    train_vfn(cfg(tmp_path / "split", 2), progress=False, log=_quiet)
    resumed = train_vfn(cfg(tmp_path / "split", 4), resume=True, progress=False, log=_quiet)
    a, _ = load_checkpoint(full)
    b, _ = load_checkpoint(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(CldynError, match="lr_schedule"):
        TrainVFNConfig(lr_schedule="linear")


def test_init_from_a_plain_vfn_into_max_skip_keeps_all_but_the_last_conv(tmp_path, pairs_dir):
    torch.manual_seed(1)
    plain = VFN(VFNConfig(num_blocks=2))
    save_vfn(tmp_path / "plain.safetensors", plain)
    cfg = _cfg(pairs_dir, tmp_path / "r", 0)
    cfg.init, cfg.model = str(tmp_path / "plain.safetensors"), VFNConfig(num_blocks=2, skip="max")
    cfg.max_steps = 0
    out = train_vfn(cfg, progress=False, log=_quiet)
    got = load_vfn(out)
    assert got.cfg.skip == "max"
    last = f"decoder.head.{len(got.decoder.head) - 1}."
    for k, v in got.state_dict().items():
        if k.startswith(last):
            assert not v.any(), k  # zero: the run starts from max(IR, Y)
        else:
            assert torch.equal(v, plain.state_dict()[k]), k
    cfg2 = _cfg(pairs_dir, tmp_path / "r2", 0)
    cfg2.init, cfg2.model = str(tmp_path / "plain.safetensors"), VFNConfig(num_blocks=3, skip="max")
    with pytest.raises(CheckpointError, match="differs"):
        train_vfn(cfg2, progress=False, log=_quiet)
    # A max-skip VFN into one with a detail gain: the gain has no weights, so every layer is taken over.
    with torch.no_grad():
        got.decoder.head[-1].weight.normal_()
    save_vfn(tmp_path / "maxskip.safetensors", got)
    cfg3 = _cfg(pairs_dir, tmp_path / "r3", 0)
    cfg3.init, cfg3.model = str(tmp_path / "maxskip.safetensors"), VFNConfig(num_blocks=2, skip="max", detail_gain=0.2)
    cfg3.max_steps = 0
    detailed = load_vfn(train_vfn(cfg3, progress=False, log=_quiet))
    assert detailed.cfg.detail_gain == 0.2
    for k, v in detailed.state_dict().items():
        assert torch.equal(v, got.state_dict()[k]), k
    # A VFN with a reach head (as shipped) warm-starts one without: the head is dropped, every other layer kept.
    save_vfn(tmp_path / "reach.safetensors", with_reach_head(got, plain))
    cfg4 = _cfg(pairs_dir, tmp_path / "r4", 0)
    cfg4.init, cfg4.model = str(tmp_path / "reach.safetensors"), VFNConfig(num_blocks=2, skip="max", detail_gain=0.1)
    cfg4.max_steps = 0
    continued = load_vfn(train_vfn(cfg4, progress=False, log=_quiet))
    assert not continued.cfg.reach_head and continued.state_dict().keys() == got.state_dict().keys()
    assert all(torch.equal(v, got.state_dict()[k]) for k, v in continued.state_dict().items())
