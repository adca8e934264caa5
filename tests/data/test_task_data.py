import cv2
import numpy as np
import pytest
import torch

from cldyn.data.bank import seeded_generator
from cldyn.data.labels import discover_task_samples, find_label_dir, read_sal_mask, read_seg_label, read_yolo_boxes
from cldyn.data.pairs import discover_pairs
from cldyn.data.task_bank import TaskBank, crop_boxes
from cldyn.errors import InputError
from cldyn.inference.sources import image_source


def test_discover_and_bank(labelled):
    for task in ("segmentation", "saliency", "detection"):
        found = discover_task_samples(labelled, task, "train")
        assert len(found.samples) == 2 and not found.notes
        bank = TaskBank(task, found.samples, image_source("visible"), 9 if task == "segmentation" else 3)
        x, y = bank.batch([0, 1], seeded_generator(0), crop=48)
        assert x.shape == (2, 3, 48, 48) and float(x.min()) >= 0 and float(x.max()) <= 1
        if task == "segmentation":
            assert y.shape == (2, 48, 48) and y.dtype == torch.int64
        elif task == "saliency":
            assert y.shape == (2, 1, 48, 48) and set(y.unique().tolist()) <= {0.0, 1.0}
        else:
            assert isinstance(y, list) and all(b.shape[1] == 5 for b in y)
    assert len(discover_task_samples(labelled, "saliency", "val").samples) == 1


def test_a_split_can_be_a_file_outside_the_dataset(labelled, tmp_path):
    names = sorted(p.stem for p in (labelled / "ir").iterdir())
    subset = tmp_path / "half.txt"
    subset.write_text(names[1] + "\n")
    found = discover_task_samples(labelled, "saliency", str(subset))
    assert [s.name for s in found.samples] == [names[1]] and not found.notes
    pairs, _ = discover_pairs([labelled], str(subset))
    assert [p.name for p in pairs] == [names[1]]
    subset.write_text("no_such_pair\n")
    with pytest.raises(InputError, match="half.txt.*no image pair"):
        discover_task_samples(labelled, "saliency", str(subset))
    assert len(discover_task_samples(labelled, "saliency", "train").samples) == 2  # a name still means splits/NAME.txt


def test_missing_labels_are_reported(labelled):
    first = sorted((labelled / "labels/seg").iterdir())[0]
    first.unlink()
    found = discover_task_samples(labelled, "segmentation", "train")
    assert len(found.samples) == 1 and "1 pairs have no label file" in found.notes[0]
    (labelled / "labels/det/fusion" / f"{first.stem}.txt").unlink()
    det = discover_task_samples(labelled, "detection", "train")
    assert len(det.samples) == 2 and "without objects" in det.notes[0]


def test_label_errors_name_the_file(tmp_path):
    bad = tmp_path / "a.txt"
    for text, problem in [("5 0.5 0.5 0.1 0.1", "class 5 outside"), ("0 1.5 0.5 0.1 0.1", "not normalised"),
                          ("0 0.5 0.5", "expected 'class cx cy w h'"), ("x 0.5 0.5 0.1 0.1", "not numbers")]:
        bad.write_text(text + "\n")
        with pytest.raises(InputError, match=problem) as info:
            read_yolo_boxes(bad, 3)
        assert str(info.value).startswith(str(bad))
    seg = tmp_path / "s.png"
    cv2.imwrite(str(seg), np.full((4, 6), 12, np.uint8))
    with pytest.raises(InputError, match="class index 12"):
        read_seg_label(seg, (4, 6), 9)
    with pytest.raises(InputError, match="label size 6x4 differs"):
        read_sal_mask(seg, (8, 8))
    assert read_yolo_boxes(None, 3).shape == (0, 5)


def test_crop_boxes_hand_computed():
    # One 40x20 box centred in a 100x100 image; a 50x50 crop at (25, 25) keeps it whole.
    boxes = torch.tensor([[1.0, 0.5, 0.5, 0.4, 0.2]])
    out = crop_boxes(boxes, (100, 100), (25, 25, 50, 50))
    assert torch.allclose(out, torch.tensor([[1.0, 0.5, 0.5, 0.8, 0.4]]))
    # A crop holding 25% of it drops it; one holding 50% keeps the clipped part.
    assert len(crop_boxes(boxes, (100, 100), (0, 0, 50, 35))) == 0
    half = crop_boxes(boxes, (100, 100), (0, 0, 50, 50))
    assert torch.allclose(half, torch.tensor([[1.0, 0.4, 0.9, 0.4, 0.2]]))


def test_find_label_dir_layouts(tmp_path):
    (tmp_path / "GT").mkdir()
    (tmp_path / "Label").mkdir()
    assert find_label_dir(tmp_path, "saliency").name == "GT"
    assert find_label_dir(tmp_path, "segmentation").name == "Label"
    with pytest.raises(InputError, match="no detection labels"):
        find_label_dir(tmp_path, "detection")


def test_voc_xml_labels(tmp_path):
    from cldyn.data.labels import read_voc_boxes

    xml = tmp_path / "a.xml"
    xml.write_text("<annotation><size><width>200</width><height>100</height></size>"
                   "<object><name>Car</name><bndbox><xmin>20</xmin><ymin>10</ymin><xmax>60</xmax><ymax>50</ymax>"
                   "</bndbox></object></annotation>")
    boxes = read_voc_boxes(xml, ["person", "bicycle", "car"], (100, 200))
    assert np.allclose(boxes, [[2, 0.2, 0.3, 0.2, 0.4]])
    xml.write_text("<annotation><object><name>Lamp</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax>"
                   "<ymax>5</ymax></bndbox></object></annotation>")
    with pytest.raises(InputError, match="class 'Lamp' is not one of"):
        read_voc_boxes(xml, ["person", "car"], (10, 10))
    xml.write_text("<annotation><object>")
    with pytest.raises(InputError, match="not a readable VOC xml"):
        read_voc_boxes(xml, ["car"], (10, 10))


def test_a_label_variant_beside_the_default_folder(labelled):
    # MSRS keeps the boxes of what each camera alone shows beside the fused ones
    visible = labelled / "labels/det/visible"
    visible.mkdir()
    names = sorted(p.stem for p in (labelled / "ir").iterdir())
    (visible / f"{names[0]}.txt").write_text("1 0.5 0.5 0.2 0.2\n")
    assert find_label_dir(labelled, "detection", "visible") == visible
    found = discover_task_samples(labelled, "detection", "train", labels="visible")
    bank = TaskBank("detection", found.samples, image_source("visible"), 3)
    assert [it.label[:, 0].tolist() for it in bank.items] == [[1.0], []]  # the second pair: no file, no objects
    with pytest.raises(InputError, match=r"no detection labels named 'infrared' beside fusion/ \(found: fusion, "
                                         r"visible\)"):
        find_label_dir(labelled, "detection", "infrared")
    with pytest.raises(InputError, match="no segmentation labels named 'visible'"):
        find_label_dir(labelled, "segmentation", "visible")


def test_pixel_rule_sources_fuse_the_luminance_and_keep_the_colour(labelled):
    from cldyn.data.io import luma, read_image
    from cldyn.data.pairs import Pair

    name = sorted(p.stem for p in (labelled / "ir").iterdir())[0]
    pair = Pair(name, next((labelled / "ir").glob(f"{name}.*")), next((labelled / "vi").glob(f"{name}.*")))
    ir, vis = luma(read_image(pair.ir).pixels), read_image(pair.vis).pixels
    for rule, expected in (("average", (ir + luma(vis)) / 2), ("max", np.maximum(ir, luma(vis)))):
        fused = image_source(rule)(pair)
        inside = (expected > 0.05) & (expected < 0.95)  # away from the clipping of the colour put back
        np.testing.assert_allclose(luma(fused)[inside], expected[inside], atol=2e-3)
        # the chroma is the visible image's: its Cb/Cr (BT.601) survive where nothing is clipped
        cb = lambda rgb: rgb @ np.array([-0.168736, -0.331264, 0.5], np.float32)  # noqa: E731
        np.testing.assert_allclose(cb(fused)[inside], cb(vis)[inside], atol=2e-2)
