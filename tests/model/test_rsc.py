import pytest
import torch

from cldyn.model.rsc import RSC, CLDyN, RSCConfig
from cldyn.model.vfn import VFN, VFNConfig, with_reach_head


@pytest.fixture
def model():
    torch.manual_seed(0)
    return CLDyN(VFN())


@pytest.mark.parametrize("feat_shape", [(2, 256, 3, 4), (2, 5), (2, 64, 20, 20)])
def test_init_equals_vfn_exactly(model, feat_shape):
    ir, vis = torch.rand(2, 1, 23, 31), torch.rand(2, 3, 23, 31)
    model.train()  # training mode too: A2SI BN and Gumbel noise must not leak through the zero conv
    with torch.no_grad():
        assert torch.equal(model(ir, vis, torch.randn(feat_shape)), model.base(ir, vis))
        gray = torch.rand(2, 1, 23, 31)
        assert torch.equal(model(ir, gray, torch.randn(feat_shape)), model.vfn(ir, gray))


def test_vfn_frozen_and_rsc_trainable(model):
    model.train()
    assert not model.vfn.training and not any(p.requires_grad for p in model.vfn.parameters())
    assert all(p.requires_grad for p in model.rsc.parameters())
    assert len(model.rsc.ir_blocks) == 3 and len(model.rsc.vis_blocks) == 3


def test_compensation_changes_output_once_trained(model):
    for blk in list(model.rsc.ir_blocks) + list(model.rsc.vis_blocks):
        torch.nn.init.normal_(blk.out_conv.weight, std=0.3)
    model.eval()
    ir, vis = torch.rand(1, 1, 16, 16), torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        a = model(ir, vis, torch.randn(1, 8, 2, 2))
        assert not torch.allclose(a, model.base(ir, vis))


def test_config_round_trip_and_mismatch():
    cfg = RSCConfig()
    assert RSCConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="does not fit"):
        CLDyN(VFN(VFNConfig(num_blocks=2)), RSC(cfg))


def test_the_upstream_switch_restores_the_public_pathway_and_reads_old_weights():
    old = RSCConfig().to_dict()
    del old["a2si"]["task_encoder"]  # weights saved before the switch existed
    cfg = RSCConfig.from_dict(old)
    assert cfg.a2si.task_encoder == "upstream"
    torch.manual_seed(0)
    rsc = RSC(cfg)
    keys = list(rsc.state_dict())
    assert any(".type_task." in k for k in keys) and any(".basis_task." in k for k in keys)
    assert not any(".task_encoder." in k for k in keys)  # the semantic pathway is absent, not merely unused
    blk = rsc.ir_blocks[0]
    sel = blk.select(rsc.bank.weight, torch.randn(2, 16, 3, 3), torch.rand(2, 8, 12, 12))
    assert sel.film is None  # no FiLM: the compensation is the upstream X + out_conv(mean of filters)
    assert RSCConfig.from_dict(RSCConfig().to_dict()).a2si.task_encoder == "semantic"


def _live(rsc: RSC) -> RSC:
    for blk in list(rsc.ir_blocks) + list(rsc.vis_blocks):
        torch.nn.init.normal_(blk.out_conv.weight, std=0.3)
    return rsc


def test_reach_head_carries_the_compensation_of_a_max_skip_vfn():
    torch.manual_seed(3)
    paper = VFN().eval()
    for bn in (m for m in paper.modules() if isinstance(m, torch.nn.BatchNorm2d)):  # non-trivial statistics
        bn.running_mean.uniform_(-0.1, 0.1)
        bn.running_var.uniform_(0.5, 1.5)
    # A max-skip VFN warm-started from it (its zero last conv: the correction is 0, whatever the features).
    maxskip = VFN(VFNConfig(skip="max")).eval()
    last = f"decoder.head.{len(maxskip.decoder.head) - 1}."
    maxskip.load_state_dict({**paper.state_dict(), **{k: v for k, v in maxskip.state_dict().items()
                                                       if k.startswith(last)}})
    reach = with_reach_head(maxskip, paper)
    rsc = _live(RSC()).eval()  # eval: no Gumbel noise, BatchNorm on running statistics
    ir, vis = torch.rand(2, 1, 24, 28), torch.rand(2, 1, 24, 28)
    feats = torch.randn(2, 8, 3, 3)
    with torch.no_grad():
        assert torch.equal(reach(ir, vis), maxskip(ir, vis))  # plain fusion ignores the head
        assert torch.equal(CLDyN(maxskip, rsc).eval()(ir, vis, feats), maxskip(ir, vis))  # no reach at all
        fresh = CLDyN(reach, RSC()).eval()
        assert torch.equal(fresh(ir, vis, feats), reach(ir, vis))  # a fresh RSC reproduces the VFN exactly
        # With the head, the image changes by what the same RSC changes in the paper-form VFN's image.
        change = CLDyN(reach, rsc).eval()(ir, vis, feats) - reach(ir, vis)
        expected = CLDyN(paper, rsc).eval()(ir, vis, feats) - paper(ir, vis)
        inside = ((reach(ir, vis) + expected) > 0) & ((reach(ir, vis) + expected) < 1)  # away from the clip
        assert expected.abs().mean() > 2e-3  # about 1.6 grey levels: a real change
        assert torch.allclose(change[inside], expected[inside], atol=1e-6)
        # The base pass's reach image, passed on, spares the compensated pass a second base pass: same image.
        loop = CLDyN(reach, rsc).eval()
        base, base_reach = loop.base_and_reach(ir, vis)
        assert torch.equal(base, loop.base(ir, vis))
        assert torch.equal(base_reach, reach.decoder.reach_image(reach.decoder.trunk(reach.forward_features(ir, vis))))
        assert torch.equal(loop(ir, vis, feats, base_reach=base_reach), loop(ir, vis, feats))
        with pytest.raises(ValueError, match="base_reach must be"):
            loop(ir, vis, feats, base_reach=base_reach[..., 1:, :])
        assert CLDyN(paper, rsc).base_and_reach(ir, vis)[1] is None
    with pytest.raises(ValueError, match="reach_head"):
        VFNConfig(reach_head=True)
    with pytest.raises(ValueError, match="with_reach_head"):
        with_reach_head(paper, paper)
    assert VFNConfig.from_dict({"skip": "max"}).reach_head is False  # files written before the option


def test_base_luma_is_the_vfn_luminance_before_the_colour_is_put_back():
    from cldyn.model.color import replace_luma, rgb_to_luma

    torch.manual_seed(5)
    loop = CLDyN(VFN().eval(), RSC())
    ir, vis = torch.rand(2, 1, 16, 20), torch.rand(2, 3, 16, 20)  # random colours: some leave the gamut
    with torch.no_grad():
        y, reach = loop.base_luma_and_reach(ir, vis)
        assert torch.equal(y, loop.vfn(ir, rgb_to_luma(vis))) and reach is None
        base, _ = loop.base_and_reach(ir, vis)
        assert torch.equal(base, replace_luma(vis, y))
        assert (rgb_to_luma(base) - y).abs().max() > 1e-3  # why the luminance is given itself: the clip moves it
        gray = torch.rand(2, 1, 16, 20)
        assert torch.equal(loop.base_luma_and_reach(ir, gray)[0], loop.base_and_reach(ir, gray)[0])


def test_the_no_closed_loop_ablation_reads_zeros_whatever_the_task_features():
    torch.manual_seed(0)
    closed, ablation = RSC(RSCConfig()), RSC(RSCConfig(closed_loop=False))
    ablation.load_state_dict(closed.state_dict())
    for blk in [*closed.ir_blocks, *closed.vis_blocks, *ablation.ir_blocks, *ablation.vis_blocks]:
        torch.manual_seed(1)
        torch.nn.init.normal_(blk.out_conv.weight, std=0.3)  # a trained-looking block, the same in both
        for last in (blk.task_encoder.film_global[-1], blk.task_encoder.film_spatial[-1]):
            torch.nn.init.normal_(last.weight, std=0.3)
    vfn = VFN()
    ir, vis = torch.rand(1, 1, 16, 16), torch.rand(1, 3, 16, 16)
    a, b = torch.randn(1, 8, 4, 4), 3 * torch.randn(1, 8, 4, 4)
    with torch.no_grad():
        with_closed = [CLDyN(vfn, closed).eval()(ir, vis, t) for t in (a, b)]
        with_ablation = [CLDyN(vfn, ablation).eval()(ir, vis, t) for t in (a, b)]
        zeros = CLDyN(vfn, closed).eval()(ir, vis, torch.zeros_like(a))
    assert not torch.allclose(*with_closed)  # the task matters to the closed-loop RSC ...
    assert torch.equal(with_ablation[0], zeros) and torch.equal(with_ablation[1], zeros)  # ... not to the ablation
    assert RSCConfig.from_dict(RSCConfig(closed_loop=False).to_dict()).closed_loop is False
    old = RSCConfig().to_dict()
    del old["closed_loop"]  # weights saved before the switch was recorded
    assert RSCConfig.from_dict(old).closed_loop is True


def test_a_tone_head_starts_as_the_identity_follows_the_task_and_not_in_the_ablation():
    from cldyn.model.color import rgb_to_luma
    from cldyn.model.tone import ToneConfig

    torch.manual_seed(0)
    vfn = VFN()
    closed = RSC(RSCConfig(tone=ToneConfig(knots=8)))
    ablation = RSC(RSCConfig(tone=ToneConfig(knots=8), closed_loop=False))
    ablation.load_state_dict(closed.state_dict())
    ir, vis = torch.rand(1, 1, 16, 16), torch.rand(1, 3, 16, 16)
    a, b = torch.randn(1, 8, 4, 4), 3 * torch.randn(1, 8, 4, 4) + 1
    with torch.no_grad():
        assert torch.equal(CLDyN(vfn, closed).eval()(ir, vis, a), CLDyN(vfn).eval().base(ir, vis))  # identity
        for head in (closed.tone, ablation.tone):
            torch.manual_seed(2)
            torch.nn.init.normal_(head.net[-1].weight, std=1.0)
        with_closed = [CLDyN(vfn, closed).eval()(ir, vis, t) for t in (a, b)]
        with_ablation = [CLDyN(vfn, ablation).eval()(ir, vis, t) for t in (a, b)]
        y = rgb_to_luma(vis)
        untoned = CLDyN(vfn, closed).untoned_luma(ir, y, a)
        assert torch.equal(CLDyN(vfn, closed).compensated_luma(ir, y, a), closed.tone(a, untoned))
    assert not torch.allclose(*with_closed)  # the curve follows the task network's features ...
    assert torch.equal(*with_ablation)  # ... except in the ablation, which reads zeros
    cfg = RSCConfig.from_dict(closed.cfg.to_dict())
    assert cfg == closed.cfg and cfg.tone.knots == 8
    old = RSCConfig().to_dict()
    del old["tone"]  # weights saved before the tone head existed
    assert RSCConfig.from_dict(old).tone.knots == 0 and RSC(RSCConfig.from_dict(old)).tone is None


def test_at_strength_limits_each_images_mean_change_by_hand():
    from cldyn.model.rsc import at_strength

    base = torch.zeros(2, 1, 2, 2)
    full = torch.stack([torch.full((1, 2, 2), 4 / 255), torch.tensor([[[12, 0], [0, 0]]]) / 255])  # means 4 and 3
    out = at_strength(base, full, 0.5, max_change=2.0) * 255  # limit: 0.5 * 2 = 1 level on average
    assert torch.allclose(out[0], torch.full((1, 2, 2), 1.0))  # mean 4 * (2 / 4) * 0.5 = 1
    assert torch.allclose(out[1], torch.tensor([[[4.0, 0], [0, 0]]]))  # mean 3 * (2 / 3) * 0.5 = 1
    assert torch.equal(at_strength(base, full, 0.0, max_change=2.0), base)  # strength 0: the VFN's own, bit for bit
    small = at_strength(base, full / 10, 1.0, max_change=2.0) * 255  # means 0.4 and 0.3: under the limit, unchanged
    assert torch.allclose(small, full * 255 / 10)


class _TableConfidence:
    """A stand-in task network whose confidence is a fixed table (one value per candidate image), recording what
    it was shown."""

    def __init__(self, table):
        self.table, self.seen = torch.tensor(table), []

    def confidence(self, image):
        self.seen.append(image.shape)
        return self.table


def test_choose_strength_takes_per_image_the_candidate_the_network_is_surest_of(model):
    from cldyn.model.color import luma_of, with_colour_of
    from cldyn.model.rsc import AUTO_STRENGTHS, at_strength

    torch.manual_seed(1)
    vis, base_y = torch.rand(2, 3, 20, 40), torch.rand(2, 1, 20, 40)
    comp_y = (base_y + 0.2 * torch.randn(2, 1, 20, 40)).clamp(0, 1)
    # candidates in order s = 0, 0.5, 1, images 0 and 1: image 0 is surest at 0.5, image 1 at 0
    task = _TableConfidence([0.1, 0.9, 0.5, 0.2, 0.3, 0.8])
    image, chosen = model.choose_strength(vis, base_y, comp_y, task)
    assert AUTO_STRENGTHS == (0.0, 0.5, 1.0) and chosen.tolist() == [0.5, 0.0]
    assert task.seen == [torch.Size([6, 3, 32, 64])]  # all six at once, padded as the network sees them in fuse
    assert torch.equal(image[1], with_colour_of(vis, base_y)[1])  # strength 0: the VFN's image, bit for bit
    half = with_colour_of(vis, at_strength(base_y, comp_y, 0.5, model.max_change))
    assert torch.equal(image[0], half[0])
    assert not torch.allclose(luma_of(image[:1]), base_y[:1])


def test_auto_strength_through_fuse_and_its_refusal_without_a_task(model):
    for blk in list(model.rsc.ir_blocks) + list(model.rsc.vis_blocks):
        torch.nn.init.normal_(blk.out_conv.weight, std=0.3)
    model.eval()

    class Surest(_TableConfidence):  # surest at full strength for every image
        def features(self, image):
            return image.mean(dim=(2, 3), keepdim=True).repeat(1, 8, 2, 2)

    ir, vis = torch.rand(2, 1, 32, 32), torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        auto = model.fuse(ir, vis, Surest([0.0, 0.0, 0.1, 0.1, 0.2, 0.2]), strength="auto")
        full = model.fuse(ir, vis, Surest([]), strength=1.0)
        assert torch.equal(auto, full)
        feats = torch.randn(2, 8, 2, 2)
        with pytest.raises(ValueError, match="strength 'auto' needs the task network"):
            model.customised(ir, vis, feats, model.base_luma_and_reach(ir, vis)[0], strength="auto")
