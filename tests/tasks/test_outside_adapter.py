"""A network from outside the package (tests/ssdlite_person.py: torchvision's SSDLite as a person-only detector) runs
through every command that takes ``--task module:Class``."""

import json

import cv2
import numpy as np
import pytest
import torch

from cldyn.cli import main
from cldyn.data.task_bank import load_task_bank, select_box_classes, select_seg_classes
from cldyn.inference.sources import image_source
from cldyn.tasks import create_task
from cldyn.weights import load_pretrained_rsc, load_rsc
from cldyn.weights.checkpoint import load_checkpoint

SPEC = "ssdlite_person:SSDLitePersonAdapter"


@pytest.fixture
def person_net(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "ssdlite_person.safetensors"
    create_task(SPEC).save(path)
    return path


def test_select_classes_hand_computed():
    boxes = np.array([[2, .5, .5, .1, .1], [0, .2, .3, .1, .2], [1, .1, .1, .1, .1]], np.float32)
    np.testing.assert_array_equal(select_box_classes(boxes, (0,)), boxes[1:2])
    np.testing.assert_array_equal(select_box_classes(boxes, (2, 0))[:, 0], [0, 1])  # the network's own order
    assert select_box_classes(np.zeros((0, 5), np.float32), (0,)).shape == (0, 5)
    seg = np.array([[0, 1, 2], [255, 2, 8]], np.uint8)
    np.testing.assert_array_equal(select_seg_classes(seg, (0, 2)), [[0, 0, 1], [255, 1, 0]])


def test_the_adapter_reads_only_its_classes(labelled):
    # the fixture labels one person (class 0) and one car (class 2) per image
    adapter = create_task(SPEC)
    bank = load_task_bank(adapter.task, labelled, "train", image_source("visible"), adapter.config,
                          classes=adapter.label_classes)
    assert [it.label[:, 0].tolist() for it in bank.items] == [[0.0], [0.0]]
    assert bank.items[0].label[0, 1:].tolist() == [0.5, 0.5, 0.25, 0.5]


def test_eval_task_scores_it_and_compares_two_sources(labelled, person_net, tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert main(["eval-task", "--task", SPEC, "--weights", str(person_net), "--data", str(labelled), "--split",
                 "train", "--source", "average", "--against", "visible", "--resamples", "20", "--json", str(out),
                 "--quiet"]) == 0
    res = json.loads(out.read_text())
    assert res["n"] == 2 and res["comparison"]["metric"] == "map50_95"
    assert list(res["metrics"]["ap"]) == ["person"] and res["metrics"]["boxes"] == 2  # one person box per image
    # without weights, the message names eval-task's own option
    assert main(["eval-task", "--task", SPEC, "--data", str(labelled), "--quiet"]) == 2
    assert "needs --weights FILE" in capsys.readouterr().err


def test_train_task_then_train_rsc_then_fuse_and_export(labelled, person_net, tmp_path, pairs_dir):
    net = tmp_path / "net"
    visible = labelled / "labels/det/visible"  # what the visible camera alone shows: one person per image
    visible.mkdir()
    for f in (labelled / "labels/det/fusion").iterdir():
        (visible / f.name).write_text("0 0.3 0.4 0.2 0.3\n")
    assert main(["train-task", "--task", SPEC, "--data", str(labelled), "--split", "train", "--val-split", "val",
                 "--input", "visible", "--labels", "visible", "--epochs", "1", "--batch-size", "2", "--crop", "64",
                 "--out", str(net), "--quiet"]) == 0
    assert (net / "best.safetensors").is_file()
    assert load_checkpoint(net / "best.safetensors")[1]["train_config"]["labels"] == "visible"
    rsc = tmp_path / "rsc"
    # "customise for my network": the shipped RSC continued for this one
    assert main(["train-rsc", "--task", SPEC, "--init", "shipped", "--data", str(labelled),
                 f"--task-weights={SPEC}={person_net}", "--steps", "1", "--batch-size", "2", "--crop", "64",
                 "--val-every", "1", "--out", str(rsc), "--quiet"]) == 0
    assert (rsc / "last.safetensors").is_file()
    shipped, continued = load_pretrained_rsc().state_dict(), load_rsc(rsc / "last.safetensors").state_dict()
    floats = [k for k, v in shipped.items() if v.is_floating_point() and v.abs().sum() > 0]
    flat = lambda sd: torch.cat([sd[k].float().flatten() for k in floats])  # noqa: E731
    step = (flat(continued) - flat(shipped)).norm() / flat(shipped).norm()
    assert 0 < step < 0.2  # one Adam step (lr 0.01) from the shipped weights; a fresh RSC lies further than 1
    ir, vis = sorted((pairs_dir / "ir").iterdir())[0], sorted((pairs_dir / "vi").iterdir())[0]
    fused = tmp_path / "fused.png"
    assert main(["fuse", str(ir), str(vis), "-o", str(fused), "--task", SPEC, "--task-weights", str(person_net),
                 "--rsc-weights", str(rsc / "last.safetensors"), "--quiet"]) == 0
    assert cv2.imread(str(fused)).shape == (72, 96, 3)
    pytest.importorskip("onnx")
    onnx_file = tmp_path / "person.onnx"
    assert main(["export", "-o", str(onnx_file), "--task", SPEC, "--task-weights", str(person_net)]) == 0
    assert onnx_file.stat().st_size > 1e6
