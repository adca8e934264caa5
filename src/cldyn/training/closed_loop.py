"""The closed loop's per-batch pieces: the base pass, the reward-penalty loss with its optional terms, and helpers
of :func:`cldyn.training.rsc.train_rsc` (which runs them over tasks and steps).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from cldyn.errors import CldynError
from cldyn.model.color import luma_of, with_colour_of
from cldyn.model.ops import as_rgb
from cldyn.model.rsc import RSC, CLDyN, RSCConfig
from cldyn.tasks import TaskAdapter
from cldyn.training.losses import fusion_loss


def reward_penalty(loss: torch.Tensor, base_loss: torch.Tensor, weight: float = 5.0) -> torch.Tensor:
    """``L + weight * max(0, L - L_base)``: no extra cost while the compensated image is at least as good for the
    task as the base image, a steep one once it is worse."""
    return loss + weight * torch.relu(loss - base_loss)


# task features, task loss, reach image, base luminance
BasePass = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]


def task_input(vis: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """What a task network sees of a fused luminance ``y`` ``(B, 1, H, W)``: RGB with ``vis``'s colour put back
    (gray replicated for a gray ``vis``)."""
    return as_rgb(with_colour_of(vis, y))


def specificity_hinge(loss: torch.Tensor, other_loss: torch.Tensor, base_loss: torch.Tensor,
                      margin: float = 0.02) -> torch.Tensor:
    """``max(0, margin + (loss - other_loss) / base_loss)``: zero once the compensation made with this task's
    features beats the one made with another task's features by ``margin`` of the base loss (scale-free, so tasks
    with losses of different size weigh alike)."""
    return torch.relu(margin + (loss - other_loss) / base_loss.detach().clamp_min(1e-8))


@torch.no_grad()
def features_of_base_luma(adapter: TaskAdapter, vis: torch.Tensor, base_y: torch.Tensor) -> torch.Tensor:
    """A task network's features of the base fusion given by its luminance ``base_y`` (``vis``'s colour put
    back), as :func:`base_pass` computes them for its own task: the contrasting features of the specificity term."""
    return adapter.features(task_input(vis, base_y))


@torch.no_grad()
def base_pass(model: CLDyN, adapter: TaskAdapter, ir: torch.Tensor, vis: torch.Tensor, targets: Any) -> BasePass:
    """The closed loop's first half for a batch: the task features of the base fusion, the task loss on it, the
    base pass's reach image (``None`` unless the VFN has a reach head; see :meth:`CLDyN.base_and_reach`) and the
    base fusion's luminance ``(B, 1, H, W)``."""
    base_y, reach = model.base_luma_and_reach(ir, vis)
    feats, out = adapter.features_and_output(task_input(vis, base_y))
    return feats, adapter.loss_from_output(out, targets), reach, base_y


def closed_loop_losses(model: CLDyN, adapter: TaskAdapter, ir: torch.Tensor, vis: torch.Tensor, targets: Any,
                       penalty: float, gumbel: torch.Tensor | None = None,
                       fusion_weight: float = 0.0, base: BasePass | None = None, change_weight: float = 0.0,
                       other_features: torch.Tensor | None = None, specificity_weight: float = 0.0,
                       specificity_margin: float = 0.02, untoned: torch.Tensor | None = None
                       ) -> tuple[torch.Tensor, dict[str, float]]:
    """One task's loss for a batch, reward-penalty plus ``fusion_weight`` times the VFN fusion loss of the
    compensated luminance plus ``change_weight`` times its mean absolute change from the base luminance plus
    ``specificity_weight`` times :func:`specificity_hinge` against the compensation made with ``other_features``
    (another task network's features of the same base image, same Gumbel noise), and its parts for logging
    (``gumbel``: see :meth:`cldyn.model.rsc.RSC.gumbel_shape`; ``base``: this batch's :func:`base_pass`, when already
    computed; ``untoned``: the compensated luminance before the tone head, when only the tone head trains and it
    was computed already)."""
    # An RSC built with closed_loop=False (the ablation) replaces the task features by zeros itself.
    feats, base_loss, reach, base_y = base if base is not None else base_pass(model, adapter, ir, vis, targets)
    vis_y = luma_of(vis)
    if untoned is None:
        comp_y = model.compensated_luma(ir, vis_y, feats, gumbel, base_reach=reach)
    else:
        comp_y = model.rsc.tone_curve(feats, untoned)
    loss = adapter.loss(task_input(vis, comp_y), targets)
    total = reward_penalty(loss, base_loss, penalty)
    parts = {"loss": loss.item(), "base_loss": base_loss.item(), "penalty": (total - loss).item(),
             "penalty_active": float(loss > base_loss)}
    if fusion_weight:
        fusion = fusion_loss(comp_y, ir, vis_y)[0]
        total = total + fusion_weight * fusion
        parts["fusion"] = fusion.item()
    change = (comp_y - base_y).abs().mean()
    parts["change"] = change.item()  # logged always: the customisation's mean |change| of the image, [0, 1] units
    if change_weight:
        total = total + change_weight * change
    if specificity_weight and other_features is not None:
        other_y = model.compensated_luma(ir, vis_y, other_features, gumbel, base_reach=reach)
        other_loss = adapter.loss(task_input(vis, other_y), targets)
        hinge = specificity_hinge(loss, other_loss, base_loss, specificity_margin)
        total = total + specificity_weight * hinge
        parts.update(other_loss=other_loss.item(), specificity=hinge.item(),
                     specific=float(loss + specificity_margin * base_loss < other_loss))
    return total, {**parts, "total": total.item()}


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


def with_fresh_tone_head(rsc: RSC, cfg: RSCConfig) -> RSC:
    """``rsc``'s weights in an RSC of configuration ``cfg``, which adds a fresh (identity) tone head: to train a
    tone head on top of trained A2SI blocks."""
    fresh = RSC(cfg)
    missing, unexpected = fresh.load_state_dict(rsc.state_dict(), strict=False)
    if unexpected or any(not k.startswith("tone.") for k in missing):
        raise CldynError(f"RSC weights do not fit the requested configuration (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]})")
    return fresh


def pathway_mask(params: list[torch.nn.Parameter], pathway: set[int]) -> torch.Tensor:
    """Which entries of the flattened ``params`` belong to the task-requirement pathway (``pathway``: the ids of its
    parameters), as bools, one per scalar."""
    return torch.cat([torch.full((p.numel(),), id(p) in pathway, dtype=torch.bool) for p in params])


__all__ = ["BasePass", "base_pass", "closed_loop_losses", "features_of_base_luma", "pathway_mask",
           "reward_penalty", "specificity_hinge", "task_input", "to_training_memory", "with_fresh_tone_head"]
