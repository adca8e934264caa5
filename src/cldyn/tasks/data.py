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

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from cldyn.data import split_names
from cldyn.errors import InputError
from cldyn.io import Pair, find_layout, pair_folders

LABEL_DIRS: dict[str, tuple[str, ...]] = {
    "detection": ("labels/det/fusion", "labels", "Labels", "Annotation", "Annotations"),
    "segmentation": ("labels/seg", "Label", "Labels", "Segmentation_labels"),
    "saliency": ("labels/sal", "GT"),
}
LABEL_EXT = {"detection": ".txt", "segmentation": ".png", "saliency": ".png"}


def find_label_dir(root: Path, task: str) -> Path:
    """The label folder of ``task`` under a dataset root (see the module table)."""
    if task not in LABEL_DIRS:
        raise InputError(root, f"no label layout known for task {task!r}")
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


def discover_task_samples(root: str | Path, task: str, split: str | None) -> TaskSplit:
    root = Path(root)
    pairs, problems = pair_folders(*find_layout(root))
    label_dir = find_label_dir(root, task)
    notes = [f"{root}: {len(problems)} unpaired image files skipped (first: {problems[0]})"] if problems else []
    names = split_names(root, split)
    if names is not None:
        missing = names - {p.name for p in pairs}
        if missing:
            raise InputError(root / "splits" / f"{split}.txt", f"lists {len(missing)} names with no image pair, "
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


# --- labels ---------------------------------------------------------------------------------------------


def read_yolo_boxes(path: Path | None, num_classes: int) -> np.ndarray:
    """``(N, 5)`` float32 rows ``class cx cy w h`` (normalised); an absent or empty file gives ``(0, 5)``."""
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
        if cls != int(cls) or not 0 <= cls < num_classes:
            raise InputError(path, f"line {lineno}: class {vals[0]:g} outside 0..{num_classes - 1}")
        if not (0 <= cx <= 1 and 0 <= cy <= 1 and 0 < w <= 1 and 0 < h <= 1):
            raise InputError(path, f"line {lineno}: box {cx:g} {cy:g} {w:g} {h:g} not normalised to [0, 1]")
        rows.append(vals)
    return np.array(rows, np.float32).reshape(-1, 5)


def read_voc_boxes(path: Path, class_names: list[str], size: tuple[int, int]) -> np.ndarray:
    """VOC xml objects as ``(N, 5)`` YOLO rows; ``size`` = image ``(H, W)`` for normalisation."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise InputError(path, f"not a readable VOC xml file ({exc})") from None
    lookup = {n.lower(): i for i, n in enumerate(class_names)}
    h, w = size
    rows = []
    for k, obj in enumerate(root.iter("object"), 1):
        name = (obj.findtext("name") or "").strip()
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


def read_seg_label(path: Path, size: tuple[int, int], num_classes: int) -> np.ndarray:
    arr = _read_label_png(path, size)
    bad = (arr >= num_classes) & (arr != 255)
    if bad.any():
        raise InputError(path, f"class index {int(arr[bad].max())} outside 0..{num_classes - 1} (255 = ignore)")
    return arr.astype(np.uint8)


def read_sal_mask(path: Path, size: tuple[int, int]) -> np.ndarray:
    return (_read_label_png(path, size) >= 128).astype(np.uint8)


# --- in-memory bank and augmentation ------------------------------------------------------------------------


@dataclass
class TaskItem:
    name: str
    image: torch.Tensor  # (3, H, W) uint8 RGB: the input the task network sees ((4, H, W) for "pair")
    label: torch.Tensor  # seg: (H, W) uint8; sal: (H, W) uint8 {0,1}; det: (N, 5) float32


class TaskBank:
    """Images (from a source function) and labels of one split, decoded once and kept in memory."""

    def __init__(self, task: str, samples: Sequence[TaskSample], source: Callable[[Pair], np.ndarray],
                 num_classes: int, class_names: Sequence[str] | None = None) -> None:
        self.task = task
        self.items: list[TaskItem] = []
        for s in samples:
            rgb = source(s.pair)  # (H, W, 3) float in [0, 1] (4 channels for the "pair" source)
            size = rgb.shape[:2]
            if task == "segmentation":
                label = torch.from_numpy(read_seg_label(s.label, size, num_classes))
            elif task == "saliency":
                label = torch.from_numpy(read_sal_mask(s.label, size))
            elif s.label is not None and s.label.suffix.lower() == ".xml":
                names = list(class_names or [str(i) for i in range(num_classes)])
                label = torch.from_numpy(read_voc_boxes(s.label, names, size))
            else:
                label = torch.from_numpy(read_yolo_boxes(s.label, num_classes))
            img = torch.from_numpy(np.rint(rgb * 255).astype(np.uint8)).permute(2, 0, 1).contiguous()
            self.items.append(TaskItem(s.name, img, label))

        self.min_hw = (min(it.image.shape[1] for it in self.items), min(it.image.shape[2] for it in self.items)) \
            if self.items else (0, 0)

    def __len__(self) -> int:
        return len(self.items)

    def batch(self, indices: Sequence[int], gen: torch.Generator, crop: int, flip: bool = True
              ) -> tuple[torch.Tensor, list[torch.Tensor] | torch.Tensor]:
        """Random paired crops (side ``crop``, clipped to the bank's smallest image) and horizontal flips.

        Returns images ``(B, 3, c, c)`` float in [0, 1] and labels: ``(B, c, c)`` int64 (segmentation),
        ``(B, 1, c, c)`` float (saliency) or a list of ``(N, 5)`` boxes re-normalised to the crop (detection;
        boxes are clipped to the crop and dropped when less than 40% of their area stays inside).
        """
        n = len(indices)
        u = torch.rand(n, 2, generator=gen, dtype=torch.float64)
        flips = torch.randint(0, 2, (n,), generator=gen)
        images, labels = [], []
        for j, idx in enumerate(indices):
            it = self.items[idx]
            h, w = it.image.shape[-2:]
            ch, cw = min(crop, self.min_hw[0]), min(crop, self.min_hw[1])  # one crop size for the whole batch
            top, left = int(u[j, 0] * (h - ch + 1)), int(u[j, 1] * (w - cw + 1))
            img = it.image[:, top:top + ch, left:left + cw]
            do_flip = flip and bool(flips[j])
            if self.task == "detection":
                lab = crop_boxes(it.label, (h, w), (top, left, ch, cw))
                if do_flip and len(lab):
                    lab[:, 1] = 1.0 - lab[:, 1]
            else:
                lab = it.label[top:top + ch, left:left + cw]
                if do_flip:
                    lab = lab.flip(-1)
            if do_flip:
                img = img.flip(-1)
            images.append(img)
            labels.append(lab)
        x = torch.stack(images).float() / 255.0
        if self.task == "segmentation":
            return x, torch.stack(labels).long()
        if self.task == "saliency":
            return x, torch.stack(labels).float()[:, None]
        return x, labels


def crop_boxes(boxes: torch.Tensor, size: tuple[int, int], window: tuple[int, int, int, int],
               min_visible: float = 0.4) -> torch.Tensor:
    """Normalised YOLO boxes of an ``size = (H, W)`` image, re-expressed in a crop ``(top, left, h, w)``."""
    if len(boxes) == 0:
        return boxes.clone()
    h, w = size
    top, left, ch, cw = window
    cls, cx, cy, bw, bh = boxes.unbind(1)
    x1, x2 = (cx - bw / 2) * w - left, (cx + bw / 2) * w - left
    y1, y2 = (cy - bh / 2) * h - top, (cy + bh / 2) * h - top
    cx1, cx2, cy1, cy2 = x1.clamp(0, cw), x2.clamp(0, cw), y1.clamp(0, ch), y2.clamp(0, ch)
    area = (x2 - x1) * (y2 - y1)
    kept_area = (cx2 - cx1).clamp(min=0) * (cy2 - cy1).clamp(min=0)
    keep = (kept_area >= min_visible * area) & (cx2 - cx1 > 1) & (cy2 - cy1 > 1)
    out = torch.stack(((cls), (cx1 + cx2) / 2 / cw, (cy1 + cy2) / 2 / ch, (cx2 - cx1) / cw, (cy2 - cy1) / ch), 1)
    return out[keep]


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Replicate-pad ``(B, C, H, W)`` on the bottom/right to multiples of ``multiple``; returns the original size."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x, (h, w)


def load_task_bank(task: str, root: str | Path, split: str | None, source: Callable[[Pair], np.ndarray],
                   adapter_config: dict, log: Callable[[str], None] = print, progress: bool = False,
                   names: Sequence[str] | None = None) -> TaskBank:
    """Discover a split's labelled pairs (logging what was left out) and load them into a :class:`TaskBank`, with the
    class count and names taken from the task network's config; ``names`` keeps only those pairs."""
    from tqdm import tqdm

    found = discover_task_samples(root, task, split)
    for note in found.notes:
        log(note)
    wanted = None if names is None else set(names)
    keep = found.samples if wanted is None else [s for s in found.samples if s.name in wanted]
    samples = tqdm(keep, disable=not progress, desc=f"load {split}", leave=False)
    num_classes = adapter_config.get("num_labels", adapter_config.get("num_classes", 1))
    return TaskBank(task, samples, source, num_classes, adapter_config.get("class_names"))


# --- image sources --------------------------------------------------------------------------------------------


def _rgb(pixels: np.ndarray) -> np.ndarray:
    return np.repeat(pixels[:, :, None], 3, axis=2) if pixels.ndim == 2 else pixels


def image_source(spec: str, vfn_weights: str | None = None, device: str = "cpu") -> Callable[[Pair], np.ndarray]:
    """What a task network sees for a pair, as RGB float ``(H, W, 3)`` in [0, 1].

    ``visible``; ``infrared`` (repeated to 3 channels); ``pair`` (4 channels: infrared, then visible RGB);
    ``vfn`` or ``fused`` (fused by the shipped VFN, or by
    ``vfn_weights``); any other value is a folder of fused images named by the pair's stem.
    """
    from cldyn.io import list_images, read_image, read_pair, to_single_channel

    if spec == "visible":
        return lambda pair: _rgb(read_image(pair.vis).pixels)
    if spec == "pair":  # for the closed loop: infrared in channel 0, visible RGB in channels 1..3

        def pair_source(pair: Pair) -> np.ndarray:
            ir, vis = read_pair(pair.ir, pair.vis)
            return np.dstack((to_single_channel(ir), _rgb(vis.pixels)))

        return pair_source
    if spec == "infrared":
        return lambda pair: _rgb(to_single_channel(read_image(pair.ir)))
    if spec in ("vfn", "fused"):
        from cldyn.checkpoint import load_pretrained_vfn, load_vfn
        from cldyn.fuse import Fuser

        fuser = Fuser(load_pretrained_vfn() if vfn_weights is None else load_vfn(vfn_weights), device=device)
        return lambda pair: _rgb(fuser.fuse_images(read_image(pair.ir), read_image(pair.vis)))
    folder = Path(spec)
    images = list_images(folder)  # raises a one-line error for a missing folder

    def from_folder(pair: Pair) -> np.ndarray:
        if pair.name not in images:
            raise InputError(folder, f"no fused image named {pair.name}.* for pair {pair.name}")
        return _rgb(read_image(images[pair.name]).pixels)

    return from_folder
