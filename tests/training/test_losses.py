import torch

from cldyn.data.bank import AugmentConfig, PairBank, seeded_generator
from cldyn.data.pairs import pair_folders
from cldyn.model.vfn import VFN
from cldyn.training.losses import FusionLoss, FusionLossConfig, fusion_loss, gradient_loss, intensity_loss


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
