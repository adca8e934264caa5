"""The onnxruntime backend of :class:`~cldyn.inference.fuse.Fuser`: a graph from ``cldyn export`` in place of the
PyTorch model, the plain VFN (inputs ``ir``, ``vis_y``) or CLDyN with its task network inside (``ir``, ``vis``)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from cldyn.errors import InputError
from cldyn.model.color import luma_of, with_colour_of
from cldyn.runtime import require_extra


class OnnxBackend:
    """An exported graph run by onnxruntime on the CPU; :meth:`fuse_all` takes and gives what the PyTorch backends
    do (``ir`` ``(B, 1, H, W)``, ``vis`` gray or RGB, fused image with the visible image's channels)."""

    # one output; not tiled automatically (the free memory of onnxruntime's arena is not known), --tile works
    outputs, auto_tiles = 1, False

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

    def fuse_all(self, ir: torch.Tensor, vis: torch.Tensor) -> list[torch.Tensor]:
        ir, vis = ir.cpu().contiguous(), vis.cpu().contiguous()
        if not self.customised:
            return [with_colour_of(vis, self.luma(ir, luma_of(vis))).float()]
        rgb = vis if vis.shape[1] == 3 else vis.expand(-1, 3, -1, -1)  # a gray visible image goes in as RGB
        feeds = {"ir": ir.numpy(), "vis": rgb.contiguous().numpy()}
        return [with_colour_of(vis, torch.from_numpy(self.session.run(None, feeds)[0])).float()]

    def luma(self, ir: torch.Tensor, vis_y: torch.Tensor) -> torch.Tensor:
        """The exported VFN; sides under 2 pixels are padded and cropped as the model does."""
        h, w = ir.shape[-2:]
        ph, pw = max(0, 2 - h), max(0, 2 - w)
        if ph or pw:
            ir = F.pad(ir, (0, pw, 0, ph), mode="replicate")
            vis_y = F.pad(vis_y, (0, pw, 0, ph), mode="replicate")
        feeds = {"ir": ir.contiguous().numpy(), "vis_y": vis_y.contiguous().numpy()}
        return torch.from_numpy(self.session.run(None, feeds)[0])[..., :h, :w]
