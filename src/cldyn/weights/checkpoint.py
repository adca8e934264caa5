"""Checkpoints: safetensors tensors + JSON metadata, written atomically, loaded without unpickling.

A checkpoint is one ``.safetensors`` file whose header metadata carries the JSON (config, provenance, training
position); a human-readable ``.json`` copy is written beside it. Both are written to a temp file and renamed, so a
crash leaves the previous checkpoint intact.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from cldyn.data.io import atomic_write_bytes
from cldyn.errors import CheckpointError

_META_KEY = "cldyn"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    """SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_checkpoint(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> str:
    """Write ``tensors`` and ``meta`` atomically; returns the SHA-256 of the safetensors file."""
    path = Path(path)
    flat = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    data = st_save(flat, metadata={_META_KEY: json.dumps(meta, sort_keys=True)})
    digest = sha256_bytes(data)
    atomic_write_bytes(path, data)
    atomic_write_bytes(path.with_suffix(".json"), json.dumps({**meta, "sha256": digest}, indent=2).encode())
    return digest


def load_checkpoint(path: str | Path, expected_sha256: str | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises:
        CheckpointError: missing or unreadable file, hash mismatch, no cldyn metadata, or NaN/inf in a tensor.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "checkpoint not found")
    data = path.read_bytes()
    if expected_sha256 is not None and sha256_bytes(data) != expected_sha256:
        raise CheckpointError(path, "SHA-256 does not match the recorded one (file changed or corrupt)")
    try:
        tensors = st_load(data)
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + header_len])
    except (SafetensorError, ValueError, json.JSONDecodeError) as exc:
        raise CheckpointError(path, f"not a valid safetensors checkpoint ({exc})") from None
    raw_meta = header.get("__metadata__", {}).get(_META_KEY)
    if raw_meta is None:
        raise CheckpointError(path, "safetensors file has no cldyn metadata (not a cldyn checkpoint)")
    for name, t in tensors.items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise CheckpointError(path, f"tensor {name!r} contains NaN or infinite values")
    return tensors, json.loads(raw_meta)


# The parts of a nested training configuration (RSC training's) that a record's readers see as one flat dict.
CONFIG_SECTIONS = ("streams", "rsc", "loss", "optim", "run")


def flat_train_config(cfg: dict[str, Any] | None) -> dict[str, Any]:
    """A checkpoint's ``train_config`` as one flat dict: the keys of its nested parts (``streams``, ``rsc``,
    ``loss``, ``optim``, ``run``) lifted to the top, so records from before and after the parts existed read alike.

    Example:
        >>> flat_train_config({"optim": {"seed": 1}, "loss": {"penalty": 5.0}})
        {'seed': 1, 'penalty': 5.0}
    """
    flat: dict[str, Any] = {}
    for key, value in (cfg or {}).items():
        if key in CONFIG_SECTIONS and isinstance(value, dict):
            flat.update(value)
        else:
            flat[key] = value
    return flat


def split_prefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Entries under ``prefix/`` with the prefix removed."""
    p = prefix + "/"
    return {k[len(p):]: v for k, v in tensors.items() if k.startswith(p)}


def load_state_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """``load_state_dict(strict=True)`` whose failures become a one-line :class:`CheckpointError`."""
    own = module.state_dict()
    missing = sorted(own.keys() - state.keys())
    extra = sorted(state.keys() - own.keys())
    wrong = sorted(k for k in own.keys() & state.keys() if own[k].shape != state[k].shape)
    if missing or extra or wrong:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensors (e.g. {missing[0]})")
        if extra:
            parts.append(f"{len(extra)} unexpected tensors (e.g. {extra[0]})")
        if wrong:
            k = wrong[0]
            parts.append(f"shape mismatch for {k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}")
        raise CheckpointError(path, "does not fit the model: " + "; ".join(parts))
    module.load_state_dict(state, strict=True)


# --- optimizer state (Adam and friends) as flat tensors + JSON ------------------------------------------------


def optimizer_to_flat(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, st in sd["state"].items():
        for key, val in st.items():
            if isinstance(val, torch.Tensor):
                tensors[f"{idx}/{key}"] = val
            else:
                scalars.setdefault(str(idx), {})[key] = val
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_flat(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, val in tensors.items():
        idx, key = name.split("/", 1)
        state.setdefault(int(idx), {})[key] = val
    for idx, vals in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(vals)
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_training_state(path: str | Path, module: torch.nn.Module, prefix: str, opt: torch.optim.Optimizer,
                        meta: dict[str, Any]) -> str:
    """A resumable checkpoint: ``module``'s state under ``prefix/``, the optimiser under ``optim/``, and ``meta``."""
    opt_tensors, opt_meta = optimizer_to_flat(opt)
    tensors = {**{f"{prefix}/{k}": v for k, v in module.state_dict().items()},
               **{f"optim/{k}": v for k, v in opt_tensors.items()}}
    return save_checkpoint(path, tensors, {**meta, "optimizer": opt_meta})


def load_training_state(path: str | Path, kind: str, module: torch.nn.Module, prefix: str,
                        opt: torch.optim.Optimizer, check=None) -> dict:
    """Restore what :func:`save_training_state` wrote into ``module`` and ``opt``; returns the metadata.

    ``check(meta)`` may return a problem string (e.g. a configuration mismatch) to refuse the checkpoint.
    """
    path = Path(path)
    tensors, meta = load_checkpoint(path)
    if meta.get("kind") != kind:
        raise CheckpointError(path, f"is not a {kind.replace('_', '-')} checkpoint (kind {meta.get('kind')!r})")
    problem = check(meta) if check else None
    if problem:
        raise CheckpointError(path, problem)
    load_state_strict(module, split_prefix(tensors, prefix), path)
    optimizer_from_flat(opt, split_prefix(tensors, "optim"), meta["optimizer"])
    return meta


# --- models -----------------------------------------------------------------------------------------------
