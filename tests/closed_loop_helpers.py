"""Small frozen networks and a random batch for the closed-loop tests (tests/loop, tests/training)."""

import torch

from cldyn.model.rsc import CLDyN
from cldyn.model.vfn import VFN
from cldyn.tasks import create_task


def small_networks():
    """A fresh VFN and two small frozen task networks (saliency, segmentation), seeded."""
    torch.manual_seed(0)
    vfn = VFN().eval()
    adapters = {"saliency": create_task("saliency", {"stages": 2, "width": 8}).freeze(),
                "segmentation": create_task("segmentation", {}).freeze()}
    return vfn, adapters


def random_batch():
    """A fresh CLDyN over :func:`small_networks` and a random batch: ``(model, adapters, ir, vis, saliency mask)``."""
    vfn, adapters = small_networks()
    ir, vis = torch.rand(2, 1, 32, 32), torch.rand(2, 3, 32, 32)
    return CLDyN(vfn), adapters, ir, vis, (torch.rand(2, 1, 32, 32) > 0.7).float()
