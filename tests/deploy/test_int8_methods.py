"""The int8 remedies: bias correction, label-free quantization-aware fine-tuning (PT2E), the float
classifier of every int8 format, and (slow) the real ImageNet MobileNetV1's int8 agreement."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mobilenets.deploy.fold import inference_network
from mobilenets.deploy.ptq import bias_correction, quantize_weight
from mobilenets.models.registry import create_model


@pytest.fixture
def small_net(randomized_bn):
    # the same initial weights whatever ran before in this worker (the QAT correlation below is a
    # property of these weights; from the worker's global generator it varied, 0.74-0.90)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = create_model("mobilenet_v1_0.25_128", resolution=32, num_classes=10)
    return inference_network(randomized_bn(model, seed=3))


def _images(n: int, seed: int = 0) -> np.ndarray:
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, 32, 32, generator=gen) * 2 - 1).numpy()


def test_quantize_weight_is_symmetric_per_output_channel():
    w = torch.tensor([[[[1.0, -0.5]]], [[[0.01, 0.004]]]])
    q = quantize_weight(w)
    assert torch.equal(q[0], torch.tensor([[[1.0, -64 / 127]]]))  # scale 1/127: -0.5 -> -63.5 -> -64 (half to even)
    assert torch.allclose(q[1], torch.tensor([[[0.01, 0.01 * 51 / 127]]]))  # its own scale, 0.01/127


def test_bias_correction_cancels_the_mean_shift_of_rounded_weights(small_net):
    images = _images(64)
    corrected = bias_correction(small_net, images)
    assert small_net.features[0].bias is not corrected.features[0].bias  # a copy; the input is unchanged
    for a, b in zip(small_net.features, corrected.features):
        if isinstance(a, nn.Conv2d):
            assert torch.equal(a.weight, b.weight)  # only biases move

    def rounded(net):
        out = type(net)(nn.Sequential(*[m for m in __import__("copy").deepcopy(net).features]), net.classifier)
        with torch.no_grad():
            for m in out.features:
                if isinstance(m, nn.Conv2d):
                    m.weight.copy_(quantize_weight(m.weight))
        return out.eval()

    # Measured at the last conv's output (what a bias can move; the ReLU after it turns the
    # rounding noise into a mean shift no bias cancels), on the images it was corrected on: the
    # whole rounded chain's shift there cancels to float rounding (measured: before 0.045-0.047,
    # after 9e-7 to 1e-6). On other random images the shift is mostly input-dependent and the
    # correction does not reduce it (measured ratio 0.86-1.35); the earlier check on the features
    # (after < 0.5 before) held only while the randomized model gave the same output for every input.
    last = max(i for i, m in enumerate(small_net.features) if isinstance(m, nn.Conv2d))
    x = torch.from_numpy(images)
    with torch.no_grad():
        ref = small_net.features[:last + 1](x).mean(dim=(0, 2, 3))
        before = (rounded(small_net).features[:last + 1](x).mean(dim=(0, 2, 3)) - ref).abs().mean()
        after = (rounded(corrected).features[:last + 1](x).mean(dim=(0, 2, 3)) - ref).abs().mean()
    assert before > 0.01 and after < 1e-3 * before, (float(before), float(after))


def test_qat_finetune_is_label_free_and_gives_both_forms(small_net):
    from mobilenets.deploy.qat import qat_finetune

    images = _images(48, seed=1)
    before = {k: v.clone() for k, v in small_net.state_dict().items()}
    result = qat_finetune(small_net, images, 1, resolution=32, batch_size=16, lr=1e-3)
    assert all(torch.equal(before[k], v) for k, v in small_net.state_dict().items())  # input untouched
    moved = [k for k, v in result.net.state_dict().items() if not torch.equal(before[k], v)]
    assert moved, "fine-tuning changed no weight"
    assert result.report["steps"] == 3 and result.report["images"] == 48
    x = torch.from_numpy(_images(8, seed=2))
    with torch.no_grad():
        float_out, int8_out = result.net(x), result.quantized(x)
    # The converted graph computes in int8 (so not equal), yet it is the same function. Measured on
    # this untrained α 0.25 net at 32 px (logits varying with the input): correlation 0.886 with the
    # fixture's fixed initial weights (0.74-0.90 over other initial weights; > 0.9 held only while
    # the randomized model's logits did not depend on the input).
    assert not torch.equal(float_out, int8_out)
    assert torch.corrcoef(torch.stack([float_out.flatten(), int8_out.flatten()]))[0, 1] > 0.8


def test_int8_quantizer_leaves_the_classifier_float(small_net):
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from mobilenets.deploy.qat import exported
    from mobilenets.deploy.quantizer import int8_quantizer

    for float_head in (True, False):
        prepared = prepare_pt2e(exported(small_net, 32), int8_quantizer(float_head=float_head))
        prepared(torch.from_numpy(_images(4)))
        graph = convert_pt2e(prepared).graph
        linear = next(n for n in graph.nodes if n.op == "call_function" and "linear" in str(n.target))
        # A quantized linear's output goes to a quantize node; a float one's straight to the output.
        users = [str(u.target) for u in linear.users]
        assert any("quantize_per_tensor" in u for u in users) == (not float_head), users


def _activation_ranges(prepared) -> dict[str, tuple[str, float, float]]:
    """``{observer name: (type, min, max)}`` of a prepared graph's per-tensor (activation)
    observers; a fake-quantizer's observer under the fake-quantizer's name."""
    return {name.removesuffix(".activation_post_process"): (type(m).__name__, float(m.min_val), float(m.max_val))
            for name, m in prepared.named_modules() if hasattr(m, "min_val") and m.min_val.numel() == 1}


@pytest.mark.parametrize("qat", [False, True])
def test_int8_ranges_before_relu6_are_the_clamps(randomized_bn, qat):
    """XNNPACKQuantizer observes a conv's output before its ReLU6; ours observes the clamped values,
    so no activation range after a conv + ReLU6 leaves [0, 6] even where pre-activations do. The
    negative control, in both halves: XNNPACKQuantizer alone (``.base``), given the same graph and
    inputs, has ranges at those same positions that do leave [0, 6]."""
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e, prepare_qat_pt2e

    from mobilenets.deploy.qat import exported
    from mobilenets.deploy.quantizer import int8_quantizer

    torch.manual_seed(0)
    model = create_model("mobilenet_v1_0.25_128", resolution=32, num_classes=10, activation="relu6")
    small_net = inference_network(randomized_bn(model, seed=3))
    graph = exported(small_net, 32)
    relu6 = [n for n in graph.graph.nodes if n.op == "call_function" and "hardtanh" in str(n.target)]
    assert relu6, "the test model has no ReLU6"
    x = torch.from_numpy(_images(8)) * 4  # large inputs: pre-activations far outside [0, 6]
    prepare = prepare_qat_pt2e if qat else prepare_pt2e
    quantizer = int8_quantizer(qat=qat)
    prepared = prepare(graph, quantizer)
    assert quantizer.clamped == len(relu6)
    plain = prepare(exported(small_net, 32), int8_quantizer(qat=qat).base)
    with torch.no_grad():
        prepared(x)  # one forward: a moving average's first update takes the batch's min and max
        plain(x)
    ours, theirs = _activation_ranges(prepared), _activation_ranges(plain)
    assert set(ours) == set(theirs)
    clamped = sorted((n for n, (kind, _, _) in ours.items() if kind.startswith("Clamped")),
                     key=lambda n: int(n.rsplit("_", 1)[1]))
    assert len(clamped) == len(relu6)
    assert all(not theirs[n][0].startswith("Clamped") for n in clamped)
    for n in set(ours) - set(clamped):  # the graph's input: observed alike by both
        assert ours[n] == theirs[n], n
    # Negative control: unclamped, every conv output before a ReLU6 goes below 0, and some go above 6.
    assert all(theirs[n][1] < 0 for n in clamped), [theirs[n] for n in clamped]
    assert any(theirs[n][2] > 6 for n in clamped), [theirs[n] for n in clamped]
    for n in clamped:
        assert 0.0 <= ours[n][1] and ours[n][2] <= 6.0, (n, ours[n])

    def clamp(v):
        return min(max(v, 0.0), 6.0)

    # The clamped range is exactly the plain one clamped. Without fake quantization (PTQ) every
    # position sees the same values in both graphs; with it (QAT), a layer's fake-quantized output
    # depends on its range, so only the first conv sees the same input in both graphs.
    for n in clamped if not qat else clamped[:1]:
        assert ours[n][1:] == (clamp(theirs[n][1]), clamp(theirs[n][2])), (n, ours[n], theirs[n])
    assert ours[clamped[0]][1:] == (0.0, 6.0)  # the first conv's output leaves [0, 6] on both sides


def _held_out_crops(model, folder, count: int) -> np.ndarray:
    """``count`` crops of the photos no calibration sees, preprocessed as the model expects."""
    from PIL import Image

    from mobilenets.data.augment import Augment
    from mobilenets.data.photos import split_photos, write_crops
    from mobilenets.data.preprocess import Preprocessing
    from mobilenets.data.transforms import eval_transform

    pre = Preprocessing.from_dict(model.pretrained_cfg).at(model.config.resolution)
    tf = eval_transform(pre.resolution, Augment(mean=pre.mean, std=pre.std, eval_crop=pre.crop_pct,
                                                interpolation=pre.interpolation))
    paths = write_crops(folder, count, photos=split_photos()[1], seed=3)
    return torch.stack([tf(Image.open(p).convert("RGB")) for p in paths]).numpy()


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".onnx", ".tflite", ".pte"])
def test_real_mobilenet_default_int8(real_mobilenet, tmp_path, suffix):
    """Acceptance of the int8 issue: the DEFAULT int8 export (no method flag: the best of plain, bias
    correction and learned rounding on held-out calibration crops), calibrated on crops of 13
    photos, agrees with the float model on >= 90 % of 400 crops of 7 other photos, and on >= 97 %
    of those the float model is confident about (top-1 probability > 0.5); the sidecar names the
    method, which is not plain (plain gives ~69 % here)."""
    from mobilenets.data.photos import split_photos, write_crops
    from mobilenets.deploy.export import export_model
    from mobilenets.deploy.runtime import load_runner
    from mobilenets.weights.checkpoint import load_model

    write_crops(tmp_path / "photos", 320, photos=split_photos()[0], seed=1)
    out = tmp_path / f"real-int8{suffix}"
    report = export_model(str(real_mobilenet), out, int8=True, calibration=tmp_path / "photos")
    assert report["quantization"]["int8_method"] in ("bias_correction", "learned_rounding")
    assert report["check"]["passed"] is True
    model = load_model(real_mobilenet).eval()
    check = _held_out_crops(model, tmp_path / "check", 400)
    with torch.no_grad():
        ref = torch.cat([model(torch.from_numpy(check[i:i + 50])) for i in range(0, len(check), 50)])
    out8 = torch.from_numpy(load_runner(str(out), threads=2)(check))
    same = ref.argmax(1) == out8.argmax(1)
    confident = ref.softmax(1).amax(1) > 0.5
    assert confident.sum() > 100
    assert same.float().mean() >= 0.90 and same[confident].float().mean() >= 0.97, (
        float(same.float().mean()), float(same[confident].float().mean()))


@pytest.mark.slow
def test_real_mobilenet_int8_qat_agreement(real_mobilenet, tmp_path):
    """Acceptance of the real-weights issue, on a smaller budget than benchmarks/int8_real.py:
    label-free QAT on crops of 13 photos (from bias correction, the default start); check on crops
    of 7 others, held to that issue's 80 % (the default floor, 90 %, is the post-training methods':
    on this model one epoch of QAT ends below bias correction alone, as docs/export.md says)."""
    from mobilenets.data.photos import split_photos, write_crops
    from mobilenets.deploy.export import export_model

    train_photos, held = split_photos()
    write_crops(tmp_path / "photos", 640, photos=train_photos, seed=1)
    out = tmp_path / "real-int8.pte"
    report = export_model(str(real_mobilenet), out, int8=True, calibration=tmp_path / "photos", qat_epochs=1,
                          min_agreement=0.80)
    assert report["quantization"]["qat"]["steps"] > 0
    assert report["quantization"]["int8_method"] == "bias_correction"
    assert report["check"]["agreement"] >= 0.80, report["check"]


# --------------------------------------------------------------------------- learned rounding


def _layer_output_error(conv: nn.Conv2d, weight: torch.Tensor, x: torch.Tensor, target: torch.Tensor) -> float:
    """Mean squared error of ``conv`` with ``weight`` and the best bias for it, measured by running it."""
    out = torch.nn.functional.conv2d(x, weight, None, conv.stride, conv.padding, conv.dilation, conv.groups)
    out = out + (target - out).mean(dim=(0, 2, 3), keepdim=True)  # the best bias: the mean shift cancelled
    return float(((out - target) ** 2).mean(dim=(0, 2, 3)).sum())


@pytest.mark.parametrize("which", ["full", "depthwise"])
def test_learned_rounding_lowers_the_layers_output_error_below_round_to_nearest(small_net, which):
    """The learned integers give a smaller output error than round-to-nearest, measured by running
    the conv (not through the statistics the method optimises), and lie on the exporters' grid.
    On the last full conv (1024 weights per output channel at alpha 0.25) the gain is large
    (measured: 0.42x); on a depthwise conv (9 weights per channel at 8 bits) it is small (0.95x)."""
    from mobilenets.deploy.rounding import _Stats, grid_scale, learn_layer_rounding, round_to_grid

    convs = [m for m in small_net.features if isinstance(m, nn.Conv2d)]
    conv = [c for c in convs if (c.groups > 1) == (which == "depthwise")][-1 if which == "full" else -2]
    idx = list(small_net.features).index(conv)
    with torch.no_grad():
        x = small_net.features[:idx](torch.from_numpy(_images(32, seed=5)))
        target = conv(x)
    stats = _Stats(conv)
    stats.add(x, target)
    learned, e_near, e_learned = learn_layer_rounding(conv.weight.detach(), stats)
    near = round_to_grid(conv.weight.detach())
    measured_near = _layer_output_error(conv, near, x, target)
    measured_learned = _layer_output_error(conv, learned, x, target)
    # the statistics' errors are the measured ones, to float32 rounding of the quadratic form (measured: 0.2 %)
    assert measured_near == pytest.approx(e_near, rel=0.02) and measured_learned == pytest.approx(e_learned, rel=0.02)
    assert measured_learned < (0.7 if which == "full" else 0.99) * measured_near, (measured_learned, measured_near)
    scale = grid_scale(conv.weight.detach())
    assert torch.equal(grid_scale(learned), scale)  # max |w| per channel kept: every exporter derives the same scale
    q = learned / scale
    assert torch.allclose(q, q.round(), atol=1e-3) and q.abs().max() <= 127 + 1e-3
    assert (q.round() != (conv.weight.detach() / scale).round()).any()  # it did move some weights


def test_learned_rounding_on_a_network_keeps_the_grid_and_corrects_biases(small_net):
    from mobilenets.deploy.rounding import grid_scale, learned_rounding

    images = _images(48, seed=6)
    net, layers = learned_rounding(small_net, images)
    convs = [(a, b) for a, b in zip(small_net.features, net.features) if isinstance(a, nn.Conv2d)]
    assert len(layers) == len(convs) and all(r.error_learned <= r.error_nearest for r in layers)
    assert sum(r.kept for r in layers) >= len(layers) // 2, layers
    for a, b in convs:
        assert torch.equal(grid_scale(a.weight), grid_scale(b.weight))
        q = b.weight / grid_scale(b.weight)
        assert torch.allclose(q, q.round(), atol=1e-3)
    assert any(not torch.equal(a.bias, b.bias) for a, b in convs)  # biases corrected
    # the whole chain's logits stay closer to float than plain round-to-nearest's
    from mobilenets.deploy.ptq import quantize_weight

    plain = __import__("copy").deepcopy(small_net)
    with torch.no_grad():
        for m in plain.features:
            if isinstance(m, nn.Conv2d):
                m.weight.copy_(quantize_weight(m.weight))
        x = torch.from_numpy(images)
        ref = small_net(x)
        assert (net(x) - ref).pow(2).mean() < (plain(x) - ref).pow(2).mean()


def test_onnx_int8_file_holds_the_learned_integers(small_net, tmp_path):
    """ONNX Runtime's quantizer recovers exactly the learned integers (its scale max|w| / qmax is
    the grid's: 127 in depthwise convs, 64 in the others, the one ONNX form for every CPU), so the
    file runs what was learned."""
    import onnx
    from onnx import numpy_helper

    from mobilenets.deploy.formats import write
    from mobilenets.deploy.int8 import weight_qmax
    from mobilenets.deploy.rounding import grid_scale, learned_rounding

    qmax = weight_qmax("onnx")
    net, _ = learned_rounding(small_net, _images(32, seed=7), qmax)
    write("onnx", net, str(tmp_path / "m.onnx"), 32, _images(16, seed=8))
    inits = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(tmp_path / "m.onnx")).graph.initializer}
    stored = [v for v in inits.values() if v.dtype == np.int8 and v.ndim == 4]
    convs = [m for m in net.features if isinstance(m, nn.Conv2d)]
    assert len(stored) == len(convs)
    with torch.no_grad():
        learned = [(c.weight / grid_scale(c.weight, qmax(c))).round().to(torch.int8).numpy() for c in convs]
    assert {qmax(c) for c in convs} == {64, 127}  # both grids are exercised
    matched = sum(any(v.shape == q.shape and np.array_equal(v, q) for v in stored) for q in learned)
    assert matched == len(convs)


def test_cli_mirrors_the_library_constants():
    from mobilenets.cli import deploy as cli
    from mobilenets.deploy.int8 import MIN_AGREEMENT
    from mobilenets.deploy.ptq import INT8_METHODS

    assert cli.INT8_METHODS == INT8_METHODS and cli.MIN_AGREEMENT == MIN_AGREEMENT


# --------------------------------------------------------------------------- the default choice and the floor


def _digits_model(randomized_bn):
    """A 10-class model at 32 px whose logits vary with the input (random weights, randomized
    BatchNorm), given as an object: export treats it as trained (held to the floor)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = create_model("mobilenet_v1_0.25_128", resolution=32, num_classes=10)
    return randomized_bn(model, seed=3, classifier_std=1.0).eval()


def test_auto_tries_every_method_and_the_sidecar_names_the_choice(randomized_bn, tmp_path):
    import json

    from mobilenets.deploy.export import export_model
    from mobilenets.deploy.ptq import INT8_METHODS

    out = tmp_path / "m.onnx"
    report = export_model(_digits_model(randomized_bn), out, int8=True, calibration="digits", calibration_images=64,
                          min_agreement=0)
    side = json.loads((tmp_path / "m.onnx.json").read_text())
    q, check = side["quantization"], side["check"]
    assert set(q["selection"]["tried"]) == set(INT8_METHODS)
    assert q["int8_method"] in INT8_METHODS and check["method"] == q["int8_method"]
    tried = q["selection"]["tried"]
    best = max(tried.values(), key=lambda t: t["agreement"])["agreement"]
    assert tried[q["int8_method"]]["agreement"] == best
    # chosen on one half of the 450 held-out digits, reported on the other
    assert check["images"] == 225 and q["selection"]["chosen_on"].startswith("225 held-out images")
    assert 0 <= check["agreement"] <= 1 and check["min_agreement"] == 0 and check["passed"] is True
    assert report["check"] == check
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.onnx.json"]  # no trial file left


def test_low_agreement_fails_with_one_line_and_leaves_nothing(randomized_bn, tmp_path, capsys):
    from mobilenets.cli.main import main
    from mobilenets.deploy.export import export_model
    from mobilenets.deploy.outputs import ExportCheckFailed
    from mobilenets.weights.checkpoint import save_model

    folder = save_model(_digits_model(randomized_bn), tmp_path / "model")
    out = tmp_path / "out" / "m.onnx"
    # Random weights' int8 agreement is far from 1 (measured on this model: ~0.6-0.8), so 0.99 fails.
    args = ["export", "--checkpoint", str(folder), "--int8", "--calibration", "digits", "--calibration-images", "32",
            "--int8-method", "plain", "--min-agreement", "0.99", "--output", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "below --min-agreement 99%" in err and "method plain" in err, err
    assert "95% interval" in err  # failed beyond measurement noise
    assert not out.exists() and not (out.parent / "m.onnx.json").exists()
    assert not out.parent.exists() or list(out.parent.iterdir()) == []
    with pytest.raises(ExportCheckFailed, match="top-1 agreement with fp32 is"):
        export_model(str(folder), out, int8=True, calibration="digits", calibration_images=32, int8_method="plain",
                     min_agreement=0.99)


def test_random_weights_say_so_instead_of_failing(tmp_path):
    from mobilenets.deploy.export import check_text, export_model

    report = export_model("mobilenet_v1_0.25_128", tmp_path / "r.onnx", int8=True, calibration="digits",
                          calibration_images=16, min_agreement=1.0)
    check = report["check"]
    assert check["passed"] is None and "untrained weights" in check["note"]
    assert report["quantization"]["int8_method"] == "plain"  # auto on random weights: no selection
    assert "not held to --min-agreement: untrained weights" in check_text(report)


def test_int8_methods_by_model_and_qat():
    """auto tries every method on a trained model; random weights get plain; QAT starts from bias
    correction on a trained model (from plain it ended at plain's level on the real model)."""
    from mobilenets.deploy.int8 import int8_methods
    from mobilenets.deploy.ptq import INT8_METHODS

    assert int8_methods("auto", False, 0, True) == list(INT8_METHODS)
    assert int8_methods("auto", False, 0, False) == ["plain"]
    assert int8_methods("auto", False, 1, True) == ["bias_correction"]
    assert int8_methods(None, False, 1, False) == ["plain"]
    assert int8_methods("learned_rounding", False, 1, True) == ["learned_rounding"]


def test_wilson_interval_solves_its_defining_equation():
    """The floor's interval: its ends p are the solutions of |f - p| = z sqrt(p (1 - p) / n)."""
    import math

    from mobilenets.deploy.int8 import wilson_interval

    for f, n in ((26 / 32, 32), (0.7, 450), (0.5, 20)):
        for p in wilson_interval(f, n):
            assert abs(f - p) == pytest.approx(1.96 * math.sqrt(p * (1 - p) / n), rel=1e-9)
    low, high = wilson_interval(26 / 32, 32)
    assert low < 0.9 < high  # 81 % of 32: not below a 90 % floor beyond noise
    assert wilson_interval(0.7, 450)[1] < 0.9  # 70 % of 450: it is
    assert wilson_interval(1.0, 20) == (pytest.approx(0.8389, abs=1e-4), 1.0)
