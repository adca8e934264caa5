"""Pairs of infrared and visible images: folder pairing, dataset layouts, splits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cldyn.data.io import IMAGE_EXTENSIONS
from cldyn.errors import CldynError, InputError


@dataclass(frozen=True)
class Pair:
    """An infrared/visible pair matched by file stem."""

    name: str
    ir: Path
    vis: Path


# Dataset names as the field writes them, by the lower-case word a file stem starts with or a folder is called.
DATASET_NAMES = {"msrs": "MSRS", "roadscene": "RoadScene", "m3fd": "M3FD", "tno": "TNO", "llvip": "LLVIP",
                 "fmb": "FMB", "kaist": "KAIST", "vt5000": "VT5000", "mfnet": "MFNet"}


def dataset_of(pair: Pair) -> str:
    """The source dataset of a pair: from a ``dataset_`` prefix of its name (``msrs_00854N`` -> ``MSRS``, as the
    bundled demo pairs are named), else from the dataset root above its infrared folder (``msrs/ir/x.png`` ->
    ``MSRS``; an unknown root is given by its folder name).

    Example:
        >>> dataset_of(Pair("roadscene_FLIR_04514", Path("a/ir/x.jpg"), Path("a/vi/x.jpg")))
        'RoadScene'
        >>> dataset_of(Pair("00151D", Path("data/msrs/ir/00151D.png"), Path("data/msrs/vi/00151D.png")))
        'MSRS'
    """
    prefix = pair.name.split("_", 1)[0].lower()
    if prefix in DATASET_NAMES and "_" in pair.name:
        return DATASET_NAMES[prefix]
    root = pair.ir.absolute().parent.parent.name
    for word, name in DATASET_NAMES.items():
        if root.lower().startswith(word):
            return name
    return root or "?"


def list_images(folder: str | Path) -> dict[str, Path]:
    """Images directly inside ``folder`` keyed by stem (sorted). Two files with one stem are an error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "not a folder" if folder.exists() else "folder not found")
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() not in IMAGE_EXTENSIONS or p.name.startswith("."):
            continue
        if p.stem in found:
            raise InputError(p, f"two images share the name {p.stem!r} ({found[p.stem].name}); rename one")
        found[p.stem] = p
    return found


def pair_folders(ir_dir: str | Path, vis_dir: str | Path) -> tuple[list[Pair], list[InputError]]:
    """Match images of two folders by stem.

    Returns:
        ``(pairs, problems)``: pairs sorted by name, and one error per file that lacks its partner.

    Raises:
        InputError: a folder is missing, or neither folder holds any image.
    """
    ir, vis = list_images(ir_dir), list_images(vis_dir)
    if not ir and not vis:
        raise InputError(ir_dir, f"no images ({', '.join(IMAGE_EXTENSIONS)}) here nor in {vis_dir}")
    pairs = [Pair(n, ir[n], vis[n]) for n in sorted(ir.keys() & vis.keys())]
    problems = [InputError(ir[n], f"no visible partner named {n}.* in {vis_dir}")
                for n in sorted(ir.keys() - vis.keys())]
    problems += [InputError(vis[n], f"no infrared partner named {n}.* in {ir_dir}")
                 for n in sorted(vis.keys() - ir.keys())]
    return pairs, problems


def find_layout(root: str | Path) -> tuple[Path, Path]:
    """Locate the infrared and visible folders of a dataset root by the known layouts (:data:`DATASET_LAYOUTS`).

    Raises:
        InputError: the root is not a folder or matches no known layout.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(root, "dataset root not found" if not root.exists() else "dataset root is not a folder")
    subdirs = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
    for ir_name, vis_name, _ in DATASET_LAYOUTS:
        if ir_name in subdirs and vis_name in subdirs:
            return subdirs[ir_name], subdirs[vis_name]
    known = "; ".join(f"{i}/+{v}/ ({d})" for i, v, d in DATASET_LAYOUTS)
    raise InputError(root, f"no known infrared/visible sub-folders; expected one of: {known}")


def split_file(root: Path, split: str) -> Path:
    """The file of a split: ``split`` itself when it names an existing ``.txt`` file (e.g. a subset of a dataset's
    train split kept in the repository), else ``root/splits/<split>.txt``."""
    own = Path(split)
    if own.suffix == ".txt" and own.is_file():
        return own
    return root / "splits" / f"{split}.txt"


def split_names(root: Path, split: str | None) -> set[str] | None:
    """Names listed in the split's file (:func:`split_file`), or None (= every pair) when no split is asked or
    present."""
    if split is None:
        return None
    f = split_file(root, split)
    if not f.is_file():
        return None
    return {line.strip() for line in f.read_text().splitlines() if line.strip()}


def discover_pairs(roots: Sequence[str | Path], split: str | None = None) -> tuple[list[Pair], list[str]]:
    """Pairs from dataset roots (known layouts), filtered by ``splits/<split>.txt`` where a root has one.

    Returns:
        ``(pairs, notes)``: notes say which roots had no split file and how many files were unpaired.
    """
    pairs: list[Pair] = []
    notes: list[str] = []
    for root in map(Path, roots):
        ir_dir, vis_dir = find_layout(root)
        found, problems = pair_folders(ir_dir, vis_dir)
        if problems:
            notes.append(f"{root}: {len(problems)} unpaired files skipped (first: {problems[0]})")
        names = split_names(root, split)
        if names is None:
            if split is not None:
                notes.append(f"{root}: no splits/{split}.txt, using all {len(found)} pairs")
        else:
            missing = names - {p.name for p in found}
            if missing:
                raise InputError(split_file(root, split), f"lists {len(missing)} names with no pair, "
                                 f"e.g. {sorted(missing)[0]}")
            found = [p for p in found if p.name in names]
        pairs += found
    if not pairs:
        raise InputError(Path(roots[0]) if roots else None, "no image pairs found")
    return pairs, notes


# (infrared folder, visible folder, datasets that use it); matched case-insensitively, first hit wins.
DATASET_LAYOUTS: tuple[tuple[str, str, str], ...] = (
    ("ir", "vi", "MSRS, RoadScene, TNO, M3FD (fusion releases)"),
    ("ir", "vis", "M3FD (Ir/Vis), generic"),
    ("infrared", "visible", "FMB, LLVIP"),
    ("lwir", "visible", "KAIST"),
    ("cropinfrared", "crop_hr_visible", "RoadScene (original release)"),
    ("t", "rgb", "VT5000"),
    ("t_gray", "rgb", "VT5000 (gray thermal)"),
)


def pairs_from_inputs(inputs: Sequence[str | Path], ir_dir: str | Path | None = None,
                      vis_dir: str | Path | None = None) -> tuple[list[Pair], list[InputError]]:
    """Pairs (and per-file problems) from two folders ``IR_DIR VIS_DIR``, ``ir_dir`` + ``vis_dir``, or one dataset
    root with a known layout.

    Raises:
        CldynError: the inputs are none of these.
    """
    inputs = list(inputs)
    if ir_dir or vis_dir:
        if not (ir_dir and vis_dir) or inputs:
            raise CldynError("give --ir DIR and --vis DIR together, and no positional inputs with them")
        return pair_folders(ir_dir, vis_dir)
    if len(inputs) == 1:
        return pair_folders(*find_layout(inputs[0]))
    if len(inputs) == 2 and all(Path(p).is_dir() for p in inputs):
        return pair_folders(*inputs)
    raise CldynError("expected IR VIS files, IR_DIR VIS_DIR, a dataset ROOT, or --ir DIR --vis DIR")
