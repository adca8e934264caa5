"""Combining per-task gradients: CAGrad (Liu et al., "Conflict-Averse Gradient Descent for Multi-task Learning",
NeurIPS 2021), with the mean and PCGrad (Yu et al., NeurIPS 2020) for ablations.

All functions take the task gradients stacked as ``G`` ``(T, P)`` (one flattened gradient per task) and return one
update direction ``(P,)``.
"""

from __future__ import annotations

import torch


def project_to_simplex(v: torch.Tensor) -> torch.Tensor:
    """Euclidean projection of ``(T,)`` onto the probability simplex (Duchi et al., 2008), vectorised.

    Example:
        >>> project_to_simplex(torch.tensor([2.0, 0.0]))
        tensor([1., 0.])
    """
    u, _ = torch.sort(v, descending=True)
    css = u.cumsum(0) - 1
    k = torch.arange(1, v.numel() + 1, dtype=v.dtype, device=v.device)
    rho = (u - css / k > 0).nonzero().max()
    theta = css[rho] / (rho + 1)
    return (v - theta).clamp(min=0)


def cagrad_weights(gram: torch.Tensor, c: float = 0.5, iters: int = 300) -> torch.Tensor:
    """Simplex weights ``w`` minimising ``w^T G g0 + c ||g0|| ||G^T w||`` (the CAGrad dual), ``g0`` the mean gradient.

    Args:
        gram: ``(T, T)`` Gram matrix ``G G^T`` (float64 recommended).
        c: CAGrad's conflict radius (paper default 0.5).
    """
    t = gram.shape[0]
    b = torch.full((t,), 1.0 / t, dtype=gram.dtype, device=gram.device)
    g0_norm = (b @ gram @ b).clamp(min=0).sqrt()
    scale = gram.diagonal().max().clamp(min=1e-30)  # the objective is rescaled so one step size fits all problems
    a = gram / scale
    lin = a @ b
    rad = c * g0_norm / scale.sqrt()
    w = b.clone()
    best_w, best_f = w, float("inf")
    for i in range(iters):
        gw_norm = (w @ a @ w).clamp(min=1e-30).sqrt()
        f = float(w @ lin + rad * gw_norm)
        if f < best_f:
            best_w, best_f = w, f
        grad = lin + rad * (a @ w) / gw_norm
        w = project_to_simplex(w - grad * (0.5 / (1 + i) ** 0.5))
    return best_w


def cagrad(grads: torch.Tensor, c: float = 0.5, rescale: bool = True) -> torch.Tensor:
    """The CAGrad direction ``g0 + c ||g0|| / ||g_w|| * g_w`` (``g_w = G^T w``).

    With ``rescale`` the result is divided by ``1 + c`` (one of the official code's rescalings), so that when all
    task gradients agree the direction equals their mean.
    """
    g = grads.double()
    gram = g @ g.t()
    w = cagrad_weights(gram, c)
    g0 = g.mean(0)
    gw = w @ g
    lam = c * g0.norm() / (gw.norm() + 1e-12)
    d = g0 + lam * gw
    if rescale:
        d = d / (1 + c)
    return d.to(grads.dtype)


def pcgrad(grads: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """PCGrad: each task gradient loses its component along any other task gradient it conflicts with (in a
    random order), then the results are averaged."""
    t = grads.shape[0]
    out = grads.clone()
    for i in range(t):
        for j in torch.randperm(t, generator=generator).tolist():
            if j == i:
                continue
            dot = out[i] @ grads[j]
            if dot < 0:
                out[i] = out[i] - dot / (grads[j] @ grads[j]).clamp(min=1e-30) * grads[j]
    return out.mean(0)


def combine(grads: torch.Tensor, method: str = "cagrad", c: float = 0.5,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """Dispatch: ``cagrad``, ``mean`` or ``pcgrad``."""
    if method == "cagrad":
        return cagrad(grads, c)
    if method == "mean":
        return grads.mean(0)
    if method == "pcgrad":
        return pcgrad(grads, generator)
    raise ValueError(f"unknown gradient aggregation {method!r}; use cagrad, mean or pcgrad")
