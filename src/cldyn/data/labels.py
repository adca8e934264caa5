"""Labelled infrared-visible data for the downstream tasks: discovery, label checks, paired augmentation.

Recognised label layouts (first match wins, names case-insensitive):

=============  =====================================  ================================================
task           label folder under the dataset root    format
=============  =====================================  ================================================
detection      ``labels/det/fusion`` (shared MSRS),    YOLO txt: ``class cx cy w h`` normalised to [0, 1],
               ``labels``, ``Labels``, ``Annotation``  or VOC xml (M3FD), class names matched to the
               (M3FD)                                  network's ``class_names`` case-insensitively
segmentation   ``labels/seg`` (shared MSRS), ``Label``  PNG of class indices, 255 = ignore
               (FMB), ``Segmentation_labels``
saliency       ``labels/sal`` (shared MSRS), ``GT``     PNG mask, 0 / 255 (thresholded at 128)
               (VT5000)
=============  =====================================  ================================================

Every problem with a label names the file. Images without a label are counted and reported; for detection a
missing or empty file means "no objects" (the YOLO convention) and is counted too.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from cldyn.data.pairs import Pair, find_layout, pair_folders, split_file, split_names
from cldyn.errors import InputError

LABEL_EXT = {"detection": ".txt", "segmentation": ".png", "saliency": ".png"}


def find_label_dir(root: Path, task: str, labels: str | None = None) -> Path:
    """The label folder of ``task`` under a dataset root (see the module table).

    ``labels`` names a sibling of that folder instead: MSRS keeps ``labels/det/fusion``, ``labels/det/visible`` and
    ``labels/det/infrared``, so ``labels="visible"`` gives the boxes of what the visible image alone shows.
    """
    if task not in LABEL_DIRS:
        raise InputError(root, f"no label layout known for task {task!r} (known: {', '.join(LABEL_DIRS)})")
    if labels is not None:
        default = find_label_dir(root, task)
        variant = default.parent / labels
        if not labels or "/" in labels or "\\" in labels or not variant.is_dir():
            siblings = sorted(p.name for p in default.parent.iterdir() if p.is_dir())
            raise InputError(variant, f"no {task} labels named {labels!r} beside {default.name}/ "
                             f"(found: {', '.join(siblings)})")
        return variant
    for rel in LABEL_DIRS[task]:
        cur = root
        for part in rel.split("/"):
            match = [p for p in cur.iterdir() if p.is_dir() and p.name.lower() == part.lower()] \
                if cur.is_dir() else []
            if not match:
                break
            cur = match[0]
        else:
            return cur
    raise InputError(root, f"no {task} labels found; expected one of {', '.join(LABEL_DIRS[task])}")


@dataclass(frozen=True)
class TaskSample:
    name: str
    pair: Pair
    label: Path | None


@dataclass
class TaskSplit:
    """Samples of one split plus what was left out and why (never silent)."""

    samples: list[TaskSample]
    notes: list[str] = field(default_factory=list)


def discover_task_samples(root: str | Path, task: str, split: str | None, labels: str | None = None) -> TaskSplit:
    """The labelled pairs of one split; ``labels`` picks a label variant (see :func:`find_label_dir`)."""
    root = Path(root)
    pairs, problems = pair_folders(*find_layout(root))
    label_dir = find_label_dir(root, task, labels)
    notes = [f"{root}: {len(problems)} unpaired image files skipped (first: {problems[0]})"] if problems else []
    names = split_names(root, split)
    if names is not None:
        missing = names - {p.name for p in pairs}
        if missing:
            raise InputError(split_file(root, split), f"lists {len(missing)} names with no image pair, "
                             f"e.g. {sorted(missing)[0]}")
        pairs = [p for p in pairs if p.name in names]
    elif split is not None:
        notes.append(f"{root}: no splits/{split}.txt, using all {len(pairs)} pairs")
    samples, unlabelled = [], []
    for p in pairs:
        label = label_dir / f"{p.name}{LABEL_EXT[task]}"
        if task == "detection" and not label.is_file():
            label = label_dir / f"{p.name}.xml"  # VOC annotation (M3FD's Annotation/ folder)
        if label.is_file():
            samples.append(TaskSample(p.name, p, label))
        elif task == "detection":
            samples.append(TaskSample(p.name, p, None))  # YOLO convention: no file = no objects
            unlabelled.append(p.name)
        else:
            unlabelled.append(p.name)
    if unlabelled:
        what = "have no label file (treated as images without objects)" if task == "detection" else \
            "have no label file and are skipped"
        notes.append(f"{root}: {len(unlabelled)} pairs {what} (first: {unlabelled[0]})")
    if not samples:
        raise InputError(label_dir, f"no labelled pairs for {task}")
    return TaskSplit(samples, notes)


def read_yolo_boxes(path: Path | None, num_classes: int | None) -> np.ndarray:
    """``(N, 5)`` float32 rows ``class cx cy w h`` (normalised); an absent or empty file gives ``(0, 5)``.
    ``num_classes=None`` accepts any non-negative class id."""
    if path is None:
        return np.zeros((0, 5), np.float32)
    rows = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            vals = [float(v) for v in parts]
        except ValueError:
            raise InputError(path, f"line {lineno}: not numbers: {line.strip()!r}") from None
        if len(vals) != 5:
            raise InputError(path, f"line {lineno}: expected 'class cx cy w h', got {len(vals)} values")
        cls, cx, cy, w, h = vals
        if cls != int(cls) or cls < 0 or (num_classes is not None and cls >= num_classes):
            bound = "a class id" if num_classes is None else f"0..{num_classes - 1}"
            raise InputError(path, f"line {lineno}: class {vals[0]:g} outside {bound}")
        if not (0 <= cx <= 1 and 0 <= cy <= 1 and 0 < w <= 1 and 0 < h <= 1):
            raise InputError(path, f"line {lineno}: box {cx:g} {cy:g} {w:g} {h:g} not normalised to [0, 1]")
        rows.append(vals)
    return np.array(rows, np.float32).reshape(-1, 5)


def read_voc_boxes(path: Path, class_names: list[str], size: tuple[int, int], skip_unknown: bool = False
                   ) -> np.ndarray:
    """VOC xml objects as ``(N, 5)`` YOLO rows; ``size`` = image ``(H, W)`` for normalisation. Objects whose class is
    not in ``class_names`` are an error, or left out with ``skip_unknown`` (a network that reads some classes)."""
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise InputError(path, f"not a readable VOC xml file ({exc})") from None
    lookup = {n.lower(): i for i, n in enumerate(class_names)}
    h, w = size
    rows = []
    for k, obj in enumerate(root.iter("object"), 1):
        name = (obj.findtext("name") or "").strip()
        if name.lower() not in lookup and skip_unknown:
            continue
        if name.lower() not in lookup:
            raise InputError(path, f"object {k}: class {name!r} is not one of {class_names}")
        box = obj.find("bndbox")
        try:
            x1, y1, x2, y2 = (float(box.findtext(t)) for t in ("xmin", "ymin", "xmax", "ymax"))
        except (AttributeError, TypeError, ValueError):
            raise InputError(path, f"object {k}: missing or non-numeric bndbox") from None
        x1, x2 = max(0.0, x1), min(float(w), x2)
        y1, y2 = max(0.0, y1), min(float(h), y2)
        if x2 <= x1 or y2 <= y1:
            raise InputError(path, f"object {k}: empty box after clipping to the {w}x{h} image")
        rows.append([lookup[name.lower()], (x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h])
    return np.array(rows, np.float32).reshape(-1, 5)


def _read_label_png(path: Path, size: tuple[int, int]) -> np.ndarray:
    arr = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise InputError(path, "not a readable label image")
    if arr.ndim == 3:
        if not (np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 1], arr[..., 2])):
            raise InputError(path, "colour label image; expected one channel of class indices")
        arr = arr[..., 0]
    if arr.shape != size:
        raise InputError(path, f"label size {arr.shape[1]}x{arr.shape[0]} differs from the image "
                         f"({size[1]}x{size[0]})")
    return arr


def read_seg_label(path: Path, size: tuple[int, int], num_classes: int | None) -> np.ndarray:
    """A class-index map ``(H, W)`` uint8 (255 = ignore); ``num_classes=None`` accepts any index."""
    arr = _read_label_png(path, size)
    if num_classes is None:
        if arr.max(initial=0) > 255:
            raise InputError(path, f"class index {int(arr.max())} outside 0..254 (255 = ignore)")
        return arr.astype(np.uint8)
    bad = (arr >= num_classes) & (arr != 255)
    if bad.any():
        raise InputError(path, f"class index {int(arr[bad].max())} outside 0..{num_classes - 1} (255 = ignore)")
    return arr.astype(np.uint8)


def read_sal_mask(path: Path, size: tuple[int, int]) -> np.ndarray:
    return (_read_label_png(path, size) >= 128).astype(np.uint8)


LABEL_DIRS: dict[str, tuple[str, ...]] = {
    "detection": ("labels/det/fusion", "labels", "Labels", "Annotation", "Annotations"),
    "segmentation": ("labels/seg", "Label", "Labels", "Segmentation_labels"),
    "saliency": ("labels/sal", "GT"),
}
