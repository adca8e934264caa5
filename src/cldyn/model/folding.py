"""BatchNorm folded into the preceding convolutions: the form a trained network takes for inference."""

from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Return an eval-mode copy of ``model`` with every ``Conv2d`` -> ``BatchNorm2d`` pair folded into the conv.

    Folding is exact up to float rounding (inference uses the running statistics either way) and removes one
    full pass over every feature map. The copy must not be trained.
    """
    folded = copy.deepcopy(model).eval()
    for module in folded.modules():
        if not isinstance(module, nn.Sequential):
            continue
        children = list(module.children())
        for i in range(len(children) - 1):
            conv, bn = children[i], children[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                module[i] = fuse_conv_bn_eval(conv, bn)
                module[i + 1] = nn.Identity()
    return folded


__all__ = ["fold_batchnorm"]
