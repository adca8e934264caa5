"""Loading what task-customised fusion needs: the frozen task network and an RSC that fits the VFN."""

import numpy as np
import pytest

from cldyn.cli import main
from cldyn.data.io import read_image, read_pair
from cldyn.errors import CheckpointError, CldynError
from cldyn.inference.customise import load_customisation
from cldyn.inference.fuse import Fuser
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


def test_fuser_by_task_name_matches_the_command_line(pairs_dir, tmp_path):
    """Issue 17 item 8: ``Fuser(task="saliency")`` loads the shipped RSC and network, as ``fuse --task`` does."""
    ir, vis = pairs_dir / "ir" / "msrs_00004N_crop.png", pairs_dir / "vi" / "msrs_00004N_crop.png"
    fuser = Fuser(device="cpu", task="saliency")
    assert fuser.task.task == "saliency" and fuser.outputs == 1
    fuser.fuse_files(ir, vis, tmp_path / "api.png")
    assert main(["fuse", str(ir), str(vis), "-o", str(tmp_path / "cli.png"), "--task", "saliency"]) == 0
    assert (tmp_path / "api.png").read_bytes() == (tmp_path / "cli.png").read_bytes()
    Fuser(device="cpu").fuse_files(ir, vis, tmp_path / "plain.png")
    assert (tmp_path / "plain.png").read_bytes() != (tmp_path / "api.png").read_bytes()
    # an adapter object with no RSC given: the shipped RSC; "none": plain fusion
    assert Fuser(device="cpu", task=fuser.task).outputs == 1
    assert Fuser(device="cpu", task="none").task is None


def test_fuse_images_with_base_is_the_vfn_and_the_closed_loop(pairs_dir):
    ir, vis = read_pair(pairs_dir / "ir" / "roadscene_FLIR_00006_crop.png",
                        pairs_dir / "vi" / "roadscene_FLIR_00006_crop.png")
    custom = Fuser(device="cpu", task="saliency")
    base, fused = custom.fuse_images_with_base(ir, vis)
    assert np.array_equal(base, Fuser(device="cpu").fuse_images(ir, vis))
    assert np.array_equal(fused, custom.fuse_images(ir, vis))
    with pytest.raises(CldynError, match="needs task-customised fusion"):
        Fuser(device="cpu").fuse_images_with_base(ir, vis)


def test_two_networks_get_different_customisations_and_strength_0_is_the_vfn(pairs_dir):
    import numpy as np

    from cldyn.data.io import read_image
    from cldyn.inference.fuse import Fuser
    from cldyn.tasks import load_task_for
    from cldyn.weights import load_pretrained_vfn, load_rsc_or_shipped

    ir = read_image(pairs_dir / "ir" / "msrs_00004N_crop.png")
    vis = read_image(pairs_dir / "vi" / "msrs_00004N_crop.png")
    vfn = load_pretrained_vfn()
    rsc = load_rsc_or_shipped("visible", vfn)  # the RSC trained with the networks that saw visible images only
    plain = Fuser(vfn, device="cpu").fuse_images(ir, vis)
    out = {net: Fuser(vfn, device="cpu", task=load_task_for(task, net), rsc=rsc).fuse_images(ir, vis)
           for task, net in (("detection", "detection-visible"), ("saliency", "saliency-visible"))}
    levels = lambda a, b: float(np.abs(a - b).mean() * 255)  # noqa: E731
    assert levels(out["detection-visible"], plain) > 1 and levels(out["saliency-visible"], plain) > 1
    assert levels(out["detection-visible"], out["saliency-visible"]) > 0.5  # each network its own customisation
    at_zero = Fuser(vfn, device="cpu", task=load_task_for("detection", "detection-visible"), rsc=rsc, strength=0)
    assert np.array_equal(at_zero.fuse_images(ir, vis), plain)


def test_a_shipped_rsc_runs_with_its_own_settings_unless_told_otherwise():
    from cldyn.inference.customise import DEFAULT_STRENGTH, customisation_settings
    from cldyn.model.rsc import DEFAULT_MAX_CHANGE
    from cldyn.weights import read_manifest

    own = read_manifest()["rsc_infrared.safetensors"]["settings"]
    assert own == {"strength": 1.0, "max_change": 0.0}  # made for networks that want tens of grey levels moved
    assert customisation_settings("infrared") == (1.0, None, ("strength", "max_change"))
    assert customisation_settings("infrared", 0.25, 4) == (0.25, 4.0, ())  # what the user says wins
    for other in (None, "visible"):  # the default RSC and one without settings of its own: the defaults
        assert customisation_settings(other) == (DEFAULT_STRENGTH, DEFAULT_MAX_CHANGE, ())
    with pytest.raises(CldynError, match=r"--strength must be in \[0, 1\]"):
        customisation_settings("infrared", strength=2.0)


def test_fuse_with_the_infrared_rsc_uses_its_settings_and_says_so(pairs_dir, tmp_path, capsys):
    ir, vis = sorted((pairs_dir / "ir").iterdir())[0], sorted((pairs_dir / "vi").iterdir())[0]
    base = ["fuse", str(ir), str(vis), "--task", "segmentation", "--task-weights", "segmentation-infrared",
            "--rsc-weights", "infrared"]
    assert main([*base, "-o", str(tmp_path / "own.png")]) == 0
    note = capsys.readouterr().err
    assert "the infrared RSC's own settings: strength 1, no change limit" in note
    assert main([*base, "-o", str(tmp_path / "told.png"), "--strength", "1", "--max-change", "0"]) == 0
    assert main([*base, "-o", str(tmp_path / "default.png"), "--strength", "0.5", "--max-change", "6"]) == 0
    assert "own settings" not in capsys.readouterr().err
    own, told, default = (read_image(tmp_path / f"{n}.png").pixels for n in ("own", "told", "default"))
    assert np.array_equal(own, told) and not np.array_equal(own, default)


def test_auto_strength_gives_each_pair_one_of_the_fixed_strengths_images(pairs_dir, tmp_path, capsys):
    from cldyn.inference.customise import check_strength, strength_arg
    from cldyn.weights import load_pretrained_vfn, load_rsc_or_shipped

    assert check_strength("auto") == "auto" and strength_arg("auto") == "auto" and strength_arg("0.25") == 0.25
    with pytest.raises(CldynError, match=r"--strength must be in \[0, 1\] .* or 'auto', got half"):
        check_strength("half")
    vfn = load_pretrained_vfn()
    rsc = load_rsc_or_shipped("visible", vfn)
    task = load_task_for("segmentation", "segmentation-visible")
    pairs = [(read_image(pairs_dir / "ir" / n), read_image(pairs_dir / "vi" / n))
             for n in ("msrs_00004N_crop.png", "roadscene_FLIR_00006_crop.png")]
    chosen = []
    for ir, vis in pairs:
        fixed = [Fuser(vfn, device="cpu", task=task, rsc=rsc, strength=s).fuse_images(ir, vis) for s in (0, 0.5, 1)]
        auto = Fuser(vfn, device="cpu", task=task, rsc=rsc, strength="auto").fuse_images(ir, vis)
        chosen.append([k for k, f in enumerate(fixed) if np.array_equal(auto, f)])
        assert len(chosen[-1]) == 1  # exactly one of them, bit for bit
    # on the command line too, and refused where the network has no confidence of its own
    ir, vis = sorted((pairs_dir / "ir").iterdir())[0], sorted((pairs_dir / "vi").iterdir())[0]
    assert main(["fuse", str(ir), str(vis), "-o", str(tmp_path / "a.png"), "--task", "segmentation",
                 "--task-weights", "segmentation-visible", "--rsc-weights", "visible", "--strength", "auto"]) == 0
    assert (tmp_path / "a.png").is_file()
    weights = tmp_path / "tiny.safetensors"
    create_task("tiny_adapter:TinyAdapter").save(weights)
    assert main(["fuse", str(ir), str(vis), "-o", str(tmp_path / "t.png"), "--task", "tiny_adapter:TinyAdapter",
                 "--task-weights", str(weights), "--strength", "auto"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith("tiny: this network gives no confidence, which --strength auto needs "
                            "(define TaskAdapter.confidence)") and not (tmp_path / "t.png").exists()
