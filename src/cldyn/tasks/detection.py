"""Object detection with an Ultralytics YOLO model built from its YAML (optional extra ``cldyn[yolo]``).

Ultralytics is AGPL-3.0, so it is not a core dependency of cldyn (Apache-2.0): install it with
``pip install 'cldyn[yolo]'`` to use this adapter. The model is built from the architecture YAML bundled with
ultralytics (default ``yolo11n.yaml``), never downloaded; its loss is Ultralytics' own ``v8DetectionLoss`` with the
default gains, computed from the eval-mode output so a frozen detector keeps its BatchNorm statistics. mAP comes
from pycocotools' COCOeval.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from cldyn.tasks.base import TaskAdapter

MSRS_DET_CLASSES = ("person", "bicycle", "car")


def _quiet_ultralytics() -> None:
    # Offline and no settings file in the user's home: everything cldyn needs is local.
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_VERBOSE", "False")
    if "YOLO_CONFIG_DIR" not in os.environ:
        os.environ["YOLO_CONFIG_DIR"] = tempfile.mkdtemp(prefix="cldyn-yolo-")


def _coco_records(predictions: Sequence[dict[str, Any]], targets: Sequence[torch.Tensor]
                  ) -> tuple[list[dict], list[dict], list[dict]]:
    """COCO ``images``, ground-truth ``annotations`` and detections, image ``i`` with id ``i``."""
    images, anns, dets = [], [], []
    for i, (p, t) in enumerate(zip(predictions, targets, strict=True)):
        h, w = p["size"]
        images.append({"id": i, "height": int(h), "width": int(w)})
        t = torch.as_tensor(t, dtype=torch.float64).reshape(-1, 5)
        for cls, cx, cy, bw, bh in t.tolist():
            box = [(cx - bw / 2) * w, (cy - bh / 2) * h, bw * w, bh * h]
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": int(cls), "bbox": box,
                         "area": box[2] * box[3], "iscrowd": 0})
        for (x1, y1, x2, y2), s, c in zip(p["boxes"].tolist(), p["scores"].tolist(), p["labels"].tolist(),
                                          strict=True):
            dets.append({"image_id": i, "category_id": int(c), "bbox": [x1, y1, x2 - x1, y2 - y1], "score": s})
    return images, anns, dets


def _coco_evaluated(images: list[dict], anns: list[dict], dets: list[dict], class_names: Sequence[str]):
    """A pycocotools ``COCOeval`` (bbox, all areas, 100 detections) with its per-image matching done."""
    from pycocotools.coco import COCO  # loaded only when scoring
    from pycocotools.cocoeval import COCOeval  # loaded only when scoring

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": anns,
                      "categories": [{"id": k, "name": n} for k, n in enumerate(class_names)]}
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.evaluate()
    return ev


def coco_map(predictions: Sequence[dict[str, Any]], targets: Sequence[torch.Tensor],
             class_names: Sequence[str]) -> dict[str, Any]:
    """mAP@0.5 and mAP@0.5:0.95 (COCOeval, all areas, 100 detections) and per-class AP@0.5:0.95.

    Args:
        predictions: per image ``{"boxes": (N, 4) pixel xyxy, "scores": (N,), "labels": (N,), "size": (H, W)}``.
        targets: per image ``(M, 5)`` rows ``class cx cy w h`` normalised to the image.
    """
    images, anns, dets = _coco_records(predictions, targets)
    result: dict[str, Any] = {"map50": 0.0, "map50_95": 0.0, "ap": {n: None for n in class_names},
                              "n": len(predictions), "boxes": len(anns), "detections": len(dets)}
    if not anns:
        result["map50"] = result["map50_95"] = float("nan")
        return result
    if not dets:
        return result
    ev = _coco_evaluated(images, anns, dets, class_names)
    with contextlib.redirect_stdout(io.StringIO()):
        ev.accumulate()
        ev.summarize()
    result["map50_95"], result["map50"] = float(ev.stats[0]), float(ev.stats[1])
    prec = ev.eval["precision"][:, :, :, 0, -1]  # IoU thresholds x recall x class, area "all", 100 dets
    for k, name in enumerate(class_names):
        pk = prec[:, :, k]
        valid = pk > -1
        result["ap"][name] = float(pk[valid].mean()) if valid.any() else None
    return result


def coco_map_resampler(predictions: Sequence[dict[str, Any]], targets: Sequence[torch.Tensor],
                       class_names: Sequence[str]) -> Callable[[np.ndarray], float]:
    """``score(index) -> mAP@0.5:0.95`` of the images at positions ``index`` (repeats allowed), equal to
    :func:`coco_map` on ``[predictions[i] for i in index]``, for bootstrapping.

    COCOeval matches detections to ground truth per image and category (``evaluate``) and only then pools the
    matches over the images (``accumulate``). The matching is done once; each resample lays out the matches of its
    images, in its order, as ``accumulate`` reads them (``evalImgs`` indexed category-major, then area range, then
    image) and pools them again: tens of times faster than a new COCOeval per resample.
    """
    images, anns, dets = _coco_records(predictions, targets)
    if not anns or not dets:  # nothing to match: coco_map's own cases
        return lambda index: coco_map([predictions[i] for i in index], [targets[i] for i in index],
                                      class_names)["map50_95"]
    ev = _coco_evaluated(images, anns, dets, class_names)
    matched, n_img = list(ev.evalImgs), len(images)
    n_cat, n_area = len(ev.params.catIds), len(ev.params.areaRng)
    grid = np.arange(n_cat * n_area)[:, None] * n_img  # where each (category, area) block starts

    def score(index: np.ndarray) -> float:
        index = np.asarray(index)
        ev.evalImgs = [matched[j] for j in (grid + index[None]).ravel()]
        ev.params.imgIds = ev._paramsEval.imgIds = list(range(len(index)))
        with contextlib.redirect_stdout(io.StringIO()):
            ev.accumulate()
            ev.summarize()
        return float(ev.stats[0])

    return score


def top_score(predictions: Sequence[dict[str, Any]]) -> torch.Tensor:
    """``(B,)``: the highest score among each image's detections (0 where there is none): a detector's confidence.

    >>> top_score([{"scores": torch.tensor([0.2, 0.9])}, {"scores": torch.zeros(0)}])
    tensor([0.9000, 0.0000])
    """
    return torch.stack([p["scores"].float().max() if len(p["scores"]) else torch.zeros(()) for p in predictions])


class CocoScored:
    """The scoring of a detection adapter whose predictions and targets are :func:`coco_map`'s (class names in
    ``config["class_names"]``): :meth:`~cldyn.tasks.base.TaskAdapter.evaluate` and
    :meth:`~cldyn.tasks.base.TaskAdapter.metric_resampler`. Listed before ``TaskAdapter`` in the bases."""

    config: dict[str, Any]

    def evaluate(self, predictions: Sequence[dict[str, Any]], targets: Sequence[torch.Tensor]) -> dict[str, Any]:
        return coco_map(predictions, targets, self.config["class_names"])

    def metric_resampler(self, predictions: Sequence[dict[str, Any]], targets: Sequence[torch.Tensor],
                         metric: str) -> Callable[[np.ndarray], float] | None:
        """``map50_95`` from one COCOeval matching, pooled again for each resample (:func:`coco_map_resampler`)."""
        return coco_map_resampler(predictions, targets, self.config["class_names"]) if metric == "map50_95" else None

    @torch.no_grad()
    def confidence(self, image: torch.Tensor) -> torch.Tensor:
        """The score of the surest detection of each image (:func:`top_score`)."""
        return top_score(self.predict(image))  # type: ignore[attr-defined]


class DetectionAdapter(CocoScored, TaskAdapter):
    """Ultralytics YOLO adapter.

    Targets: a list of ``(N, 5)`` tensors ``class cx cy w h`` normalised to the image. Predictions: per image
    ``{"boxes", "scores", "labels"}`` after NMS (conf 0.001, IoU 0.7, as Ultralytics validates).
    Config keys: ``model`` (``yolo11n.yaml``), ``num_classes`` (3), ``class_names``, ``feature_layer``
    (``model.10``, the last backbone stage of YOLO11), ``box``/``cls``/``dfl`` loss gains (7.5 / 0.5 / 1.5).
    """

    task = "detection"
    requires = {"ultralytics": "yolo"}

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.check_requires("the detection adapter")
        _quiet_ultralytics()
        from ultralytics.nn.tasks import DetectionModel  # optional AGPL extra cldyn[yolo]

        cfg = {"model": "yolo11n.yaml", "num_classes": len(MSRS_DET_CLASSES), "class_names": list(MSRS_DET_CLASSES),
               "feature_layer": "model.10", "box": 7.5, "cls": 0.5, "dfl": 1.5, **(config or {})}
        super().__init__(cfg)
        with contextlib.redirect_stdout(io.StringIO()):
            self.model = DetectionModel(cfg["model"], nc=cfg["num_classes"], verbose=False)

        self.model.args = SimpleNamespace(box=cfg["box"], cls=cfg["cls"], dfl=cfg["dfl"])
        self.feature_layer = cfg["feature_layer"]
        self._criterion = None

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        return image  # Ultralytics models take RGB in [0, 1]

    def forward(self, image: torch.Tensor) -> Any:
        """Raw YOLO output. Sides are padded (replicate, bottom/right) to multiples of 32, as YOLO needs; box
        coordinates are unchanged by that padding, but normalised targets are only valid for unpadded sizes
        (:meth:`loss` checks)."""
        h, w = image.shape[-2:]
        ph, pw = (-h) % 32, (-w) % 32
        if ph or pw:
            image = torch.nn.functional.pad(image, (0, pw, 0, ph), mode="replicate")
        return self.model(self.preprocess(image))

    def loss(self, image: torch.Tensor, targets: Sequence[torch.Tensor]) -> torch.Tensor:
        if image.shape[-2] % 32 or image.shape[-1] % 32:
            raise ValueError(f"detection loss needs sides that are multiples of 32, got {tuple(image.shape[-2:])}")
        return super().loss(image, targets)

    def loss_from_output(self, output: Any, targets: Sequence[torch.Tensor]) -> torch.Tensor:
        if self._criterion is None:
            from ultralytics.utils.loss import v8DetectionLoss  # optional AGPL extra cldyn[yolo]

            self._criterion = v8DetectionLoss(self.model)
        device = next(self.model.parameters()).device
        boxes = [torch.as_tensor(t, dtype=torch.float32, device=device).reshape(-1, 5) for t in targets]
        batch = {
            "batch_idx": torch.cat([torch.full((len(b),), i, dtype=torch.float32, device=device)
                                    for i, b in enumerate(boxes)]),
            "cls": torch.cat([b[:, :1] for b in boxes]),
            "bboxes": torch.cat([b[:, 1:] for b in boxes]),
        }
        loss, _ = self._criterion(output, batch)
        return loss.sum() / max(len(boxes), 1)  # Ultralytics scales by batch size; report per image

    @torch.no_grad()
    def predict(self, image: torch.Tensor, conf: float = 0.001, iou: float = 0.7) -> list[dict[str, Any]]:
        from ultralytics.utils.nms import non_max_suppression  # optional AGPL extra cldyn[yolo]

        out = self.forward(image)
        raw = out[0] if isinstance(out, (tuple, list)) else out
        dets = non_max_suppression(raw, conf_thres=conf, iou_thres=iou, max_det=300)
        h, w = image.shape[-2:]
        return [{"boxes": d[:, :4].cpu(), "scores": d[:, 4].cpu(), "labels": d[:, 5].long().cpu(), "size": (h, w)}
                for d in dets]



def boxes_to_numpy(pred: dict[str, Any]) -> np.ndarray:
    """``(N, 6)`` array ``x1 y1 x2 y2 score label`` of one image's predictions."""
    return np.concatenate([pred["boxes"].numpy(), pred["scores"].numpy()[:, None],
                           pred["labels"].numpy()[:, None].astype(np.float32)], axis=1)
