import torch

from cldyn.loop.cagrad import cagrad, combine, pcgrad, project_to_simplex


def test_simplex_projection_hand_cases():
    assert torch.allclose(project_to_simplex(torch.tensor([0.2, 0.3, 0.5])), torch.tensor([0.2, 0.3, 0.5]))
    assert torch.allclose(project_to_simplex(torch.tensor([1.0, 1.0])), torch.tensor([0.5, 0.5]))
    assert torch.allclose(project_to_simplex(torch.tensor([3.0, 0.0, -1.0])), torch.tensor([1.0, 0.0, 0.0]))


def test_agreeing_gradients_give_the_mean():
    g = torch.tensor([1.0, -2.0, 0.5])
    assert torch.allclose(cagrad(torch.stack([g, g, g])), g, atol=1e-6)


def test_conflicting_pair_is_non_conflicting():
    # Unequal norms, a wide angle: the mean conflicts with the small gradient (mean . g2 < 0), but the CAGrad ball
    # (radius c ||g0|| = 0.81 around g0) reaches the half-plane d . g2 >= 0 (distance 0.5), so a direction good
    # for both tasks exists there and CAGrad must return one.
    g1, g2 = torch.tensor([4.0, 0.0]), torch.tensor([-1.0, 1.2])
    g = torch.stack([g1, g2])
    g0 = g.mean(0)
    assert g0 @ g2 < 0
    d = cagrad(g, c=0.5, rescale=False)
    assert d @ g1 >= 0 and d @ g2 >= 0
    # Primal property: d maximises the worst task's inner product over the ball ||d' - g0|| <= c ||g0||.
    assert (d - g0).norm() <= 0.5 * g0.norm() + 1e-4
    gen = torch.Generator().manual_seed(0)
    u = torch.randn(5000, 2, generator=gen)
    cand = g0 + 0.5 * g0.norm() * u / u.norm(dim=1, keepdim=True) * torch.rand(5000, 1, generator=gen).sqrt()
    assert float((g @ d).min()) >= float((cand @ g.t()).min(1).values.max()) - 1e-3


def test_cagrad_dual_optimum_by_grid():
    # For two tasks the dual is one-dimensional: check the solver against a fine grid search.
    from cldyn.loop.cagrad import cagrad_weights

    g = torch.tensor([[3.0, 1.0, 0.0], [-1.0, 2.0, 0.5]], dtype=torch.float64)
    gram = g @ g.t()
    w = cagrad_weights(gram, 0.5, iters=2000)
    g0 = g.mean(0)

    def obj(a):
        gw = a * g[0] + (1 - a) * g[1]
        return float(gw @ g0 + 0.5 * g0.norm() * gw.norm())

    grid = torch.linspace(0, 1, 10001, dtype=torch.float64)
    best = min(obj(float(a)) for a in grid)
    assert obj(float(w[0])) <= best + 1e-6


def test_pcgrad_and_mean():
    g1, g2 = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])
    p = pcgrad(torch.stack([g1, g2]), torch.Generator().manual_seed(0))
    # g1 projected off g2: (1,0) - (-1/2)(-1,1) = (0.5, 0.5); g2 off g1: (0, 1) -> mean (0.25, 0.75)
    assert torch.allclose(p, torch.tensor([0.25, 0.75]))
    assert torch.allclose(combine(torch.stack([g1, g2]), "mean"), torch.tensor([0.0, 0.5]))
