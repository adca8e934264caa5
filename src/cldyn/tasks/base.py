"""The task-adapter protocol: how CLDyN talks to a frozen downstream network.

The closed loop needs, from each downstream network, (a) the features of one chosen layer for an image and (b) a
task loss that is differentiable with respect to that image. A :class:`TaskAdapter` wraps a network with its own
pre-processing, feature hook, loss, prediction and metrics, behind one interface, so detection, segmentation,
saliency and user-supplied networks plug into CLDyN the same way.

Images given to adapters are always RGB in [0, 1], ``(B, 3, H, W)``; gray images are repeated to three channels by
the caller (:func:`as_rgb`).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from cldyn.errors import CheckpointError, CldynError
from cldyn.runtime import require_extra
from cldyn.weights.checkpoint import load_checkpoint, load_state_strict, save_checkpoint, split_prefix

# ImageNet statistics, used by the ResNet and SegFormer adapters (their usual input normalisation).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize(image: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Differentiable per-channel ``(x - mean) / std`` of ``(B, 3, H, W)``."""
    m = torch.tensor(mean, dtype=image.dtype, device=image.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=image.dtype, device=image.device).view(1, -1, 1, 1)
    return (image - m) / s


class TaskAdapter(ABC):
    """A downstream network as CLDyN sees it.

    Subclasses set :attr:`task` (the label layout and metrics they read: ``detection``, ``segmentation``,
    ``saliency``; or a name of their own, for a network that is only fused for, never trained or scored), optionally
    :attr:`label_classes` (which of the dataset's classes they use), build
    :attr:`model` in ``__init__`` from a config dict (no download), and name the layer whose output
    :meth:`features` returns (:attr:`feature_layer`, a module name of :attr:`model`).

    Frozen use (:meth:`freeze`) puts the network in eval mode with ``requires_grad=False``: its weights and
    BatchNorm statistics cannot change, while gradients still flow through it to the input image.
    """

    task: ClassVar[str] = "task"
    # The dataset's class ids that the network reads, in its own class order (``None``: all, ids unchanged). A person
    # detector on MSRS (``0 person, 1 bicycle, 2 car``) sets ``(0,)``: person boxes become its class 0 and the other
    # boxes are dropped; for segmentation, pixels of other classes become its class 0 (its background).
    label_classes: ClassVar[tuple[int, ...] | None] = None
    # optional dependencies (module -> the pip extra that installs it), checked before the adapter is built
    requires: ClassVar[dict[str, str]] = {}
    model: nn.Module
    feature_layer: str

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.config: dict[str, Any] = dict(config or {})

    @classmethod
    def check_requires(cls, what: str) -> None:
        """Raise :class:`~cldyn.errors.MissingExtraError` (one line naming the pip extra) when a module of
        :attr:`requires` is not installed; ``what`` names the caller in the message."""
        for module, extra in cls.requires.items():
            require_extra(module, extra, what)

    # -- the protocol --------------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.task

    @abstractmethod
    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        """RGB ``(B, 3, H, W)`` in [0, 1] -> the network's input (differentiable)."""

    @abstractmethod
    def forward(self, image: torch.Tensor) -> Any:
        """The network's raw output for RGB in [0, 1] (what :meth:`loss_from_output` and :meth:`predict` use)."""

    @abstractmethod
    def loss_from_output(self, output: Any, targets: Any) -> torch.Tensor:
        """Task loss of a raw output against targets (scalar)."""

    @abstractmethod
    def predict(self, image: torch.Tensor) -> Any:
        """Final predictions for RGB in [0, 1] (no gradient needed)."""

    @abstractmethod
    def evaluate(self, predictions: Sequence[Any], targets: Sequence[Any]) -> dict[str, float]:
        """Dataset-level metrics from per-image predictions and targets."""

    def metric_resampler(self, predictions: Sequence[Any], targets: Sequence[Any],
                         metric: str) -> Callable[[Any], float] | None:
        """For bootstrapping: ``score(index) -> float``, ``metric`` of :meth:`evaluate` on the predictions and targets
        at the integer positions ``index`` (repeats allowed), from per-image parts computed once; ``None`` (the
        default) when there is no faster way than :meth:`evaluate` on the resampled lists."""
        return None

    def confidence(self, image: torch.Tensor) -> torch.Tensor:
        """``(B,)``: how sure the network is of its prediction on each RGB image in [0, 1], higher is surer, from
        the network alone (no label). It lets CLDyN choose each image's strength (``--strength auto``); comparable
        between images of one scene, not between scenes. Networks without one refuse that choice."""
        raise CldynError(f"{self.name}: this network gives no confidence, which --strength auto needs "
                         "(define TaskAdapter.confidence)")

    def loss(self, image: torch.Tensor, targets: Any) -> torch.Tensor:
        """Task loss for RGB in [0, 1]; the gradient reaches ``image``."""
        return self.loss_from_output(self.forward(image), targets)

    def features(self, image: torch.Tensor) -> torch.Tensor:
        """Output of :attr:`feature_layer` for RGB in [0, 1], ``(B, C, h, w)``."""
        feats, _ = self.features_and_output(image)
        return feats

    def features_and_output(self, image: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """The hooked features and the raw output from one forward pass."""
        with self.capture() as grabbed:
            out = self.forward(image)
        if "features" not in grabbed:
            raise RuntimeError(f"{self.name}: layer {self.feature_layer!r} was not run in the forward pass")
        return grabbed["features"], out

    @contextmanager
    def capture(self) -> Iterator[dict[str, torch.Tensor]]:
        """Record the output of :attr:`feature_layer` during forward passes inside the ``with`` block."""
        modules = dict(self.model.named_modules())
        if self.feature_layer not in modules:
            raise ValueError(f"{self.name}: no layer named {self.feature_layer!r}; some layers: "
                             f"{[n for n in modules if n][:8]}")
        grabbed: dict[str, torch.Tensor] = {}

        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            grabbed["features"] = output[0] if isinstance(output, (tuple, list)) else output

        handle = modules[self.feature_layer].register_forward_hook(hook)
        try:
            yield grabbed
        finally:
            handle.remove()

    def load_pretrained(self, path: str) -> None:
        """Load starting weights converted by ``cldyn convert-pretrained`` (an ImageNet backbone or a whole network)
        before training; adapters without a pretrained start raise."""
        raise CldynError(f"{self.name} ({self.config.get('arch', type(self.model).__name__)}) has no pretrained "
                         f"start; {path} cannot be used")

    # -- state ---------------------------------------------------------------------------------------------

    def freeze(self) -> TaskAdapter:
        """Eval mode and no parameter gradients: a fixed network that still passes gradients to its input."""
        self.model.eval().requires_grad_(False)
        return self

    def to(self, device: torch.device | str) -> TaskAdapter:
        self.model.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def save(self, path: str | Path, extra_meta: dict[str, Any] | None = None, half: bool = False) -> str:
        """Weights (safetensors, optionally fp16) with the adapter's class and config; returns the SHA-256."""
        state = {f"model/{k}": (v.half() if half and v.is_floating_point() else v)
                 for k, v in self.model.state_dict().items()}
        meta = {"kind": "task", "task": self.task, "adapter": f"{type(self).__module__}:{type(self).__qualname__}",
                "config": self.config, **(extra_meta or {})}
        return save_checkpoint(path, state, meta)

    @classmethod
    def load(cls, path: str | Path, expected_sha256: str | None = None) -> TaskAdapter:
        """Rebuild an adapter of this class from :meth:`save` output (weights restored in fp32)."""
        path = Path(path)
        tensors, meta = load_checkpoint(path, expected_sha256)
        if meta.get("kind") not in ("task", "train_task"):
            raise CheckpointError(path, f"holds a {meta.get('kind')!r} checkpoint, not a task network")
        if meta.get("task") != cls.task:
            raise CheckpointError(path, f"holds a {meta.get('task')!r} network, not {cls.task!r}")
        adapter = cls(meta.get("config") or {})
        state = {k: v.float() if v.is_floating_point() and not k.endswith("num_batches_tracked") else v
                 for k, v in split_prefix(tensors, "model").items()}
        load_state_strict(adapter.model, state, path)
        return adapter

    def describe(self) -> str:
        n = sum(p.numel() for p in self.model.parameters())
        return f"{self.name}: {type(self.model).__name__}, {n:,} parameters, features from {self.feature_layer!r}"

    def config_json(self) -> str:
        return json.dumps(self.config, sort_keys=True)
