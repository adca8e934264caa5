import numpy as np
import pytest
import torch

from cldyn.model.folding import fold_batchnorm
from cldyn.model.ops import count_parameters
from cldyn.model.vfn import VFN, VFNConfig
from cldyn.weights import create_vfn, list_models


def _randomise_bn(model: torch.nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.1)


@pytest.mark.parametrize("size", [(97, 131), (1, 1), (1, 7), (2, 2), (33, 16)])
def test_output_range_and_size(size):
    net = VFN().eval()
    ir, vis = torch.rand(2, 1, *size), torch.rand(2, 1, *size)
    with torch.no_grad():
        out = net(ir, vis)
    assert out.shape == (2, 1, *size)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_stage_hook_called_between_encoder_stages():
    net = VFN(VFNConfig(num_blocks=3)).eval()
    ir, vis = torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16)
    calls = []

    def hook(i, a, b):
        calls.append((i, a.shape[1], b.shape[1]))
        return a, b

    with torch.no_grad():
        assert torch.equal(net(ir, vis, stage_hook=hook), net(ir, vis))
    assert calls == [(0, 8, 8), (1, 8, 8)]  # after stages 0 .. n-2

    def zero_ir(i, a, b):
        return torch.zeros_like(a), b

    with torch.no_grad():
        assert not torch.allclose(net(ir, vis, stage_hook=zero_ir), net(ir, vis))


def test_features_head_split():
    net = VFN().eval()
    ir, vis = torch.rand(1, 1, 20, 24), torch.rand(1, 1, 20, 24)
    with torch.no_grad():
        feats = net.forward_features(ir, vis)
        assert feats.shape == (1, 16, 20, 24)
        assert torch.equal(net.forward_head(feats, ir, vis), net(ir, vis))


def test_fold_batchnorm_matches_eval():
    net = VFN()
    _randomise_bn(net)
    net.eval()
    folded = fold_batchnorm(net)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    ir, vis = torch.rand(2, 1, 40, 50), torch.rand(2, 1, 40, 50)
    with torch.no_grad():
        assert (folded(ir, vis) - net(ir, vis)).abs().max() < 1e-5
        cl = folded.to(memory_format=torch.channels_last)
        assert (cl(ir, vis) - net(ir, vis)).abs().max() < 1e-5


def test_registry_and_params():
    assert list_models() == ["vfn", "vfn_maxdetail", "vfn_maxskip", "vfn_small"]
    assert count_parameters(create_vfn("vfn_maxskip")) == 46617  # the same layers, another output form
    assert create_vfn("vfn_small").cfg.num_blocks == 2
    assert create_vfn("vfn", num_blocks=5).num_stages == 5
    # Hand count of the default model (weights + biases; BN affine included).
    assert count_parameters(create_vfn()) == 46617
    with pytest.raises(ValueError, match="unknown VFN"):
        create_vfn("nope")
    with pytest.raises(ValueError, match="num_blocks"):
        VFNConfig(num_blocks=0)


def test_shape_check():
    net = VFN()
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        net(torch.rand(1, 3, 8, 8), torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match="differ"):
        net(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 9))


def test_deterministic_with_seed():
    torch.manual_seed(3)
    a = VFN()
    torch.manual_seed(3)
    b = VFN()
    for (ka, va), (_, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(va, vb), ka


def test_max_skip_starts_at_the_pixelwise_max_and_stays_in_range():
    net = VFN(VFNConfig(skip="max")).eval()
    ir, vis = torch.rand(2, 1, 23, 17), torch.rand(2, 1, 23, 17)
    with torch.no_grad():
        assert torch.equal(net(ir, vis), torch.maximum(ir, vis))  # the last conv starts at zero
        net.decoder.head[-1].bias.fill_(10.0)  # a correction of +0.5 everywhere: clipped to 1
        out = net(ir, vis)
    assert torch.equal(out, (torch.maximum(ir, vis) + 0.5).clamp(max=1.0))
    assert VFNConfig.from_dict(VFNConfig(skip="max").to_dict()).skip == "max"
    assert VFNConfig.from_dict({"num_blocks": 4}).skip == "none"  # files written before the option
    with pytest.raises(ValueError, match="skip"):
        VFNConfig(skip="mean")


def test_detail_gain_starts_at_the_unsharp_masked_maximum():
    cv2 = pytest.importorskip("cv2")
    net = VFN(VFNConfig(skip="max", detail_gain=0.3)).eval()
    ir, vis = torch.rand(1, 1, 29, 35), torch.rand(1, 1, 29, 35)
    m = torch.maximum(ir, vis)[0, 0].numpy()
    expected = np.clip(m + 0.3 * (m - cv2.GaussianBlur(m, (0, 0), 1.0)), 0, 1)  # OpenCV as the reference blur
    with torch.no_grad():
        assert np.abs(net(ir, vis)[0, 0].numpy() - expected).max() < 1e-6
    assert count_parameters(net) == 46617  # the gain is fixed, not a weight
    assert VFNConfig.from_dict(VFNConfig(skip="max", detail_gain=0.3).to_dict()).detail_gain == 0.3
    assert VFNConfig.from_dict({"num_blocks": 4, "skip": "max"}).detail_gain == 0.0  # files written before it
    for bad in ({"detail_gain": 0.3}, {"skip": "max", "detail_gain": -0.1}):
        with pytest.raises(ValueError, match="detail_gain"):
            VFNConfig(**bad)
