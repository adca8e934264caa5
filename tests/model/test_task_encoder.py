import pytest
import torch

from cldyn.model.task_encoder import (
    SemanticTaskEncoder,
    TaskStatistics,
    as_statistics,
    channel_quantiles,
    response_maps,
    rms_normalize,
)


def test_channel_quantiles_hand_computed():
    # Two channels, two pixels: channel 0 = (1, 3), channel 1 = (0, 0). RMS over all = sqrt(10 / 4).
    t = torch.tensor([[[[1.0, 3.0]], [[0.0, 0.0]]]])
    rms = (10 / 4) ** 0.5
    q = channel_quantiles(t, 3)
    # means (2, 0) sorted -> (0, 2), resampled to 3 points -> (0, 1, 2); stds (1, 0) -> (0, 0.5, 1)
    assert torch.allclose(q * rms, torch.tensor([[0.0, 1.0, 2.0, 0.0, 0.5, 1.0]]), atol=1e-6)


def test_channel_quantiles_ignore_width_order_and_scale():
    torch.manual_seed(0)
    t = torch.randn(2, 64, 5, 7)
    q = channel_quantiles(t, 16)
    assert q.shape == (2, 32)
    assert torch.allclose(channel_quantiles(t[:, torch.randperm(64)], 16), q, atol=1e-6)  # channel order
    assert torch.allclose(channel_quantiles(3.5 * t, 16), q, atol=1e-5)  # scale
    # a network of another width gives a signature of the same size
    assert channel_quantiles(torch.randn(2, 320, 3, 3), 16).shape == (2, 32)
    # and the signatures of differently distributed features are far apart
    other = channel_quantiles(torch.relu(torch.randn(2, 64, 5, 7)) + torch.linspace(0, 3, 64).view(1, 64, 1, 1), 16)
    assert (other - q).norm(dim=1).min() > 5 * (q[0] - q[1]).norm()


def test_response_maps_hand_computed_and_shapes():
    t = torch.zeros(1, 2, 2, 2)
    t[0, 1, 1, 0] = 4.0  # RMS over the 8 values = sqrt(16 / 8)
    m = response_maps(t)
    s = 4.0 / 2 ** 0.5
    want_rms = torch.tensor([[0.0, 0.0], [s / 2 ** 0.5, 0.0]])
    want_max = torch.tensor([[0.0, 0.0], [s, 0.0]])
    assert torch.allclose(m[0, 0], want_rms, atol=1e-5) and torch.allclose(m[0, 1], want_max, atol=1e-5)
    assert response_maps(torch.randn(3, 7)).shape == (3, 2, 1, 1)
    assert response_maps(torch.randn(3, 7, 9)).shape == (3, 2, 1, 9)
    with pytest.raises(ValueError, match="task features"):
        response_maps(torch.randn(3))


def test_rms_normalize():
    x = torch.tensor([[3.0, 4.0]])
    assert torch.allclose(rms_normalize(x), x / (12.5 ** 0.5))


def test_semantic_encoder_starts_without_modulation_and_modulates_where_the_task_responds():
    torch.manual_seed(0)
    enc = SemanticTaskEncoder(channels=8, type_dim=8, basis_dim=128)
    t = torch.randn(2, 40, 4, 4)
    type_emb, basis_emb, sig = enc.embed(t)
    assert type_emb.shape == (2, 8) and basis_emb.shape == (2, 128) and sig.shape == (2, 32)
    scale, beta = enc.modulation(t, sig, (16, 20))
    assert scale.shape == beta.shape == (2, 8, 16, 20)
    # identity at initialisation (the 1 is added before the resize, so up to its rounding)
    assert (scale - 1).abs().max() < 1e-6 and beta.abs().max() == 0
    torch.nn.init.normal_(enc.film_spatial[-1].weight)
    # A task that responds in one corner only: the spatial FiLM varies over the image, and is the same
    # (bias only) far from the response.
    # The convs run on the 8x8 task map (receptive field 5x5), then the FiLM is resized to 32x32: output pixels
    # 18..21 read task pixels 4 and 5 only, at least 4 away from the response and 2 from the zero-padded border.
    corner = torch.zeros(1, 40, 8, 8)
    corner[0, :, 0, 0] = 1.0
    scale, _ = enc.modulation(corner, enc.embed(corner)[2], (32, 32))
    gamma = scale - 1
    assert gamma.shape == (1, 8, 32, 32) and gamma[0, :, :6, :6].std() > 0
    assert torch.allclose(gamma[0, :, 18:22, 18:22], gamma[0, :, 19:20, 19:20].expand(-1, 4, 4), atol=1e-6)
    # ... and the same FiLM as convolving the task map first, then resizing (what the encoder does by design)
    low = enc.film_spatial(response_maps(corner)) + enc.film_global(enc.embed(corner)[2])[..., None, None]
    want = torch.nn.functional.interpolate(low, size=(32, 32), mode="bilinear", align_corners=False)[:, :8]
    assert torch.allclose(gamma, want, atol=1e-6)
    # ... in channels-last memory when asked (the layout of the image features at inference on a CPU)
    scale_cl, _ = enc.modulation(corner, enc.embed(corner)[2], (32, 32), channels_last=True)
    assert scale_cl.stride(1) == 1 and torch.equal(scale_cl, scale)  # channels innermost (a slice of the FiLM)


def test_upstream_embedding_is_the_public_codes_pathway_run_literally():
    from cldyn.model.task_encoder import UpstreamTaskEmbedding

    torch.manual_seed(0)
    emb = UpstreamTaskEmbedding(out=8, slope=0.2)
    t = torch.randn(3, 5, 4, 6)
    # upstream: flatten, scale to unit RMS, conv1d(1 -> 4) + LeakyReLU, conv1d(4 -> 8), mean over the sequence
    seq = t.flatten(1)
    seq = seq / seq.pow(2).mean(1, keepdim=True).sqrt()
    h = torch.nn.functional.leaky_relu(torch.nn.functional.conv1d(seq[:, None], emb.conv1.weight, padding=1), 0.2)
    want = torch.nn.functional.conv1d(h, emb.conv2.weight, padding=1).mean(-1)
    assert torch.allclose(emb(t.flatten(1)), want, atol=1e-5)


@pytest.mark.parametrize("length", [1, 2, 5, 4096, 4097, 3 * 4096 + 17])
def test_upstream_embedding_in_chunks_without_autograd_is_the_same(length):
    from cldyn.model.task_encoder import UpstreamTaskEmbedding

    torch.manual_seed(0)
    emb = UpstreamTaskEmbedding(out=16, slope=0.2)
    seq = torch.randn(2, length)
    with torch.enable_grad():
        plain = emb(seq)  # the whole intermediate, as in training
    with torch.no_grad():
        chunked = emb(seq)
    assert torch.allclose(chunked, plain.detach(), atol=1e-5)


def test_task_statistics_are_computed_once_and_equal_the_functions():
    t = torch.randn(2, 24, 6, 10, generator=torch.Generator().manual_seed(0))
    stats = TaskStatistics(t)
    assert stats.signature(8) is stats.signature(8) and stats.response() is stats.response()
    assert torch.equal(stats.signature(8), channel_quantiles(t, 8)) and torch.equal(stats.response(), response_maps(t))
    assert as_statistics(stats) is stats and torch.equal(as_statistics(t).features, t)


def test_rsc_blocks_given_shared_statistics_compensate_as_with_raw_features():
    from cldyn.model.a2si import A2SI
    from cldyn.model.basis_bank import BasisVectorBank

    torch.manual_seed(0)
    bank, block = BasisVectorBank(), A2SI().eval()
    for p in block.parameters():  # wake the zero-initialised output conv and FiLM so the check can fail
        if p.dim() > 1 and not p.abs().sum():
            torch.nn.init.normal_(p, std=0.1)
    task, x = torch.randn(2, 40, 5, 7), torch.randn(2, 8, 20, 28)
    with torch.no_grad():
        raw = block(bank.weight, task, x)
        shared = block(bank.weight, TaskStatistics(task), x)
    assert not torch.equal(raw, x) and torch.allclose(raw, shared, atol=1e-6)
