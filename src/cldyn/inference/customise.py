"""What task-customised fusion needs besides the VFN: a frozen task network and RSC weights that fit the VFN."""

from __future__ import annotations

from pathlib import Path

from cldyn.errors import CldynError
from cldyn.model.rsc import AUTO_STRENGTH, DEFAULT_MAX_CHANGE, RSC
from cldyn.model.vfn import VFN
from cldyn.tasks import load_task_for
from cldyn.tasks.base import TaskAdapter
from cldyn.weights import load_rsc_or_shipped, shipped_rsc_settings


def load_customisation(task: str | None, vfn: VFN, task_weights: str | Path | None = None,
                       rsc_weights: str | Path | None = None) -> tuple[TaskAdapter | None, RSC | None]:
    """``(adapter, rsc)`` for fusion customised for ``task``, or ``(None, None)`` for plain VFN fusion.

    Args:
        task: ``detection``, ``segmentation``, ``saliency``, ``module:Class`` (needs ``task_weights``), or
            ``None`` / ``"none"``.
        vfn: the VFN in use; the RSC must fit it.
        task_weights: the task network's checkpoint (default: the shipped network).
        rsc_weights: RSC weights from ``cldyn train-rsc`` (default: the shipped ones).

    Raises:
        CldynError: unknown task, missing optional extra, no shipped weights, or weights that do not fit.
    """
    if task in (None, "none"):
        return None, None
    adapter = load_task_for(task, task_weights)
    return adapter, load_rsc_or_shipped(rsc_weights, vfn)


# How far the customisation goes by default, from the VFN's image (0) to the RSC's full compensation (1, the paper's).
# 0.5 is the knee measured on MSRS val with the networks trained on visible images and the `visible` RSC: it keeps
# 60-140% of the task gains of full strength (saliency +0.038 against +0.063 max F, segmentation +0.0135 against
# +0.0095 mIoU) at half the loss of fusion quality (VIF -9% against -20%, SSIM -3% against -9%).
DEFAULT_STRENGTH = 0.5


def check_max_change(max_change: float | None) -> float | None:
    """The limit on each image's mean change at full strength, in 8-bit grey levels
    (:func:`cldyn.model.rsc.at_strength`): ``None`` or 0 for no limit, or a one-line error.

    >>> check_max_change(6), check_max_change(0)
    (6.0, None)
    """
    if max_change is None or float(max_change) == 0.0:
        return None
    m = float(max_change)
    if not m > 0.0:  # also refuses NaN
        raise CldynError(f"--max-change must be a number of grey levels > 0 (0: no limit), got {max_change}")
    return m


def check_strength(strength: float | str) -> float | str:
    """``strength`` as a float in [0, 1] (0: the VFN's image, 1: the full customisation) or ``"auto"`` (chosen per
    image by the task network's confidence, :meth:`cldyn.model.rsc.CLDyN.choose_strength`), or a one-line error.

    >>> check_strength(0.5), check_strength("auto")
    (0.5, 'auto')
    """
    if strength == AUTO_STRENGTH:
        return AUTO_STRENGTH
    try:
        s = float(strength)
    except (TypeError, ValueError):
        s = float("nan")
    if not 0.0 <= s <= 1.0:  # also refuses NaN
        raise CldynError(f"--strength must be in [0, 1] (0: VFN, 1: full customisation) or 'auto', got {strength}")
    return s


def strength_arg(text: str) -> float | str:
    """An argparse ``type`` for ``--strength``: a number or ``auto`` (checked later by :func:`check_strength`)."""
    return AUTO_STRENGTH if text == AUTO_STRENGTH else float(text)


def customisation_settings(rsc_weights: str | Path | None, strength: float | str | None = None,
                           max_change: float | None = None) -> tuple[float | str, float | None, tuple[str, ...]]:
    """``(strength, max_change, from_rsc)``: each setting as given; where not given (``None``), the one that the
    shipped RSC named by ``rsc_weights`` is meant to run with (``from_rsc`` names those), else the defaults
    (:data:`DEFAULT_STRENGTH`, :data:`cldyn.model.rsc.DEFAULT_MAX_CHANGE`). Both are checked
    (:func:`check_strength`, :func:`check_max_change`; a ``max_change`` of 0 comes back as ``None``, no limit).

    >>> customisation_settings("infrared")  # made for networks that want tens of grey levels moved
    (1.0, None, ('strength', 'max_change'))
    >>> customisation_settings("infrared", strength=0.5)
    (0.5, None, ('max_change',))
    >>> customisation_settings(None)
    (0.5, 6.0, ())
    """
    own = shipped_rsc_settings(rsc_weights)
    given = {"strength": strength, "max_change": max_change}
    defaults = {"strength": DEFAULT_STRENGTH, "max_change": DEFAULT_MAX_CHANGE}
    from_rsc = tuple(k for k in given if given[k] is None and k in own)
    value = {k: given[k] if given[k] is not None else own.get(k, defaults[k]) for k in given}
    return check_strength(value["strength"]), check_max_change(value["max_change"]), from_rsc
