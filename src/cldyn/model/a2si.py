"""A2SI: adaptive, task-aware semantic injection (one block of CLDyN's RSC module).

Given a frozen task network's features ``T`` (any ``(B, Ct, h, w)``) and one encoder's image features ``X``
``(B, C, H, W)``, an A2SI block

1. embeds the task (:mod:`cldyn.model.task_encoder`: ``semantic`` by default, or the public code's ``upstream``
   pathway) and the image (conv, BN, LeakyReLU, global pool), and turns both into ``filter_num`` queries;
2. picks each filter's kernel type (1x1, or 3x3 with dilation 1/2/3) by the cosine similarity of its query with fixed
   orthonormal prototypes of the types, through a hard Gumbel-softmax (tau 0.5, straight-through);
3. picks, for each filter, a basis vector of the chosen type's set in the
   :class:`~cldyn.model.basis_bank.BasisVectorBank` by cosine similarity with a second task+image query (the ``k``
   filters of one type in a sample take the top-``k`` vectors, distinct);
4. maps each chosen vector through an MLP to a ``C x C`` 1x1 or 3x3 kernel, convolves ``X`` with it (per sample and
   filter), applies BN + LeakyReLU, averages over filters, modulates the mean with the task's FiLM (``semantic``
   only: a per-channel and a spatial scale and shift from the task features), and adds the result to ``X`` through
   a zero-initialised 1x1 conv, so a fresh block is the identity.

Vectorised: the dynamic convolutions of all samples and filters of one kernel type run as one grouped convolution
(a loop over the 4 kernel types only). The query networks are trainable: the basis choice passes gradient by a
straight-through estimator (forward: the chosen vector; backward: a softmax over the still-available vectors of the
set), and each filter's output is multiplied by its hard type weight (1 forward, Gumbel gradient backward). The
public upstream code gives its basis-query network no gradient and the type choice gradient only through the bank;
``selection="upstream"`` reproduces that behaviour for ablations.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cldyn.model.basis_bank import KERNEL_TYPES, BankConfig, orthonormal_rows
from cldyn.model.ops import adaptive_avg_pool2d, exporting, is_channels_last
from cldyn.model.task_encoder import (
    TASK_ENCODERS,
    SemanticTaskEncoder,
    TaskStatistics,
    UpstreamTaskEmbedding,
    as_statistics,
)


@dataclass(frozen=True)
class A2SIConfig:
    """A2SI settings (paper defaults).

    Attributes:
        channels: image feature channels ``C`` (the VFN width, 8).
        filter_num: dynamic filters per block (4).
        proto_dim: dimension of the kernel-type prototypes and queries (16, as upstream).
        tau: Gumbel-softmax temperature of the kernel-type choice (0.5).
        select_tau: temperature of the softmax that carries the basis choice's straight-through gradient.
        selection: ``trainable`` (straight-through basis choice, type weights on the outputs) or ``upstream``.
        negative_slope: LeakyReLU slope (0.2).
        task_encoder: the task-requirement pathway, ``semantic`` (quantile signature + spatial FiLM) or
            ``upstream`` (the public code's flattened-sequence embedding, for ablations and older weights).
        quantiles: ``k`` of the ``semantic`` signature (16).
        embed_size: the image features are average-pooled to at most this many pixels a side before the image
            embeddings (which end in a global pool anyway). The upstream code runs its 64- and 128-channel
            embedding convs at full resolution: about 60 GFLOP per block for a 320x320 batch of 4, most of a
            closed-loop step on a CPU. ``None`` restores full resolution.
    """

    channels: int = 8
    filter_num: int = 4
    proto_dim: int = 16
    tau: float = 0.5
    select_tau: float = 0.1
    selection: str = "trainable"
    negative_slope: float = 0.2
    embed_size: int | None = 32
    task_encoder: str = "semantic"
    quantiles: int = 16

    def __post_init__(self) -> None:
        if self.selection not in ("trainable", "upstream"):
            raise ValueError(f"selection must be 'trainable' or 'upstream', got {self.selection!r}")
        if self.task_encoder not in TASK_ENCODERS:
            raise ValueError(f"task_encoder must be one of {', '.join(TASK_ENCODERS)}, got {self.task_encoder!r}")


def apply_film(y: torch.Tensor, film: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
    """``y * scale + shift`` for a FiLM ``(scale, shift)`` = ``(1 + gamma, beta)`` (``y`` unchanged without one)."""
    if film is None:
        return y
    scale, shift = film
    return torch.addcmul(shift, y, scale)


def _image_embedding(cin: int, widths: tuple[int, ...], slope: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for w in widths:
        layers += [nn.Conv2d(cin, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.LeakyReLU(slope)]
        cin = w
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())


def _mlp(cin: int, hidden: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(cin, hidden), nn.LayerNorm(hidden), nn.ReLU(), nn.Linear(hidden, cout))


@dataclass
class Selection:
    """What an A2SI block chose for a batch: ``types`` ``(B, F)`` kernel-type indices, ``type_weights``
    ``(B, F, S)`` hard one-hot (with straight-through gradient), ``vector_index`` ``(B, F)`` basis indices within
    the chosen set, ``vectors`` ``(B, F, D)`` the chosen basis vectors, ``film`` the task's FiLM ``(1 + gamma, beta)``
    ``(B, C, H, W)`` (``semantic`` task encoder; ``None`` for ``upstream``), ``task_embedding`` ``(B, E)`` the task
    halves of the two queries, side by side (for diagnostics)."""

    types: torch.Tensor
    type_weights: torch.Tensor
    vector_index: torch.Tensor
    vectors: torch.Tensor
    film: tuple[torch.Tensor, torch.Tensor] | None = None
    task_embedding: torch.Tensor | None = None


class A2SI(nn.Module):
    """One A2SI block. ``forward(bank, task_features, image_features) -> compensated image features``.

    Example:
        >>> from cldyn.model.basis_bank import BasisVectorBank
        >>> bank, block = BasisVectorBank(), A2SI()
        >>> x = torch.rand(2, 8, 16, 16)
        >>> torch.equal(block(bank.weight, torch.rand(2, 32, 4, 4), x), x)  # zero-initialised output conv
        True
    """

    def __init__(self, cfg: A2SIConfig | None = None, bank: BankConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or A2SIConfig()
        self.bank_cfg = bank = bank or BankConfig()
        c, p, d, s = cfg.channels, cfg.proto_dim, bank.embed_dim, bank.set_num
        slope = cfg.negative_slope
        if cfg.task_encoder == "upstream":
            self.type_task = UpstreamTaskEmbedding(p // 2, slope)
            self.basis_task = UpstreamTaskEmbedding(d // 2, slope)
        else:
            self.task_encoder = SemanticTaskEncoder(c, p // 2, d // 2, cfg.quantiles, slope=slope)
        # Kernel-type choice.
        self.type_image = _image_embedding(c, (p // 2,), slope)
        self.type_query = _mlp(p, cfg.filter_num * p // 2, cfg.filter_num * p)
        self.register_buffer("prototypes", orthonormal_rows(s, p, torch.Generator().manual_seed(s * 1000 + p)))
        # Basis-vector choice.
        self.basis_image = _image_embedding(c, (d // 4, d // 2), slope)
        self.basis_query = _mlp(d, d // 4, d)
        # Basis vector -> kernel.
        self.kernel_1x1 = _mlp(d, d // 4, c * c)
        self.kernel_3x3 = _mlp(d, d // 4, 9 * c * c)
        self.post = nn.Sequential(nn.BatchNorm2d(c), nn.LeakyReLU(slope))
        self.out_conv = nn.Conv2d(c, c, 1)
        nn.init.zeros_(self.out_conv.weight)
        nn.init.zeros_(self.out_conv.bias)

    def task_pathway_parameters(self) -> list[nn.Parameter]:
        """The parameters of the task encoder (``semantic``) or the two task embeddings (``upstream``)."""
        if self.cfg.task_encoder == "upstream":
            return [*self.type_task.parameters(), *self.basis_task.parameters()]
        return list(self.task_encoder.parameters())

    # -- choices -----------------------------------------------------------------------------------------------

    def _embed_input(self, image_features: torch.Tensor) -> torch.Tensor:
        """What the image embeddings see: the features, average-pooled to at most ``embed_size`` a side."""
        n = self.cfg.embed_size
        h, w = image_features.shape[-2:]
        if n is None or (h <= n and w <= n):
            return image_features
        return adaptive_avg_pool2d(image_features, (min(h, n), min(w, n)))

    def select(self, bank: torch.Tensor, task_features: torch.Tensor | TaskStatistics, image_features: torch.Tensor,
               gumbel: torch.Tensor | None = None) -> Selection:
        """Kernel types and basis vectors for every sample and filter.

        ``gumbel``: in training, the Gumbel noise ``(B, F, S)`` of the kernel-type choice (standard Gumbel samples);
        ``None`` draws it from torch's generator. Given explicitly, a sample's noise can follow it to whichever
        process trains on it (see :mod:`cldyn.training.distributed`).
        """
        b, f = image_features.shape[0], self.cfg.filter_num
        stats = as_statistics(task_features)  # the statistics shared by the blocks of one pass (RSC computes once)
        if stats.features.shape[0] != b:
            raise ValueError(f"A2SI: task features batch {stats.features.shape[0]} != image batch {b}")
        small = self._embed_input(image_features)
        film = None
        if self.cfg.task_encoder == "upstream":
            seq = stats.features.flatten(1)
            type_emb, basis_emb = self.type_task(seq), self.basis_task(seq)
        else:
            type_emb, basis_emb, signature = self.task_encoder.embed(stats)
            film = self.task_encoder.modulation(stats, signature, image_features.shape[-2:],
                                                channels_last=is_channels_last(image_features))
        q = self.type_query(torch.cat((type_emb, self.type_image(small)), 1)).view(b, f, -1)
        logits = F.normalize(q, dim=-1) @ F.normalize(self.prototypes, dim=-1).t()  # (B, F, S) cosine
        if self.training:
            if gumbel is None:
                gumbel = -torch.empty_like(logits).exponential_().log()  # as F.gumbel_softmax draws it
            soft = F.softmax((logits + gumbel.to(logits)) / self.cfg.tau, dim=-1)
            hard = F.one_hot(soft.argmax(-1), logits.shape[-1]).to(soft.dtype)
            type_w = hard - soft.detach() + soft  # straight-through
        else:  # deterministic at inference: the most similar type, no Gumbel noise
            soft = F.softmax(logits / self.cfg.tau, dim=-1)
            hard = F.one_hot(logits.argmax(-1), logits.shape[-1]).to(soft.dtype)
            type_w = hard + soft - soft.detach()
        types = type_w.detach().argmax(-1)  # (B, F)

        set_bank = torch.einsum("bfs,svd->bfvd", type_w, bank)  # the chosen set's vectors, per filter
        r = self.basis_query(torch.cat((basis_emb, self.basis_image(small)), 1))  # (B, D)
        sims = torch.einsum("bd,bfvd->bfv", F.normalize(r, dim=-1), F.normalize(set_bank, dim=-1))
        # The k-th filter of a type in a sample takes that set's k-th most similar vector: distinct within a set.
        # In integers: the straight-through weights are 1 only up to rounding (hard + soft - soft), and a rank
        # truncated from 0.99999994 to 0 would give two filters the same vector.
        onehot = F.one_hot(types, logits.shape[-1])
        rank = (onehot.cumsum(1) * onehot).sum(-1) - 1  # (B, F)
        order = sims.detach().argsort(-1, descending=True)
        index = order.gather(-1, rank[..., None]).squeeze(-1)  # (B, F)
        vectors = set_bank.gather(2, index[..., None, None].expand(-1, -1, 1, set_bank.shape[-1])).squeeze(2)
        if self.cfg.selection == "trainable" and torch.is_grad_enabled():
            position = order.argsort(-1)  # where each vector sits in the ranking
            taken = position < rank[..., None]  # vectors given to earlier filters of the same type
            soft = F.softmax((sims / self.cfg.select_tau).masked_fill(taken, float("-inf")), dim=-1)
            surrogate = torch.einsum("bfv,bfvd->bfd", soft, set_bank)
            vectors = vectors + surrogate - surrogate.detach()
        return Selection(types, type_w, index, vectors, film, torch.cat((type_emb, basis_emb), 1))

    def kernels(self, vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """1x1 kernels ``(B, F, C, C, 1, 1)`` and 3x3 kernels ``(B, F, C, C, 3, 3)`` for every filter's vector."""
        f, c = self.cfg.filter_num, self.cfg.channels
        return (self.kernel_1x1(vectors).view(-1, f, c, c, 1, 1), self.kernel_3x3(vectors).view(-1, f, c, c, 3, 3))

    # -- compensation ------------------------------------------------------------------------------------------

    def _type_convs(self, image_features: torch.Tensor, sel: Selection,
                    affine: tuple[torch.Tensor, torch.Tensor] | None = None):
        """For each kernel type in use: ``(of_type (B, F), slots, y (1, B * slots * C, H, W))``, the outputs of one
        convolution grouped by sample. Each sample's filters of the type are stacked as output channels of one
        kernel, so a sample's features are read once, not once per filter (on a CPU about 3x faster than a group per
        filter, at one sample and four filters); ``slots`` is the most filters of the type in one sample, and a
        sample with fewer gets zero kernels in its spare slots (the caller drops their outputs). With trainable
        selection the type weights (1 forward, Gumbel gradient backward) are folded into the kernels: the conv is
        linear. ``affine``: a per-output-channel ``(scale, shift)`` folded into the kernels and a bias (an
        inference-mode BatchNorm)."""
        b, c, h, w = image_features.shape
        k1, k3 = self.kernels(sel.vectors)  # (B, F, C, C, k, k)
        # One sample: no reshape. Reshaped to its own shape, a channels-last (1, C, H, W) tensor gets a batch stride
        # of C, which oneDNN no longer takes for channels-last: the convolution copied it to NCHW and ran about 5x
        # slower (3x3, 8 -> 16 channels at 640x480: 24 ms instead of 4).
        x = image_features if b == 1 else image_features.reshape(1, b * c, h, w)
        for t, (size, dilation) in enumerate(KERNEL_TYPES):
            of_type = sel.types == t  # (B, F)
            rows, filters = of_type.nonzero(as_tuple=True)  # sample-major, filters ascending
            if rows.numel() == 0:
                continue
            slots = int(of_type.sum(1).max())
            slot = (of_type.cumsum(1) - 1)[rows, filters]  # the k-th filter of the type in its sample: slot k
            kernels = (k1 if size == 1 else k3)[rows, filters]  # (n, C, C, k, k)
            if self.cfg.selection == "trainable":
                kernels = kernels * sel.type_weights[rows, filters, t].view(-1, 1, 1, 1, 1)
            bias = None
            if affine is not None:
                kernels = kernels * affine[0].view(1, c, 1, 1, 1)
                bias = affine[1].repeat(b * slots)
            if rows.numel() != b * slots:  # spare slots: zero kernels
                kernels = kernels.new_zeros(b * slots, c, c, size, size).index_copy(0, rows * slots + slot, kernels)
            y = F.conv2d(x, kernels.reshape(b * slots * c, c, size, size), bias, padding=dilation * (size // 2),
                         dilation=dilation, groups=b)
            yield of_type, slots, y

    def _type_groups(self, image_features: torch.Tensor, sel: Selection):
        """For each kernel type in use: the flat ``(sample * F + filter)`` indices of its filters (sample-major) and
        their outputs ``(n, C, H, W)`` (:meth:`_type_convs` without the spare slots)."""
        b, c, h, w = image_features.shape
        f = self.cfg.filter_num
        for of_type, slots, y in self._type_convs(image_features, sel):
            rows, filters = of_type.nonzero(as_tuple=True)
            y = y.view(b * slots, c, h, w)
            if rows.numel() != y.shape[0]:
                y = y.index_select(0, rows * slots + (of_type.cumsum(1) - 1)[rows, filters])
            yield rows * f + filters, y

    def _slot_mean_kernel(self, of_type: torch.Tensor, slots: int, like: torch.Tensor) -> torch.Tensor:
        """``(B * C, slots * C, 1, 1)`` kernel that sums each sample's ``slots`` filter outputs of one type, divided by
        ``filter_num``, with the spare slots (:meth:`_type_convs`) weighted 0. A 1x1 convolution and not a sum over a
        slot axis: on channels-last outputs that strided reduction (or ``index_add_``) took several times as long as
        the convolution whose outputs it sums."""
        c = self.cfg.channels
        keep = torch.arange(slots, device=like.device) < of_type.sum(1, keepdim=True)  # (B, slots)
        eye = torch.eye(c, dtype=like.dtype, device=like.device) / self.cfg.filter_num
        return (keep.to(like.dtype)[:, None, :, None, None] * eye[None, :, None, :, None]).reshape(-1, slots * c, 1, 1)

    def _post_affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The inference-mode BatchNorm of :attr:`post` as ``(scale, shift)`` per channel."""
        bn = self.post[0]
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        return scale, bn.bias - bn.running_mean * scale

    def dynamic_conv(self, image_features: torch.Tensor, sel: Selection) -> torch.Tensor:
        """Every filter's convolution of its sample's features: ``(B, F, C, H, W)``, one grouped conv per type."""
        b, c, h, w = image_features.shape
        out = image_features.new_zeros(b * self.cfg.filter_num, c, h, w)
        for idx, y in self._type_groups(image_features, sel):
            out = out.index_copy(0, idx, y)
        return out.view(b, -1, c, h, w)

    def compensate(self, image_features: torch.Tensor, sel: Selection) -> torch.Tensor:
        """``X + out_conv(film(mean over filters of LeakyReLU(BN(dynamic conv))))``.

        Same result as running :meth:`dynamic_conv` and then BN, LeakyReLU and the filter mean, with fewer passes
        over the ``(B*F, C, H, W)`` intermediate (the costly part on a CPU): the filters' outputs stay in kernel-type
        order (BN and LeakyReLU do not care about order) and the filter mean is a scatter-add into each sample in
        training, and at inference a 1x1 convolution per kernel type (:meth:`_slot_mean_kernel`), which keeps
        channels-last features channels-last.
        """
        b, c, h, w = image_features.shape
        if self.training:  # BatchNorm over all filter outputs of the batch at once
            groups = list(self._type_groups(image_features, sel))
            owners = torch.cat([idx for idx, _ in groups]) // self.cfg.filter_num
            y = self.post(torch.cat([y for _, y in groups]) if len(groups) > 1 else groups[0][1])
            total = y.new_zeros(b, c, h, w).index_add_(0, owners, y)
        else:  # a fixed affine BatchNorm folds into the kernels; the filter mean is a 1x1 conv per type
            mean = None
            for of_type, slots, y in self._type_convs(image_features, sel, self._post_affine()):
                y = F.leaky_relu(y, self.cfg.negative_slope, inplace=True)  # (1, B * slots * C, H, W)
                part = F.conv2d(y, self._slot_mean_kernel(of_type, slots, y), groups=b)  # (1, B * C, H, W)
                mean = part if mean is None else mean + part
            # (1, C, H, W) as it is: viewed as itself, a channels-last tensor can lose the layout (see _type_convs)
            mean = mean if b == 1 else mean.view(b, c, h, w)
            return image_features + self.out_conv(apply_film(mean, sel.film))
        return image_features + self.out_conv(apply_film(total / self.cfg.filter_num, sel.film))

    def compensate_static(self, image_features: torch.Tensor, sel: Selection) -> torch.Tensor:
        """:meth:`compensate` without data-dependent shapes, for ONNX export: every filter runs all four kernel
        types (four times the convolution work), weighted by its one-hot type weights, and each convolution is an
        einsum over shifted copies of the features (the ONNX exporter cannot take convolution kernels whose shape
        its shape inference loses). The traced graph keeps batch, height and width dynamic."""
        b, _, h, w = image_features.shape
        c, f = self.cfg.channels, self.cfg.filter_num
        k1, k3 = self.kernels(sel.vectors)  # (B, F, C, C, 1, 1), (B, F, C, C, 3, 3)
        y = None
        for t, (size, dilation) in enumerate(KERNEL_TYPES):
            if size == 1:
                taps = image_features[:, :, None]  # (B, C, 1, H, W)
                k = k1.flatten(-2)  # (B, F, C, C, 1)
            else:
                d = dilation
                padded = F.pad(image_features, (d, d, d, d))
                taps = torch.stack([padded[:, :, i * d:i * d + h, j * d:j * d + w]
                                    for i in range(3) for j in range(3)], 2)  # (B, C, 9, H, W)
                k = k3.flatten(-2)  # (B, F, C, C, 9)
            yt = torch.einsum("bfoik,bikhw->bfohw", k * sel.type_weights[..., t, None, None, None], taps)
            y = yt if y is None else y + yt
        y = self.post(y.reshape(-1, c, h, w)).reshape(b, f, c, h, w).mean(1)
        return image_features + self.out_conv(apply_film(y, sel.film))

    def forward(self, bank: torch.Tensor, task_features: torch.Tensor | TaskStatistics, image_features: torch.Tensor,
                gumbel: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, C, H, W)`` image features compensated with ``(B, Ct, h, w)`` task features (or their
        :class:`~cldyn.model.task_encoder.TaskStatistics`, shared by the blocks of one pass)."""
        if image_features.dim() != 4 or image_features.shape[1] != self.cfg.channels:
            raise ValueError(f"A2SI: image features must be (B, {self.cfg.channels}, H, W), "
                             f"got {tuple(image_features.shape)}")
        stats = as_statistics(task_features)
        if stats.features.dim() < 2:
            raise ValueError(f"A2SI: task features must be (B, ...), got {tuple(stats.features.shape)}")
        sel = self.select(bank, stats, image_features, gumbel)
        if exporting():
            return self.compensate_static(image_features, sel)
        return self.compensate(image_features, sel)
