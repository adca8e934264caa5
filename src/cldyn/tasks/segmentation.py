"""Semantic segmentation: a SegFormer (Hugging Face ``transformers``) built from a config, never downloaded, or a
semantic FPN (Kirillov et al., "Panoptic Feature Pyramid Networks", CVPR 2019) on an EfficientNet-Lite0 that starts
from ImageNet weights (``cldyn convert-pretrained efficientnet_lite0``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cldyn.tasks.base import IMAGENET_MEAN, IMAGENET_STD, TaskAdapter, normalize
from cldyn.tasks.efficientnet_lite import LITE_MEAN, LITE_STD, EfficientNetLite
from cldyn.tasks.pretrained import load_lite_backbone

IGNORE_INDEX = 255

# SegFormer sizes (Xie et al., NeurIPS 2021, Table 6): hidden sizes and depths of the four MiT stages.
SEGFORMER_SIZES: dict[str, dict[str, Any]] = {
    "b0": {"hidden_sizes": [32, 64, 160, 256], "depths": [2, 2, 2, 2], "decoder_hidden_size": 256},
    "b1": {"hidden_sizes": [64, 128, 320, 512], "depths": [2, 2, 2, 2], "decoder_hidden_size": 256},
    "b2": {"hidden_sizes": [64, 128, 320, 512], "depths": [3, 4, 6, 3], "decoder_hidden_size": 768},
}

# MFNet / MSRS classes (index = label value).
MSRS_SEG_CLASSES = ("unlabelled", "car", "person", "bike", "curve", "car_stop", "guardrail", "color_cone", "bump")


def confusion_matrix(pred: np.ndarray, target: np.ndarray, num_classes: int,
                     ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """``(num_classes, num_classes)`` counts, rows = ground truth, columns = prediction; ignored pixels dropped."""
    keep = target != ignore_index
    t, p = target[keep].astype(np.int64), pred[keep].astype(np.int64)
    if t.size and (t.max() >= num_classes or t.min() < 0):
        raise ValueError(f"label values must be < {num_classes} or {ignore_index}, found {int(t.max())}")
    return np.bincount(t * num_classes + p, minlength=num_classes**2).reshape(num_classes, num_classes)


def enet_class_weights(counts: Sequence[float] | np.ndarray, c: float = 1.02) -> list[float]:
    """Class weights ``1 / ln(c + p_k)`` from pixel counts (Paszke et al., "ENet", 2016): rare classes get up to
    ``1 / ln(c)`` (about 50), a class covering everything about 1.4. Used to keep a network trained on road scenes,
    where 95% of pixels are unlabelled background, from predicting background everywhere."""
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 1 or counts.sum() <= 0:
        raise ValueError("counts must be a 1-D array with a positive sum")
    return [float(w) for w in 1.0 / np.log(c + counts / counts.sum())]


def segmentation_metrics(conf: np.ndarray, class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """mIoU (mean over classes present in ground truth or prediction), per-class IoU, pixel accuracy."""
    tp = np.diag(conf).astype(np.float64)
    union = conf.sum(0) + conf.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
    names = list(class_names) if class_names else [str(i) for i in range(len(tp))]
    return {
        "miou": float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan"),
        "pixel_acc": float(tp.sum() / max(conf.sum(), 1)),
        "iou": {n: (None if np.isnan(v) else float(v)) for n, v in zip(names, iou, strict=True)},
    }


def mean_max_probability(logits: torch.Tensor) -> torch.Tensor:
    """``(B,)``: the softmax probability of the winning class, averaged over the pixels of each ``(K, H, W)`` map of
    ``logits`` ``(B, K, H, W)``: a segmenter's confidence in its own prediction.

    >>> mean_max_probability(torch.tensor([[[[0.0, 0.0]], [[0.0, 100.0]]]]))  # a tie, then a sure pixel
    tensor([0.7500])
    """
    if logits.ndim != 4:
        raise ValueError(f"logits must be (B, K, H, W), got {tuple(logits.shape)}")
    return logits.float().softmax(dim=1).amax(dim=1).mean(dim=(1, 2))


class LiteSemanticFPN(nn.Module):
    """EfficientNet-Lite0 + semantic FPN: lateral 1x1 convs to ``fpn`` channels, a top-down sum, one 3x3
    conv-BN-ReLU per level to ``head`` channels, all upsampled to stride 4 and summed, a 1x1 classifier.

    ``forward`` gives logits ``(B, num_labels, H/4, W/4)`` (as SegFormer's). With ``detail > 0`` a detail branch
    brings the backbone's stride-2 map in (reduced to ``detail`` channels) and the logits come at ``H/2``: the head's
    sum is upsampled to stride 2 and a residual (depthwise 3x3 + pointwise conv over both, BN initialised to zero)
    is added before the classifier, so that a trained stride-4 network loaded into it gives its own logits
    upsampled to stride 2 until the branch learns; it is meant for objects a few pixels wide.
    """

    def __init__(self, num_labels: int, fpn: int = 96, head: int = 64, detail: int = 0, variant: str = "lite0"
                 ) -> None:
        super().__init__()
        self.backbone = EfficientNetLite(variant, num_classes=0)  # lite1: the same widths, deeper middle stages
        chans = self.backbone.feature_channels
        self.lateral = nn.ModuleList(nn.Conv2d(c, fpn, 1) for c in chans)
        self.smooth = nn.ModuleList(nn.Sequential(nn.Conv2d(fpn, head, 3, padding=1, bias=False),
                                                  nn.BatchNorm2d(head), nn.ReLU(inplace=True)) for _ in chans)
        self.classifier = nn.Conv2d(head, num_labels, 1)
        self.detail = detail
        if detail:
            self.detail_reduce = nn.Sequential(nn.Conv2d(self.backbone.stride2_channels, detail, 1, bias=False),
                                               nn.BatchNorm2d(detail), nn.ReLU(inplace=True))
            both = head + detail
            self.detail_fuse = nn.Sequential(nn.Conv2d(both, both, 3, padding=1, groups=both, bias=False),
                                             nn.Conv2d(both, head, 1, bias=False), nn.BatchNorm2d(head))
            nn.init.zeros_(self.detail_fuse[-1].weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.backbone.forward_features(x, stride2=bool(self.detail))
        if self.detail:
            fine, feats = feats[0], feats[1:]
        p = self.lateral[-1](feats[-1])
        pyramid = [p]
        for lateral, f in zip(self.lateral[-2::-1], feats[-2::-1], strict=True):
            p = lateral(f) + F.interpolate(p, size=f.shape[-2:], mode="bilinear", align_corners=False)
            pyramid.append(p)
        size = feats[0].shape[-2:]
        out = sum(F.interpolate(smooth(q), size=size, mode="bilinear", align_corners=False)
                  for smooth, q in zip(self.smooth[::-1], pyramid, strict=True))
        if self.detail:
            out = F.interpolate(out, size=fine.shape[-2:], mode="bilinear", align_corners=False)
            out = out + self.detail_fuse(torch.cat([out, self.detail_reduce(fine)], dim=1))
        return self.classifier(out)


# the semantic-FPN archs and their EfficientNet-Lite backbones (lite1: the same widths, deeper middle stages)
LITE_SEG_ARCHS = {"lite0-fpn": "lite0", "lite1-fpn": "lite1"}
SEGMENTATION_ARCHS = ("segformer", *LITE_SEG_ARCHS)


class SegmentationAdapter(TaskAdapter):
    """Semantic segmentation adapter: SegFormer or EfficientNet-Lite0/Lite1 + semantic FPN.

    Targets: label maps ``(B, H, W)`` int64 (``255`` = ignore). Predictions: label maps ``(B, H, W)``.
    Config keys: ``arch`` (``segformer``, ``lite0-fpn`` or ``lite1-fpn``), ``size`` (SegFormer: ``b0``),
    ``num_labels`` (9, the MSRS classes), ``class_names``, ``feature_layer`` (SegFormer: ``segformer.stages.3``,
    the last encoder stage; ``lite0/1-fpn``: ``smooth.0``, the head's stride-4 level, task-specific unlike the
    shared backbone),
    ``class_weights`` (``None``: plain cross-entropy; a list of ``num_labels`` floats, e.g. from
    :func:`enet_class_weights`, weights the loss per class).
    """

    task = "segmentation"

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        arch = (config or {}).get("arch", "segformer")
        if arch not in SEGMENTATION_ARCHS:
            raise ValueError(f"unknown segmentation arch {arch!r}; choose from {', '.join(SEGMENTATION_ARCHS)}")
        base = {"num_labels": len(MSRS_SEG_CLASSES), "class_names": list(MSRS_SEG_CLASSES)}
        if arch in LITE_SEG_ARCHS:
            cfg = {"arch": arch, **base, "feature_layer": "smooth.0", **(config or {})}
            cfg.setdefault("class_weights", None)
            super().__init__(cfg)
            self.model: nn.Module = LiteSemanticFPN(cfg["num_labels"], variant=LITE_SEG_ARCHS[arch])
            self._mean, self._std = LITE_MEAN, LITE_STD
        else:
            # transformers is heavy (seconds to import): loaded only when a SegFormer is built
            from transformers import SegformerConfig, SegformerForSemanticSegmentation

            cfg = {"size": "b0", **base, "feature_layer": "segformer.stages.3", **(config or {})}
            cfg.setdefault("class_weights", None)
            if cfg["size"] not in SEGFORMER_SIZES:
                raise ValueError(f"unknown SegFormer size {cfg['size']!r}; choose from {sorted(SEGFORMER_SIZES)}")
            super().__init__(cfg)
            hf = SegformerConfig(num_labels=cfg["num_labels"], semantic_loss_ignore_index=IGNORE_INDEX,
                                 **SEGFORMER_SIZES[cfg["size"]])
            self.model = SegformerForSemanticSegmentation(hf)
            self._mean, self._std = IMAGENET_MEAN, IMAGENET_STD
        self.arch = arch
        self.feature_layer = cfg["feature_layer"]
        self.set_class_weights(cfg["class_weights"])

    def load_pretrained(self, path: str) -> None:
        """Start the ``lite0-fpn`` (``lite1-fpn``) backbone from the converted ImageNet EfficientNet-Lite0 (Lite1)."""
        if self.arch not in LITE_SEG_ARCHS:
            super().load_pretrained(path)
        load_lite_backbone(self.model.backbone, path)

    def set_class_weights(self, weights: Sequence[float] | str | None) -> None:
        """Per-class loss weights: ``None``, ``num_labels`` floats, or ``"enet"`` (to be computed from the training
        labels by :meth:`fit_class_weights` before training)."""
        if isinstance(weights, str):
            if weights != "enet":
                raise ValueError(f"class_weights must be a list, null or 'enet', got {weights!r}")
        elif weights is not None:
            weights = [float(w) for w in weights]
            if len(weights) != self.config["num_labels"]:
                raise ValueError(f"class_weights has {len(weights)} entries, need num_labels = "
                                 f"{self.config['num_labels']}")
        self.config["class_weights"] = weights
        # Kept out of the model: the weights live in the config, so checkpoints hold the network's tensors only.
        self.class_weight = None if weights is None or isinstance(weights, str) else torch.tensor(weights)

    def fit_class_weights(self, labels: Sequence[torch.Tensor]) -> None:
        """Resolve ``class_weights="enet"`` from training label maps (ignored pixels not counted)."""
        if self.config["class_weights"] != "enet":
            return
        k = self.config["num_labels"]
        counts = torch.zeros(k, dtype=torch.float64)
        for lab in labels:
            v = lab[lab != IGNORE_INDEX].long().flatten()
            counts += torch.bincount(v, minlength=k)[:k].double()
        self.set_class_weights([round(w, 4) for w in enet_class_weights(counts.numpy())])

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        return normalize(image, self._mean, self._std)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, K, H/4, W/4)``."""
        if self.arch in LITE_SEG_ARCHS:
            return self.model(self.preprocess(image))
        return self.model(pixel_values=self.preprocess(image)).logits

    def loss_from_output(self, output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.config["class_weights"] == "enet":
            raise ValueError("class_weights='enet' must be resolved with fit_class_weights(training labels) first")
        # As SegformerForSemanticSegmentation computes it: logits upsampled to the label size, CE with ignore.
        logits = F.interpolate(output, size=targets.shape[-2:], mode="bilinear", align_corners=False)
        weight = None if self.class_weight is None else self.class_weight.to(logits)
        return F.cross_entropy(logits, targets.long(), weight=weight, ignore_index=IGNORE_INDEX)

    @torch.no_grad()
    def predict(self, image: torch.Tensor) -> torch.Tensor:
        logits = F.interpolate(self.forward(image), size=image.shape[-2:], mode="bilinear", align_corners=False)
        return logits.argmax(dim=1)

    @torch.no_grad()
    def confidence(self, image: torch.Tensor) -> torch.Tensor:
        """The mean over pixels of the winning class's probability (:func:`mean_max_probability`)."""
        return mean_max_probability(self.forward(image))

    def evaluate(self, predictions: Sequence[torch.Tensor], targets: Sequence[torch.Tensor]) -> dict[str, Any]:
        conf = self._confusions(predictions, targets).sum(0)
        return {**segmentation_metrics(conf, self.config.get("class_names")), "n": len(predictions)}

    def _confusions(self, predictions: Sequence[torch.Tensor], targets: Sequence[torch.Tensor]) -> np.ndarray:
        """Per-image confusion matrices ``(N, K, K)``."""
        k = self.config["num_labels"]
        return np.array([confusion_matrix(p.cpu().numpy().reshape(t.shape[-2:]), t.cpu().numpy().reshape(t.shape[-2:]),
                                          k) for p, t in zip(predictions, targets, strict=True)],
                        dtype=np.int64).reshape(-1, k, k)  # (0, K, K) for no images, as the sum of none

    def metric_resampler(self, predictions: Sequence[torch.Tensor], targets: Sequence[torch.Tensor],
                         metric: str) -> Callable[[np.ndarray], float] | None:
        """``miou`` from per-image confusion matrices, summed over each resample."""
        if metric != "miou":
            return None
        parts = self._confusions(predictions, targets)
        return lambda index: segmentation_metrics(parts[index].sum(0))["miou"]
