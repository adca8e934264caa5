"""Object detection with torchvision's FCOS (Tian et al., ICCV 2019) or RetinaNet (Lin et al., ICCV 2017) on an
EfficientNet-Lite0 + FPN backbone.

Everything here is core cldyn (torchvision, Apache-2.0 weights), unlike the YOLO adapter's AGPL extra. The backbone
starts from ImageNet weights (``cldyn convert-pretrained efficientnet_lite0``) or a trained task network's
(:meth:`LiteDetectionAdapter.load_pretrained`); the FPN takes its stride-8/16/32 maps and adds P6/P7, as both
detectors do. FCOS regresses each location's distances to the box sides; RetinaNet regresses offsets from anchors of
three aspect ratios, a prior that suits the wide cars and tall people of street scenes. Images are never resized
(torchvision's detection transform normally rescales to ``min_size``): boxes stay in the input's pixels, and the
closed loop's gradient reaches every input pixel. mAP comes from pycocotools' COCOeval
(:func:`cldyn.tasks.detection.coco_map`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
from torch import nn
from torchvision.models.detection import FCOS, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.retinanet import RetinaNetHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelP6P7

from cldyn.tasks.base import TaskAdapter
from cldyn.tasks.detection import MSRS_DET_CLASSES, CocoScored
from cldyn.tasks.efficientnet_lite import LITE_MEAN, LITE_STD, EfficientNetLite
from cldyn.tasks.pretrained import load_lite_backbone


class LiteFPN(nn.Module):
    """EfficientNet-Lite0 body and an FPN over its stride-8/16/32 maps, with P6/P7: five levels of ``out_channels``."""

    def __init__(self, out_channels: int = 96) -> None:
        super().__init__()
        self.body = EfficientNetLite("lite0", num_classes=0)
        self.fpn = FeaturePyramidNetwork(self.body.feature_channels[1:], out_channels,
                                         extra_blocks=LastLevelP6P7(out_channels, out_channels))
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        feats = self.body.forward_features(x)[1:]
        return self.fpn(OrderedDict((str(i), f) for i, f in enumerate(feats)))


class NoResizeTransform(GeneralizedRCNNTransform):
    """torchvision's detection transform (normalise, pad to a multiple of 32) without its rescaling."""

    def resize(self, image: torch.Tensor, target: dict[str, torch.Tensor] | None = None
               ) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:
        return image, target


def targets_to_torchvision(targets: Sequence[torch.Tensor], size: tuple[int, int], device: torch.device,
                           min_side: float = 1.0) -> list[dict[str, torch.Tensor]]:
    """``(N, 5)`` rows ``class cx cy w h`` (normalised) -> torchvision targets (pixel ``xyxy`` boxes, labels),
    dropping boxes narrower or lower than ``min_side`` pixels (what a crop leaves of a cut-off object).

    Example:
        >>> targets_to_torchvision([torch.tensor([[2, 0.5, 0.5, 0.5, 0.25]])], (100, 200), torch.device("cpu"))
        [{'boxes': tensor([[ 50.0000,  37.5000, 150.0000,  62.5000]]), 'labels': tensor([2])}]
    """
    h, w = size
    out = []
    for t in targets:
        t = torch.as_tensor(t, dtype=torch.float32, device=device).reshape(-1, 5)
        cx, cy, bw, bh = t[:, 1] * w, t[:, 2] * h, t[:, 3] * w, t[:, 4] * h
        boxes = torch.stack((cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2), dim=1)
        keep = (bw >= min_side) & (bh >= min_side)
        out.append({"boxes": boxes[keep], "labels": t[keep, 0].long()})
    return out


class LiteDetectionAdapter(CocoScored, TaskAdapter):
    """A torchvision one-stage detector on Lite0 + FPN (no optional extra); subclasses build the detector.

    Targets: a list of ``(N, 5)`` tensors ``class cx cy w h`` normalised to the image. Predictions: per image
    ``{"boxes", "scores", "labels", "size"}`` after the detector's own post-processing (score 0.05 before NMS, at
    most ``detections`` boxes). Config keys: ``num_classes`` (3), ``class_names``, ``fpn_channels`` (96),
    ``detections`` (100), ``feature_layer`` (``backbone.fpn.layer_blocks.0``, the stride-8 FPN level: the
    detector's own features, which tell it from other tasks' networks far better than the shared backbone's end).
    """

    task = "detection"
    arch = ""

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        cfg = {"arch": self.arch, "num_classes": len(MSRS_DET_CLASSES), "class_names": list(MSRS_DET_CLASSES),
               "fpn_channels": 96, "detections": 100, "feature_layer": "backbone.fpn.layer_blocks.0", **(config or {})}
        super().__init__(cfg)
        self.model = self.build(LiteFPN(cfg["fpn_channels"]), cfg)
        self.model.transform = NoResizeTransform(1, 1, list(LITE_MEAN), list(LITE_STD), size_divisible=32)
        self.feature_layer = cfg["feature_layer"]

    def build(self, backbone: LiteFPN, cfg: dict[str, Any]) -> nn.Module:
        raise NotImplementedError

    def load_pretrained(self, path: str) -> None:
        """Start the backbone from the converted ImageNet EfficientNet-Lite0 (its classifier is not used) or from a
        trained task network's Lite0 backbone."""
        load_lite_backbone(self.model.backbone.body, path)

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        return image  # the detector's transform normalises and pads

    def forward(self, image: torch.Tensor) -> dict[str, Any]:
        """Head outputs, anchors and sizes of one pass (what both the loss and the post-processing need);
        ``per_level``: the number of anchors (locations times anchors per location) of each FPN level."""
        m = self.model
        images, _ = m.transform(list(image))
        features = list(m.backbone(images.tensors).values())
        head = m.head(features)
        hw = [f.shape[2] * f.shape[3] for f in features]
        per_location = head["cls_logits"].shape[1] // sum(hw)
        return {"images": images, "head": head, "anchors": m.anchor_generator(images, features),
                "per_level": [n * per_location for n in hw]}

    def compute_loss(self, targets: list[dict[str, torch.Tensor]], output: dict[str, Any]) -> dict[str, torch.Tensor]:
        return self.model.compute_loss(targets, output["head"], output["anchors"])

    def loss_from_output(self, output: dict[str, Any], targets: Sequence[torch.Tensor]) -> torch.Tensor:
        size = output["images"].image_sizes[0]
        tv_targets = targets_to_torchvision(targets, size, output["anchors"][0].device)
        return sum(self.compute_loss(tv_targets, output).values())

    @torch.no_grad()
    def predict(self, image: torch.Tensor) -> list[dict[str, Any]]:
        out = self.forward(image)
        n = out["per_level"]
        split_head = {k: list(v.split(n, dim=1)) for k, v in out["head"].items()}
        split_anchors = [list(a.split(n)) for a in out["anchors"]]
        sizes = out["images"].image_sizes
        dets = self.model.postprocess_detections(split_head, split_anchors, sizes)
        return [{"boxes": d["boxes"].cpu(), "scores": d["scores"].cpu(), "labels": d["labels"].cpu(), "size": s}
                for d, s in zip(dets, sizes, strict=True)]


class FCOSDetectionAdapter(LiteDetectionAdapter):
    """FCOS on Lite0 + FPN P3-P7 (NMS IoU 0.6)."""

    arch = "fcos-lite0"

    def build(self, backbone: LiteFPN, cfg: dict[str, Any]) -> nn.Module:
        # FCOS's sigmoid classifier has one output per class (no background column): labels index it directly
        return FCOS(backbone, num_classes=cfg["num_classes"], detections_per_img=cfg["detections"], score_thresh=0.05)

    def compute_loss(self, targets: list[dict[str, torch.Tensor]], output: dict[str, Any]) -> dict[str, torch.Tensor]:
        return self.model.compute_loss(targets, output["head"], output["anchors"], output["per_level"])


def retinanet_anchors(base_sizes: Sequence[int] = (16, 32, 64, 128, 256),
                      ratios: Sequence[float] = (0.5, 1.0, 2.0)) -> AnchorGenerator:
    """Anchors for P3-P7: three scales (``base * 2^(k/3)``) and three height/width ratios per level. The smallest
    base is half RetinaNet's 32: half of the people in MSRS val are under 32x32 pixels."""
    sizes = tuple(tuple(round(b * 2 ** (k / 3)) for k in range(3)) for b in base_sizes)
    return AnchorGenerator(sizes, (tuple(ratios),) * len(sizes))


class RetinaNetDetectionAdapter(LiteDetectionAdapter):
    """RetinaNet on Lite0 + FPN P3-P7 with :func:`retinanet_anchors` and a GroupNorm head (NMS IoU 0.5)."""

    arch = "retinanet-lite0"

    def build(self, backbone: LiteFPN, cfg: dict[str, Any]) -> nn.Module:
        anchors = retinanet_anchors()
        head = RetinaNetHead(backbone.out_channels, anchors.num_anchors_per_location()[0], cfg["num_classes"],
                             norm_layer=partial(nn.GroupNorm, 32))
        return RetinaNet(backbone, num_classes=cfg["num_classes"], anchor_generator=anchors, head=head,
                         detections_per_img=cfg["detections"], score_thresh=0.05)
