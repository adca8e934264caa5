"""A network from outside cldyn, plugged in as ``ssdlite_person:SSDLitePersonAdapter``: torchvision's SSDLite320 on
MobileNetV3 (another architecture than cldyn's RetinaNet on EfficientNet-Lite0) as a person-only detector.

It declares that it reads detection labels (``task``) and uses only the dataset's class 0 (person) as its class 0
(``label_classes``). Built with random weights: nothing is downloaded.
"""

from __future__ import annotations

from typing import Any

import torch
from torchvision.models.detection import ssdlite320_mobilenet_v3_large
from torchvision.ops import box_iou

from cldyn.tasks.base import TaskAdapter
from cldyn.tasks.detection import CocoScored


def _to_torchvision(targets, size):
    """Normalised ``(N, 5)`` rows ``class cx cy w h`` -> pixel ``xyxy`` boxes of a ``size = (h, w)`` input, with
    SSD's labels (0 is its background)."""
    h, w = size
    out = []
    for t in targets:
        t = t.reshape(-1, 5).float()
        cx, cy, bw, bh = t[:, 1] * w, t[:, 2] * h, t[:, 3] * w, t[:, 4] * h
        out.append({"boxes": torch.stack((cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2), 1),
                    "labels": t[:, 0].long() + 1})
    return out


class SSDLitePersonAdapter(CocoScored, TaskAdapter):
    task = "detection"
    label_classes = (0,)

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__({"class_names": ["person"], **(config or {})})
        self.model = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=2,
                                                   detections_per_img=50)
        self.feature_layer = "backbone.features.0"

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        return image  # the model's own transform normalises and resizes to 320 x 320

    def forward(self, image: torch.Tensor) -> dict[str, Any]:
        m = self.model
        images, _ = m.transform(list(image))
        features = list(m.backbone(images.tensors).values())
        return {"images": images, "head": m.head(features), "anchors": m.anchor_generator(images, features),
                "original": [tuple(image.shape[-2:])] * image.shape[0]}

    def loss_from_output(self, output: dict[str, Any], targets) -> torch.Tensor:
        m = self.model
        tv = _to_torchvision(targets, output["images"].image_sizes[0])
        matched = []
        for anchors, t in zip(output["anchors"], tv, strict=True):
            if len(t["boxes"]) == 0:
                matched.append(torch.full((len(anchors),), -1, dtype=torch.int64))
            else:
                matched.append(m.proposal_matcher(box_iou(t["boxes"], anchors)))
        return sum(m.compute_loss(tv, output["head"], output["anchors"], matched).values())

    @torch.no_grad()
    def predict(self, image: torch.Tensor) -> list[dict[str, Any]]:
        m, out = self.model, self.forward(image)
        dets = m.postprocess_detections(out["head"], out["anchors"], out["images"].image_sizes)
        dets = m.transform.postprocess(dets, out["images"].image_sizes, out["original"])
        return [{"boxes": d["boxes"], "scores": d["scores"], "labels": d["labels"] - 1, "size": s}
                for d, s in zip(dets, out["original"], strict=True)]
