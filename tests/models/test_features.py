"""The backbone contract of the downstream systems: torch.fx tracing, torchvision's
create_feature_extractor, and our named feature taps as torchvision's detection models use them."""

from collections import OrderedDict

import pytest
import torch
import torch.fx
from torchvision.models.feature_extraction import create_feature_extractor

import mobilenets
from mobilenets.models.features import MobileNetFeatures, feature_extractor

ALL = mobilenets.list_models()


@pytest.mark.parametrize("name", ALL)
def test_fx_trace_and_torchvision_feature_extractor(name, randomized_bn):
    model = randomized_bn(mobilenets.create_model(name, num_classes=7))
    x = torch.randn(2, 3, 64, 64)
    traced = torch.fx.symbolic_trace(model)
    with torch.no_grad():
        torch.testing.assert_close(traced(x), model(x))
    last = list(model.blocks.named_children())[-1][0]
    nodes = {"blocks.6": "s16_in", f"blocks.{last}": "last"}
    if "shallow" in name:
        nodes = {"blocks.6": "s16_in", "blocks.13": "last"}
    extractor = create_feature_extractor(model, nodes)
    with torch.no_grad():
        out = extractor(x)
        ours = MobileNetFeatures(model, ("block6", f"block{last}"))(x)
    assert list(out) == ["s16_in", "last"]
    torch.testing.assert_close(out["s16_in"], ours["block6"])
    torch.testing.assert_close(out["last"], ours[f"block{last}"])
    torch.testing.assert_close(out["last"], model.forward_features(x))


def test_tf_same_padding_model_traces_with_input_size_dependent_padding():
    model = mobilenets.create_model("mobilenet_v1_0.25_128", padding="tf_same").eval()
    traced = torch.fx.symbolic_trace(model)
    for size in (64, 65, 96):  # the padding is computed at run time, not frozen at trace time
        x = torch.randn(1, 3, size, size)
        with torch.no_grad():
            torch.testing.assert_close(traced(x), model(x))


@pytest.mark.parametrize("taps", [(8, 16, 32), ("block11", "block13"), ("stem", "block1", 16), ("block13",)])
def test_named_taps_channels_and_strides(taps, randomized_bn):
    model = randomized_bn(mobilenets.create_model("mobilenet_v1_0.5_160"))
    fx = feature_extractor(model, taps)
    x = torch.randn(1, 3, 160, 160)
    with torch.no_grad():
        out = fx(x)
        expected = model.forward_taps(x, taps)
    assert isinstance(out, OrderedDict) and list(out) == fx.taps
    channels = [t.shape[1] for t in out.values()]
    assert list(fx.channels.values()) == channels
    assert fx.out_channels == (channels[0] if len(channels) == 1 else channels)
    for name, t in out.items():
        assert t.shape[-1] == 160 // fx.strides[name]
    # the same tensors as forward_taps, whichever order the taps were asked in
    by_name = dict(zip(model.resolve_taps(taps), expected))
    for name, t in out.items():
        torch.testing.assert_close(t, by_name[name])


def test_extractor_shares_the_models_modules():
    model = mobilenets.create_model("mobilenet_v1_0.25_128")
    fx = feature_extractor(model, ("block11",))
    assert fx.stem is model.stem and fx.blocks["block11"] is model.blocks[10]
    assert "block12" not in fx.blocks  # deeper blocks are not run
    with pytest.raises(ValueError, match="unknown tap"):
        feature_extractor(model, ("block14",))
    with pytest.raises(ValueError, match="same feature map twice"):
        feature_extractor(model, ("block13", 32))


def test_torchvision_detectors_accept_the_extractor():
    """The contract torchvision's detection models read: FasterRCNN takes backbone.out_channels
    (an int) and a Tensor/OrderedDict output; SSD an OrderedDict of maps."""
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator, DefaultBoxGenerator
    from torchvision.models.detection.ssd import SSD
    from torchvision.ops import MultiScaleRoIAlign

    torch.manual_seed(0)
    model = mobilenets.create_model("mobilenet_v1_0.25_128")
    one = feature_extractor(model, ("block11",))
    anchors = AnchorGenerator(sizes=((32, 64, 128),), aspect_ratios=((0.5, 1.0, 2.0),))
    frcnn = FasterRCNN(one, num_classes=3, rpn_anchor_generator=anchors, min_size=128, max_size=128,
                       box_roi_pool=MultiScaleRoIAlign([one.taps[0]], 7, 2)).eval()
    with torch.no_grad():
        det = frcnn([torch.rand(3, 128, 128)])
    assert set(det[0]) == {"boxes", "labels", "scores"}

    two = feature_extractor(model, ("block11", "block13"))
    ssd = SSD(two, DefaultBoxGenerator([[2], [2, 3]]), (128, 128), num_classes=3).eval()
    with torch.no_grad():
        det = ssd([torch.rand(3, 128, 128)])
    assert set(det[0]) == {"boxes", "labels", "scores"}


@pytest.mark.parametrize("variant, tap, after", [
    ("separable", "block11", ["12", "13"]), ("separable", 16, ["12", "13"]), ("separable", "block13", []),
    ("separable", "stem", [str(b) for b in range(1, 14)]),
    ("shallow", 16, ["12", "13"]),  # the stride-16 tap is block 6: blocks 7-11 are not in the model
    ("shallow", "block6", ["12", "13"]), ("conv", 8, [str(b) for b in range(6, 14)]),
])
def test_blocks_after_a_tap(variant, tap, after):
    """The model's own blocks after the tap, in order, found by the tap API (not by parsing names);
    with the extractor up to the tap they compute exactly forward_features."""
    model = mobilenets.create_model("mobilenet_v1_0.25_128", variant=variant, num_classes=0).eval()
    blocks = model.blocks_after(tap)
    own = {id(m): key for key, m in model.blocks.named_children()}
    assert [own.get(id(b)) for b in blocks] == after  # the model's modules themselves, not copies
    extractor = feature_extractor(model, (tap,))
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        y = next(iter(extractor(x).values()))
        for block in blocks:
            y = block(y)
        assert torch.equal(y, model.forward_features(x))


def test_faster_rcnn_second_stage_runs_the_blocks_after_its_tap():
    from mobilenets.tasks.detect.faster_rcnn import second_stage

    model = mobilenets.create_model("mobilenet_v1_0.25_128", variant="shallow", num_classes=0)
    head = second_stage(model, model.resolve_taps([16])[0])
    assert [type(m).__name__ for m in head][0] == "MaxPool2d"
    assert list(head)[1:3] == model.blocks_after(16) and len(head) == 5  # pool, 12, 13, avgpool, flatten
    with pytest.raises(mobilenets.MobileNetsError, match="unknown tap 'block9'"):
        model.blocks_after("block9")  # removed in the shallow variant
