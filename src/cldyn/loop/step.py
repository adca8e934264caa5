"""One step of the closed loop: the base pass, one task's loss and gradient, and the update that combines the
tasks' gradients. :func:`cldyn.training.rsc.train_rsc` runs it over tasks and steps."""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from cldyn.loop.cache import FrozenPassCache
from cldyn.loop.cagrad import combine
from cldyn.loop.fusion_loss import fusion_loss
from cldyn.loop.losses import LossWeights, reward_penalty, specificity_hinge
from cldyn.model.color import luma_of, with_colour_of
from cldyn.model.ops import as_rgb
from cldyn.model.rsc import CLDyN
from cldyn.tasks import TaskAdapter


class BasePass(NamedTuple):
    """The closed loop's first half for a batch, all without gradient.

    Attributes:
        features: the task network's features of the base fusion (what the RSC reads).
        loss: the task loss on the base fusion, ``L_base`` of the reward-penalty loss.
        reach: the VFN's reach image, ``None`` unless the VFN has a reach head (see :meth:`CLDyN.base_and_reach`).
        luma: the base fusion's luminance ``(B, 1, H, W)``.
        camera_loss: the least of the task losses on the visible and on the infrared image alone, ``None`` unless
            asked for (the ``best_camera`` reference of the reward-penalty loss).
    """

    features: torch.Tensor
    loss: torch.Tensor
    reach: torch.Tensor | None
    luma: torch.Tensor
    camera_loss: torch.Tensor | None = None

    def reference(self, kind: str = "base") -> torch.Tensor:
        """``L_base`` of the reward-penalty loss: the base loss, or (``best_camera``) the least of it and
        :attr:`camera_loss`."""
        if kind == "base":
            return self.loss
        if self.camera_loss is None:
            raise ValueError("the best_camera reference needs a base pass with cameras=True")
        return torch.minimum(self.loss, self.camera_loss)


@dataclass
class TaskBatch:
    """One task's batch of a step: ``ir`` ``(B, 1, H, W)``, ``vis`` ``(B, 3 or 1, H, W)``, the task's targets, the
    Gumbel noise of A2SI's choices (see :meth:`cldyn.model.rsc.RSC.gumbel_shape`) and ``key``, which names the crop
    for :class:`FrozenPassCache` (e.g. ``(task, batch index)``)."""

    ir: torch.Tensor
    vis: torch.Tensor
    targets: Any
    gumbel: torch.Tensor | None = None
    key: Hashable = None


def task_input(vis: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """What a task network sees of a fused luminance ``y`` ``(B, 1, H, W)``: RGB with ``vis``'s colour put back
    (gray replicated for a gray ``vis``)."""
    return as_rgb(with_colour_of(vis, y))


@torch.no_grad()
def features_of_base_luma(adapter: TaskAdapter, vis: torch.Tensor, base_y: torch.Tensor) -> torch.Tensor:
    """A task network's features of the base fusion given by its luminance ``base_y`` (``vis``'s colour put
    back), as :func:`base_pass` computes them for its own task: the contrasting features of the specificity term."""
    return adapter.features(task_input(vis, base_y))


@torch.no_grad()
def base_pass(model: CLDyN, adapter: TaskAdapter, ir: torch.Tensor, vis: torch.Tensor, targets: Any,
              cameras: bool = False) -> BasePass:
    """The base fusion of a batch, the task network's features of it and its task loss; with ``cameras``, also the
    least of the task losses on the visible image and on the infrared image (gray, as RGB) alone."""
    base_y, reach = model.base_luma_and_reach(ir, vis)
    feats, out = adapter.features_and_output(task_input(vis, base_y))
    camera_loss = None
    if cameras:
        camera_loss = torch.minimum(adapter.loss(as_rgb(vis), targets), adapter.loss(as_rgb(ir), targets))
    return BasePass(feats, adapter.loss_from_output(out, targets), reach, base_y, camera_loss)


def closed_loop_losses(model: CLDyN, adapter: TaskAdapter, ir: torch.Tensor, vis: torch.Tensor, targets: Any,
                       weights: LossWeights | None = None, *, gumbel: torch.Tensor | None = None,
                       base: BasePass | None = None, other_features: torch.Tensor | None = None,
                       untoned: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """One task's closed-loop loss for a batch and its parts (floats, for logging).

    The loss is the reward-penalty loss plus, by ``weights``: the VFN fusion loss of the compensated luminance, its
    mean absolute change from the base luminance, and :func:`specificity_hinge` against the compensation made with
    ``other_features`` (another task network's features of the same base image, same Gumbel noise).

    Args:
        base: this batch's :func:`base_pass`, when already computed.
        untoned: the compensated luminance before the tone head, when only the tone head trains (computed once).
    """
    w = weights or LossWeights()
    # An RSC built with closed_loop=False (the ablation) replaces the task features by zeros itself.
    base = base if base is not None else base_pass(model, adapter, ir, vis, targets, w.reference == "best_camera")
    vis_y = luma_of(vis)
    if untoned is None:
        comp_y = model.compensated_luma(ir, vis_y, base.features, gumbel, base_reach=base.reach)
    else:
        comp_y = model.rsc.tone_curve(base.features, untoned)
    loss = adapter.loss(task_input(vis, comp_y), targets)
    reference = base.reference(w.reference)
    total = reward_penalty(loss, reference, w.penalty)
    parts = {"loss": loss.item(), "base_loss": base.loss.item(), "penalty": (total - loss).item(),
             "penalty_active": float(loss > reference)}
    if base.camera_loss is not None:
        parts["camera_loss"] = base.camera_loss.item()
    if w.fusion_weight:
        fusion = fusion_loss(comp_y, ir, vis_y)[0]
        total = total + w.fusion_weight * fusion
        parts["fusion"] = fusion.item()
    change = (comp_y - base.luma).abs().mean()
    parts["change"] = change.item()  # logged always: the customisation's mean |change| of the image, [0, 1] units
    if w.change_weight:
        total = total + w.change_weight * change
    if w.specificity_weight and other_features is not None:
        other_y = model.compensated_luma(ir, vis_y, other_features, gumbel, base_reach=base.reach)
        other_loss = adapter.loss(task_input(vis, other_y), targets)
        hinge = specificity_hinge(loss, other_loss, base.loss, w.specificity_margin)
        total = total + w.specificity_weight * hinge
        parts.update(other_loss=other_loss.item(), specificity=hinge.item(),
                     specific=float(loss + w.specificity_margin * base.loss < other_loss))
    return total, {**parts, "total": total.item()}


def task_gradient(model: CLDyN, adapter: TaskAdapter, batch: TaskBatch, params: list[torch.nn.Parameter],
                  weights: LossWeights, cache: FrozenPassCache, other: TaskAdapter | None = None,
                  tone_only: bool = False) -> tuple[torch.Tensor, dict[str, float]]:
    """One task's flattened gradient ``(P,)`` over ``params`` (zeros where a parameter is unused) and its loss parts.

    ``other``: the task network whose features of the base image give the specificity term's contrast;
    ``tone_only``: only the tone head trains, so the frozen blocks' compensation is computed once per crop.
    The frozen passes go through ``cache`` under ``batch.key``.
    """
    ir, vis = batch.ir, batch.vis
    base = cache.get("base", batch.key, lambda: base_pass(model, adapter, ir, vis, batch.targets,
                                                          weights.reference == "best_camera"))
    other_feats = None
    if other is not None:
        other_feats = cache.get(("other", id(other)), batch.key,
                                lambda: features_of_base_luma(other, vis, base.luma))
    untoned = None
    if tone_only:  # the frozen blocks run without gradient; their output depends on the crop alone
        def frozen_blocks() -> torch.Tensor:
            with torch.no_grad():
                return model.untoned_luma(ir, luma_of(vis), base.features, base_reach=base.reach)
        untoned = cache.get("untoned", batch.key, frozen_blocks)
    total, parts = closed_loop_losses(model, adapter, ir, vis, batch.targets, weights, gumbel=batch.gumbel,
                                      base=base, other_features=other_feats, untoned=untoned)
    grads = torch.autograd.grad(total, params, allow_unused=True)
    flat = torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                      for g, p in zip(grads, params, strict=True)])
    return flat, parts


def apply_combined(params: list[torch.nn.Parameter], grads: torch.Tensor, aggregate: str = "cagrad",
                   c: float = 0.5, clip: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Combine the task gradients ``grads`` ``(T, P)`` (CAGrad, mean or PCGrad), write the direction into the
    parameters' ``.grad`` and clip it to norm ``clip``; returns the direction ``(P,)`` before clipping."""
    direction = combine(grads, aggregate, c, generator)
    offset = 0
    for p in params:
        p.grad = direction[offset:offset + p.numel()].view_as(p).clone()
        offset += p.numel()
    torch.nn.utils.clip_grad_norm_(params, clip)
    return direction


def to_training_memory(model: CLDyN, adapters: Iterable[TaskAdapter], device: torch.device,
                       channels_last: bool = True) -> torch.memory_format:
    """Put ``model`` and the adapters' networks in place into the closed loop's memory format, and return it for
    the batches: channels-last on CPU (oneDNN's fast path; a step at batch 4, 256² on one thread 1.22-1.29x faster),
    else contiguous. In place, so an optimiser made before or after keeps the same parameters."""
    memory = torch.channels_last if channels_last and device.type == "cpu" else torch.contiguous_format
    model.to(memory_format=memory)
    for a in adapters:
        a.model.to(memory_format=memory)
    return memory


def pathway_mask(params: list[torch.nn.Parameter], part: set[int]) -> torch.Tensor:
    """Which entries of the flattened ``params`` belong to a part of the RSC (``part``: the ids of its
    parameters, e.g. the task-requirement pathway), as bools, one per scalar."""
    return torch.cat([torch.full((p.numel(),), id(p) in part, dtype=torch.bool) for p in params])



__all__ = ["BasePass", "TaskBatch", "apply_combined", "base_pass", "closed_loop_losses", "features_of_base_luma",
           "pathway_mask", "task_gradient", "task_input", "to_training_memory"]
