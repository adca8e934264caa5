"""Task-requirement pathways: what an A2SI block reads from a frozen task network's features ``T``.

Two encoders (``A2SIConfig.task_encoder``):

- ``upstream`` (the public code's, kept as an ablation): ``T`` flattened to one sequence, RMS-normalised, two 1-D
  convs and a mean (:class:`UpstreamTaskEmbedding`). What survives the mean is a few marginal statistics of the
  feature values; measured on the shipped weights, nothing in them told the tasks apart.
- ``semantic`` (default): :class:`SemanticTaskEncoder`, width- and resolution-agnostic, so it reads any adapter
  (``module:Class`` too):

  * a **signature** (:func:`channel_quantiles`): the per-channel mean and standard deviation of ``T`` over the image,
    each sorted over channels and resampled to ``k`` quantiles, after scaling ``T`` to unit RMS. Different networks
    give different quantile functions (their activation statistics differ), and it has a fixed size whatever the
    width. Small MLPs turn it into the type and basis queries' task halves and into a per-channel FiLM of the
    compensation (so the task acts on the output continuously, not only through the discrete kernel choice);
  * **where the task responds** (:func:`response_maps`): per pixel, the channel RMS and channel maximum of the
    unit-RMS features; two small convs turn them into a spatial FiLM (SPADE-like), resized to the encoder stage, so
    the compensation can act where the task's objects are instead of applying one global kernel per image.

  Both FiLM outputs start at zero (and the A2SI output conv is zero-initialised), so a fresh block is the identity.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

TASK_ENCODERS = ("semantic", "upstream")


def rms_normalize(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Divide each sample of ``(B, ...)`` by its root-mean-square value."""
    rms = x.pow(2).flatten(1).mean(1).sqrt()
    return x / (rms.view(-1, *([1] * (x.dim() - 1))) + eps)


def conv3_mean(h: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Mean over length of ``conv1d(h, weight, padding=1)`` for a bias-free kernel of size 3, without running it.

    Because the conv is linear, the mean of its output only needs the channel sums of ``h`` and its two end
    samples (what zero padding drops at each end). ``h``: ``(B, Cin, L)``, ``weight``: ``(Cout, Cin, 3)`` ->
    ``(B, Cout)``. Saves the ``Cout``-wide pass over long flattened task features.
    """
    s = h.sum(-1)
    length = h.shape[-1]
    taps = torch.stack((s - h[..., -1], s, s - h[..., 0]), dim=-1)  # (B, Cin, 3)
    return torch.einsum("bck,ock->bo", taps, weight) / length


class UpstreamTaskEmbedding(nn.Module):
    """Flattened task features ``(B, L)`` -> ``(B, out)``: conv1d(1 -> out/2), LeakyReLU, conv1d(-> out), mean.

    Without autograd (inference) the first conv runs over ``chunk`` samples at a time and only its channel sums
    and end samples are kept: the same result without the ``(B, out/2, L)`` intermediate, which for a task network's
    stride-4 features (L about 1.2 M at 640x480) is 300 MB at ``out`` 128 and about 4x slower to go through."""

    chunk = 4096

    def __init__(self, out: int, slope: float) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(1, max(1, out // 2), 3, padding=1, bias=False)
        self.conv2 = nn.Conv1d(max(1, out // 2), out, 3, padding=1, bias=False)
        self.slope = slope

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        x = rms_normalize(seq)[:, None]
        if torch.is_grad_enabled() or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            return conv3_mean(F.leaky_relu(self.conv1(x), self.slope), self.conv2.weight)
        length = x.shape[-1]
        padded = F.pad(x, (1, 1))
        parts = []
        for start in range(0, length, self.chunk):
            stop = min(length, start + self.chunk)
            parts.append(F.leaky_relu(F.conv1d(padded[..., start:stop + 2], self.conv1.weight), self.slope).sum(-1))
        s = torch.stack(parts).sum(0)  # (B, out/2): the channel sums of the first conv's output
        ends = F.leaky_relu(F.conv1d(torch.cat((padded[..., :3], padded[..., -3:]), -1), self.conv1.weight,
                                     stride=3), self.slope)  # its first and last samples
        taps = torch.stack((s - ends[..., 1], s, s - ends[..., 0]), dim=-1)  # as conv3_mean
        return torch.einsum("bck,ock->bo", taps, self.conv2.weight) / length


def _as_maps(task_features: torch.Tensor) -> torch.Tensor:
    """``(B, C)``, ``(B, C, L)`` or ``(B, C, h, w)`` -> ``(B, C, h, w)`` (vectors are 1x1 maps, sequences 1xL)."""
    if task_features.dim() < 2 or task_features.dim() > 4:
        raise ValueError(f"task features must be (B, C[, h[, w]]), got {tuple(task_features.shape)}")
    if task_features.dim() == 2:
        return task_features[..., None, None]
    return task_features.unsqueeze(-2) if task_features.dim() == 3 else task_features


def channel_quantiles(task_features: torch.Tensor, k: int = 16) -> torch.Tensor:
    """Width-agnostic signature of task features: ``(B, C[, h, w])`` -> ``(B, 2k)``.

    The features are scaled to unit RMS per sample; the per-channel spatial mean and standard deviation are each
    sorted over channels and resampled (linear interpolation) to ``k`` values: two quantile functions.

    Example:
        >>> t = torch.arange(4.0).view(1, 4, 1, 1)  # channel means 0, 1, 2, 3; no spatial spread
        >>> channel_quantiles(t, 4)[0, :4] * (14 / 4) ** 0.5  # undo the unit-RMS scaling (RMS = sqrt(14 / 4))
        tensor([0., 1., 2., 3.])
    """
    t = rms_normalize(_as_maps(task_features).float()).flatten(2)  # (B, C, hw)
    mean, std = t.mean(-1), t.std(-1, unbiased=False)
    stats = torch.stack((mean, std), 1).sort(-1).values  # (B, 2, C) ascending
    return F.interpolate(stats, size=k, mode="linear", align_corners=True).flatten(1)


def response_maps(task_features: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Where a task network responds: ``(B, C[, h, w])`` -> ``(B, 2, h, w)``, the channel RMS and the channel
    maximum of the features scaled to unit RMS per sample.

    Example:
        >>> t = torch.zeros(1, 2, 1, 2); t[0, 0, 0, 0] = 2.0  # all energy in one pixel of one channel
        >>> response_maps(t)[0, :, 0]  # unit RMS: the value 2 becomes 2 / sqrt(4 / 4) = 2
        tensor([[1.4142, 0.0000],
                [2.0000, 0.0000]])
    """
    t = rms_normalize(_as_maps(task_features).float(), eps)
    return torch.cat((t.pow(2).mean(1, keepdim=True).sqrt(), t.amax(1, keepdim=True)), 1)


class TaskStatistics:
    """Task features with their parameter-free statistics (:func:`channel_quantiles`, :func:`response_maps`),
    each computed on first use and then kept: every A2SI block of a forward pass reads the same task features, and
    recomputing them per block cost about a sixth of the compensated pass at 640x480 (stride-4 task features).
    Lives for one forward pass.

    Example:
        >>> stats = TaskStatistics(torch.rand(2, 32, 4, 4))
        >>> stats.signature(16) is stats.signature(16), stats.response().shape
        (True, torch.Size([2, 2, 4, 4]))
    """

    def __init__(self, features: torch.Tensor) -> None:
        self.features = features
        self._signatures: dict[int, torch.Tensor] = {}
        self._response: torch.Tensor | None = None

    def signature(self, k: int) -> torch.Tensor:
        if k not in self._signatures:
            self._signatures[k] = channel_quantiles(self.features, k)
        return self._signatures[k]

    def response(self) -> torch.Tensor:
        if self._response is None:
            self._response = response_maps(self.features)
        return self._response


def as_statistics(task_features: torch.Tensor | TaskStatistics) -> TaskStatistics:
    return task_features if isinstance(task_features, TaskStatistics) else TaskStatistics(task_features)


class SemanticTaskEncoder(nn.Module):
    """The ``semantic`` task pathway of one A2SI block (see the module docstring).

    Args:
        channels: image feature channels ``C`` of the block.
        type_dim, basis_dim: sizes of the task halves of the kernel-type and basis queries.
        quantiles: ``k`` of :func:`channel_quantiles`.
        hidden: channels of the spatial FiLM's hidden conv.
        slope: LeakyReLU slope.
    """

    def __init__(self, channels: int, type_dim: int, basis_dim: int, quantiles: int = 16, hidden: int = 8,
                 slope: float = 0.2) -> None:
        super().__init__()
        sig = 2 * quantiles
        self.quantiles = quantiles
        self.type_head = nn.Sequential(nn.Linear(sig, sig), nn.LeakyReLU(slope), nn.Linear(sig, type_dim))
        self.basis_head = nn.Sequential(nn.Linear(sig, sig), nn.LeakyReLU(slope), nn.Linear(sig, basis_dim))
        self.film_global = nn.Sequential(nn.Linear(sig, sig), nn.LeakyReLU(slope), nn.Linear(sig, 2 * channels))
        self.film_spatial = nn.Sequential(nn.Conv2d(2, hidden, 3, padding=1), nn.LeakyReLU(slope),
                                          nn.Conv2d(hidden, 2 * channels, 3, padding=1))
        for last in (self.film_global[-1], self.film_spatial[-1]):  # no modulation at initialisation
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def embed(self, task_features: torch.Tensor | TaskStatistics) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(type_embedding (B, type_dim), basis_embedding (B, basis_dim), signature (B, 2k))``."""
        sig = as_statistics(task_features).signature(self.quantiles)
        return self.type_head(sig), self.basis_head(sig), sig

    def modulation(self, task_features: torch.Tensor | TaskStatistics, signature: torch.Tensor,
                   size: tuple[int, int], channels_last: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """FiLM ``(1 + gamma, beta)`` (a scale and a shift), each ``(B, C, H, W)`` at the encoder stage's ``size``:
        global (from the signature) plus spatial (from the response maps). The spatial convs run at the task
        features' own resolution and their output is resized bilinearly to ``size``: at a task network's stride of 4
        to 8 that is 16 to 64 times fewer pixels than convolving at the image's resolution, which cost as much as the
        dynamic convolutions themselves at 640x480. The 1 is added before the resize, where it costs nothing (a
        bilinear resize keeps constants). ``channels_last``: resize into channels-last memory, the layout of the
        image features at inference on a CPU (a FiLM in the other layout slows every later element-wise pass)."""
        film = self.film_spatial(as_statistics(task_features).response()) + self.film_global(signature)[..., None, None]
        gamma, beta = film.chunk(2, dim=1)
        film = torch.cat((1 + gamma, beta), 1)
        if channels_last:
            film = film.contiguous(memory_format=torch.channels_last)
        scale, shift = F.interpolate(film, size=size, mode="bilinear", align_corners=False).chunk(2, dim=1)
        return scale, shift


__all__ = ["TASK_ENCODERS", "SemanticTaskEncoder", "TaskStatistics", "UpstreamTaskEmbedding", "as_statistics",
           "channel_quantiles", "conv3_mean", "response_maps", "rms_normalize"]
