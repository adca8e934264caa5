"""The onnxruntime backend of :class:`~cldyn.inference.fuse.Fuser`: a graph from ``cldyn export`` in place of the
PyTorch model, the plain VFN (inputs ``ir``, ``vis_y``) or CLDyN with its task network inside (``ir``, ``vis``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from cldyn.errors import InputError
from cldyn.model.color import with_colour_of
from cldyn.runtime import require_extra


class OnnxBackend:
    """An exported graph run by onnxruntime on the CPU; :meth:`fuse` takes and gives what the PyTorch path does
    (``ir`` ``(B, 1, H, W)``, ``vis`` gray or RGB, fused image with the visible image's channels)."""

    def __init__(self, path: str | Path) -> None:
        require_extra("onnxruntime", "onnx", "--backend onnxruntime")
        import onnxruntime as ort  # optional extra cldyn[onnx]

        try:
            self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise InputError(path, f"not a loadable ONNX model ({str(exc).splitlines()[0][:200]})") from None
        names = [i.name for i in self.session.get_inputs()]
        if names not in (["ir", "vis_y"], ["ir", "vis"]):
            raise InputError(path, f"inputs {names} are not those of a cldyn export (ir, vis_y) or (ir, vis)")
        self.customised = names[1] == "vis"  # CLDyN with its task network, from export --task T

    def fuse(self, ir: torch.Tensor, vis: torch.Tensor, plain: Callable[..., torch.Tensor]) -> torch.Tensor:
        """The fused batch; ``plain(luma_fn, ir, vis)`` wraps a luminance function into colour fusion (the
        :func:`~cldyn.inference.fuse.fuse_tensors` of the caller)."""
        ir, vis = ir.cpu(), vis.cpu()
        if not self.customised:
            return plain(self.luma, ir, vis).float()
        rgb = vis if vis.shape[1] == 3 else vis.expand(-1, 3, -1, -1)  # a gray visible image goes in as RGB
        feeds = {"ir": ir.contiguous().numpy(), "vis": rgb.contiguous().numpy()}
        return with_colour_of(vis, torch.from_numpy(self.session.run(None, feeds)[0])).float()

    def luma(self, ir: torch.Tensor, vis_y: torch.Tensor) -> torch.Tensor:
        """The exported VFN; sides under 2 pixels are padded and cropped as the model does."""
        h, w = ir.shape[-2:]
        ph, pw = max(0, 2 - h), max(0, 2 - w)
        if ph or pw:
            ir = F.pad(ir, (0, pw, 0, ph), mode="replicate")
            vis_y = F.pad(vis_y, (0, pw, 0, ph), mode="replicate")
        feeds = {"ir": ir.contiguous().numpy(), "vis_y": vis_y.contiguous().numpy()}
        return torch.from_numpy(self.session.run(None, feeds)[0])[..., :h, :w]
