"""One command for a comparison table on a dataset split: the shipped (or given) VFN, fused here, beside other
methods' fused folders (e.g. a peer's published outputs) and the classical baselines.

Example (the comparison of the VFN with SeAFusion's released outputs on MSRS val)::

    cldyn evaluate --data ../shared/data/msrs --split val --vfn \\
        --fused ../shared/data/peers/seafusion/msrs-val --names SeAFusion \\
        --convention cddfuse --metrics en,sd,sf,mi,scd,vif,qabf,ssim
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cldyn.data.pairs import discover_pairs, find_layout
from cldyn.errors import CldynError
from cldyn.evaluation.evaluate import Evaluation, evaluate_folders
from cldyn.inference.fuse import Fuser
from cldyn.weights import load_vfn_or_shipped


def vfn_method_name(weights: str | Path | None) -> str:
    """``vfn`` for the shipped weights, ``vfn:<run folder>`` (or ``vfn:<file stem>``) for a checkpoint."""
    if weights is None:
        return "vfn"
    path = Path(weights)
    return f"vfn:{path.parent.name if path.stem in ('best', 'last') else path.stem}"


def evaluate_split(data: str | Path, split: str | None, out_dir: str | Path, fused_dirs: Sequence[str | Path] = (),
                   names: Sequence[str] | None = None, vfns: Sequence[str | Path | None] = (),
                   convention: str = "cldyn", baselines: Sequence[str] = (), metrics: Sequence[str] | None = None,
                   workers: int = 1, device: str = "auto", progress: bool = True) -> Evaluation:
    """Fusion metrics of the pairs of ``data`` listed in ``splits/<split>.txt`` (every pair when ``None``).

    Each entry of ``vfns`` (``None``: the shipped VFN, else a checkpoint) fuses the split into
    ``out_dir/fused/<name>`` (8-bit PNG, replaced on every run) and is scored as the method :func:`vfn_method_name`;
    ``fused_dirs`` (named by ``names``) are scored as they are.
    """
    pairs, _ = discover_pairs([data], split)
    ir_dir, vis_dir = find_layout(data)
    fused_dirs = [Path(d) for d in fused_dirs]
    names = list(names) if names else [d.name for d in fused_dirs]
    for weights in vfns:
        name = vfn_method_name(weights)
        if name in names:
            raise CldynError(f"method name {name!r} given twice")
        folder = Path(out_dir) / "fused" / name.replace(":", "_")
        report = Fuser(load_vfn_or_shipped(weights), device=device).fuse_pairs(pairs, folder, bits=8, overwrite=True,
                                                                               progress=progress)
        if not report.ok:
            raise CldynError(f"{name}: {len(report.errors)} pairs could not be fused, first: {report.errors[0]}")
        fused_dirs.append(folder)
        names.append(name)
    return evaluate_folders(ir_dir, vis_dir, fused_dirs, names=names, convention=convention, baselines=baselines,
                            workers=workers, progress=progress, metrics=metrics, only={p.name for p in pairs})
