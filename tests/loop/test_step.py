"""The closed loop's step: the loss terms, the base pass, one task's gradient and the frozen-pass cache."""

import pytest
import torch
from closed_loop_helpers import random_batch

from cldyn.loop.cache import FrozenPassCache
from cldyn.loop.losses import LossWeights, reward_penalty, specificity_hinge
from cldyn.loop.step import (
    BasePass,
    TaskBatch,
    apply_combined,
    base_pass,
    closed_loop_losses,
    features_of_base_luma,
    task_gradient,
)

NO_FUSION = LossWeights(fusion_weight=0.0)  # the paper's loss: reward-penalty alone
CHANGE = LossWeights(fusion_weight=0.0, change_weight=3.0)
SPECIFIC = LossWeights(fusion_weight=0.0, specificity_weight=2.0, specificity_margin=0.05)
ALWAYS_ON = LossWeights(fusion_weight=0.0, specificity_weight=2.0, specificity_margin=10.0)  # a margin that keeps it on


def test_reward_penalty():
    base = torch.tensor(1.0)
    assert reward_penalty(torch.tensor(0.7), base) == 0.7  # better than base: no penalty
    assert reward_penalty(torch.tensor(1.0), base) == 1.0
    assert torch.isclose(reward_penalty(torch.tensor(1.2), base), torch.tensor(1.2 + 5 * 0.2))


def test_the_best_camera_reference_is_the_least_of_the_base_and_camera_losses():
    def base(loss: float, camera: float | None) -> BasePass:
        return BasePass(torch.zeros(1), torch.tensor(loss), None, torch.zeros(1),
                        None if camera is None else torch.tensor(camera))

    assert base(1.0, 0.6).reference("base") == 1.0
    assert base(1.0, 0.6).reference("best_camera") == 0.6  # a camera alone does better: it is the bar
    assert base(1.0, 1.4).reference("best_camera") == 1.0  # the base fusion does better
    with pytest.raises(ValueError, match="cameras=True"):
        base(1.0, None).reference("best_camera")
    with pytest.raises(ValueError, match="reference"):
        LossWeights(reference="visible")


def test_closed_loop_losses_with_the_best_camera_reference(pairs_dir):
    from cldyn.model.ops import as_rgb

    model, adapters, ir, vis, mask = random_batch()
    adapter = adapters["saliency"]
    weights = LossWeights(fusion_weight=0.0, reference="best_camera")
    total, parts = closed_loop_losses(model, adapter, ir, vis, mask, weights)
    with torch.no_grad():  # hand-computed: each camera alone through the network
        camera = min(float(adapter.loss(as_rgb(vis), mask)), float(adapter.loss(as_rgb(ir), mask)))
    assert parts["camera_loss"] == pytest.approx(camera, rel=1e-6)
    # a fresh CLDyN is the VFN: no penalty against the base, the penalty against a camera that does better
    reference = min(parts["base_loss"], camera)
    assert parts["penalty"] == pytest.approx(5 * max(0.0, parts["loss"] - reference), rel=1e-5, abs=1e-7)
    assert parts["penalty_active"] == float(parts["loss"] > reference)
    _, plain = closed_loop_losses(model, adapter, ir, vis, mask, NO_FUSION)
    assert "camera_loss" not in plain and plain["penalty"] == 0.0


def test_closed_loop_losses_at_init_have_no_penalty(pairs_dir):
    model, adapters, ir, vis, mask = random_batch()
    total, parts = closed_loop_losses(model, adapters["saliency"], ir, vis, mask, NO_FUSION)
    assert parts["loss"] == parts["base_loss"] and parts["penalty_active"] == 0.0  # CLDyN == VFN at init
    assert parts["penalty"] == 0.0 and parts["total"] == parts["loss"]
    total.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.rsc.parameters())


def test_fusion_term_is_the_vfn_loss_of_the_compensated_luminance():
    from cldyn.loop.fusion_loss import fusion_loss
    from cldyn.model.color import rgb_to_luma

    model, adapters, ir, vis, mask = random_batch()
    vfn = model.vfn
    plain, p0 = closed_loop_losses(model, adapters["saliency"], ir, vis, mask, NO_FUSION)
    total, p1 = closed_loop_losses(model, adapters["saliency"], ir, vis, mask, LossWeights(fusion_weight=0.5))
    y = rgb_to_luma(vis)
    want = fusion_loss(vfn(ir, y), ir, y)[0]  # a fresh RSC: the compensated luminance is the VFN's
    assert abs(p1["fusion"] - float(want)) < 1e-6 and "fusion" not in p0
    assert torch.isclose(total, plain + 0.5 * want, atol=1e-6)


def test_change_term_is_the_mean_absolute_change_of_the_luminance():
    from cldyn.model.color import rgb_to_luma

    model, adapters, ir, vis, mask = random_batch()
    vfn = model.vfn
    _, fresh = closed_loop_losses(model, adapters["saliency"], ir, vis, mask, CHANGE)
    assert fresh["change"] == 0.0  # a fresh RSC is the VFN
    with torch.no_grad():  # a non-zero compensation
        for block in (*model.rsc.ir_blocks, *model.rsc.vis_blocks):
            block.out_conv.weight.normal_(0, 0.5)
    model.eval()  # no Gumbel noise, BatchNorm in its fixed mode: the same compensation each call
    plain, p0 = closed_loop_losses(model, adapters["saliency"], ir, vis, mask, NO_FUSION)
    total, p1 = closed_loop_losses(model, adapters["saliency"], ir, vis, mask, CHANGE)
    y = rgb_to_luma(vis)
    feats = adapters["saliency"].features(model.base(ir, vis))
    with torch.no_grad():
        want = (model.compensated_luma(ir, y, feats) - vfn(ir, y)).abs().mean()
    assert float(want) > 1e-3 and p0["change"] == pytest.approx(float(want), rel=1e-5)
    assert torch.isclose(total, plain + 3.0 * want, rtol=1e-5)


def test_specificity_hinge_hand_cases():
    base = torch.tensor(2.0)
    # own 1.0 vs other 1.5: (1.0 - 1.5) / 2 = -0.25, beyond the margin 0.02: no cost
    assert specificity_hinge(torch.tensor(1.0), torch.tensor(1.5), base) == 0.0
    # equal losses: the margin itself
    assert torch.isclose(specificity_hinge(torch.tensor(1.0), torch.tensor(1.0), base), torch.tensor(0.02))
    # own worse by 0.1: 0.02 + 0.1 / 2
    assert torch.isclose(specificity_hinge(torch.tensor(1.1), torch.tensor(1.0), base, 0.02), torch.tensor(0.07))


def test_specificity_term_contrasts_with_another_task_networks_compensation():
    from cldyn.model.color import replace_luma, rgb_to_luma

    model, adapters, ir, vis, mask = random_batch()
    vfn = model.vfn
    y = rgb_to_luma(vis)
    other = features_of_base_luma(adapters["segmentation"], vis, vfn(ir, y))
    want_other = adapters["segmentation"].features(model.base(ir, vis))
    assert torch.allclose(other, want_other, atol=1e-6)  # the other network's features of the same base fusion
    plain, _ = closed_loop_losses(model, adapters["saliency"], ir, vis, mask, NO_FUSION)
    total, fresh = closed_loop_losses(model, adapters["saliency"], ir, vis, mask, SPECIFIC, other_features=other)
    # A fresh RSC ignores the task features: both compensations are the VFN's, the hinge is its margin.
    assert fresh["other_loss"] == fresh["loss"] and fresh["specificity"] == pytest.approx(0.05)
    assert fresh["specific"] == 0.0 and torch.isclose(total, plain + 2.0 * 0.05, atol=1e-6)
    with torch.no_grad():  # a compensation that depends on the task features
        for block in (*model.rsc.ir_blocks, *model.rsc.vis_blocks):
            block.out_conv.weight.normal_(0, 0.5)
            block.task_encoder.film_global[-1].weight.normal_(0, 0.5)
    model.eval()
    total, parts = closed_loop_losses(model, adapters["saliency"], ir, vis, mask, SPECIFIC, other_features=other)
    with torch.no_grad():
        comp_other = replace_luma(vis, model.compensated_luma(ir, y, other))
        want = adapters["saliency"].loss(comp_other, mask)
    assert parts["other_loss"] == pytest.approx(float(want), rel=1e-5) and parts["other_loss"] != parts["loss"]
    hinge = max(0.0, 0.05 + (parts["loss"] - parts["other_loss"]) / parts["base_loss"])
    assert parts["specificity"] == pytest.approx(hinge, rel=1e-5, abs=1e-7)
    model.train()
    total, _ = closed_loop_losses(model, adapters["saliency"], ir, vis, mask, ALWAYS_ON, other_features=other)
    total.backward()
    for block in (*model.rsc.ir_blocks, *model.rsc.vis_blocks):  # the hinge reaches the task pathway
        assert block.task_encoder.film_global[-1].weight.grad.abs().sum() > 0


def test_frozen_pass_cache_computes_once_when_enabled_and_every_time_when_not():
    calls = []
    on, off = FrozenPassCache(enabled=True), FrozenPassCache(enabled=False)
    for cache in (on, on, off, off):
        assert cache.get("base", ("saliency", 3), lambda: calls.append(1) or "x") == "x"
    assert len(calls) == 3 and len(on) == 1 and len(off) == 0
    assert on.get("base", ("saliency", 4), lambda: "y") == "y"  # another batch: its own entry


def test_task_gradient_is_the_gradient_of_the_task_loss_and_reuses_the_kept_base_pass(monkeypatch):
    import cldyn.loop.step as step

    model, adapters, _, _, _ = random_batch()
    with torch.no_grad():  # a non-zero compensation, so every block's parameters get a gradient
        for block in (*model.rsc.ir_blocks, *model.rsc.vis_blocks):
            block.out_conv.weight.normal_(0, 0.5)
    model.eval()  # no Gumbel noise: two passes give the same loss
    ir, vis = torch.rand(2, 1, 32, 32), torch.rand(2, 3, 32, 32)
    mask = (torch.rand(2, 1, 32, 32) > 0.7).float()
    params = list(model.rsc.parameters())
    total, _ = closed_loop_losses(model, adapters["saliency"], ir, vis, mask, NO_FUSION)
    want = torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in
                      zip(torch.autograd.grad(total, params, allow_unused=True), params, strict=True)])
    calls = []
    monkeypatch.setattr(step, "base_pass", lambda *a: calls.append(1) or base_pass(*a))
    cache = FrozenPassCache(enabled=True)
    batch = TaskBatch(ir, vis, mask, key=("saliency", 0))
    for _ in range(2):
        flat, parts = task_gradient(model, adapters["saliency"], batch, params, NO_FUSION, cache)
        assert flat.shape == (sum(p.numel() for p in params),) and torch.allclose(flat, want, atol=1e-6)
    assert len(calls) == 1 and parts["total"] == pytest.approx(total.item(), rel=1e-6)


def test_apply_combined_writes_the_mean_direction_and_clips_it():
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(1))
    grads = torch.tensor([[3.0, 0.0, 0.0], [0.0, 0.0, 4.0]])
    direction = apply_combined([a, b], grads, "mean", clip=100.0)
    assert torch.equal(direction, torch.tensor([1.5, 0.0, 2.0]))
    assert torch.equal(a.grad, torch.tensor([1.5, 0.0])) and torch.equal(b.grad, torch.tensor([2.0]))
    apply_combined([a, b], grads, "mean", clip=1.0)  # norm 2.5 clipped to 1
    assert torch.isclose(torch.cat([a.grad, b.grad]).norm(), torch.tensor(1.0))
