"""The settings of closed-loop RSC training, in parts: the data streams, the RSC, the loss weights, the optimiser
and the run. Defaults are the paper's except the fusion term."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from cldyn.loop.losses import LossWeights
from cldyn.model.a2si import A2SIConfig
from cldyn.model.basis_bank import BankConfig
from cldyn.model.rsc import RSCConfig
from cldyn.model.tone import ToneConfig


@dataclass
class RSCStreams:
    """Each task's data stream and the frozen networks that read it.

    Attributes:
        tasks: task names or ``module:Class`` adapters, one stream each.
        data: task -> dataset root.
        task_weights: task -> the frozen network's weights (a checkpoint or a shipped name); absent: the shipped one.
        vfn_weights: the frozen VFN (``None``: shipped).
        train_split, val_split: ``ROOT/splits/SPLIT.txt`` names, or paths of ``.txt`` files of pair names.
        cache_batches: > 0: each stream cycles through its first N batches, whose frozen passes are computed once
            (:class:`cldyn.loop.cache.FrozenPassCache`); 0: a fresh crop every step, as in the paper.
    """

    tasks: list[str] = field(default_factory=lambda: ["detection", "segmentation", "saliency"])
    data: dict[str, str] = field(default_factory=dict)
    task_weights: dict[str, str] = field(default_factory=dict)
    vfn_weights: str | None = None
    train_split: str = "train"
    val_split: str = "val"
    cache_batches: int = 0


@dataclass
class RSCModelConfig:
    """The RSC that trains; defaults are the paper's (bank 4 x 32 x 256, 4 filters).

    Attributes:
        selection: ``trainable`` (straight-through basis choice) or ``upstream`` (the public code's; ablation).
        task_encoder: ``semantic`` or ``upstream`` (the public code's task pathway; ablation).
        closed_loop: ``False``: the task features are replaced by zeros (the ablation).
        tone_knots, tone_max_levels: the tone head (:mod:`cldyn.model.tone`), 0 knots: none (the paper's RSC).
        init: weights to start from (a fresh optimiser at step 0): a checkpoint, ``shipped`` (the default shipped
            RSC) or a shipped RSC's name (``visible``), to continue it for another network, e.g. a user's own;
            ``None``: a fresh RSC.
        trainable: ``all`` (RSC and bank) or ``tone`` (the tone head alone, the rest frozen as loaded).
    """

    filter_num: int = 4
    bank: BankConfig = field(default_factory=BankConfig)
    selection: str = "trainable"
    task_encoder: str = "semantic"
    closed_loop: bool = True
    tone_knots: int = 0
    tone_max_levels: float = 8.0
    init: str | None = None
    trainable: str = "all"

    def __post_init__(self) -> None:
        if self.trainable not in ("all", "tone"):
            raise ValueError(f"trainable must be 'all' or 'tone', got {self.trainable!r}")
        if self.trainable == "tone" and not self.tone_knots:
            raise ValueError("trainable='tone' needs a tone head (tone_knots >= 2)")

    def rsc_config(self, channels: int, num_stages: int) -> RSCConfig:
        """The :class:`RSCConfig` of this RSC for a VFN of ``channels`` width and ``num_stages + 1`` stages."""
        return RSCConfig(num_stages=num_stages,
                         a2si=A2SIConfig(channels=channels, filter_num=self.filter_num, selection=self.selection,
                                         task_encoder=self.task_encoder),
                         bank=self.bank, closed_loop=self.closed_loop,
                         tone=ToneConfig(knots=self.tone_knots, max_levels=self.tone_max_levels))


@dataclass
class RSCOptimConfig:
    """Steps, batches and the update; defaults are the paper's (Adam lr 0.01, weight decay 1e-4, CAGrad c = 0.5,
    clipping 1.0). ``aggregate``: ``cagrad``, or ``mean`` / ``pcgrad`` for ablations."""

    steps: int = 2000
    batch_size: int = 4
    crop: int = 320
    lr: float = 0.01
    weight_decay: float = 1e-4
    aggregate: str = "cagrad"
    cagrad_c: float = 0.5
    clip: float = 1.0
    seed: int = 0


@dataclass
class RSCRunConfig:
    """Where the run writes, how often it checkpoints and validates, and where it runs.

    Attributes:
        val_limit: validate on the first N val images of each task (``None`` or 0: all).
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (under torchrun: each process's own GPU).
        channels_last: on CPU, models and batches in channels-last memory (same losses, 1.2-1.3x faster steps).
    """

    out_dir: str = "runs/rsc"
    checkpoint_every: int = 50
    val_every: int = 500
    val_limit: int | None = None
    device: str = "cpu"
    channels_last: bool = True

    def __post_init__(self) -> None:
        for name in ("checkpoint_every", "val_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1 step, got {getattr(self, name)}")
        if not self.val_limit:  # 0 means all, as for train-vfn (a slice [:0] would validate on nothing)
            self.val_limit = None


_SECTIONS = {"streams": RSCStreams, "rsc": RSCModelConfig, "loss": LossWeights, "optim": RSCOptimConfig,
             "run": RSCRunConfig}


@dataclass
class TrainRSCConfig:
    """Closed-loop training settings, in parts; every default is the paper's except the fusion term
    (``loss.fusion_weight=1``; 0 is the paper's loss).

    Ablations: ``loss.penalty=0`` (no penalty), ``rsc.closed_loop=False`` (task features replaced by zeros),
    ``optim.aggregate="mean"``, ``rsc.selection="upstream"``, ``rsc.task_encoder="upstream"``.

    Example:
        >>> cfg = TrainRSCConfig(streams=RSCStreams(tasks=["saliency"]), optim=RSCOptimConfig(steps=10))
        >>> cfg.to_dict()["optim"]["steps"], TrainRSCConfig.from_dict({"steps": 10}).optim.steps
        (10, 10)
    """

    streams: RSCStreams = field(default_factory=RSCStreams)
    rsc: RSCModelConfig = field(default_factory=RSCModelConfig)
    loss: LossWeights = field(default_factory=LossWeights)
    optim: RSCOptimConfig = field(default_factory=RSCOptimConfig)
    run: RSCRunConfig = field(default_factory=RSCRunConfig)

    def other_task(self, k: int, step: int) -> int | None:
        """Index of the task whose network's features give task ``k``'s contrasting compensation at ``step`` for
        the specificity term: the other tasks in turn (``None`` when the term is off, there is one task, or the
        closed loop is off: zero features are the same for every task)."""
        n = len(self.streams.tasks)
        if not self.loss.specificity_weight or n < 2 or not self.rsc.closed_loop:
            return None
        return (k + 1 + step % (n - 1)) % n

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainRSCConfig:
        """From :meth:`to_dict`, or from the flat records of checkpoints written before the parts existed."""
        if any(k in _SECTIONS for k in d):
            parts = {k: dict(d.get(k) or {}) for k in _SECTIONS}
        else:
            parts = {k: {f.name: d[f.name] for f in fields(c) if f.name in d} for k, c in _SECTIONS.items()}
        if isinstance(parts["rsc"].get("bank"), dict):
            parts["rsc"]["bank"] = BankConfig(**parts["rsc"]["bank"])
        return cls(**{k: _SECTIONS[k](**v) for k, v in parts.items()})


__all__ = ["LossWeights", "RSCModelConfig", "RSCOptimConfig", "RSCRunConfig", "RSCStreams", "TrainRSCConfig"]
