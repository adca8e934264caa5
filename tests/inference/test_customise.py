"""Loading what task-customised fusion needs: the frozen task network and an RSC that fits the VFN."""

import pytest

from cldyn.errors import CheckpointError, CldynError
from cldyn.inference.customise import load_customisation
from cldyn.model.rsc import RSC, RSCConfig
from cldyn.model.vfn import VFN, VFNConfig
from cldyn.tasks import create_task, load_task_for
from cldyn.weights import save_rsc


def test_plain_fusion_needs_nothing():
    assert load_customisation(None, VFN()) == (None, None)
    assert load_customisation("none", VFN()) == (None, None)


def test_shipped_network_and_rsc_are_loaded_frozen():
    adapter, rsc = load_customisation("saliency", VFN())
    assert adapter.task == "saliency" and not any(p.requires_grad for p in adapter.model.parameters())
    assert rsc.cfg.num_stages == VFN().num_stages - 1


def test_user_adapter_with_its_weights(tmp_path):
    create_task("tiny_adapter:TinyAdapter").save(tmp_path / "tiny.safetensors")
    save_rsc(tmp_path / "rsc.safetensors", RSC(RSCConfig()))
    adapter, rsc = load_customisation("tiny_adapter:TinyAdapter", VFN(), tmp_path / "tiny.safetensors",
                                      tmp_path / "rsc.safetensors")
    assert adapter.task == "tiny" and isinstance(rsc, RSC)
    with pytest.raises(CldynError, match="a user adapter needs --task-weights FILE"):
        load_customisation("tiny_adapter:TinyAdapter", VFN())


def test_weights_of_another_task_or_vfn_are_refused(tmp_path):
    create_task("tiny_adapter:TinyAdapter").save(tmp_path / "tiny.safetensors")
    with pytest.raises(CldynError, match="tiny.safetensors: holds a 'tiny' network, not 'saliency'"):
        load_task_for("saliency", tmp_path / "tiny.safetensors")
    with pytest.raises(CheckpointError, match="does not fit the VFN in use"):
        load_customisation("saliency", VFN(VFNConfig(num_blocks=2)))
    with pytest.raises(CldynError, match="unknown task 'nope'"):
        load_customisation("nope", VFN())
