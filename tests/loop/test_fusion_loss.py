import numpy as np
import pytest
import torch

from cldyn.data.bank import AugmentConfig, PairBank, seeded_generator
from cldyn.data.pairs import pair_folders
from cldyn.loop.fusion_loss import (
    FusionLoss,
    FusionLossConfig,
    fusion_loss,
    gradient_loss,
    gradient_target,
    intensity_loss,
    intensity_target,
    ssim,
    ssim_loss,
)
from cldyn.model.vfn import VFN


def test_hand_computed():
    ir = torch.tensor([[[[0.2, 0.8], [0.5, 0.1]]]])
    vis = torch.tensor([[[[0.6, 0.4], [0.5, 0.3]]]])
    fused = torch.zeros_like(ir)
    # max = [0.6, 0.8, 0.5, 0.3] -> mean 0.55
    assert torch.isclose(intensity_loss(fused, ir, vis), torch.tensor(0.55))
    flat = torch.full((1, 1, 5, 5), 0.3)
    assert float(gradient_loss(flat, flat, flat)) == 0.0
    total, parts = fusion_loss(fused, ir, vis)
    assert abs(parts["loss"] - (0.2 * parts["intensity"] + parts["gradient"])) < 1e-6
    assert torch.isclose(FusionLoss(FusionLossConfig(1.0, 0.0))(fused, ir, vis), torch.tensor(0.55))


def test_gradient_loss_ramp():
    ramp = torch.arange(6.0).repeat(1, 1, 6, 1) / 10
    zero = torch.zeros_like(ramp)
    # Sobel L1 magnitude of the ramp: 0.8 inside, 0.4 on the two border columns -> mean (4*0.8 + 2*0.4)/6.
    assert torch.isclose(gradient_loss(zero, ramp, zero), torch.tensor((4 * 0.8 + 2 * 0.4) / 6))


def test_loss_decreases_on_real_batch(pairs_dir):
    pairs, _ = pair_folders(pairs_dir / "ir", pairs_dir / "vi")
    batch = PairBank(pairs).batch([0, 1], seeded_generator(0), AugmentConfig(crop_size=64))
    ir, vis = batch[:, :1], batch[:, 1:]
    net = VFN().train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    losses = []
    for _ in range(8):
        loss, _ = fusion_loss(net(ir, vis), ir, vis)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


def test_ssim_matches_scikit_image(pairs_dir):
    metrics = pytest.importorskip("skimage.metrics")
    pairs, _ = pair_folders(pairs_dir / "ir", pairs_dir / "vi")
    x = PairBank(pairs).images[0].double()  # a real MSRS crop: infrared and visible Y
    ir, vis = x[0], x[1]
    ours = ssim(ir[None, None], vis[None, None])
    ref = metrics.structural_similarity(ir.numpy(), vis.numpy(), gaussian_weights=True, sigma=1.5,
                                        use_sample_covariance=False, data_range=1.0)
    assert float(ours) == pytest.approx(ref, abs=1e-9)
    assert torch.allclose(ssim(ir[None, None], ir[None, None]), torch.ones(1, dtype=torch.float64))
    with pytest.raises(ValueError, match="one shape"):
        ssim(ir[None, None], vis[None, None, :-1])


def test_ssim_loss_is_zero_only_when_both_sources_are_kept():
    torch.manual_seed(0)
    a = torch.rand(2, 1, 16, 16)
    assert float(ssim_loss(a, a, a)) == pytest.approx(0.0, abs=1e-6)
    b = torch.rand(2, 1, 16, 16)
    # F = IR exactly: half the term is 0, the other half is 1 - SSIM(IR, Y).
    assert float(ssim_loss(a, a, b)) == pytest.approx(0.5 * (1 - float(ssim(a, b).mean())), abs=1e-6)
    _, parts = fusion_loss(a, a, b, FusionLossConfig(ssim_weight=2.0))
    assert parts["loss"] == pytest.approx(0.2 * parts["intensity"] + parts["gradient"] + 2.0 * parts["ssim"], abs=1e-6)


def test_gradient_floor_drops_noise_level_targets():
    # A step of 0.01 between columns 3 and 4 of an 8x8 image: Sobel |gx| = 4 * 0.01 = 0.04 on columns 3 and 4
    # (replicate padding keeps the rest 0), so the target's mean is 2 * 0.04 / 8 = 0.01.
    step = torch.zeros(1, 1, 8, 8)
    step[..., 4:] = 0.01
    flat = torch.zeros_like(step)
    assert torch.allclose(gradient_target(step, flat)[0, 0, 0], torch.tensor([0, 0, 0, .04, .04, 0, 0, 0]))
    assert float(gradient_loss(flat, step, flat)) == pytest.approx(0.01)
    assert float(gradient_loss(flat, step, flat, floor=0.03)) == pytest.approx(0.01)  # above the floor: kept
    assert float(gradient_loss(flat, step, flat, floor=0.05)) == 0.0  # below it: no target
    # A fused image that copies the noise-level step is penalised by exactly its own gradient.
    assert float(gradient_loss(step, step, flat, floor=0.05)) == pytest.approx(0.01)


def test_ssim_towards_the_stronger_source_hand_cases():
    torch.manual_seed(0)
    flat = torch.full((1, 1, 32, 32), 0.4)
    texture = torch.rand(1, 1, 32, 32)
    # the visible image carries all the structure: the loss is 1 - SSIM(F, Y) in every window
    f = 0.5 * texture + 0.2
    assert float(ssim_loss(f, flat, texture, "stronger")) == pytest.approx(1 - float(ssim(f, texture)), abs=1e-6)
    # swapped roles: the infrared image is the stronger source
    assert float(ssim_loss(f, texture, flat, "stronger")) == pytest.approx(1 - float(ssim(f, texture)), abs=1e-6)
    # keeping the stronger source exactly costs nothing, while "both" still pays for the flat one
    assert float(ssim_loss(texture, flat, texture, "stronger")) == pytest.approx(0.0, abs=1e-6)
    assert float(ssim_loss(texture, flat, texture, "both")) > 0.1
    # left half textured in IR, right half in Y: each half is judged against its own source
    ir, vis = flat.clone(), flat.clone()
    ir[..., :16], vis[..., 16:] = texture[..., :16], texture[..., 16:]
    assert float(ssim_loss(texture, ir, vis, "stronger")) < 0.25 * float(ssim_loss(texture, ir, vis, "both"))
    with pytest.raises(ValueError, match="unknown SSIM target"):
        ssim_loss(f, flat, texture, "mean")


def test_intensity_target_with_detail_hand_case():
    # A flat image has no detail: the target is max(IR, Y) whatever the gain.
    ir, vis = torch.full((1, 1, 12, 12), 0.2), torch.full((1, 1, 12, 12), 0.7)
    assert torch.allclose(intensity_target(ir, vis, 0.5), vis)
    # A 0/1 step between columns 5 and 6: the gain overshoots on both sides and the clip keeps [0, 1].
    step = torch.zeros(1, 1, 12, 12)
    step[..., 6:] = 1.0
    t = intensity_target(step, torch.zeros_like(step), 0.5)[0, 0, 0]
    assert t.min() == 0.0 and t.max() == 1.0
    assert torch.equal(t[:5], torch.zeros(5)) and torch.equal(t[7:], torch.ones(5))
    # A 0/1 step overshoots only outside [0, 1], so the clipped target is the step: F = max(IR, Y) costs 0.
    # Elsewhere the loss of F = max(IR, Y) is its mean distance to the clipped target; the config passes the gain.
    assert float(intensity_loss(step, step, torch.zeros_like(step), 0.5)) == 0.0
    x = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    y = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    cv2 = pytest.importorskip("cv2")
    m = torch.maximum(x, y)[0, 0].numpy()
    expected = np.abs(m - np.clip(m + 0.3 * (m - cv2.GaussianBlur(m, (0, 0), 1.0)), 0, 1)).mean()
    assert float(intensity_loss(torch.maximum(x, y), x, y, 0.3)) == pytest.approx(float(expected), abs=1e-6)
    _, parts = fusion_loss(torch.maximum(x, y), x, y, FusionLossConfig(intensity_detail=0.3))
    assert parts["intensity"] == pytest.approx(float(expected), abs=1e-6)
