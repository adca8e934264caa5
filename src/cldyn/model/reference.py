"""Slow, obviously-correct reference implementations, used by the tests and by ``cldyn bench rsc`` to check (and
time) the vectorised code. Not for production use."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cldyn.model.a2si import A2SI, Selection, apply_film
from cldyn.model.basis_bank import KERNEL_TYPES


def reference_dynamic_conv(block: A2SI, x: torch.Tensor, sel: Selection) -> torch.Tensor:
    """A2SI's dynamic convolutions with a Python loop over samples and filters: ``(B, F, C, H, W)``."""
    k1, k3 = block.kernels(sel.vectors)
    b, f = sel.types.shape
    outs = []
    for i in range(b):
        per_filter = []
        for j in range(f):
            t = int(sel.types[i, j])
            size, dil = KERNEL_TYPES[t]
            w = (k1 if size == 1 else k3)[i, j]
            y = F.conv2d(x[i:i + 1], w, padding=dil * (size // 2), dilation=dil)
            if block.cfg.selection == "trainable":
                y = y * sel.type_weights[i, j, t]
            per_filter.append(y[0])
        outs.append(torch.stack(per_filter))
    return torch.stack(outs)


def reference_compensate(block: A2SI, x: torch.Tensor, sel: Selection) -> torch.Tensor:
    """:meth:`A2SI.compensate` built on :func:`reference_dynamic_conv`."""
    dyn = reference_dynamic_conv(block, x, sel)
    b, f, c, h, w = dyn.shape
    y = block.post(dyn.reshape(b * f, c, h, w)).view(b, f, c, h, w).mean(1)
    return x + block.out_conv(apply_film(y, sel.film))


def reference_vector_index(sims: torch.Tensor, types: torch.Tensor) -> torch.Tensor:
    """The basis choice rule with loops (as the public upstream code): the ``k`` filters of one kernel type in a
    sample take that set's top-``k`` vectors, in filter order. ``sims``: ``(B, F, V)``, ``types``: ``(B, F)``."""
    b, f = types.shape
    index = torch.empty(b, f, dtype=torch.long)
    for i in range(b):
        for t in types[i].unique().tolist():
            filters = (types[i] == t).nonzero().squeeze(1).tolist()
            top = sims[i, filters[0]].topk(len(filters)).indices.tolist()
            for k, j in enumerate(filters):
                index[i, j] = top[k]
    return index
