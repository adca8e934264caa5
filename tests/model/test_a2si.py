import pytest
import torch
import torch.nn.functional as F

from cldyn.model.a2si import A2SI, A2SIConfig
from cldyn.model.basis_bank import BankConfig, BasisVectorBank
from cldyn.model.ops import adaptive_avg_pool2d_traceable
from cldyn.model.reference import reference_compensate, reference_dynamic_conv, reference_vector_index
from cldyn.model.task_encoder import conv3_mean

SMALL_BANK = BankConfig(vector_num=8, embed_dim=32)


def _block(selection="trainable", live=True, **kw):
    torch.manual_seed(0)
    block = A2SI(A2SIConfig(selection=selection, **kw), SMALL_BANK)
    if live:  # a non-zero output conv (and task FiLM), so the compensation and its modulation are visible
        torch.nn.init.normal_(block.out_conv.weight, std=0.5)
        if block.cfg.task_encoder == "semantic":
            for last in (block.task_encoder.film_global[-1], block.task_encoder.film_spatial[-1]):
                torch.nn.init.normal_(last.weight, std=0.2)
    return block, BasisVectorBank(SMALL_BANK)


def test_zero_init_is_identity():
    block, bank = _block(live=False)
    block.train()
    x = torch.rand(3, 8, 12, 10)
    assert torch.equal(block(bank.weight, torch.rand(3, 5, 7, 2), x), x)


@pytest.mark.parametrize("selection", ["trainable", "upstream"])
def test_vectorised_matches_loop_reference(selection):
    block, bank = _block(selection)
    block.eval()
    x = torch.randn(5, 8, 17, 13)
    task = torch.randn(5, 16, 6, 5)
    # Fix selections so every kernel type occurs: filter j of sample i gets type (i + j) % 4.
    sel = block.select(bank.weight, task, x)
    forced = (torch.arange(5)[:, None] + torch.arange(4)[None]) % 4
    sel.types = forced
    sel.type_weights = F.one_hot(forced, 4).float()
    fast = block.dynamic_conv(x, sel)
    ref = reference_dynamic_conv(block, x, sel)
    assert (fast - ref).abs().max() < 1e-5
    assert (block.compensate(x, sel) - reference_compensate(block, x, sel)).abs().max() < 1e-5


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("channels_last", [False, True])
def test_inference_compensation_with_spare_slots_matches_loop(batch, channels_last):
    # At inference the BatchNorm folds into the kernels and the filter mean is a 1x1 conv per kernel type that
    # weighs spare slots (a sample with fewer filters of a type than another) 0. Uneven types exercise that, and a
    # channels-last input (the layout at inference on a CPU) must give the same result and stay channels-last.
    block, bank = _block()
    with torch.no_grad():  # a BatchNorm that is not the identity, so that folding it is checked
        block.post[0].running_mean.uniform_(-0.5, 0.5)
        block.post[0].running_var.uniform_(0.5, 2.0)
        block.post[0].weight.uniform_(0.5, 1.5)
        block.post[0].bias.uniform_(-0.5, 0.5)
    block.eval()
    torch.manual_seed(3)
    x = torch.randn(batch, 8, 17, 13)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    sel = block.select(bank.weight, torch.randn(batch, 16, 6, 5), x)
    forced = torch.tensor([[0, 1, 1, 3], [1, 1, 1, 3], [2, 2, 0, 0]])[:batch]
    sel.types, sel.type_weights = forced, F.one_hot(forced, 4).float()
    out = block.compensate(x, sel)
    assert (out - reference_compensate(block, x, sel)).abs().max() < 1e-5
    assert out.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def test_selection_distinct_within_set_and_matches_loop():
    block, bank = _block()
    block.train()
    torch.manual_seed(1)
    x, task = torch.randn(6, 8, 9, 9), torch.randn(6, 4, 3, 3)
    sel = block.select(bank.weight, task, x)
    for i in range(6):
        for t in sel.types[i].unique():
            chosen = sel.vector_index[i][sel.types[i] == t]
            assert len(chosen.unique()) == len(chosen)  # distinct within a set
    # The chosen vectors are rows of the chosen sets.
    rows = bank.weight[sel.types, sel.vector_index]
    assert torch.allclose(sel.vectors, rows, atol=1e-6)
    # Same rule as a loop over samples and types.
    basis_emb = sel.task_embedding[:, block.cfg.proto_dim // 2:]  # the basis half of the task embeddings
    r = block.basis_query(torch.cat((basis_emb, block.basis_image(block._embed_input(x))), 1))
    sims = F.normalize(r, dim=-1) @ F.normalize(bank.weight, dim=-1).transpose(1, 2)  # (S, B, V)
    sims = sims.permute(1, 0, 2)[torch.arange(6)[:, None], sel.types]  # (B, F, V): each filter's set
    assert torch.equal(sel.vector_index, reference_vector_index(sims, sel.types))


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_selection_distinct_for_many_inputs(mode):
    # The straight-through type weights are 1 only up to rounding (hard + soft - soft); the rank of a filter within
    # its type must still be exact, or two filters share a vector (seen with an earlier float rank).
    block, bank = _block(filter_num=8)
    block.train(mode == "train")
    torch.manual_seed(2)
    for _ in range(20):
        x, task = torch.randn(16, 8, 9, 9), torch.randn(16, 4, 3, 3)
        sel = block.select(bank.weight, task, x)
        key = sel.types * 100 + sel.vector_index  # (type, vector) pairs must be distinct within a sample
        assert all(len(k.unique()) == len(k) for k in key)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_static_compensation_matches_vectorised(mode):
    block, bank = _block()
    block.train(mode == "train")
    x, task = torch.randn(5, 8, 17, 13), torch.randn(5, 16, 6, 5)
    with torch.no_grad():
        sel = block.select(bank.weight, task, x)
        forced = (torch.arange(5)[:, None] + torch.arange(4)[None]) % 4  # every kernel type occurs
        sel.types, sel.type_weights = forced, F.one_hot(forced, 4).float()
        assert (block.compensate_static(x, sel) - block.compensate(x, sel)).abs().max() < 1e-5


@pytest.mark.parametrize("size", [(32, 32), (5, 7), (97, 1), (1, 1)])
def test_traceable_adaptive_pool_matches_torch(size):
    x = torch.rand(2, 3, 97, 131)
    assert (adaptive_avg_pool2d_traceable(x, size) - F.adaptive_avg_pool2d(x, size)).abs().max() < 1e-5


@pytest.mark.parametrize("encoder", ["semantic", "upstream"])
def test_gradients_reach_bank_queries_and_kernel_mlps(encoder):
    block, bank = _block(task_encoder=encoder)
    block.train()
    x, task = torch.randn(4, 8, 10, 10), torch.randn(4, 6, 5, 5)
    block(bank.weight, task, x).pow(2).mean().backward()
    assert bank.weight.grad is not None and bank.weight.grad.abs().sum() > 0
    pathway = ("type_task", "basis_task") if encoder == "upstream" else ("task_encoder",)
    for name in ("type_query", "type_image", "basis_query", "basis_image", *pathway):
        grads = [p.grad for p in getattr(block, name).parameters()]
        assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0, name
    k_grads = [p.grad for p in block.kernel_3x3.parameters()] + [p.grad for p in block.kernel_1x1.parameters()]
    assert sum(g.abs().sum() for g in k_grads if g is not None) > 0


def test_upstream_selection_gives_basis_query_no_gradient():
    block, bank = _block("upstream")
    block.train()
    x, task = torch.randn(4, 8, 10, 10), torch.randn(4, 6, 5, 5)
    block(bank.weight, task, x).pow(2).mean().backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in block.basis_query.parameters())
    assert bank.weight.grad.abs().sum() > 0


def test_conv3_mean_matches_running_the_conv():
    h = torch.randn(3, 5, 41)
    w = torch.randn(7, 5, 3)
    assert torch.allclose(conv3_mean(h, w), F.conv1d(h, w, padding=1).mean(-1), atol=1e-5)


def test_any_task_feature_shape_and_checks():
    block, bank = _block()
    block.eval()
    x = torch.randn(2, 8, 6, 6)
    for shape in [(2, 3), (2, 256, 1, 1), (2, 4, 20, 30)]:
        assert block(bank.weight, torch.randn(shape), x).shape == x.shape
    with pytest.raises(ValueError, match="batch"):
        block(bank.weight, torch.randn(3, 4, 2, 2), x)
    with pytest.raises(ValueError, match=r"\(B, 8, H, W\)"):
        block(bank.weight, torch.randn(2, 4), torch.randn(2, 4, 6, 6))


def test_eval_is_deterministic():
    block, bank = _block()
    block.eval()
    x, task = torch.randn(2, 8, 6, 6), torch.randn(2, 4, 3, 3)
    with torch.no_grad():
        assert torch.equal(block(bank.weight, task, x), block(bank.weight, task, x))


def test_bank_orthonormal():
    bank = BasisVectorBank()
    w = bank.weight
    assert w.shape == (4, 32, 256)
    gram = w @ w.transpose(1, 2)
    assert torch.allclose(gram, torch.eye(32).expand(4, 32, 32), atol=1e-5)


def test_embed_size_pools_only_large_maps():
    block, _ = _block()
    small = torch.randn(1, 8, 20, 30)
    assert block._embed_input(small) is small
    big = torch.randn(1, 8, 100, 64)
    assert block._embed_input(big).shape == (1, 8, 32, 32)
    full, _ = _block(embed_size=None)
    assert full._embed_input(big) is big


def test_semantic_pathway_gradient_reaches_every_parameter():
    block, bank = _block(task_encoder="semantic")
    block.train()
    x, task = torch.randn(4, 8, 10, 10), torch.randn(4, 6, 5, 5)
    block(bank.weight, task, x).pow(2).mean().backward()
    for name, p in block.task_encoder.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_compensation_with_a_trained_batchnorm_matches_the_loop(mode):
    # In eval mode the BatchNorm is folded into the dynamic kernels; give it statistics far from the identity.
    block, bank = _block()
    bn = block.post[0]
    torch.manual_seed(1)
    bn.running_mean.normal_(0, 0.5), bn.running_var.uniform_(0.2, 3.0)
    torch.nn.init.normal_(bn.weight, 1.0, 0.5), torch.nn.init.normal_(bn.bias, 0.0, 0.5)
    block.train(mode == "train")
    x, task = torch.randn(4, 8, 15, 11), torch.randn(4, 16, 5, 4)
    with torch.no_grad():
        sel = block.select(bank.weight, task, x, gumbel=torch.zeros(4, 4, 4))
        forced = (torch.arange(4)[:, None] + torch.arange(4)[None]) % 4  # every kernel type occurs
        sel.types, sel.type_weights = forced, F.one_hot(forced, 4).float()
        assert (block.compensate(x, sel) - reference_compensate(block, x, sel)).abs().max() < 1e-5
