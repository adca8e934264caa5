import numpy as np
import pytest
import torch

from cldyn.model.task_encoder import TaskStatistics
from cldyn.model.tone import ToneConfig, ToneHead, apply_tone_curve, luma_quantiles, tone_histogram


def test_tone_curve_is_the_piecewise_linear_interpolation_through_the_moved_knots():
    g = torch.Generator().manual_seed(0)
    y = torch.rand(2, 1, 9, 11, generator=g)
    y[0, 0, 0, :3] = torch.tensor([0.0, 1.0, 0.5])  # the ends and a knot exactly
    c = (torch.rand(2, 6, generator=g) - 0.5) * 0.05
    got = apply_tone_curve(y, c)
    knots = np.linspace(0, 1, 6)
    for b in range(2):  # independent reference: numpy's linear interpolation of the curve x -> x + c(x)
        want = np.clip(np.interp(y[b].numpy(), knots, knots + c[b].numpy()), 0, 1)
        np.testing.assert_allclose(got[b].numpy(), want, atol=1e-6)
    assert torch.equal(apply_tone_curve(y, torch.zeros(2, 6)), y)


def test_tone_curve_within_the_bound_keeps_the_order_of_grey_levels():
    cfg = ToneConfig(knots=8, max_levels=18.0)  # just under 255 / 14
    y = torch.linspace(0, 1, 4096).view(1, 1, 64, 64)
    g = torch.Generator().manual_seed(1)
    for _ in range(20):  # the worst case alternates +max / -max between neighbouring knots
        c = cfg.max_levels / 255 * torch.where(torch.rand(1, 8, generator=g) > 0.5, 1.0, -1.0)
        out = apply_tone_curve(y, c).flatten()
        assert (out[1:] >= out[:-1]).all()
    with pytest.raises(ValueError, match="monotone"):
        ToneConfig(knots=8, max_levels=19.0)
    with pytest.raises(ValueError, match="knots"):
        ToneConfig(knots=1)


def test_tone_curve_checks_shapes():
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        apply_tone_curve(torch.rand(1, 3, 4, 4), torch.zeros(1, 4))
    with pytest.raises(ValueError, match="coefficients"):
        apply_tone_curve(torch.rand(2, 1, 4, 4), torch.zeros(1, 4))


def test_luma_quantiles_match_numpy_on_the_thumbnail():
    g = torch.Generator().manual_seed(2)
    y = torch.rand(3, 1, 40, 56, generator=g)
    got = luma_quantiles(y, k=7, size=8)
    thumb = torch.nn.functional.adaptive_avg_pool2d(y, 8).flatten(1).numpy()
    want = np.quantile(thumb, np.linspace(0, 1, 7), axis=1).T  # linear interpolation, numpy's default
    np.testing.assert_allclose(got.numpy(), want, atol=1e-6)


def test_tone_head_starts_as_the_identity_and_learns_a_curve_per_task():
    torch.manual_seed(0)
    head = ToneHead(ToneConfig(knots=8, max_levels=8.0))
    y = torch.rand(4, 1, 24, 24)
    a, b = torch.rand(4, 16, 6, 6), torch.rand(4, 64, 3, 3) * 5 - 1  # two "networks": widths and statistics differ
    assert torch.equal(head(a, y), y)
    opt = torch.optim.Adam(head.parameters(), lr=0.01)
    for _ in range(30):  # task a wants a brighter image, task b a darker one
        loss = -head(a, y).mean() + head(TaskStatistics(b), y).mean()
        opt.zero_grad()
        loss.backward()
        assert all(p.grad is not None for p in head.parameters())
        opt.step()
    up, down = head(a, y) - y, head(b, y) - y
    assert up.mean() * 255 > 1.0 and down.mean() * 255 < -1.0  # opposite curves, each over a grey level
    assert (up.abs() <= 8.0 / 255 + 1e-6).all()  # bounded by max_levels


def test_tone_head_needs_knots():
    with pytest.raises(ValueError, match="knots"):
        ToneHead(ToneConfig())


def test_tone_histogram_is_the_linear_binning_of_the_grey_levels():
    g = torch.Generator().manual_seed(3)
    y, w = torch.rand(2, 1, 6, 7, generator=g), torch.rand(2, 1, 6, 7, generator=g)
    for weight in (None, w):
        got = tone_histogram(y, 5, weight)
        for b in range(2):  # reference: each value split between its two neighbouring knots, linearly
            v = y[b].flatten().numpy() * 4
            ww = np.ones_like(v) if weight is None else w[b].flatten().numpy()
            want = np.zeros(5)
            lo = np.minimum(np.floor(v).astype(int), 3)
            np.add.at(want, lo, ww * (1 - (v - lo)))
            np.add.at(want, lo + 1, ww * (v - lo))
            np.testing.assert_allclose(got[b].numpy(), want / ww.sum(), atol=1e-6)
    assert torch.equal(tone_histogram(y, 5, torch.zeros_like(y)), torch.zeros(2, 5))  # no response: nothing


def test_tone_head_inputs_are_what_it_reads():
    cfg = ToneConfig(knots=6, quantiles=4)
    torch.manual_seed(0)
    head = ToneHead(cfg)
    torch.nn.init.normal_(head.net[-1].weight)
    feats, y = torch.rand(2, 8, 4, 5), torch.rand(2, 1, 16, 20)
    x = head.inputs(feats, y)
    assert x.shape == (2, 3 * 4 + 2 * 6)
    # the luminance part: its quantiles, then the hat histograms of the luminance pooled to the features' grid
    np.testing.assert_allclose(x[:, 8:12].numpy(), luma_quantiles(y, 4).numpy(), atol=1e-6)
    pooled = torch.nn.functional.adaptive_avg_pool2d(y, (4, 5))
    np.testing.assert_allclose(x[:, 12:18].numpy(), tone_histogram(pooled, 6).numpy(), atol=1e-6)
    assert torch.equal(head.coefficients(feats, y), head.coefficients_of_inputs(x))
    assert head.coefficients(feats, y).abs().max() <= cfg.max_levels / 255.0
