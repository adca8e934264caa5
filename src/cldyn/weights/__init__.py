"""The one home of weights: the model registry, the shipped-weights manifest, load/save of VFN and RSC.

Shipped files live beside this module (``cldyn/weights/*.safetensors``) and are listed with their SHA-256 in
``manifest.json``; every load of a shipped file checks its hash. The file format itself (safetensors tensors +
JSON metadata, atomic writes, optimiser state) is :mod:`cldyn.weights.checkpoint`. Model files never import this
module: the registry below is data that points at them (as in timm).
"""

from __future__ import annotations

import json
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import safe_open
from torch import nn

from cldyn.data.io import atomic_write_bytes
from cldyn.errors import CheckpointError, CldynError
from cldyn.model.rsc import RSC, RSCConfig, rsc_fit_problem
from cldyn.model.vfn import VFN, VFNConfig
from cldyn.version import __version__
from cldyn.weights.checkpoint import (
    flat_train_config,
    load_checkpoint,
    load_state_strict,
    save_checkpoint,
    sha256_file,
    split_prefix,
)

MANIFEST = "manifest.json"
SHIPPED_VFN = "vfn.safetensors"
SHIPPED_RSC = "rsc.safetensors"

# Registry: VFN name -> configuration, and the names whose weights ship in the package.
MODEL_CONFIGS: dict[str, VFNConfig] = {
    "vfn": VFNConfig(),
    "vfn_small": VFNConfig(num_blocks=2),
    # the paper's VFN whose decoder corrects max(IR, Y) instead of drawing the image itself (same parameters)
    "vfn_maxskip": VFNConfig(skip="max"),
    # the same, correcting max(IR, Y) with its detail boosted by 0.15 (sigma 1), a fixed unsharp mask; its second
    # (paper-form) output head carries the RSC's compensation to the image. The shipped VFN.
    "vfn_maxdetail": VFNConfig(skip="max", detail_gain=0.15, reach_head=True),
}
SHIPPED_MODEL = "vfn_maxdetail"
PRETRAINED_FILES: dict[str, str] = {SHIPPED_MODEL: SHIPPED_VFN}


def shipped_task_file(task: str) -> str:
    """File name of the network shipped for a built-in task, or of a shipped network by name (e.g.
    ``detection-visible``)."""
    return f"task_{task}.safetensors"


def shipped_networks() -> list[str]:
    """Names of the task networks shipped in the package: one per built-in task (``detection``: trained on the
    shipped VFN's fused images) and the networks trained elsewhere (``detection-visible``: on visible images only).

    >>> "detection" in shipped_networks()
    True
    """
    return sorted(k.removeprefix("task_").removesuffix(".safetensors") for k, v in read_manifest().items()
                  if v.get("kind") == "task")


def shipped_weights_dir() -> Path:
    return Path(str(resources.files("cldyn") / "weights"))


def read_manifest() -> dict[str, dict[str, Any]]:
    """``manifest.json``: shipped file name -> its kind, SHA-256, source and training record."""
    path = shipped_weights_dir() / MANIFEST
    if not path.is_file():
        raise CheckpointError(path, "no shipped weights manifest (package installed incompletely?)")
    return json.loads(path.read_text())


def shipped_file(name: str, missing: str) -> tuple[Path, str]:
    """Path and recorded SHA-256 of a shipped file; ``missing`` is the error when this release has no such file."""
    entry = read_manifest().get(name)
    if entry is None:
        raise CldynError(missing)
    return shipped_weights_dir() / name, entry["sha256"]


def names_shipped_file(value: str | Path, file_name: str) -> bool:
    """``value`` is the name of a shipped file (``file_name``, in the manifest) rather than a path: no suffix, no
    folder, and no such file on disk. ``detection-visible`` names ``task_detection-visible.safetensors``."""
    value = str(value)
    return not Path(value).suffix and "/" not in value and not Path(value).exists() and file_name in read_manifest()


def record_shipped(name: str, entry: dict[str, Any], folder: str | Path | None = None) -> Path:
    """Add or replace the manifest entry of a shipped file (used by ``scripts/ship_weights.py``) in the manifest of
    ``folder`` (default: the package's weights)."""
    path = Path(folder or shipped_weights_dir()) / MANIFEST
    manifest = json.loads(path.read_text()) if path.is_file() else {}
    manifest[name] = entry
    atomic_write_bytes(path, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    return path


# --- VFN ------------------------------------------------------------------------------------------------------


def save_vfn(path: str | Path, model: nn.Module, extra_meta: dict[str, Any] | None = None,
             half: bool = False) -> str:
    """Save a VFN's weights (optionally fp16) with its config; returns the SHA-256."""
    state = {f"model/{k}": (v.half() if half and v.is_floating_point() else v) for k, v in model.state_dict().items()}
    meta = {"kind": "vfn", "config": model.cfg.to_dict(), **(extra_meta or {})}
    return save_checkpoint(path, state, meta)


def load_vfn(path: str | Path, expected_sha256: str | None = None) -> VFN:
    """Build a VFN from a checkpoint (a weights file or a training checkpoint)."""
    path = Path(path)
    tensors, meta = load_checkpoint(path, expected_sha256)
    if meta.get("kind") not in ("vfn", "train_vfn"):
        raise CheckpointError(path, f"holds a {meta.get('kind')!r} checkpoint, not a VFN")
    try:
        cfg = VFNConfig.from_dict(meta["config"] if meta.get("kind") == "vfn" else meta["model_config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(path, f"invalid VFN config in metadata ({exc})") from None
    model = VFN(cfg)
    state = {k: v.float() if v.is_floating_point() else v for k, v in split_prefix(tensors, "model").items()}
    load_state_strict(model, state, path)
    return model.eval()


def load_pretrained_vfn() -> VFN:
    """The VFN shipped inside the package, with its SHA-256 verified against ``weights/manifest.json``."""
    path = shipped_weights_dir() / MANIFEST
    path, sha = shipped_file(SHIPPED_VFN, f"{path}: no entry for {SHIPPED_VFN}")
    return load_vfn(path, expected_sha256=sha)


def load_vfn_or_shipped(path: str | Path | None) -> VFN:
    """``load_vfn(path)``, or the shipped VFN when ``path`` is ``None``."""
    return load_pretrained_vfn() if path is None else load_vfn(path)


def list_models() -> list[str]:
    """Names accepted by :func:`create_vfn`."""
    return sorted(MODEL_CONFIGS)


def create_vfn(name: str = "vfn", pretrained: bool = False, **overrides) -> VFN:
    """Build a VFN by registry name, optionally with the weights shipped in the package.

    Args:
        name: one of :func:`list_models`.
        pretrained: load the shipped weights (only ``SHIPPED_MODEL``, ``"vfn_maxdetail"``, with no overrides).
        overrides: fields of :class:`VFNConfig` to change.

    Example:
        >>> create_vfn("vfn_small").num_stages
        2
    """
    if name not in MODEL_CONFIGS:
        raise ValueError(f"unknown VFN {name!r}; choose from {list_models()}")
    if pretrained:
        if name not in PRETRAINED_FILES or overrides:
            raise ValueError(f"shipped weights exist only for {sorted(PRETRAINED_FILES)} with no overrides, not "
                             f"{name!r}{' with overrides' if overrides else ''}")
        return load_pretrained_vfn()
    return VFN(VFNConfig.from_dict({**MODEL_CONFIGS[name].to_dict(), **overrides}))


# --- RSC ------------------------------------------------------------------------------------------------------


def save_rsc(path: str | Path, rsc: RSC, extra_meta: dict[str, Any] | None = None) -> str:
    """RSC + bank weights with their config."""
    meta = {"kind": "rsc", "rsc_config": rsc.cfg.to_dict(), "cldyn_version": __version__, **(extra_meta or {})}
    return save_checkpoint(path, {f"rsc/{k}": v for k, v in rsc.state_dict().items()}, meta)


def load_rsc(path: str | Path, expected_sha256: str | None = None, vfn: VFN | None = None) -> RSC:
    """RSC weights from :func:`save_rsc` or a training checkpoint; with ``vfn``, also check that they fit it."""
    path = Path(path)
    tensors, meta = load_checkpoint(path, expected_sha256)
    if meta.get("kind") not in ("rsc", "train_rsc"):
        raise CheckpointError(path, f"holds a {meta.get('kind')!r} checkpoint, not RSC weights")
    try:
        cfg = RSCConfig.from_dict(meta["rsc_config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(path, f"invalid RSC config in metadata ({exc})") from None
    trained = flat_train_config(meta.get("train_config"))
    if "closed_loop" not in meta["rsc_config"] and trained.get("closed_loop") is False:
        cfg = replace(cfg, closed_loop=False)  # trained with --no-closed-loop before the RSC config recorded it
    if vfn is not None and (problem := rsc_fit_problem(cfg, vfn)):
        raise CheckpointError(path, problem)
    rsc = RSC(cfg)
    load_state_strict(rsc, split_prefix(tensors, "rsc"), path)
    return rsc.eval()


def load_pretrained_rsc(vfn: VFN | None = None) -> RSC:
    """The RSC shipped inside the package (SHA-256 verified); with ``vfn``, checked to fit it."""
    path, sha = shipped_file(SHIPPED_RSC, "no shipped RSC weights in this cldyn release; pass --rsc-weights FILE "
                                          "(trained with cldyn train-rsc)")
    return load_rsc(path, sha, vfn)


def shipped_rsc_file(name: str) -> str:
    """File name of a shipped RSC by name: ``visible`` -> ``rsc_visible.safetensors`` (trained with networks that saw
    visible images only)."""
    return f"rsc_{name}.safetensors"


def load_rsc_or_shipped(path: str | Path | None, vfn: VFN | None = None) -> RSC:
    """``load_rsc(path)``; the shipped RSC when ``path`` is ``None``; a shipped RSC by name (``visible``) when
    ``path`` names one (a name without a suffix that is no file)."""
    if path is None:
        return load_pretrained_rsc(vfn)
    if names_shipped_file(path, shipped_rsc_file(str(path))):
        file, sha = shipped_file(shipped_rsc_file(str(path)), "")
        return load_rsc(file, sha, vfn)
    return load_rsc(path, vfn=vfn)


def shipped_rsc_settings(value: str | Path | None) -> dict[str, float]:
    """The settings that a shipped RSC named by ``value`` is meant to run with (its manifest entry's ``settings``,
    e.g. ``{"strength": 1.0, "max_change": 0.0}`` for ``infrared``); ``{}`` for a checkpoint file, ``None`` (the
    default RSC) or a shipped RSC without settings of its own."""
    if value is None or not names_shipped_file(value, shipped_rsc_file(str(value))):
        return {}
    return dict(read_manifest()[shipped_rsc_file(str(value))].get("settings", {}))


# Stored tensors that are not learned: BatchNorm statistics and the A2SI blocks' fixed prototypes.
_BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked", "prototypes")


def shipped_weights_info() -> list[dict[str, Any]]:
    """One row per shipped file, as ``cldyn info`` lists them: ``file``, ``kind``, ``sha256`` (recorded),
    ``sha256_ok`` (the file on disk has it), ``parameters`` (learnable values, read from the file's header),
    ``trained`` (steps, epochs, data and validation score from the training record)."""
    rows = []
    for name, entry in sorted(read_manifest().items()):
        path = shipped_weights_dir() / name
        params = 0
        if path.is_file():
            with safe_open(str(path), framework="pt") as f:  # the header and shapes only, no tensor loaded
                for key in f.keys():  # noqa: SIM118 (a safe_open handle is not a dict)
                    if not key.endswith(_BUFFER_SUFFIXES) and not key.startswith("optim."):
                        shape = f.get_slice(key).get_shape()
                        params += int(np.prod(shape)) if shape else 1
        rows.append({"file": name, "kind": entry.get("kind", "?"), "sha256": entry["sha256"],
                     "sha256_ok": path.is_file() and sha256_file(path) == entry["sha256"], "parameters": params,
                     "trained": _training_summary(entry.get("source_meta") or {})})
    return rows


def _training_summary(meta: dict[str, Any]) -> str:
    """``"960 steps on msrs+roadscene (train)"``-style summary of a checkpoint's training record."""
    cfg = flat_train_config(meta.get("train_config"))
    parts = [f"{meta['global_step']} steps"] if "global_step" in meta else []
    data = cfg.get("data")
    roots = data.values() if isinstance(data, dict) else data if isinstance(data, list) else [data] if data else []
    names = sorted({Path(str(r)).name for r in roots})
    text = ", ".join(parts) + (f" on {'+'.join(names)}" if names else "")
    split = cfg.get("split") or cfg.get("train_split")
    if split:
        text += f" ({Path(str(split)).stem})"
    if cfg.get("input") in ("visible", "infrared"):
        text += f", {cfg['input']} images only"
    elif cfg.get("input"):
        text += ", fused images"
    if meta.get("val_score") is not None:
        text += f"; val score {float(meta['val_score']):.4f}"
    return text or "no training record"
