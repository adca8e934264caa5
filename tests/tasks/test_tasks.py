import numpy as np
import pytest
import torch

from cldyn.errors import CldynError
from cldyn.model.ops import as_rgb
from cldyn.tasks import create_task, list_tasks, load_task, task_class
from cldyn.tasks.saliency import bce_iou_loss, fmeasure_loss, iou_loss, mask_edges, saliency_metrics
from cldyn.tasks.segmentation import confusion_matrix, segmentation_metrics


def _adapters():
    out = [("saliency", {"stages": 2, "width": 16}), ("segmentation", {}), ("saliency", {"arch": "u2netp"}),
           ("segmentation", {"arch": "lite0-fpn"}), ("cldyn.tasks.detection_fcos:FCOSDetectionAdapter", {}),
           ("saliency", {"arch": "lite0-fpn"}), ("cldyn.tasks.detection_fcos:RetinaNetDetectionAdapter", {})]
    try:
        import ultralytics  # noqa: F401

        out.append(("detection", {}))
    except ImportError:
        pass
    return out


def _targets(task, b, h, w):
    if task == "saliency":
        m = torch.zeros(b, 1, h, w)
        m[:, :, h // 4:h // 2, w // 4:w // 2] = 1
        return m
    if task == "segmentation":
        return torch.randint(0, 9, (b, h, w))
    return [torch.tensor([[0, 0.5, 0.5, 0.4, 0.5], [2, 0.25, 0.3, 0.2, 0.2]])] * b


@pytest.mark.parametrize("task,config", _adapters())
def test_gradient_reaches_image_and_frozen_state_unchanged(task, config):
    torch.manual_seed(0)
    adapter = create_task(task, config).freeze()
    before = {k: v.clone() for k, v in adapter.model.state_dict().items()}
    x = torch.rand(2, 3, 64, 64, requires_grad=True)
    feats, out = adapter.features_and_output(x)
    loss = adapter.loss_from_output(out, _targets(adapter.task, 2, 64, 64))
    loss.backward()
    assert feats.dim() == 4 and feats.shape[0] == 2
    assert torch.isfinite(loss) and x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in adapter.model.parameters())
    after = adapter.model.state_dict()
    for k, v in before.items():
        assert torch.equal(v, after[k]), f"{task}: {k} changed"  # weights and BatchNorm buffers


@pytest.mark.parametrize("task,config", _adapters())
def test_save_load_round_trip(task, config, tmp_path):
    adapter = create_task(task, config)
    adapter.save(tmp_path / "w.safetensors")
    back = load_task(tmp_path / "w.safetensors")
    assert type(back) is type(adapter) and back.config == adapter.config
    for k, v in adapter.model.state_dict().items():
        assert torch.equal(v, back.model.state_dict()[k])


def test_user_adapter_by_module_path(tmp_path):
    cls = task_class("tiny_adapter:TinyAdapter")
    adapter = create_task("tiny_adapter:TinyAdapter", {"width": 3}).freeze()
    assert isinstance(adapter, cls) and adapter.name == "tiny"
    x = torch.rand(1, 3, 8, 8, requires_grad=True)
    adapter.loss(x, torch.ones(1, 1, 8, 8)).backward()
    assert x.grad.abs().sum() > 0
    assert adapter.features(x).shape == (1, 3, 8, 8)
    adapter.save(tmp_path / "t.safetensors")
    assert load_task(tmp_path / "t.safetensors").config["width"] == 3


def test_registry_errors():
    assert list_tasks() == ["detection", "saliency", "segmentation"]
    with pytest.raises(CldynError, match="unknown task"):
        task_class("nope")
    with pytest.raises(CldynError, match="cannot import"):
        task_class("no_such_module_xyz:Thing")
    with pytest.raises(CldynError, match="not a cldyn.tasks.base.TaskAdapter"):
        task_class("torch.nn:Conv2d")


def test_bad_feature_layer():
    adapter = create_task("tiny_adapter:TinyAdapter")
    adapter.feature_layer = "missing"
    with pytest.raises(ValueError, match="no layer named 'missing'"):
        adapter.features(torch.rand(1, 3, 4, 4))


def test_as_rgb():
    assert as_rgb(torch.rand(2, 1, 4, 4)).shape == (2, 3, 4, 4)
    with pytest.raises(ValueError):
        as_rgb(torch.rand(2, 2, 4, 4))


# --- metrics: hand-computed cases ------------------------------------------------------------------------------


def test_segmentation_metrics_hand_computed():
    gt = np.array([[0, 0, 1, 1], [0, 2, 2, 255]])
    pred = np.array([[0, 1, 1, 1], [0, 2, 0, 0]])
    conf = confusion_matrix(pred, gt, 3)
    # class 0: tp 2, fp 1 (gt 2 -> 0), fn 1 (gt 0 -> 1) -> 2/4; class 1: tp 2, fp 1 -> 2/3; class 2: tp 1, fn 1 -> 1/2
    m = segmentation_metrics(conf, ["a", "b", "c"])
    assert m["iou"] == pytest.approx({"a": 0.5, "b": 2 / 3, "c": 0.5})
    assert m["miou"] == pytest.approx((0.5 + 2 / 3 + 0.5) / 3)
    assert m["pixel_acc"] == pytest.approx(5 / 7)
    perfect = segmentation_metrics(confusion_matrix(gt, gt, 3))
    assert perfect["miou"] == 1.0 and perfect["pixel_acc"] == 1.0
    with pytest.raises(ValueError, match="label values"):
        confusion_matrix(gt, np.full_like(gt, 7), 3)


def test_saliency_metrics_perfect_and_hand():
    gt = np.zeros((32, 32), np.uint8)
    gt[8:20, 10:24] = 255
    m = saliency_metrics([gt.copy()], [gt])
    assert m["mae"] == 0.0
    assert m["max_f"] == pytest.approx(1.0, abs=1e-3) and m["s_measure"] == pytest.approx(1.0, abs=1e-3)
    assert m["max_e"] == pytest.approx(1.0, abs=1e-3)
    half = np.full_like(gt, 128)
    assert saliency_metrics([half], [gt])["mae"] == pytest.approx(
        np.abs(128 / 255 - gt / 255).mean(), abs=1e-6)


def test_saliency_losses():
    m = torch.zeros(1, 1, 5, 5)
    m[..., 1:4, 1:4] = 1
    e = mask_edges(m)
    assert e[0, 0, 2, 2] == 0 and e[0, 0, 1, 1] == 1 and e[0, 0, 0, 0] == 1 and e.sum() == 24
    big = torch.full_like(m, 20.0) * (2 * m - 1)  # confident and right
    assert iou_loss(big, m) < 1e-6
    # zero logits: BCE = ln 2 per pixel; soft IoU = 1 - (0.5 * 9 + 1) / (25 * 0.5 + 9 - 0.5 * 9 + 1) = 1 - 5.5 / 18
    assert torch.isclose(bce_iou_loss(torch.zeros_like(m), m), torch.tensor(0.6931472 + 1 - 5.5 / 18))


def test_fmeasure_loss_by_hand_and_without_objects():
    m = torch.zeros(2, 1, 4, 4)
    m[0, :, :2, :2] = 1  # image 0: 4 salient pixels; image 1: none
    all_on = torch.full_like(m, 30.0)
    # image 0 predicts all 16 pixels: F = 1.3 * 4 / (0.3 * 4 + 16); image 1 has no object and is left out
    assert fmeasure_loss(all_on, m).item() == pytest.approx(1 - 5.2 / 17.2, abs=1e-5)
    assert fmeasure_loss(all_on[:1], m[:1]).item() == pytest.approx(1 - 5.2 / 17.2, abs=1e-5)
    right = 30.0 * (2 * m - 1)
    assert fmeasure_loss(right, m).item() == pytest.approx(0.0, abs=1e-5)
    # half-confident everywhere: TP = 2, |p| = 8 -> F = 2.6 / (1.2 + 8)
    assert fmeasure_loss(torch.zeros_like(m), m).item() == pytest.approx(1 - 2.6 / 9.2, abs=1e-5)
    empty = torch.zeros_like(m)
    assert fmeasure_loss(all_on, empty).item() == 0.0


def test_saliency_fmeasure_weight_adds_the_fmeasure_term():
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    m = (torch.rand(1, 1, 64, 64, generator=torch.Generator().manual_seed(1)) > 0.8).float()
    torch.manual_seed(0)
    plain = create_task("saliency", {"arch": "lite0-fpn"}).freeze()
    weighted = create_task("saliency", {"arch": "lite0-fpn", "fmeasure_weight": 2.0}).freeze()
    weighted.model.load_state_dict(plain.model.state_dict())
    out = plain.forward(x)
    assert plain.config["fmeasure_weight"] == 0.0
    assert torch.isclose(weighted.loss_from_output(out, m),
                         plain.loss_from_output(out, m) + 2.0 * fmeasure_loss(out[0], m), atol=1e-6)


def test_saliency_detail_branch_starts_as_the_loaded_stride4_network(tmp_path):
    torch.manual_seed(0)
    plain = create_task("saliency", {"arch": "lite0-fpn"})
    for m in plain.model.modules():  # non-trivial BN statistics, as in a trained network
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    plain.save(tmp_path / "sal.safetensors")
    detail = create_task("saliency", {"arch": "lite0-fpn", "detail": 8})
    detail.load_pretrained(str(tmp_path / "sal.safetensors"))
    plain.freeze(), detail.freeze()
    x = torch.rand(2, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        stride4, stride2 = plain.model(plain.preprocess(x)), detail.model(detail.preprocess(x))
    assert stride4.shape[-2:] == (16, 24) and stride2.shape[-2:] == (32, 48)
    # the classifier is per-pixel linear, so it commutes with bilinear upsampling of the features
    expected = torch.nn.functional.interpolate(stride4, size=(32, 48), mode="bilinear", align_corners=False)
    assert torch.allclose(stride2, expected, atol=1e-5)
    # and the branch can learn: its parameters get gradient from the loss
    detail.model.train().requires_grad_(True)
    detail.loss_from_output(detail.forward(x), (x[:, :1] > 0.7).float()).backward()
    assert detail.model.detail_fuse[-1].weight.grad.abs().sum() > 0
    # the other way round (a detail branch into a network without one) is refused
    detail.save(tmp_path / "detail.safetensors")
    with pytest.raises(CldynError, match="does not fit a lite0-fpn saliency"):
        create_task("saliency", {"arch": "lite0-fpn"}).load_pretrained(str(tmp_path / "detail.safetensors"))


def test_detection_map_perfect_and_miss():
    pytest.importorskip("pycocotools")
    from cldyn.tasks.detection import coco_map

    t = [torch.tensor([[0, 0.5, 0.5, 0.2, 0.4], [2, 0.2, 0.2, 0.1, 0.1]])]
    perfect = [{"boxes": torch.tensor([[80.0, 60, 120, 140], [30, 30, 50, 50]]), "scores": torch.tensor([0.9, 0.8]),
                "labels": torch.tensor([0, 2]), "size": (200, 200)}]
    m = coco_map(perfect, t, ["person", "bicycle", "car"])
    assert m["map50"] == pytest.approx(1.0) and m["map50_95"] == pytest.approx(1.0)
    assert m["ap"] == {"person": pytest.approx(1.0), "bicycle": None, "car": pytest.approx(1.0)}
    # Shifted right by 8 px: IoU = 2560 / 3840 = 2/3 -> a hit at thresholds 0.50 .. 0.65, a miss above.
    shifted = [{"boxes": torch.tensor([[88.0, 60, 128, 140]]), "scores": torch.tensor([0.9]),
                "labels": torch.tensor([0]), "size": (200, 200)}]
    m2 = coco_map(shifted, [t[0][:1]], ["person", "bicycle", "car"])
    assert m2["map50"] == pytest.approx(1.0)
    assert m2["map50_95"] == pytest.approx(0.4)  # 4 of the 10 thresholds


@pytest.mark.parametrize("spec,config", [("saliency", {"arch": "u2netp"}), ("segmentation", {"arch": "lite0-fpn"}),
                                         ("cldyn.tasks.detection_fcos:FCOSDetectionAdapter", {}),
                                         ("saliency", {"arch": "lite0-fpn"}),
                                         ("cldyn.tasks.detection_fcos:RetinaNetDetectionAdapter", {})])
def test_pretrained_architectures_predict_at_any_size(spec, config):
    adapter = create_task(spec, config).freeze()
    x = torch.rand(1, 3, 72, 100)  # sides that are no multiple of 32
    pred = adapter.predict(x)
    if adapter.task == "detection":
        assert pred[0]["size"] == (72, 100) and pred[0]["boxes"].shape[1] == 4
        assert (pred[0]["boxes"][:, 2] <= 100).all() and (pred[0]["boxes"][:, 3] <= 72).all()
    else:
        assert pred.shape[-2:] == (72, 100)


def test_pretrained_start_is_refused_where_there_is_none(tmp_path):
    with pytest.raises(CldynError, match="has no pretrained start"):
        create_task("saliency", {"stages": 2, "width": 16}).load_pretrained(str(tmp_path / "x.safetensors"))
    with pytest.raises(ValueError, match="unknown saliency arch"):
        create_task("saliency", {"arch": "u3net"})
    with pytest.raises(ValueError, match="unknown segmentation arch"):
        create_task("segmentation", {"arch": "unet"})


def test_fcos_targets_in_pixels_and_degenerate_boxes_dropped():
    from cldyn.tasks.detection_fcos import targets_to_torchvision

    t = torch.tensor([[0, 0.5, 0.5, 0.5, 0.5], [1, 0.1, 0.1, 0.001, 0.2]])  # the second is 0.1 px wide
    (out,) = targets_to_torchvision([t], (40, 80), torch.device("cpu"))
    assert out["labels"].tolist() == [0]
    assert out["boxes"].tolist() == [[20.0, 10.0, 60.0, 30.0]]


@pytest.mark.parametrize("name", ["FCOSDetectionAdapter", "RetinaNetDetectionAdapter"])
def test_lite_detector_loss_is_torchvisions_own(name):
    from cldyn.tasks.detection_fcos import targets_to_torchvision

    torch.manual_seed(0)
    adapter = create_task(f"cldyn.tasks.detection_fcos:{name}")
    adapter.model.train()
    x = torch.rand(2, 3, 96, 128)
    targets = [torch.tensor([[2, 0.5, 0.5, 0.4, 0.3], [0, 0.2, 0.3, 0.1, 0.4]]),
               torch.tensor([[1, 0.7, 0.6, 0.3, 0.25]])]
    ours = adapter.loss_from_output(adapter.forward(x), targets)
    # torchvision's training forward (transform, backbone, head, anchors, matching, losses) on the same input
    theirs = adapter.model(list(x), targets_to_torchvision(targets, (96, 128), torch.device("cpu")))
    assert torch.isclose(ours, sum(theirs.values()), rtol=1e-5)


def test_retinanet_anchors_three_scales_three_ratios():
    from cldyn.tasks.detection_fcos import retinanet_anchors

    gen = retinanet_anchors((16, 32))
    assert gen.sizes == ((16, 20, 25), (32, 40, 51))  # 16 * 2^(1/3) = 20.2, 16 * 2^(2/3) = 25.4
    assert gen.num_anchors_per_location() == [9, 9]


def test_saliency_starts_from_a_segmentation_network_as_salient_minus_other_logits(tmp_path):
    torch.manual_seed(0)
    seg = create_task("segmentation", {"arch": "lite0-fpn"})
    torch.nn.init.normal_(seg.model.classifier.weight, std=0.3)
    torch.nn.init.normal_(seg.model.classifier.bias, std=0.3)
    seg.save(tmp_path / "seg.safetensors")
    sal = create_task("saliency", {"arch": "lite0-fpn"})
    sal.load_pretrained(str(tmp_path / "seg.safetensors"))
    seg.freeze(), sal.freeze()
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        logits = seg.model(seg.preprocess(x))  # (1, 9, 16, 24): unlabelled, car, person, bike, 5 more
        salient = torch.zeros(9, dtype=torch.bool)
        salient[1:4] = True  # car, person, bike
        want = logits[:, salient].mean(1) - logits[:, ~salient].mean(1)
        got = sal.model(sal.preprocess(x))[:, 0]
    assert torch.allclose(got, want, atol=1e-4)
    # another start: a segmentation network without those classes is refused with the names
    other = create_task("segmentation", {"arch": "lite0-fpn", "class_names": [f"c{i}" for i in range(9)]})
    other.save(tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="salient classes"):
        create_task("saliency", {"arch": "lite0-fpn"}).load_pretrained(str(tmp_path / "other.safetensors"))


def test_shipped_networks_give_the_closed_loop_features_that_tell_the_tasks_apart(pairs_dir):
    # The three shipped networks share an ImageNet EfficientNet-Lite0 backbone: at its end their features barely
    # differ; at each network's own FPN/head level (its feature_layer) they do. Two real fixture pairs.
    from cldyn.evaluation.inspect_rsc import load_pairs, separation
    from cldyn.model.rsc import CLDyN
    from cldyn.model.task_encoder import channel_quantiles
    from cldyn.tasks import load_pretrained_task
    from cldyn.weights import load_pretrained_vfn

    pairs, model = load_pairs(pairs_dir, None), CLDyN(load_pretrained_vfn())
    shared_end = {"detection": "backbone.body.blocks.15", "segmentation": "backbone.blocks.15",
                  "saliency": "backbone.blocks.15"}
    own, end = {}, {}
    for task, layer in shared_end.items():
        adapter = load_pretrained_task(task).freeze()
        assert adapter.feature_layer != layer
        own[task] = torch.stack([channel_quantiles(model.task_features(ir, vis, adapter))[0] for ir, vis in pairs])
        adapter.feature_layer = layer
        end[task] = torch.stack([channel_quantiles(model.task_features(ir, vis, adapter))[0] for ir, vis in pairs])
    own, end = separation(own), separation(end)
    assert own["between"] > 3 * own["within"]  # measured: 2.29 vs 0.50
    assert end["between"] < 2 * end["within"]  # measured: 0.64 vs 0.36


def test_label_free_confidences_by_hand_and_against_torch():
    import torch.nn.functional as F

    from cldyn.tasks.detection import top_score
    from cldyn.tasks.saliency import negative_binary_entropy
    from cldyn.tasks.segmentation import mean_max_probability

    torch.manual_seed(0)
    logits = torch.randn(2, 5, 6, 7)
    expected = torch.stack([logits[b].softmax(0).max(0).values.mean() for b in range(2)])
    assert torch.allclose(mean_max_probability(logits), expected)
    assert torch.allclose(mean_max_probability(torch.zeros(1, 4, 3, 3)), torch.tensor([0.25]))  # all ties: 1/K
    p = torch.rand(2, 1, 6, 7) * 0.98 + 0.01
    entropy = torch.stack([F.binary_cross_entropy(p[b], p[b]) for b in range(2)])  # H(p) = BCE of p against itself
    assert torch.allclose(negative_binary_entropy(p), -entropy, atol=1e-6)
    assert torch.allclose(negative_binary_entropy(torch.full((1, 1, 2, 2), 0.5)), -torch.log(torch.tensor([2.0])))
    assert top_score([{"scores": torch.tensor([0.3, 0.7, 0.1])}, {"scores": torch.zeros(0)}]).tolist() == [
        pytest.approx(0.7), 0.0]
    for bad, fn in ((torch.zeros(2, 3, 4), mean_max_probability), (torch.zeros(1, 2, 3, 3), negative_binary_entropy)):
        with pytest.raises(ValueError, match="must be"):
            fn(bad)


@pytest.mark.parametrize("task,config", _adapters())
def test_every_task_kind_gives_one_confidence_per_image(task, config):
    adapter = create_task(task, config).freeze()
    conf = adapter.confidence(torch.rand(3, 3, 64, 64))
    assert conf.shape == (3,) and torch.isfinite(conf).all()


def test_a_network_without_a_confidence_refuses_auto_strength():
    with pytest.raises(CldynError, match=r"tiny: this network gives no confidence, which --strength auto needs"):
        create_task("tiny_adapter:TinyAdapter").confidence(torch.rand(1, 3, 32, 32))
