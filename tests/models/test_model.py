"""The model family: shapes, gradients, export paths, layouts, the downstream interface."""

import copy
import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F

import mobilenets
from mobilenets import MobileNetConfig, create_model, scale_channels
from mobilenets.cost.count import analytical_cost
from mobilenets.models.layers import Conv2dSame, tf_same_pad
from mobilenets.models.plan import BLOCKS

ALL = mobilenets.list_models()


def _eval_model(name, **kw):
    torch.manual_seed(0)
    model = create_model(name, **kw).eval()
    # Non-trivial BN statistics, so that eval-mode differences would show.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    return model


def test_registry_has_the_paper_models():
    for a in ("1.0", "0.75", "0.5", "0.25"):
        for r in (224, 192, 160, 128):
            assert f"mobilenet_v1_{a}_{r}" in ALL
    assert "mobilenet_v1_conv_1.0_224" in ALL and "mobilenet_v1_shallow_1.0_224" in ALL
    assert len(ALL) == 18


def test_names_of_a_config():
    """One width rule for the registry's names and the paper's table names."""
    from mobilenets.models.registry import model_name, paper_name

    assert [model_name(a, 224) for a in (1.0, 0.75, 2, 0.5)] == [
        "mobilenet_v1_1.0_224", "mobilenet_v1_0.75_224", "mobilenet_v1_2.0_224", "mobilenet_v1_0.5_224"]
    assert model_name(1.0, 224, "shallow") == "mobilenet_v1_shallow_1.0_224"
    assert [paper_name(1.0, 224), paper_name(0.25, 128)] == ["1.0 MobileNet-224", "0.25 MobileNet-128"]


def test_the_plan_is_the_network():
    """The torch-free plan of Table 1 lists exactly the network's convolutions, in order."""
    from mobilenets.models.plan import layer_plan

    model = create_model("mobilenet_v1_0.5_160", variant="shallow")
    convs = [(n.removesuffix(".conv"), m.in_channels, m.out_channels, m.kernel_size[0], m.stride[0], m.groups > 1)
             for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs == [(s.name, s.in_channels, s.out_channels, s.kernel, s.stride, s.depthwise)
                     for s in layer_plan(model.config)]


@pytest.mark.parametrize("name", ALL)
def test_every_registry_model(name):
    """Output shape, parameter count = counter's, gradients reach every parameter,
    TorchScript and torch.export equal to eager, channels_last equal to NCHW."""
    model = _eval_model(name, num_classes=17)
    res = model.config.resolution
    x = torch.randn(2, 3, res, res)
    with torch.no_grad():
        ref = model(x)
    assert ref.shape == (2, 17)
    assert sum(p.numel() for p in model.parameters()) == analytical_cost(model.config).params_total

    # gradients reach every parameter (train mode, a real loss; on a copy, since a train-mode
    # forward moves the BN running statistics)
    trained = copy.deepcopy(model).train()
    loss = F.cross_entropy(trained(x), torch.tensor([1, 2]))
    loss.backward()
    for pname, p in trained.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname

    with torch.no_grad():
        scripted = torch.jit.script(model)
        torch.testing.assert_close(scripted(x), ref, rtol=1e-5, atol=1e-5)
        exported = torch.export.export(model, (x,))
        torch.testing.assert_close(exported.module()(x), ref, rtol=1e-5, atol=1e-5)
        cl = model.to(memory_format=torch.channels_last)
        out_cl = cl(x.to(memory_format=torch.channels_last))
        torch.testing.assert_close(out_cl, ref, rtol=1e-4, atol=1e-4)


def test_export_with_dynamic_batch_and_tf_same():
    model = _eval_model("mobilenet_v1_0.25_128", padding="tf_same", activation="relu6")
    x = torch.randn(3, 3, 128, 128)
    batch = torch.export.Dim("batch", min=1, max=64)
    ep = torch.export.export(model, (x,), dynamic_shapes=({0: batch},))
    with torch.no_grad():
        for n in (1, 5):
            xi = torch.randn(n, 3, 128, 128)
            torch.testing.assert_close(ep.module()(xi), model(xi), rtol=1e-5, atol=1e-5)


def test_tf_same_padding_semantics():
    """TF "SAME", stride 2, even input: pads 0 before and 1 after (PyTorch padding=1 pads 1/1).
    With an all-ones input and kernel, the top-left output sees a full 3x3 window (9) under
    TF-SAME but only a 2x2 window (4) under symmetric padding; the bottom-right sees 4 under both."""
    ones = torch.ones(1, 1, 8, 8)
    same = Conv2dSame(1, 1, 3, 2, bias=False)
    sym = torch.nn.Conv2d(1, 1, 3, 2, padding=1, bias=False)
    for conv in (same, sym):
        torch.nn.init.ones_(conv.weight)
    with torch.no_grad():
        a, b = same(ones), sym(ones)
    assert a.shape == b.shape == (1, 1, 4, 4)
    assert a[0, 0, 0, 0] == 9 and b[0, 0, 0, 0] == 4
    assert a[0, 0, -1, -1] == 4 and b[0, 0, -1, -1] == 9
    # odd input: TF pads 1 on both sides, the same as PyTorch
    odd = torch.ones(1, 1, 7, 7)
    torch.testing.assert_close(same(odd), sym(odd))
    assert tf_same_pad(torch.zeros(1, 1, 8, 8), 3, 1).shape[-1] == 10


def test_any_alpha_and_resolution():
    for alpha, res in [(0.1, 32), (1.3, 97), (2.0, 33), (0.35, 300)]:
        model = create_model("mobilenet_v1_1.0_224", alpha=alpha, resolution=res, num_classes=5).eval()
        with torch.no_grad():
            assert model(torch.randn(1, 3, res, res)).shape == (1, 5)


def test_channel_rounding_rules():
    # TF-slim: max(int(c * alpha), 8); Keras int(c * alpha) agrees for alpha >= 0.25.
    assert [scale_channels(c, 0.75) for c in (32, 64, 1024)] == [24, 48, 768]
    assert scale_channels(32, 0.1) == 8 and scale_channels(1024, 0.1) == 102
    assert scale_channels(64, 1.25) == 80 and scale_channels(32, 0.35) == 11
    # timm/torchvision rounding: nearest multiple of 8, not more than 10 % down
    assert scale_channels(32, 0.35, divisor=8) == 16  # 11.2 -> 8 would drop 29 %, so 16
    assert scale_channels(1024, 0.35, divisor=8) == 360
    for a in (1.0, 0.75, 0.5, 0.25):  # all rules agree on the paper's widths
        for c in [32] + [c for _, c in BLOCKS.values()]:
            assert scale_channels(c, a) == scale_channels(c, a, divisor=8) == int(c * a)


def test_variants_structure():
    conv = create_model("mobilenet_v1_conv_1.0_224")
    shallow = create_model("mobilenet_v1_shallow_1.0_224")
    sep = create_model("mobilenet_v1_1.0_224")
    assert list(shallow.blocks._modules) == ["1", "2", "3", "4", "5", "6", "12", "13"]
    assert all(set(b._modules) == {"conv"} for b in conv.blocks)
    assert all(set(b._modules) == {"dw", "pw"} for b in sep.blocks)
    assert sep.blocks[12].dw.conv.stride == (1, 1)  # block 13: the paper's "s2" erratum
    assert conv.blocks[1].conv.conv.kernel_size == (3, 3) and conv.blocks[1].conv.conv.stride == (2, 2)


def test_downstream_interface():
    model = _eval_model("mobilenet_v1_0.5_160")
    x = torch.randn(2, 3, 160, 160)
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.shape == (2, 512, 5, 5)
        pre = model.forward_head(feats, pre_logits=True)
        assert pre.shape == (2, 512)
        torch.testing.assert_close(model.forward_head(feats), model(x))
        torch.testing.assert_close(model.classifier(pre), model(x))
        s8, s16, s32 = model.forward_taps(x, (8, 16, 32))
        assert s8.shape == (2, 128, 20, 20) and s16.shape == (2, 256, 10, 10) and s32.shape == (2, 512, 5, 5)
        b11, b13 = model.forward_taps(x, ("block11", "block13"))
        torch.testing.assert_close(b11, s16)  # block 11 is the last stride-16 block
        torch.testing.assert_close(b13, feats)
        (stem,) = model.forward_taps(x, ("stem",))
        assert stem.shape == (2, 16, 80, 80)
    info = {f.name: (f.stride, f.channels) for f in model.feature_info}
    assert info["block11"] == (16, 256) and info["block13"] == (32, 512) and info["block5"] == (8, 128)
    with pytest.raises(ValueError, match="stride"):
        model.forward_taps(x, (64,))
    with pytest.raises(ValueError, match="unknown tap"):
        create_model("mobilenet_v1_shallow_1.0_224").forward_taps(x, ("block11",))

    model.reset_classifier(3)
    assert model.num_classes == 3 and model.config.num_classes == 3
    assert model(x).shape == (2, 3)
    model.reset_classifier(0)
    assert model(x).shape == (2, 512)


def test_retinaface_style_taps_at_alpha_quarter():
    """RetinaFace's mobilenet0.25 uses outputs at strides 8/16/32 with 64/128/256 channels."""
    model = create_model("mobilenet_v1_0.25_224")
    assert [model.feature_info[[f.name for f in model.feature_info].index(n)].channels
            for n in model.resolve_taps((8, 16, 32))] == [64, 128, 256]


def test_config_json_roundtrip_and_validation():
    cfg = MobileNetConfig(alpha=0.6, resolution=200, variant="shallow", activation="relu6",
                          padding="tf_same", num_classes=11, bn_momentum=0.0003)
    text = cfg.to_json()
    back = MobileNetConfig.from_json(text)
    assert back == cfg and hash(back) == hash(cfg)
    assert json.loads(text)["alpha"] == 0.6
    m1, m2 = mobilenets.MobileNet(cfg), mobilenets.MobileNet(back)
    assert [(n, p.shape) for n, p in m1.named_parameters()] == [(n, p.shape) for n, p in m2.named_parameters()]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.alpha = 2  # frozen
    bad = [dict(alpha=0), dict(alpha=-1), dict(alpha=float("nan")), dict(resolution=31),
           dict(resolution=224.0), dict(variant="deep"), dict(activation="gelu"), dict(padding="same"),
           dict(num_classes=-1), dict(dropout=1.0), dict(bn_eps=0), dict(channel_divisor=0)]
    for kw in bad:
        with pytest.raises(ValueError):
            MobileNetConfig(**kw)
    with pytest.raises(ValueError, match="unknown MobileNetConfig field"):
        MobileNetConfig.from_dict({"alpha": 1.0, "depth_multiplier": 1})
    with pytest.raises(ValueError, match="did you mean"):
        create_model("mobilenet_v1_1.0_225")


def test_strided_depthwise_runs_float32_under_cpu_autocast():
    """Under CPU bf16 autocast the stride-2 depthwise convs run in float32 (oneDNN's bf16
    backward of those is several times slower), every other conv in bf16; outside autocast
    nothing changes, and the autocast forward/backward stays close to float32."""
    from mobilenets.models.layers import strided_depthwise_in_float32

    torch.manual_seed(0)
    model = create_model("mobilenet_v1_0.25_128").train()
    keys = list(model.state_dict())
    assert strided_depthwise_in_float32(model) == 4
    assert list(model.state_dict()) == keys
    seen: dict[str, torch.dtype] = {}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Conv2d):
            module.register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name, o.dtype))
    x = torch.randn(4, 3, 128, 128)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    strided_dw = {f"blocks.{b}.dw.conv" for b in (2, 4, 6, 12)}
    assert {n for n, d in seen.items() if d == torch.float32} == strided_dw
    assert all(d == torch.bfloat16 for n, d in seen.items() if n not in strided_dw)
    out.float().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    seen.clear()
    model(x)
    assert set(seen.values()) == {torch.float32}
