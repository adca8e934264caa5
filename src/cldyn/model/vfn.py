"""VFN: the visual fusion network of CLDyN (stage 1).

Two encoders (infrared, visible luminance) of a conv stem and ``num_blocks`` dense dilated blocks, a
gradient-guided channel x spatial attention fusion block, and a decoder of the same blocks ending in tanh mapped to
[0, 1]. No down-sampling, so any H x W works. The encoders run stage by stage so the RSC module can add its
compensation between stages (``stage_hook``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from cldyn.model.ops import sobel_kernels, sobel_l1_magnitude, unsharp

# (stage index, ir features, visible features) -> (ir features, visible features)
StageHook = Callable[[int, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


VFN_SKIPS = ("none", "max")


@dataclass(frozen=True)
class VFNConfig:
    """VFN hyper-parameters; defaults are the paper's.

    Attributes:
        num_blocks: dense dilated blocks per encoder and in the decoder (= encoder stages).
        stem_channels: channel widths of the encoder stem, from the 1-channel input to the feature width.
        negative_slope: LeakyReLU slope.
        dilation: dilation of the 3x3 convs inside the dense blocks.
        skip: ``none`` (the paper's: the decoder outputs the fused image) or ``max``: the decoder outputs a
            correction in (-0.5, 0.5) added to ``max(IR, Y)``, the intensity loss's own target, and the sum is
            clipped to [0, 1]; with a zero last conv the network starts as the pixel-wise maximum.
        detail_gain: ``skip="max"`` only: the correction is added to :func:`~cldyn.model.ops.unsharp` of
            ``max(IR, Y)`` with this gain (sigma 1) instead: the maximum keeps each source's intensities but
            softens edges where it switches source, and a fixed mild detail boost restores them (0: plain maximum).
        reach_head: ``skip="max"`` only: a second, full-image decoder head (the paper's output form) that plain
            fusion never uses. Under an RSC's ``stage_hook`` the image becomes the correction's output plus
            ``reach(compensated) - reach(uncompensated)``: a max-skip VFN's correction hardly depends on its features,
            so without this head an RSC compensating them barely changes the image. Zero at RSC initialisation.
    """

    num_blocks: int = 4
    stem_channels: tuple[int, ...] = field(default=(1, 4, 8))
    negative_slope: float = 0.2
    dilation: int = 2
    skip: str = "none"
    detail_gain: float = 0.0
    reach_head: bool = False

    def __post_init__(self) -> None:
        if self.skip not in VFN_SKIPS:
            raise ValueError(f"skip must be one of {VFN_SKIPS}, got {self.skip!r}")
        if self.detail_gain < 0 or (self.detail_gain and self.skip != "max"):
            raise ValueError(f"detail_gain must be >= 0 and needs skip='max', got {self.detail_gain} with "
                             f"skip={self.skip!r}")
        if self.reach_head and self.skip != "max":
            raise ValueError(f"reach_head needs skip='max', got skip={self.skip!r}")
        if self.num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1, got {self.num_blocks}")
        if len(self.stem_channels) < 2 or self.stem_channels[0] != 1:
            raise ValueError(f"stem_channels must start at 1 and have >= 2 entries, got {self.stem_channels}")
        object.__setattr__(self, "stem_channels", tuple(int(c) for c in self.stem_channels))

    @property
    def width(self) -> int:
        """Feature width of one encoder."""
        return self.stem_channels[-1]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["stem_channels"] = list(self.stem_channels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> VFNConfig:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        if "stem_channels" in known:
            known["stem_channels"] = tuple(known["stem_channels"])
        return cls(**known)


def conv_bn_act(cin: int, cout: int, slope: float) -> nn.Sequential:
    """3x3 reflect-padded conv, BatchNorm, LeakyReLU."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, padding_mode="reflect"),
        nn.BatchNorm2d(cout),
        nn.LeakyReLU(slope),
    )


class DenseDilatedBlock(nn.Module):
    """Two densely connected dilated 3x3 conv layers, a 1x1 conv back to ``channels``, residual add.

    ``out = x + lrelu(conv1x1([x, a, b]))`` with ``a = f1(x)``, ``b = f2([x, a])``.
    """

    def __init__(self, channels: int, slope: float = 0.2, dilation: int = 2) -> None:
        super().__init__()
        self.slope = slope

        def dil(cin: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, channels, 3, padding=dilation, dilation=dilation),
                nn.BatchNorm2d(channels),
                nn.LeakyReLU(slope),
            )

        self.layer1 = dil(channels)
        self.layer2 = dil(2 * channels)
        self.project = nn.Conv2d(3 * channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.layer1(x)
        xa = torch.cat((x, a), dim=1)
        b = self.layer2(xa)
        return x + F.leaky_relu(self.project(torch.cat((xa, b), dim=1)), self.slope)


class Encoder(nn.Module):
    """Per-modality encoder: conv stem then ``num_blocks`` dense dilated blocks, runnable stage by stage."""

    def __init__(self, cfg: VFNConfig) -> None:
        super().__init__()
        chans = cfg.stem_channels
        self.stem = nn.Sequential(
            *[conv_bn_act(chans[i], chans[i + 1], cfg.negative_slope) for i in range(len(chans) - 1)]
        )
        self.blocks = nn.ModuleList(
            DenseDilatedBlock(cfg.width, cfg.negative_slope, cfg.dilation) for _ in range(cfg.num_blocks)
        )

    @property
    def num_stages(self) -> int:
        return len(self.blocks)

    def forward_stage(self, x: torch.Tensor, index: int) -> torch.Tensor:
        """Stage ``index``: stage 0 is the stem and the first block (input ``(B, 1, H, W)``); the others one block."""
        if index == 0:
            x = self.stem(x)
        return self.blocks[index](x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(self.num_stages):
            x = self.forward_stage(x, i)
        return x


class GradientAttentionFusion(nn.Module):
    """Gradient-guided channel x spatial attention over the concatenated features of both encoders.

    The attention is computed from the Sobel magnitudes of the features: channel attention (MLPs on global
    average and max pools) times spatial attention (convs on 3x3 average and max pools), squashed by a sigmoid,
    then multiplied onto the concatenated features.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()

        def mlp() -> nn.Sequential:
            return nn.Sequential(nn.Linear(channels, 2 * channels), nn.ReLU(), nn.Linear(2 * channels, channels))

        def convs() -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(channels, 2 * channels, 3, padding=1, padding_mode="reflect"),
                nn.ReLU(),
                nn.Conv2d(2 * channels, channels, 3, padding=1, padding_mode="reflect"),
            )

        self.mlp_avg = mlp()
        self.mlp_max = mlp()
        self.conv_avg = convs()
        self.conv_max = convs()
        # A fixed buffer (not rebuilt per call) so traced/exported graphs see a kernel of known shape.
        self.register_buffer("sobel", sobel_kernels(channels, normalized=True), persistent=False)

    def attention(self, grad: torch.Tensor) -> torch.Tensor:
        """Attention map ``(B, C, H, W)`` in (0, 1) from feature gradients ``(B, C, H, W)``."""
        channel = self.mlp_avg(grad.mean(dim=(2, 3))) + self.mlp_max(grad.amax(dim=(2, 3)))
        spatial = self.conv_avg(F.avg_pool2d(grad, 3, 1, 1)) + self.conv_max(F.max_pool2d(grad, 3, 1, 1))
        return torch.sigmoid(channel[:, :, None, None] * spatial)

    def forward(self, ir_feat: torch.Tensor, vis_feat: torch.Tensor) -> torch.Tensor:
        both = torch.cat((ir_feat, vis_feat), dim=1)
        return both * self.attention(sobel_l1_magnitude(both, normalized=True, kernels=self.sobel.to(both.dtype)))


def _output_head(cfg: VFNConfig) -> nn.Sequential:
    """Trunk features -> one channel: the stem's widths reversed (e.g. 8 -> 4 -> 1), a plain conv last."""
    chans = cfg.stem_channels[::-1]
    layers: list[nn.Module] = [conv_bn_act(chans[i], chans[i + 1], cfg.negative_slope) for i in range(len(chans) - 2)]
    layers.append(nn.Conv2d(chans[-2], 1, 3, padding=1, padding_mode="reflect"))
    return nn.Sequential(*layers)


class Decoder(nn.Module):
    """Fused features ``(B, 2w, H, W)`` -> fused luminance ``(B, 1, H, W)`` in [0, 1]."""

    def __init__(self, cfg: VFNConfig) -> None:
        super().__init__()
        w = cfg.width
        self.reduce = conv_bn_act(2 * w, w, cfg.negative_slope)
        self.blocks = nn.ModuleList(
            DenseDilatedBlock(w, cfg.negative_slope, cfg.dilation) for _ in range(cfg.num_blocks)
        )
        self.head = _output_head(cfg)
        self.skip = cfg.skip
        if cfg.skip == "max":  # start as max(IR, Y) exactly: the correction begins at zero
            nn.init.zeros_(self.head[-1].weight)
            nn.init.zeros_(self.head[-1].bias)
        self.reach = _output_head(cfg) if cfg.reach_head else None

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """Fused features -> the features both heads read."""
        x = self.reduce(x)
        for block in self.blocks:
            x = block(x)
        return x

    def output(self, z: torch.Tensor) -> torch.Tensor:
        """The fused luminance in [0, 1] (``skip="none"``), or the correction in (-0.5, 0.5) (``skip="max"``)."""
        if self.skip == "max":
            return 0.5 * torch.tanh(self.head(z))
        return (torch.tanh(self.head(z)) + 1.0) * 0.5

    def reach_image(self, z: torch.Tensor) -> torch.Tensor:
        """The reach head's full image in [0, 1] (``reach_head`` only)."""
        if self.reach is None:
            raise RuntimeError("this decoder has no reach head")
        return (torch.tanh(self.reach(z)) + 1.0) * 0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.trunk(x))


class VFN(nn.Module):
    """Visual fusion network: fuses infrared and visible luminance, both ``(B, 1, H, W)`` in [0, 1].

    Example:
        >>> net = VFN().eval()
        >>> net(torch.rand(1, 1, 31, 17), torch.rand(1, 1, 31, 17)).shape
        torch.Size([1, 1, 31, 17])
    """

    # Reflect padding by 1 needs at least 2 pixels per side; smaller inputs are padded and cropped back.
    _MIN_SIDE = 2

    def __init__(self, cfg: VFNConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or VFNConfig()
        self.ir_encoder = Encoder(self.cfg)
        self.vis_encoder = Encoder(self.cfg)
        self.fusion = GradientAttentionFusion(2 * self.cfg.width)
        self.decoder = Decoder(self.cfg)

    @property
    def num_stages(self) -> int:
        return self.cfg.num_blocks

    def forward_features(
        self, ir: torch.Tensor, vis_y: torch.Tensor, stage_hook: StageHook | None = None
    ) -> torch.Tensor:
        """Encode both inputs and fuse them: ``(B, 2w, H, W)`` attention-weighted features.

        ``stage_hook(i, ir_feat, vis_feat)`` is applied after encoder stages ``0 .. num_stages - 2``.
        """
        ir_f, vis_f = ir, vis_y
        last = self.num_stages - 1
        for i in range(self.num_stages):
            ir_f = self.ir_encoder.forward_stage(ir_f, i)
            vis_f = self.vis_encoder.forward_stage(vis_f, i)
            if stage_hook is not None and i < last:
                ir_f, vis_f = stage_hook(i, ir_f, vis_f)
        return self.fusion(ir_f, vis_f)

    def forward_head(self, features: torch.Tensor, ir: torch.Tensor, vis_y: torch.Tensor) -> torch.Tensor:
        """Decode fused features into the fused luminance ``(B, 1, H, W)`` in [0, 1] (``skip="max"``: the decoder's
        correction added to ``max(ir, vis_y)``, detail-boosted by ``detail_gain``, clipped)."""
        return self._compose(self.decoder(features), ir, vis_y)

    def _compose(self, out: torch.Tensor, ir: torch.Tensor, vis_y: torch.Tensor) -> torch.Tensor:
        """The decoder's output as the fused luminance: itself, or (``skip="max"``) a correction of the
        detail-boosted maximum, clipped to [0, 1]."""
        if self.cfg.skip == "max":
            out = (unsharp(torch.maximum(ir, vis_y), self.cfg.detail_gain) + out).clamp(0.0, 1.0)
        return out

    def _pad_small(self, ir: torch.Tensor, vis_y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, bool]:
        h, w = ir.shape[-2:]
        ph, pw = max(0, self._MIN_SIDE - h), max(0, self._MIN_SIDE - w)
        if ph or pw:
            ir = F.pad(ir, (0, pw, 0, ph), mode="replicate")
            vis_y = F.pad(vis_y, (0, pw, 0, ph), mode="replicate")
        return ir, vis_y, bool(ph or pw)

    def forward(
        self, ir: torch.Tensor, vis_y: torch.Tensor, stage_hook: StageHook | None = None,
        base_reach: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The fused luminance ``(B, 1, H, W)``. With a ``stage_hook`` and a reach head, ``base_reach`` is the
        uncompensated pass's reach image from :meth:`forward_with_reach` (same ``ir``/``vis_y``), which saves a
        second uncompensated pass; without it that pass runs here."""
        check_pair_tensors(ir, vis_y)
        h, w = ir.shape[-2:]
        ir, vis_y, padded = self._pad_small(ir, vis_y)
        features = self.forward_features(ir, vis_y, stage_hook)
        if stage_hook is None or not self.cfg.reach_head:
            return self.forward_head(features, ir, vis_y)[..., :h, :w]
        # Compensated: the correction plus what the compensation changes in the reach head's image.
        z = self.decoder.trunk(features)
        if base_reach is None or padded:  # a cropped reach image cannot stand in for the padded one
            base_reach = self.decoder.reach_image(self.decoder.trunk(self.forward_features(ir, vis_y)))
        elif base_reach.shape != z[:, :1].shape:
            raise ValueError(f"VFN: base_reach must be {tuple(z[:, :1].shape)}, got {tuple(base_reach.shape)}")
        reach = self.decoder.reach_image(z) - base_reach
        return self._compose(self.decoder.output(z) + reach, ir, vis_y)[..., :h, :w]

    def forward_with_reach(self, ir: torch.Tensor, vis_y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Plain fusion ``(B, 1, H, W)`` and, with a reach head, that pass's reach image ``(B, 1, H, W)`` (else
        ``None``), from one pass: what a compensated pass of the same pair takes as ``base_reach``.

        Example:
            >>> net = with_reach_head(VFN(VFNConfig(skip="max")), VFN()).eval()
            >>> ir, vis = torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8)
            >>> fused, reach = net.forward_with_reach(ir, vis)
            >>> torch.equal(fused, net(ir, vis)), tuple(reach.shape)
            (True, (1, 1, 8, 8))
        """
        check_pair_tensors(ir, vis_y)
        h, w = ir.shape[-2:]
        ir, vis_y, _ = self._pad_small(ir, vis_y)
        z = self.decoder.trunk(self.forward_features(ir, vis_y))
        fused = self._compose(self.decoder.output(z), ir, vis_y)[..., :h, :w]
        return fused, (self.decoder.reach_image(z)[..., :h, :w] if self.cfg.reach_head else None)


def with_reach_head(vfn: VFN, head_source: VFN) -> VFN:
    """A copy of the max-skip ``vfn`` with a reach head (see :class:`VFNConfig`) taken from ``head_source``'s output
    head, a paper-form VFN of the same widths (e.g. the one ``vfn`` was warm-started from, whose head draws the whole
    image from the same kind of trunk features). Plain fusion is unchanged.

    Example:
        >>> net = with_reach_head(VFN(VFNConfig(skip="max")), VFN())
        >>> net.cfg.reach_head, net.decoder.reach is not None
        (True, True)
    """
    if vfn.cfg.skip != "max" or head_source.cfg.skip != "none":
        raise ValueError("with_reach_head takes a skip='max' VFN and a head from a skip='none' VFN")
    cfg = VFNConfig.from_dict({**vfn.cfg.to_dict(), "reach_head": True})
    out = VFN(cfg)
    missing, unexpected = out.load_state_dict(vfn.state_dict(), strict=False)
    if unexpected or any(not k.startswith("decoder.reach.") for k in missing):
        raise ValueError(f"VFN weights do not fit: missing {missing}, unexpected {unexpected}")
    out.decoder.reach.load_state_dict(head_source.decoder.head.state_dict())
    return out.eval()


def check_pair_tensors(ir: torch.Tensor, vis_y: torch.Tensor) -> None:
    """Shape check at the door: both ``(B, 1, H, W)`` and equal."""
    for name, t in (("ir", ir), ("vis_y", vis_y)):
        if not isinstance(t, torch.Tensor) or t.dim() != 4 or t.shape[1] != 1:
            shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"VFN: {name} must be (B, 1, H, W), got {shape}")
    if ir.shape != vis_y.shape:
        raise ValueError(f"VFN: ir {tuple(ir.shape)} and vis_y {tuple(vis_y.shape)} differ")


__all__ = ["VFN", "VFNConfig", "check_pair_tensors", "with_reach_head"]
