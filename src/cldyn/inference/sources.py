"""Image sources for task networks: visible, infrared, a pixel rule (average, max), VFN-fused, or a folder of fused
images."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from cldyn.data.io import read_image, read_pair, three_channels, to_single_channel
from cldyn.data.pairs import Pair, list_images
from cldyn.errors import InputError
from cldyn.inference.fuse import Fuser
from cldyn.model.color import luma_of, with_colour_of
from cldyn.weights import load_vfn_or_shipped

# Pixel rules on the luminance (IR, visible Y) -> fused Y; the visible colour is put back as for the VFN.
PIXEL_RULES = {"average": lambda ir, y: (ir + y) / 2, "max": torch.maximum}


def pixel_rule_fusion(ir: np.ndarray, vis: np.ndarray, rule: str) -> np.ndarray:
    """Fuse infrared ``(H, W)`` and visible ``(H, W)`` or ``(H, W, 3)`` in [0, 1] with a :data:`PIXEL_RULES` rule on
    the luminance; RGB like ``vis``.

    >>> pixel_rule_fusion(np.zeros((1, 2)), np.ones((1, 2)), "average").tolist()
    [[0.5, 0.5]]
    """
    v = torch.from_numpy(np.asarray(vis, np.float32))
    v = v[None] if v.ndim == 2 else v.permute(2, 0, 1)
    fused = with_colour_of(v, PIXEL_RULES[rule](torch.from_numpy(np.asarray(ir, np.float32))[None], luma_of(v)))
    return fused[0].numpy() if fused.shape[0] == 1 else fused.permute(1, 2, 0).numpy()


def image_source(spec: str, vfn_weights: str | None = None, device: str = "cpu") -> Callable[[Pair], np.ndarray]:
    """What a task network sees for a pair, as RGB float ``(H, W, 3)`` in [0, 1].

    ``visible``; ``infrared`` (repeated to 3 channels); ``pair`` (4 channels: infrared, then visible RGB);
    ``average`` or ``max`` (a :data:`PIXEL_RULES` fusion of the luminance); ``vfn`` or ``fused`` (fused by the
    shipped VFN, or by
    ``vfn_weights``); any other value is a folder of fused images named by the pair's stem.
    """
    if spec == "visible":
        return lambda pair: three_channels(read_image(pair.vis).pixels)
    if spec == "pair":  # for the closed loop: infrared in channel 0, visible RGB in channels 1..3

        def pair_source(pair: Pair) -> np.ndarray:
            ir, vis = read_pair(pair.ir, pair.vis)
            return np.dstack((to_single_channel(ir), three_channels(vis.pixels)))

        return pair_source
    if spec == "infrared":
        return lambda pair: three_channels(to_single_channel(read_image(pair.ir)))
    if spec in PIXEL_RULES:

        def rule_source(pair: Pair) -> np.ndarray:
            ir, vis = read_pair(pair.ir, pair.vis)
            return three_channels(pixel_rule_fusion(to_single_channel(ir), vis.pixels, spec))

        return rule_source
    if spec in ("vfn", "fused"):
        fuser = Fuser(load_vfn_or_shipped(vfn_weights), device=device)
        return lambda pair: three_channels(fuser.fuse_images(read_image(pair.ir), read_image(pair.vis)))
    folder = Path(spec)
    images = list_images(folder)  # raises a one-line error for a missing folder

    def from_folder(pair: Pair) -> np.ndarray:
        if pair.name not in images:
            raise InputError(folder, f"no fused image named {pair.name}.* for pair {pair.name}")
        return three_channels(read_image(images[pair.name]).pixels)

    return from_folder
