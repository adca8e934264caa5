"""Labelled pairs in memory for task training and evaluation: banks, paired crops and flips, box cropping."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cldyn.data.labels import (
    TaskSample,
    discover_task_samples,
    read_sal_mask,
    read_seg_label,
    read_voc_boxes,
    read_yolo_boxes,
)
from cldyn.data.pairs import Pair
from cldyn.runtime import progress_bar

# --- labels ---------------------------------------------------------------------------------------------


# --- in-memory bank and augmentation ------------------------------------------------------------------------


@dataclass
class TaskItem:
    name: str
    image: torch.Tensor  # (3, H, W) uint8 RGB: the input the task network sees ((4, H, W) for "pair")
    label: torch.Tensor  # seg: (H, W) uint8; sal: (H, W) uint8 {0,1}; det: (N, 5) float32


class TaskBank:
    """Images (from a source function) and labels of one split, decoded once and kept in memory."""

    def __init__(self, task: str, samples: Sequence[TaskSample], source: Callable[[Pair], np.ndarray],
                 num_classes: int, class_names: Sequence[str] | None = None,
                 classes: Sequence[int] | None = None) -> None:
        self.task = task
        self.items: list[TaskItem] = []
        for s in samples:
            rgb = source(s.pair)  # (H, W, 3) float in [0, 1] (4 channels for the "pair" source)
            size = rgb.shape[:2]
            if task == "segmentation":
                seg = read_seg_label(s.label, size, None if classes else num_classes)
                label = torch.from_numpy(seg if classes is None else select_seg_classes(seg, classes))
            elif task == "saliency":
                label = torch.from_numpy(read_sal_mask(s.label, size))
            elif s.label is not None and s.label.suffix.lower() == ".xml":
                names = list(class_names or [str(i) for i in range(num_classes)])
                label = torch.from_numpy(read_voc_boxes(s.label, names, size, skip_unknown=classes is not None))
            else:
                boxes = read_yolo_boxes(s.label, None if classes else num_classes)
                label = torch.from_numpy(boxes if classes is None else select_box_classes(boxes, classes))
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


def select_box_classes(boxes: np.ndarray, classes: Sequence[int]) -> np.ndarray:
    """The ``(N, 5)`` YOLO rows of the dataset classes ``classes``, renumbered to their positions in it.

    >>> select_box_classes(np.array([[2, .5, .5, .1, .1], [0, .2, .2, .1, .1]], np.float32), (0,))[:, 0]
    array([0.], dtype=float32)
    """
    lut = np.full(int(max(boxes[:, 0].max(initial=0), max(classes))) + 1, -1, np.int64)
    lut[list(classes)] = np.arange(len(classes))
    new = lut[boxes[:, 0].astype(np.int64)]
    return np.concatenate((new[:, None].astype(np.float32), boxes[:, 1:]), 1)[new >= 0].reshape(-1, 5)


def select_seg_classes(label: np.ndarray, classes: Sequence[int]) -> np.ndarray:
    """A class-index map renumbered to the positions of ``classes``; other classes become 0, 255 (ignore) stays."""
    lut = np.zeros(256, np.uint8)
    lut[list(classes)] = np.arange(len(classes), dtype=np.uint8)
    lut[255] = 255
    return lut[label]


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


def load_task_bank(task: str, root: str | Path, split: str | None, source: Callable[[Pair], np.ndarray],
                   adapter_config: dict, log: Callable[[str], None] = print, progress: bool = False,
                   names: Sequence[str] | None = None, labels: str | None = None,
                   classes: Sequence[int] | None = None) -> TaskBank:
    """Discover a split's labelled pairs (logging what was left out) and load them into a :class:`TaskBank`, with the
    class count and names taken from the task network's config; ``names`` keeps only those pairs, ``labels`` picks a
    label variant (e.g. ``visible`` boxes, :func:`~cldyn.data.labels.find_label_dir`) and ``classes`` the dataset
    class ids the network reads (a task adapter's ``label_classes``)."""
    found = discover_task_samples(root, task, split, labels)
    for note in found.notes:
        log(note)
    wanted = None if names is None else set(names)
    keep = found.samples if wanted is None else [s for s in found.samples if s.name in wanted]
    samples = progress_bar(keep, disable=not progress, desc=f"load {split}", leave=False)
    num_classes = adapter_config.get("num_labels", adapter_config.get("num_classes", 1))
    return TaskBank(task, samples, source, num_classes, adapter_config.get("class_names"), classes)


# --- image sources --------------------------------------------------------------------------------------------
