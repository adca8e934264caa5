"""RSC: requirement-driven semantic compensation, and CLDyN = frozen VFN + RSC.

RSC holds one :class:`~cldyn.model.basis_bank.BasisVectorBank` shared by two stacks of A2SI blocks, one per encoder
(infrared, visible), applied after encoder stages ``0 .. n-2`` of the VFN. Every A2SI ends in a zero-initialised
conv, so at initialisation CLDyN's output equals the VFN's exactly, whatever the task features.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from cldyn.model.a2si import A2SI, A2SIConfig
from cldyn.model.basis_bank import BankConfig, BasisVectorBank
from cldyn.model.color import luma_of, with_colour_of
from cldyn.model.ops import as_rgb, pad_to_multiple
from cldyn.model.task_encoder import TaskStatistics, as_statistics
from cldyn.model.tone import ToneConfig, ToneHead
from cldyn.model.vfn import VFN, StageHook


@dataclass(frozen=True)
class RSCConfig:
    """RSC sizes. ``num_stages`` = VFN ``num_blocks - 1`` (compensation between encoder stages).

    ``closed_loop``: ``False`` for the no-closed-loop ablation (``train-rsc --no-closed-loop``): the RSC reads zeros
    in place of the task features, in training and at inference alike, so an ablation RSC is evaluated on what it
    was trained on (given real features, its task pathway would read inputs it never saw).

    ``tone``: the tone head (:mod:`cldyn.model.tone`) after the VFN's decoder; ``knots = 0`` (default): none, the
    paper's RSC.
    """

    num_stages: int = 3
    a2si: A2SIConfig = field(default_factory=A2SIConfig)
    bank: BankConfig = field(default_factory=BankConfig)
    closed_loop: bool = True
    tone: ToneConfig = field(default_factory=ToneConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RSCConfig:
        # Weights saved before the task encoder was a setting have the upstream pathway.
        a2si = {"task_encoder": "upstream", **d["a2si"]}
        return cls(num_stages=d["num_stages"], a2si=A2SIConfig(**a2si), bank=BankConfig(**d["bank"]),
                   closed_loop=d.get("closed_loop", True), tone=ToneConfig(**d.get("tone", {})))


def rsc_fit_problem(cfg: RSCConfig, vfn: VFN) -> str | None:
    """Why an RSC of configuration ``cfg`` cannot compensate ``vfn`` (``None`` when it fits): one A2SI block per
    encoder stage but the last, as wide as the VFN's features."""
    if cfg.num_stages == vfn.num_stages - 1 and cfg.a2si.channels == vfn.cfg.width:
        return None
    return (f"RSC for a VFN of {cfg.num_stages + 1} blocks, width {cfg.a2si.channels}, does not fit the VFN in use "
            f"({vfn.num_stages} blocks, width {vfn.cfg.width})")


class RSC(nn.Module):
    """Basis Vector Bank + A2SI stacks for the infrared and visible encoders."""

    def __init__(self, cfg: RSCConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or RSCConfig()
        self.bank = BasisVectorBank(cfg.bank)
        self.ir_blocks = nn.ModuleList(A2SI(cfg.a2si, cfg.bank) for _ in range(cfg.num_stages))
        self.vis_blocks = nn.ModuleList(A2SI(cfg.a2si, cfg.bank) for _ in range(cfg.num_stages))
        self.tone = ToneHead(cfg.tone) if cfg.tone.knots else None

    def task_pathway_parameters(self) -> list[nn.Parameter]:
        """The parameters that read the task features (every block's task encoder), e.g. to keep them out of
        weight decay."""
        return [p for block in [*self.ir_blocks, *self.vis_blocks] for p in block.task_pathway_parameters()]

    def gumbel_shape(self, batch: int) -> tuple[int, int, int, int]:
        """Shape of the Gumbel noise of one training forward pass: (blocks, batch, filters, kernel types); blocks
        are the infrared stack's, then the visible stack's."""
        return (2 * self.cfg.num_stages, batch, self.cfg.a2si.filter_num, self.cfg.bank.set_num)

    def statistics(self, task_features: torch.Tensor | TaskStatistics) -> TaskStatistics:
        """The task features as every block of one pass reads them (statistics computed once); zeros for the
        no-closed-loop ablation, so no task information reaches the blocks or the tone head."""
        if not self.cfg.closed_loop:
            return TaskStatistics(torch.zeros_like(as_statistics(task_features).features))
        return as_statistics(task_features)

    def stage_hook(self, task_features: torch.Tensor | TaskStatistics, gumbel: torch.Tensor | None = None
                   ) -> StageHook:
        """The VFN stage hook that compensates both encoders' features with ``task_features``; ``gumbel``
        (:meth:`gumbel_shape`) fixes the kernel-type noise of a training pass."""
        n = self.cfg.num_stages
        stats = self.statistics(task_features)

        def hook(i: int, ir_f: torch.Tensor, vis_f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            w = self.bank.weight
            g_ir, g_vis = (None, None) if gumbel is None else (gumbel[i], gumbel[n + i])
            return self.ir_blocks[i](w, stats, ir_f, g_ir), self.vis_blocks[i](w, stats, vis_f, g_vis)

        return hook

    def tone_curve(self, task_features: torch.Tensor | TaskStatistics, y: torch.Tensor) -> torch.Tensor:
        """The compensated luminance ``y`` ``(B, 1, H, W)`` through the tone head (unchanged without one)."""
        return y if self.tone is None else self.tone(self.statistics(task_features), y)


# The most that the full customisation (strength 1) may move an image's luminance, as a mean over its pixels in
# 8-bit grey levels; at strength s, s times that. On MSRS val the shipped visible RSC moves images by 6-7 levels at
# strength 1 (3.0-3.4 at 0.5; 90th percentile 4.2); on a camera it never saw (M3FD) by 11-13 levels, which costs a
# quarter of the VIF. The limit keeps an unseen camera's images to what the RSC does on its own data.
DEFAULT_MAX_CHANGE = 6.0

# ``strength="auto"``: each image gets the strength among AUTO_STRENGTHS whose image the task network is surest of
# (its own label-free confidence, TaskAdapter.confidence). On MSRS val, over three RSC seeds, it gains on the
# visible-trained segmenter (+0.004 mIoU over strength 0.5) and not on the detector or the saliency network; on a
# camera the RSC never saw it can cost more fusion quality (docs/guides/networks.md), so it is not the default.
AUTO_STRENGTH = "auto"
AUTO_STRENGTHS = (0.0, 0.5, 1.0)


def at_strength(base_y: torch.Tensor, customised_y: torch.Tensor, strength: float,
                max_change: float | None = None) -> torch.Tensor:
    """The luminance ``base_y + w * (customised_y - base_y)``, ``w = s`` (the strength): the VFN's own (bit for bit)
    at ``s = 0``, the full customisation at ``s = 1``.

    ``max_change`` (grey levels, 8-bit): per image, ``w`` is lowered so that the mean |change| over the image's
    pixels is at most ``s * max_change``; ``None``: no limit.

    >>> at_strength(torch.zeros(1), torch.ones(1), 0.25)
    tensor([0.2500])
    >>> at_strength(torch.zeros(1, 1, 2, 2), torch.full((1, 1, 2, 2), 20 / 255), 0.5, max_change=8.0) * 255
    tensor([[[[4., 4.],
              [4., 4.]]]])
    """
    if max_change is None:
        return customised_y if strength == 1.0 else torch.lerp(base_y, customised_y, strength)
    change = (customised_y - base_y).abs().mean(dim=(-3, -2, -1), keepdim=True) * 255.0
    weight = strength * (max_change / change.clamp_min(1e-6)).clamp(max=1.0)
    return torch.lerp(base_y, customised_y, weight)


class CLDyN(nn.Module):
    """A frozen VFN with an RSC module: task-customised fusion.

    ``forward(ir, vis, task_features)`` fuses with compensation; ``base(ir, vis)`` is the plain VFN fusion. Both
    take ``ir`` ``(B, 1, H, W)`` and ``vis`` gray ``(B, 1, H, W)`` or RGB ``(B, 3, H, W)`` in [0, 1] and return an
    image with the visible image's channels.
    """

    def __init__(self, vfn: VFN, rsc: RSC | None = None, max_change: float | None = DEFAULT_MAX_CHANGE) -> None:
        super().__init__()
        self.max_change = max_change  # for customised(): see at_strength
        if rsc is None:
            rsc = RSC(RSCConfig(num_stages=vfn.num_stages - 1, a2si=A2SIConfig(channels=vfn.cfg.width)))
        if problem := rsc_fit_problem(rsc.cfg, vfn):
            raise ValueError(problem)
        self.vfn = vfn.eval().requires_grad_(False)
        self.rsc = rsc

    def train(self, mode: bool = True) -> CLDyN:
        super().train(mode)
        self.vfn.eval()  # the VFN is frozen: its BatchNorm statistics never change
        return self

    def compensated_luma(self, ir: torch.Tensor, vis_y: torch.Tensor, task_features: torch.Tensor,
                         gumbel: torch.Tensor | None = None, base_reach: torch.Tensor | None = None) -> torch.Tensor:
        """The compensated fusion of ``ir`` and the visible luminance ``vis_y`` (both ``(B, 1, H, W)``);
        ``base_reach``: see :meth:`base_and_reach`. The encoders are compensated by the A2SI blocks, then the
        decoded luminance goes through the RSC's tone head, if it has one."""
        stats = self.rsc.statistics(task_features)
        return self.rsc.tone_curve(stats, self.untoned_luma(ir, vis_y, stats, gumbel, base_reach))

    def untoned_luma(self, ir: torch.Tensor, vis_y: torch.Tensor, task_features: torch.Tensor | TaskStatistics,
                     gumbel: torch.Tensor | None = None, base_reach: torch.Tensor | None = None) -> torch.Tensor:
        """:meth:`compensated_luma` before the tone head: the A2SI blocks' compensation alone."""
        return self.vfn(ir, vis_y, stage_hook=self.rsc.stage_hook(task_features, gumbel), base_reach=base_reach)

    def base(self, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        """Plain VFN fusion (the closed loop's first pass)."""
        return with_colour_of(vis, self.vfn(ir, luma_of(vis)))

    def base_and_reach(self, ir: torch.Tensor, vis: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """:meth:`base` and, for a VFN with a reach head, the base pass's reach image (``None`` otherwise): passed
        on as ``base_reach``, it spares the compensated pass an uncompensated pass of its own (same result)."""
        y, reach = self.base_luma_and_reach(ir, vis)
        return with_colour_of(vis, y), reach

    def base_luma_and_reach(self, ir: torch.Tensor, vis: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """:meth:`base_and_reach` with the fused luminance ``(B, 1, H, W)`` itself instead of the colour image (whose
        luminance can differ from it where putting back the visible Cb/Cr clips to [0, 1])."""
        return self.vfn.forward_with_reach(ir, luma_of(vis))

    def forward(self, ir: torch.Tensor, vis: torch.Tensor, task_features: torch.Tensor,
                gumbel: torch.Tensor | None = None, base_reach: torch.Tensor | None = None) -> torch.Tensor:
        return with_colour_of(vis, self.compensated_luma(ir, luma_of(vis), task_features, gumbel, base_reach))

    def fuse(self, ir: torch.Tensor, vis: torch.Tensor, task=None, multiple: int = 32, strength: float | str = 1.0
             ) -> torch.Tensor:
        """The closed loop at inference: base fusion -> task features -> compensated fusion.

        ``task``: a :class:`~cldyn.tasks.base.TaskAdapter` (frozen), or ``None`` for plain VFN fusion. The task
        network sees the base fused image replicate-padded on the bottom/right to multiples of ``multiple`` (what
        detection networks need); the fusion itself runs at the pair's own size, so a fresh RSC reproduces the VFN
        exactly. ``strength`` in [0, 1] goes from the VFN (0) to the full customisation (1): see :meth:`customised`
        (``"auto"``: chosen per image, :meth:`choose_strength`). The exported ONNX graph does the same for a number.
        """
        if task is None:
            return self.base(ir, vis)
        return self.fuse_with_base(ir, vis, task, multiple, strength)[1]

    def fuse_with_base(self, ir: torch.Tensor, vis: torch.Tensor, task, multiple: int = 32,
                       strength: float | str = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """``(base, customised)``: :meth:`fuse` with a task, also returning the base fusion it starts from (one base
        pass: its reach image goes on to the compensated pass)."""
        base_y, reach = self.base_luma_and_reach(ir, vis)
        base = with_colour_of(vis, base_y)
        feats = self.features_of_base(base, task, multiple)
        return base, self.customised(ir, vis, feats, base_y, reach, strength, task, multiple)

    def customised(self, ir: torch.Tensor, vis: torch.Tensor, task_features: torch.Tensor, base_y: torch.Tensor,
                   base_reach: torch.Tensor | None = None, strength: float | str = 1.0, task=None,
                   multiple: int = 32) -> torch.Tensor:
        """The compensated fusion at ``strength`` ``s``: luminance ``base_y + s * (compensated - base_y)`` with the
        visible colour put back, so ``s = 0`` is the VFN's own image, bit for bit, and ``s = 1`` the full
        customisation, each image's mean change limited to ``strength * self.max_change`` grey levels
        (:func:`at_strength`). ``base_y``, ``base_reach``: from :meth:`base_luma_and_reach` of the same pair.
        ``strength="auto"`` chooses it per image with ``task`` (:meth:`choose_strength`)."""
        y = self.compensated_luma(ir, luma_of(vis), task_features, base_reach=base_reach)
        if strength == AUTO_STRENGTH:
            if task is None:
                raise ValueError("strength 'auto' needs the task network, whose confidence chooses it")
            return self.choose_strength(vis, base_y, y, task, multiple)[0]
        return with_colour_of(vis, at_strength(base_y, y, float(strength), self.max_change))

    def choose_strength(self, vis: torch.Tensor, base_y: torch.Tensor, compensated_y: torch.Tensor, task,
                        multiple: int = 32, strengths: tuple[float, ...] = AUTO_STRENGTHS
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(image, strength)``: per image of the batch, the candidate ``at_strength(base_y, compensated_y, s)``
        (visible colour put back, this model's change limit) among ``strengths`` of which the frozen ``task``
        network is surest (``task.confidence``, higher is surer; on the replicate-padded images that it sees in
        :meth:`fuse`), and the ``(B,)`` strengths chosen. All candidates go through the network as one batch."""
        cands = torch.stack([with_colour_of(vis, at_strength(base_y, compensated_y, s, self.max_change))
                             for s in strengths])  # (S, B, C, H, W)
        n, b = cands.shape[:2]
        conf = task.confidence(pad_to_multiple(as_rgb(cands.flatten(0, 1)), multiple)[0]).reshape(n, b)
        pick = conf.argmax(dim=0)
        return cands[pick, torch.arange(b, device=pick.device)], torch.tensor(strengths)[pick.cpu()]

    def task_features(self, ir: torch.Tensor, vis: torch.Tensor, task, multiple: int = 32) -> torch.Tensor:
        """The closed loop's first half: the task network's features of the base fused image (replicate-padded to
        multiples of ``multiple``). They depend on the VFN and the task only, so several RSCs can share them."""
        return self.features_of_base(self.base(ir, vis), task, multiple)

    @staticmethod
    def features_of_base(base: torch.Tensor, task, multiple: int = 32) -> torch.Tensor:
        """The task network's features of an already computed base fusion (replicate-padded to multiples of
        ``multiple``), for a caller that also keeps the base fusion itself."""
        return task.features(pad_to_multiple(as_rgb(base), multiple)[0])
