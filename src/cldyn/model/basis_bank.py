"""The Basis Vector Bank: learnable sets of orthonormal vectors from which A2SI builds convolution kernels.

Set ``s`` holds ``vector_num`` vectors of ``embed_dim`` values. Set 0 serves 1x1 kernels, sets 1..3 serve 3x3
kernels with dilation 1, 2 and 3 (:data:`KERNEL_TYPES`). Each set starts orthonormal (``nn.init.orthogonal_``,
rows of unit norm); training may move the vectors freely.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

# (kernel size, dilation) of each set; the paper's four kernel types.
KERNEL_TYPES: tuple[tuple[int, int], ...] = ((1, 1), (3, 1), (3, 2), (3, 3))


@dataclass(frozen=True)
class BankConfig:
    """Sizes of the bank (paper: 4 sets x 32 vectors x 256 dims)."""

    set_num: int = 4
    vector_num: int = 32
    embed_dim: int = 256


def orthonormal_rows(n: int, dim: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``(n, dim)`` with orthonormal rows (``n <= dim``), from a QR decomposition of a Gaussian matrix.

    Example:
        >>> v = orthonormal_rows(4, 8)
        >>> torch.allclose(v @ v.t(), torch.eye(4), atol=1e-5)
        True
    """
    if n > dim:
        raise ValueError(f"cannot have {n} orthonormal vectors in {dim} dimensions")
    a = torch.randn(dim, n, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)  # unique Q (positive diagonal of R), as nn.init.orthogonal_
    return q.t().contiguous().float()


class BasisVectorBank(nn.Module):
    """``weight``: ``(set_num, vector_num, embed_dim)``, each set orthonormal at initialisation."""

    def __init__(self, cfg: BankConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or BankConfig()
        if self.cfg.set_num != len(KERNEL_TYPES):
            raise ValueError(f"set_num must be {len(KERNEL_TYPES)} (one set per kernel type {KERNEL_TYPES})")
        c = self.cfg
        self.weight = nn.Parameter(torch.stack([orthonormal_rows(c.vector_num, c.embed_dim)
                                                for _ in range(c.set_num)]))

    def forward(self) -> torch.Tensor:
        return self.weight

    def extra_repr(self) -> str:
        c = self.cfg
        return f"sets={c.set_num}, vectors={c.vector_num}, dim={c.embed_dim}"
