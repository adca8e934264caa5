"""Salient-object detection networks and their adapter.

Two architectures (config ``arch``):

- ``ctd-resnet18``: in the spirit of CTDNet-18 (Zhao et al., ACM MM 2021): a ResNet-18 encoder, a top-down path that
  fuses deep context into shallow detail, a saliency head and an auxiliary edge head supervised with the mask's
  boundary; small enough to train from scratch on a CPU.
- ``u2netp``: U²-Net-P (:mod:`cldyn.tasks.u2net`), which starts from weights trained for salient-object detection on
  DUTS-TR (``cldyn convert-pretrained u2netp``; :meth:`SaliencyAdapter.load_pretrained`); its loss is U²-Net's deep
  supervision (BCE on the fused map and the six side maps) plus an IoU term on the fused map.
- ``lite0-fpn``: the semantic FPN on EfficientNet-Lite0 of :mod:`cldyn.tasks.segmentation` with one output map,
  whose backbone starts from ImageNet (``cldyn convert-pretrained efficientnet_lite0``); BCE + IoU loss, optionally
  plus an F-measure loss (``fmeasure_weight``).
- ``lite1-fpn``: the same on EfficientNet-Lite1 (``cldyn convert-pretrained efficientnet_lite1``): the same widths,
  deeper middle stages (5.42 M against 4.65 M parameters as ImageNet classifiers).

Metrics come from ``pysodmetrics``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet18

from cldyn.errors import CheckpointError
from cldyn.tasks.base import IMAGENET_MEAN, IMAGENET_STD, TaskAdapter, normalize
from cldyn.tasks.efficientnet_lite import LITE_MEAN, LITE_STD
from cldyn.tasks.pretrained import load_lite_backbone, load_pretrained_weights, load_task_state
from cldyn.tasks.segmentation import LiteSemanticFPN
from cldyn.tasks.u2net import U2NetP
from cldyn.weights.checkpoint import load_checkpoint

# the semantic-FPN archs and their EfficientNet-Lite backbones
LITE_FPN_ARCHS = {"lite0-fpn": "lite0", "lite1-fpn": "lite1"}
SALIENCY_ARCHS = ("ctd-resnet18", "u2netp", *LITE_FPN_ARCHS)
# MSRS saliency masks are the segmentation pseudo-label's car, person and bike pixels inside human-drawn boxes.
SALIENT_CLASSES = ("car", "person", "bike")


def saliency_from_segmentation(model: LiteSemanticFPN, seg_state: dict[str, torch.Tensor], class_names: Sequence[str],
                               salient: Sequence[str] = SALIENT_CLASSES) -> None:
    """Start a one-map :class:`LiteSemanticFPN` from a trained segmentation one: backbone, FPN and head copied; the
    classifier's saliency logit starts as the mean logit of the ``salient`` classes minus the mean of the others
    (a linear stand-in for ``log P(salient) - log P(not salient)`` under the softmax).

    Example:
        >>> seg, sal = LiteSemanticFPN(3), LiteSemanticFPN(1)
        >>> saliency_from_segmentation(sal, seg.state_dict(), ["bg", "car", "road"], ["car"])
        >>> w = seg.classifier.weight
        >>> torch.allclose(sal.classifier.weight[0], w[1] - (w[0] + w[2]) / 2)
        True
    """
    names = list(class_names)
    if unknown := [c for c in salient if c not in names]:
        raise ValueError(f"salient classes {unknown} are not among the segmentation classes {names}")
    is_salient = torch.tensor([n in salient for n in names])
    body = {k: v for k, v in seg_state.items() if not k.startswith("classifier.")}
    missing, unexpected = model.load_state_dict(body, strict=False)
    if unexpected or set(missing) != {"classifier.weight", "classifier.bias"}:
        raise ValueError(f"not a LiteSemanticFPN state: missing {missing}, unexpected {unexpected}")
    with torch.no_grad():
        for name in ("weight", "bias"):
            w = seg_state[f"classifier.{name}"].float()
            getattr(model.classifier, name).copy_((w[is_salient].mean(0) - w[~is_salient].mean(0))[None])


def _cbr(cin: int, cout: int, k: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True))


def negative_binary_entropy(prob: torch.Tensor) -> torch.Tensor:
    """``(B,)``: minus the mean binary entropy (nats) of each map of probabilities ``prob`` ``(B, 1, H, W)``; 0 for
    a map of 0s and 1s, ``-log 2`` for one of 0.5s: a saliency network's confidence in its own map.

    >>> negative_binary_entropy(torch.tensor([[[[0.5, 1.0]]]]))  # half of log 2
    tensor([-0.3466])
    """
    if prob.ndim != 4 or prob.shape[1] != 1:
        raise ValueError(f"prob must be (B, 1, H, W), got {tuple(prob.shape)}")
    p = prob.float().clamp(1e-6, 1 - 1e-6)
    return (p * p.log() + (1 - p) * (1 - p).log()).mean(dim=(1, 2, 3))


class SaliencyNet(nn.Module):
    """ResNet-18 encoder (``stages`` of its 4 stages) + top-down decoder; outputs saliency and edge logits.

    Args:
        stages: ResNet-18 stages kept (3: strides 4/8/16, 2.8 M parameters; 4 adds stride 32, 11.3 M).
        width: decoder channels.

    ``forward`` returns ``(saliency_logits, edge_logits)``, both ``(B, 1, H, W)`` at the input size.
    """

    def __init__(self, stages: int = 3, width: int = 64) -> None:
        super().__init__()

        if not 2 <= stages <= 4:
            raise ValueError(f"stages must be 2..4, got {stages}")
        r = resnet18(weights=None)
        self.stem = nn.Sequential(r.conv1, r.bn1, r.relu, r.maxpool)
        layers = [r.layer1, r.layer2, r.layer3, r.layer4][:stages]
        self.backbone = nn.ModuleList(layers)
        chans = [64, 128, 256, 512][:stages]
        self.lateral = nn.ModuleList(_cbr(c, width, 1) for c in chans)
        self.smooth = nn.ModuleList(_cbr(width, width) for _ in chans[:-1])
        self.context = _cbr(width, width)  # global-context refinement of the deepest level
        self.edge_head = nn.Sequential(_cbr(width, width), nn.Conv2d(width, 1, 1))
        self.sal_head = nn.Sequential(_cbr(2 * width, width), nn.Conv2d(width, 1, 1))

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Backbone features, shallow to deep (strides 4, 8, 16[, 32])."""
        x = self.stem(x)
        feats = []
        for layer in self.backbone:
            x = layer(x)
            feats.append(x)
        return feats

    def forward_head(self, feats: list[torch.Tensor], size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        lat = [lateral(f) for lateral, f in zip(self.lateral, feats, strict=True)]
        top = lat[-1]
        top = self.context(top + top.mean(dim=(2, 3), keepdim=True))
        for i in range(len(lat) - 2, -1, -1):
            top = self.smooth[i](lat[i] + F.interpolate(top, size=lat[i].shape[-2:], mode="bilinear",
                                                        align_corners=False))
        edge_feat = self.edge_head[0](lat[0])
        edge = self.edge_head[1](edge_feat)
        sal = self.sal_head(torch.cat((top, edge_feat), dim=1))
        up = {"size": size, "mode": "bilinear", "align_corners": False}
        return F.interpolate(sal, **up), F.interpolate(edge, **up)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_head(self.forward_features(x), x.shape[-2:])


def mask_edges(mask: torch.Tensor, width: int = 1) -> torch.Tensor:
    """Boundary of a binary mask ``(B, 1, H, W)``: morphological gradient (dilation minus erosion)."""
    k = 2 * width + 1
    dil = F.max_pool2d(mask, k, 1, width)
    ero = -F.max_pool2d(-mask, k, 1, width)
    return (dil - ero).clamp(0, 1)


def iou_loss(logits: torch.Tensor, mask: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Soft IoU loss ``1 - (|P∩G| + eps) / (|P∪G| + eps)`` per image, averaged (eps keeps empty masks finite)."""
    p = torch.sigmoid(logits)
    inter = (p * mask).sum(dim=(1, 2, 3))
    union = (p + mask - p * mask).sum(dim=(1, 2, 3))
    return (1 - (inter + eps) / (union + eps)).mean()


def bce_iou_loss(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """BCE + soft IoU of a saliency logit map against its mask."""
    return F.binary_cross_entropy_with_logits(logits, mask) + iou_loss(logits, mask)


def fmeasure_loss(logits: torch.Tensor, mask: torch.Tensor, beta2: float = 0.3, eps: float = 1e-6) -> torch.Tensor:
    """``1 - F_beta`` of the soft prediction per image (FLoss, Zhao et al., AAAI 2019), averaged over the images that
    have an object.

    With soft counts ``TP = sum(p * g)``, ``F = (1 + beta2) TP / (beta2 |g| + |p|)``: the F-measure that max F scores,
    made differentiable. It pushes each map towards confident 0/1 values, so that one threshold suits every image
    (max F takes one threshold for the whole set). An empty mask has ``F = 0`` whatever the prediction (no
    gradient), so it is left out of the mean; a batch without objects gives 0.
    """
    p = torch.sigmoid(logits)
    area = mask.sum(dim=(1, 2, 3))
    f = (1 + beta2) * (p * mask).sum(dim=(1, 2, 3)) / (beta2 * area + p.sum(dim=(1, 2, 3)) + eps)
    has = (area > 0).to(f.dtype)
    return ((1 - f) * has).sum() / has.sum().clamp(min=1)


def saliency_loss(sal: torch.Tensor, edge: torch.Tensor, mask: torch.Tensor, edge_weight: float = 1.0
                  ) -> torch.Tensor:
    """BCE + IoU on the saliency map, plus BCE of the edge map against the mask boundary."""
    loss = bce_iou_loss(sal, mask)
    if edge_weight:
        loss = loss + edge_weight * F.binary_cross_entropy_with_logits(edge, mask_edges(mask))
    return loss


def deep_supervision_loss(outputs: Sequence[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
    """U²-Net's loss: BCE of every output map (fused first, then the sides) against the mask, summed, plus the
    soft IoU of the fused map (which sharpens its boundary on small objects)."""
    bce = sum(F.binary_cross_entropy_with_logits(o, mask) for o in outputs)
    return bce + iou_loss(outputs[0], mask)


def as_u8_map(t: torch.Tensor) -> np.ndarray:
    """A saliency map or mask ``(1, H, W)`` or ``(H, W)`` in [0, 1] as the ``(H, W)`` uint8 map that is scored."""
    return np.rint(t.detach().float().cpu().numpy().reshape(t.shape[-2:]) * 255).astype(np.uint8)


def saliency_f_curves(predictions: Sequence[torch.Tensor], targets: Sequence[torch.Tensor]) -> np.ndarray:
    """Per-image F-beta (beta^2 = 0.3) at the 256 thresholds, ``(N, 256)``, as pysodmetrics computes them: the mean
    over images is the curve whose maximum is :func:`saliency_metrics`' ``max_f`` (maps and masks as
    :meth:`SaliencyAdapter.evaluate` takes them)."""
    from py_sod_metrics import Fmeasure  # loaded only when scoring

    with warnings.catch_warnings():  # deprecated in favour of FmeasureV2, same values
        warnings.simplefilter("ignore", UserWarning)
        fm = Fmeasure(beta=0.3)
    for p, t in zip(predictions, targets, strict=True):
        fm.step(pred=as_u8_map(p), gt=as_u8_map(t))
    return np.asarray(fm.changeable_fms, dtype=np.float64).reshape(len(predictions), -1)


def saliency_metrics(predictions: Sequence[np.ndarray], targets: Sequence[np.ndarray]) -> dict[str, float]:
    """pysodmetrics on uint8 maps (prediction 0..255, mask 0/255), both ``(H, W)``.

    Returns ``mae``, ``max_f``, ``mean_f``, ``adp_f`` (F-beta with beta^2 = 0.3), ``s_measure``, ``mean_e``,
    ``max_e``, ``adp_e``.
    """
    from py_sod_metrics import MAE, Emeasure, Fmeasure, Smeasure  # loaded only when scoring

    with warnings.catch_warnings():  # Fmeasure is deprecated in favour of FmeasureV2 but computes the same values
        warnings.simplefilter("ignore", UserWarning)
        fm = Fmeasure(beta=0.3)
    mae, sm, em = MAE(), Smeasure(), Emeasure()
    for pred, gt in zip(predictions, targets, strict=True):
        if pred.shape != gt.shape:
            raise ValueError(f"prediction {pred.shape} and mask {gt.shape} differ in size")
        for m in (mae, fm, sm, em):
            m.step(pred=pred, gt=gt)
    f, e = fm.get_results()["fm"], em.get_results()["em"]
    return {
        "mae": float(mae.get_results()["mae"]), "max_f": float(f["curve"].max()), "mean_f": float(f["curve"].mean()),
        "adp_f": float(f["adp"]), "s_measure": float(sm.get_results()["sm"]), "mean_e": float(e["curve"].mean()),
        "max_e": float(e["curve"].max()), "adp_e": float(e["adp"]), "n": len(predictions),
    }


class SaliencyAdapter(TaskAdapter):
    """Salient-object detection adapter.

    Targets: masks ``(B, 1, H, W)`` float in {0, 1}. Predictions: saliency probabilities ``(B, 1, H, W)``.
    Config keys: ``arch`` (``ctd-resnet18``, ``u2netp``, ``lite0-fpn`` or ``lite1-fpn``), ``feature_layer``
    (``ctd-resnet18``: the deepest backbone stage; ``u2netp``: ``encoders.4``, the stride-16 encoder stage;
    ``lite0/1-fpn``: ``smooth.0``, the head's stride-4 level, task-specific unlike the shared backbone);
    ``lite0/1-fpn`` also ``fmeasure_weight`` (0.0: BCE + IoU only; > 0 adds that weight times :func:`fmeasure_loss`)
    and ``detail`` (0: logits at stride 4; > 0: a stride-2 detail branch of that width, see :class:`LiteSemanticFPN`);
    ``ctd-resnet18`` also ``stages`` (3), ``width`` (64), ``edge_weight`` (1.0).
    """

    task = "saliency"

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        arch = (config or {}).get("arch", "ctd-resnet18")
        if arch not in SALIENCY_ARCHS:
            raise ValueError(f"unknown saliency arch {arch!r}; choose from {', '.join(SALIENCY_ARCHS)}")
        if arch == "u2netp":
            cfg = {"arch": arch, "feature_layer": "encoders.4", **(config or {})}
            super().__init__(cfg)
            self.model: nn.Module = U2NetP()
        elif arch in LITE_FPN_ARCHS:
            cfg = {"arch": arch, "feature_layer": "smooth.0", "fmeasure_weight": 0.0, "detail": 0, **(config or {})}
            super().__init__(cfg)
            self.model = LiteSemanticFPN(1, detail=cfg["detail"], variant=LITE_FPN_ARCHS[arch])
        else:
            cfg = {"stages": 3, "width": 64, "edge_weight": 1.0, **(config or {})}
            cfg.setdefault("feature_layer", f"backbone.{cfg['stages'] - 1}")
            super().__init__(cfg)
            self.model = SaliencyNet(cfg["stages"], cfg["width"])
        self.arch = arch
        self.feature_layer = cfg["feature_layer"]
        self._mean, self._std = (LITE_MEAN, LITE_STD) if arch in LITE_FPN_ARCHS else (IMAGENET_MEAN, IMAGENET_STD)

    def load_pretrained(self, path: str) -> None:
        """Start ``u2netp`` from the converted DUTS-TR weights (``cldyn convert-pretrained u2netp``); ``lite0-fpn``
        from a trained ``lite0-fpn`` saliency network (e.g. the shipped one, into a network with a detail branch that
        it lacks: the branch starts as a no-op), from a trained ``lite0-fpn`` segmentation network
        (:func:`saliency_from_segmentation`), or its backbone from the converted ImageNet EfficientNet-Lite0 or another
        Lite0 task network; ``lite1-fpn`` likewise from Lite1 networks and ``efficientnet_lite1``."""
        if self.arch == "u2netp":
            self.model.load_state_dict(load_pretrained_weights(path, "u2netp"))
        elif self.arch in LITE_FPN_ARCHS:
            loaded = load_checkpoint(path)
            meta = loaded[1]
            cfg = meta.get("config") or {}
            if meta.get("task") == "segmentation" and cfg.get("arch") == self.arch:
                saliency_from_segmentation(self.model, load_task_state(path, loaded), cfg["class_names"])
            elif meta.get("task") == "saliency" and cfg.get("arch") == self.arch:
                missing, unexpected = self.model.load_state_dict(load_task_state(path, loaded), strict=False)
                if unexpected or any(not k.startswith("detail_") for k in missing):
                    raise CheckpointError(Path(path), f"does not fit a {self.arch} saliency network: missing "
                                                      f"{missing}, unexpected {unexpected}")
            else:
                load_lite_backbone(self.model.backbone, path)
        else:
            super().load_pretrained(path)

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        return normalize(image, self._mean, self._std)

    def forward(self, image: torch.Tensor) -> Sequence[torch.Tensor]:
        """Logit maps at the input size: ``(saliency, edge)`` (``ctd-resnet18``), ``(fused, side1, ..., side6)``
        (``u2netp``) or ``(saliency,)`` (``lite0/1-fpn``); the first is always the saliency map."""
        out = self.model(self.preprocess(image))
        if self.arch in LITE_FPN_ARCHS:
            return (F.interpolate(out, size=image.shape[-2:], mode="bilinear", align_corners=False),)
        return out

    def loss_from_output(self, output: Sequence[torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
        mask = targets.to(output[0].dtype)
        if self.arch == "u2netp":
            return deep_supervision_loss(output, mask)
        if self.arch in LITE_FPN_ARCHS:
            loss = bce_iou_loss(output[0], mask)
            if self.config["fmeasure_weight"]:
                loss = loss + self.config["fmeasure_weight"] * fmeasure_loss(output[0], mask)
            return loss
        sal, edge = output
        return saliency_loss(sal, edge, mask, self.config["edge_weight"])

    @torch.no_grad()
    def predict(self, image: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.forward(image)[0])

    @torch.no_grad()
    def confidence(self, image: torch.Tensor) -> torch.Tensor:
        """Minus the mean binary entropy of the saliency map (:func:`negative_binary_entropy`)."""
        return negative_binary_entropy(self.predict(image))

    def evaluate(self, predictions: Sequence[torch.Tensor], targets: Sequence[torch.Tensor]) -> dict[str, float]:
        """Per-image maps ``(1, H, W)`` or ``(H, W)`` in [0, 1] and masks in {0, 1}, scored as 8-bit maps."""
        return saliency_metrics([as_u8_map(p) for p in predictions], [as_u8_map(t) for t in targets])

    def metric_resampler(self, predictions: Sequence[torch.Tensor], targets: Sequence[torch.Tensor],
                         metric: str) -> Callable[[np.ndarray], float] | None:
        """``max_f`` from the per-image F curves, averaged over each resample."""
        if metric != "max_f":
            return None
        curves = saliency_f_curves(predictions, targets)  # (N, 256)
        return lambda index: float(curves[index].mean(0).max())
