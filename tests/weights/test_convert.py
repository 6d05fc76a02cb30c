"""Pretrained weights from Keras, TF-slim, timm and Hugging Face, and back: proven equal on logits.

Each source model is built by the source framework's own code with random, non-trivial weights
(He-scaled convs, random BN gamma/beta/running mean/running variance, BN in eval mode), converted,
and compared on fresh random inputs. Nothing is downloaded.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch._dynamo  # before TensorFlow: loading triton after it segfaults (see mobilenets.utils.tf.import_tf)
from torch import nn

from mobilenets import (
    MobileNet,
    MobileNetConfig,
    from_hf,
    from_keras,
    from_tf_slim,
    from_timm,
    load_model,
    save_model,
    to_keras,
    to_timm,
)
from mobilenets.cli.main import main
from mobilenets.data.preprocess import Preprocessing
from mobilenets.errors import MobileNetsError
from mobilenets.weights.convert import convert, timm_model_name

ALPHAS = (1.0, 0.5, 0.25)
RESOLUTIONS = (96, 128)
TOL = 1e-4
MEASURED: dict[str, float] = {}  # filled by the tests; see _report_errors


@pytest.fixture(scope="module", autouse=True)
def _report_errors():
    """With MOBILENETS_CONVERT_REPORT=FILE, write the measured errors there as JSON at the end."""
    yield
    target = os.environ.get("MOBILENETS_CONVERT_REPORT")
    if target:
        Path(target).write_text(json.dumps(MEASURED, indent=1))


def rel_err(a, b) -> float:
    """Relative error of ``a`` against the reference ``b``: max|a - b| / max|b| over all logits."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())


def _inputs(seed: int, resolution: int, n: int = 2) -> np.ndarray:
    """Fresh random images in the sources' input range [-1, 1], NCHW float32."""
    return np.random.default_rng(seed).uniform(-1, 1, (n, 3, resolution, resolution)).astype(np.float32)


def _ours(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model.eval()(torch.from_numpy(x)).numpy()


def _check_nontrivial(logits: np.ndarray) -> None:
    # the comparison means something only if the logits vary over classes and over inputs
    assert np.isfinite(logits).all()
    assert logits.std(axis=1).min() > 1e-3 and np.abs(logits[0] - logits[1]).max() > 1e-3


@pytest.fixture
def randomize(randomized_bn):
    """``randomize(model, seed)``: He-scaled convs and a Linear-scaled classifier with a bias (so
    the logits vary over classes and inputs), then conftest's BatchNorm randomisation."""
    def run(model: nn.Module, seed: int) -> nn.Module:
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, nn.Conv2d):
                    fan_in = m.weight[0].numel()
                    m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2 / fan_in) ** 0.5)
                elif isinstance(m, nn.Linear):
                    m.weight.copy_(torch.randn(m.weight.shape, generator=g) / m.in_features ** 0.5)
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
        return randomized_bn(model, seed)

    return run


# --- Keras (and TF-slim, written from the Keras weights) ---------------------------------------

@pytest.fixture(scope="module")
def keras():
    import keras

    return keras


def _randomize_keras(model, seed: int):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        kind = type(layer).__name__
        values = []
        for w in layer.weights:
            name, shape = w.name.split("/")[-1], tuple(w.shape)
            if name in ("kernel", "depthwise_kernel"):
                fan_in = shape[0] * shape[1] * (1 if kind == "DepthwiseConv2D" else shape[2])
                values.append(rng.normal(0, (2 / fan_in) ** 0.5, shape))
            elif kind == "BatchNormalization":
                c = shape[0]
                values.append({"gamma": rng.uniform(0.5, 1.5, c), "beta": rng.normal(0, 0.2, c),
                               "moving_mean": rng.normal(0, 0.2, c), "moving_variance": rng.uniform(0.5, 2, c)}[name])
            else:  # the classifier bias
                values.append(rng.normal(0, 0.1, shape))
        if values:
            if kind == "Conv2D" and layer.name == "conv_preds":
                values[0] = values[0] / np.sqrt(2)  # Linear-style scale for the classifier
            layer.set_weights([v.astype(np.float32) for v in values])
    return model


@pytest.fixture(scope="module")
def keras_models(keras):
    """alpha, resolution -> (Keras MobileNet with softmax, a Keras model giving its logits)."""
    out = {}
    for i, alpha in enumerate(ALPHAS):
        for j, res in enumerate(RESOLUTIONS):
            m = keras.applications.MobileNet(weights=None, alpha=alpha, input_shape=(res, res, 3))
            _randomize_keras(m, 100 + 10 * i + j)
            logits = keras.Model(m.inputs, m.get_layer("predictions").input)
            out[alpha, res] = (m, logits)
    return out


def _keras_logits(logit_model, x: np.ndarray) -> np.ndarray:
    return np.asarray(logit_model(x.transpose(0, 2, 3, 1), training=False))


@pytest.mark.parametrize("alpha", ALPHAS)
@pytest.mark.parametrize("res", RESOLUTIONS)
def test_from_keras_equal(keras_models, alpha, res):
    kmodel, logit_model = keras_models[alpha, res]
    ours = from_keras(kmodel)
    cfg = ours.config
    assert (cfg.alpha, cfg.resolution, cfg.num_classes) == (alpha, res, 1000)
    assert (cfg.padding, cfg.activation, cfg.bn_eps) == ("tf_same", "relu6", 1e-3)
    assert not ours.training and Preprocessing.from_dict(ours.pretrained_cfg).input_range == (-1.0, 1.0)
    assert ours.pretrained_cfg["input_size"] == (3, res, res) and ours.pretrained_cfg["num_classes"] == 1000
    x = _inputs(1, res)
    ref = _keras_logits(logit_model, x)
    _check_nontrivial(ref)
    err = MEASURED[f"keras a={alpha} r={res}"] = rel_err(_ours(ours, x), ref)
    assert err <= TOL


def _write_slim_checkpoint(kmodel, prefix: Path, background_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A checkpoint with TF-slim mobilenet_v1 variable names holding the Keras model's weights, plus
    a random background class at index 0 of a 1001-way classifier. Returns that row's (w, b)."""
    import tensorflow as tf

    def weights(layer_name):
        return {w.name.split("/")[-1]: np.asarray(w.numpy()) for w in kmodel.get_layer(layer_name).weights}

    def kernel(layer_name):  # a depthwise conv's weight is "kernel" in Keras 3, "depthwise_kernel" before
        found = weights(layer_name)
        return found["kernel"] if "kernel" in found else found["depthwise_kernel"]

    tensors = {}
    for block in range(14):
        units = [("Conv2d_0", "conv1", "weights")] if block == 0 else [
            (f"Conv2d_{block}_depthwise", f"conv_dw_{block}", "depthwise_weights"),
            (f"Conv2d_{block}_pointwise", f"conv_pw_{block}", "weights")]
        for slim, keras_name, slim_w in units:
            tensors[f"MobilenetV1/{slim}/{slim_w}"] = kernel(keras_name)
            bn = weights(keras_name + "_bn")
            for var in ("gamma", "beta", "moving_mean", "moving_variance"):
                tensors[f"MobilenetV1/{slim}/BatchNorm/{var}"] = bn[var]
    preds = weights("conv_preds")
    rng = np.random.default_rng(background_seed)
    bg_w = rng.normal(0, 0.05, preds["kernel"].shape[:3] + (1,)).astype(np.float32)
    bg_b = rng.normal(0, 0.1, (1,)).astype(np.float32)
    tensors["MobilenetV1/Logits/Conv2d_1c_1x1/weights"] = np.concatenate([bg_w, preds["kernel"]], axis=3)
    tensors["MobilenetV1/Logits/Conv2d_1c_1x1/biases"] = np.concatenate([bg_b, preds["bias"]])
    tensors["global_step"] = np.array(1234, dtype=np.int64)
    names = sorted(tensors)
    tf.raw_ops.SaveV2(prefix=str(prefix), tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(tensors[n]) for n in names])
    return bg_w[0, 0, :, 0], bg_b


@pytest.mark.parametrize("alpha", ALPHAS)
@pytest.mark.parametrize("res", RESOLUTIONS)
def test_from_tf_slim_equal(keras_models, tmp_path, alpha, res):
    kmodel, logit_model = keras_models[alpha, res]
    prefix = tmp_path / f"mobilenet_v1_{alpha}_{res}.ckpt"
    bg_w, bg_b = _write_slim_checkpoint(kmodel, prefix, 7)
    x = _inputs(2, res)
    ref = _keras_logits(logit_model, x)
    _check_nontrivial(ref)

    dropped = from_tf_slim(prefix)
    cfg = dropped.config
    # alpha from the weights, resolution from the file name, 1000 classes after dropping background
    assert (cfg.alpha, cfg.resolution, cfg.num_classes, cfg.padding, cfg.activation) == \
        (alpha, res, 1000, "tf_same", "relu6")
    err = MEASURED[f"tf-slim a={alpha} r={res}"] = rel_err(_ours(dropped, x), ref)
    assert err <= TOL

    kept = from_tf_slim(str(prefix) + ".index", keep_background=True)
    assert kept.config.num_classes == 1001
    out = _ours(kept, x)
    assert rel_err(out[:, 1:], ref) <= TOL
    # the background logit is the extra row applied to the same pooled features
    with torch.no_grad():
        feats = kept.forward_head(kept.forward_features(torch.from_numpy(x)), pre_logits=True).numpy()
    assert rel_err(out[:, 0], feats @ bg_w + bg_b) <= TOL


def test_tf_slim_refusals(tmp_path):
    with pytest.raises(FileNotFoundError, match="TensorFlow checkpoint not found"):
        from_tf_slim(tmp_path / "nothing.ckpt")
    import tensorflow as tf

    tf.raw_ops.SaveV2(prefix=str(tmp_path / "other.ckpt"), tensor_names=["InceptionV3/Conv2d_1a_3x3/weights"],
                      shape_and_slices=[""], tensors=[tf.zeros((3, 3, 3, 8))])
    with pytest.raises(ValueError, match="not a TF-slim mobilenet_v1 checkpoint"):
        from_tf_slim(tmp_path / "other.ckpt")


# --- timm ----------------------------------------------------------------------------------------

def _timm_model(alpha: float, num_classes: int = 1000):
    import timm
    from timm.models.efficientnet import _gen_mobilenet_v1

    if alpha == 1.0:
        return timm.create_model("mobilenetv1_100", pretrained=False, num_classes=num_classes)
    # timm registers only 1.0 and 1.25; other widths come from timm's own MobileNetV1 generator
    return _gen_mobilenet_v1(f"mobilenetv1_{int(alpha * 100):03d}", alpha, pretrained=False, num_classes=num_classes)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_from_timm_equal(alpha, tmp_path, randomize):
    theirs = randomize(_timm_model(alpha), 200 + int(alpha * 100))
    for res in RESOLUTIONS:
        x = _inputs(3 + res, res)
        with torch.no_grad():
            ref = theirs(torch.from_numpy(x)).numpy()
        _check_nontrivial(ref)
        ours = from_timm(theirs)
        cfg = ours.config
        assert (cfg.alpha, cfg.num_classes, cfg.padding, cfg.activation, cfg.bn_eps) == \
            (alpha, 1000, "symmetric", "relu6", 1e-5)
        err = MEASURED[f"timm a={alpha} r={res}"] = rel_err(_ours(ours, x), ref)
        assert err <= TOL
    # the same weights from a state dict and from a file
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in theirs.state_dict().items()}, tmp_path / "w.safetensors")
    for src in (theirs.state_dict(), tmp_path / "w.safetensors"):
        assert rel_err(_ours(from_timm(src), x), ref) <= TOL


def test_timm_100h_refused():
    import timm

    with pytest.raises(ValueError, match="mobilenetv1_100h has an extra 1x1 head conv"):
        from_timm(timm.create_model("mobilenetv1_100h", pretrained=False))
    with pytest.raises(ValueError, match="conv_head"):
        from_timm(timm.create_model("mobilenetv1_100h", pretrained=False).state_dict())


def test_from_timm_keeps_timm_data_config(tmp_path):
    import timm
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, resolve_data_config

    # a timm model whose data config differs from our defaults in every key timm reads
    overlay = {"mean": IMAGENET_DEFAULT_MEAN, "std": IMAGENET_DEFAULT_STD, "crop_pct": 0.9,
               "input_size": (3, 160, 160), "interpolation": "bicubic"}
    theirs = timm.create_model("mobilenetv1_100", pretrained=False, num_classes=7, pretrained_cfg_overlay=overlay)
    want = resolve_data_config(model=theirs)
    assert want["mean"] == IMAGENET_DEFAULT_MEAN and want["input_size"] == (3, 160, 160)
    ours = from_timm(theirs)
    assert ours.config.resolution == 160
    keys = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")
    assert {k: resolve_data_config(model=ours)[k] for k in keys} == {k: want[k] for k in keys}
    # and through our model folder: config.json keeps it, load_model gives it back
    loaded = load_model(save_model(ours, tmp_path / "m"))
    assert {k: resolve_data_config(model=loaded)[k] for k in keys} == {k: want[k] for k in keys}
    assert loaded.pretrained_cfg["source"]["framework"] == "timm" and loaded.pretrained_cfg["num_classes"] == 7


@pytest.mark.parametrize("alpha", (1.0, 1.25))
def test_round_trip_ours_timm_ours(alpha, tmp_path, randomize):
    import timm

    # bn_eps 1e-3 (ours) against timm's 1e-5: folded into the running variance exactly
    ours = randomize(MobileNet(MobileNetConfig(alpha=alpha, resolution=96, num_classes=10,
                                               activation="relu6", bn_eps=1e-3)), 300)
    path = to_timm(ours, tmp_path / "timm.safetensors")
    name = timm_model_name(ours)
    theirs = timm.create_model(name, pretrained=False, checkpoint_path=str(path), num_classes=10).eval()
    x = _inputs(4, 96)
    ref = _ours(ours, x)
    _check_nontrivial(ref)
    with torch.no_grad():
        err_timm = rel_err(theirs(torch.from_numpy(x)).numpy(), ref)
    back = from_timm(path)
    err_back = rel_err(_ours(back, x), ref)
    MEASURED[f"ours->timm a={alpha}"] = err_timm
    MEASURED[f"ours->timm->ours a={alpha}"] = err_back
    assert err_timm <= TOL and err_back <= TOL
    assert back.config.alpha == alpha and back.config.num_classes == 10


def test_to_timm_refusals(tmp_path):
    base = dict(resolution=96, num_classes=10, activation="relu6")
    cases = [
        (MobileNetConfig(padding="tf_same", **base), "padding 'tf_same' does not map"),
        (MobileNetConfig(alpha=0.5, **base), "alpha 0.5 has no timm model name"),
        (MobileNetConfig(resolution=96, num_classes=10), "activation 'relu' does not map"),
        (MobileNetConfig(variant="shallow", **base), "variant 'shallow' does not map"),
    ]
    for cfg, message in cases:
        with pytest.raises(ValueError, match=message):
            to_timm(MobileNet(cfg), tmp_path / "x.safetensors")
    assert not (tmp_path / "x.safetensors").exists()


# --- Hugging Face ----------------------------------------------------------------------------------

def _hf_model(randomize, alpha: float, res: int, seed: int, **extra):
    from transformers import MobileNetV1Config, MobileNetV1ForImageClassification

    labels = {i: f"class_{i}" for i in range(10)}
    cfg = MobileNetV1Config(depth_multiplier=alpha, image_size=res, num_labels=10, id2label=labels,
                            label2id={v: k for k, v in labels.items()}, **extra)
    return randomize(MobileNetV1ForImageClassification(cfg), seed)


def _hf_logits(model, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(pixel_values=torch.from_numpy(x)).logits.numpy()


@pytest.mark.parametrize("alpha", ALPHAS)
@pytest.mark.parametrize("res", RESOLUTIONS)
def test_from_hf_equal(alpha, res, randomize):
    theirs = _hf_model(randomize, alpha, res, 400 + res + int(alpha * 100))
    ours = from_hf(theirs)
    cfg = ours.config
    assert (cfg.alpha, cfg.resolution, cfg.num_classes, cfg.padding, cfg.activation, cfg.bn_eps) == \
        (alpha, res, 10, "tf_same", "relu6", 1e-3)
    assert ours.pretrained_cfg["label_names"] == [f"class_{i}" for i in range(10)]
    x = _inputs(5, res)
    ref = _hf_logits(theirs, x)
    _check_nontrivial(ref)
    err = MEASURED[f"hf a={alpha} r={res}"] = rel_err(_ours(ours, x), ref)
    assert err <= TOL


def test_hf_folder_symmetric_relu_via_cli(tmp_path, capsys, randomize):
    # tf_padding=False, hidden_act relu and another BN eps: all three carried over
    theirs = _hf_model(randomize, 0.5, 96, 500, tf_padding=False, hidden_act="relu", layer_norm_eps=1e-5)
    theirs.save_pretrained(tmp_path / "hf")
    from transformers import MobileNetV1ImageProcessor

    # HF's own processor: shortest edge 256, centre crop 224, mean/std 0.5, bilinear
    MobileNetV1ImageProcessor().save_pretrained(tmp_path / "hf")
    assert main(["convert", str(tmp_path / "hf"), "--from", "hf", "--output", str(tmp_path / "out")]) == 0
    assert "wrote" in capsys.readouterr().out
    ours = load_model(tmp_path / "out")
    cfg = ours.config
    assert (cfg.padding, cfg.activation, cfg.bn_eps, cfg.alpha) == ("symmetric", "relu", 1e-5, 0.5)
    doc = json.loads((tmp_path / "out" / "config.json").read_text())
    assert doc["source"]["framework"] == "hf" and doc["classes"][3] == "class_3"
    pre = doc["preprocessing"]
    assert (pre["mean"], pre["std"], pre["input_range"]) == ([0.5] * 3, [0.5] * 3, [-1.0, 1.0])
    assert (pre["crop_pct"], pre["interpolation"], pre["input_size"]) == (224 / 256, "bilinear", [3, 96, 96])
    x = _inputs(6, 96)
    assert rel_err(_ours(ours, x), _hf_logits(theirs, x)) <= TOL
    # an HF folder given where a mobilenets checkpoint is expected: one clear line
    assert main(["predict", "--checkpoint", str(tmp_path / "hf"), "x.jpg"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Hugging Face 'mobilenet_v1' model" in err[0] and "mobilenet convert" in err[0]


# --- ours -> Keras -> ours -----------------------------------------------------------------------

def test_round_trip_ours_keras_ours(keras, tmp_path, randomize):
    # bn_eps 1e-5 against Keras's 1e-3: the variance fold also works downwards
    cfg = MobileNetConfig(alpha=0.5, resolution=96, num_classes=10, activation="relu6", padding="tf_same",
                          bn_eps=1e-5)
    ours = randomize(MobileNet(cfg), 600)
    kmodel = to_keras(ours, tmp_path / "m.keras")
    x = _inputs(7, 96)
    ref = _ours(ours, x)
    _check_nontrivial(ref)
    err_keras = rel_err(_keras_logits(kmodel, x), ref)
    loaded = keras.models.load_model(tmp_path / "m.keras", compile=False)
    err_file = rel_err(_keras_logits(loaded, x), ref)
    back = from_keras(tmp_path / "m.keras")
    err_back = rel_err(_ours(back, x), ref)
    MEASURED["ours->keras a=0.5"] = err_keras
    MEASURED["ours->keras->ours a=0.5"] = err_back
    assert max(err_keras, err_file, err_back) <= TOL
    assert (back.config.alpha, back.config.resolution, back.config.num_classes) == (0.5, 96, 10)


def test_to_keras_refusals():
    base = dict(resolution=96, num_classes=10, activation="relu6", padding="tf_same")
    cases = [
        (MobileNetConfig(**{**base, "activation": "relu"}), "Keras MobileNet always uses ReLU6"),
        (MobileNetConfig(**{**base, "padding": "symmetric"}), "padding 'symmetric' does not map"),
        (MobileNetConfig(**{**base, "resolution": 112}), "resolution 112 does not map"),
        (MobileNetConfig(**{**base, "variant": "conv"}), "variant 'conv' does not map"),
        (MobileNetConfig(**{**base, "alpha": 0.3, "channel_divisor": 8}), "differ from Keras's int"),
    ]
    for cfg, message in cases:
        with pytest.raises(ValueError, match=message):
            to_keras(MobileNet(cfg))


# --- through the CLI -----------------------------------------------------------------------------

def test_cli_convert_to_timm_and_keras(keras_models, tmp_path, capsys, randomize):
    import timm

    kmodel, logit_model = keras_models[1.0, 96]
    kmodel.save(tmp_path / "k.keras")
    # Keras -> ours (folder) -> Keras file, through the CLI
    assert main(["convert", str(tmp_path / "k.keras"), "--from", "keras", "--output", str(tmp_path / "ours")]) == 0
    assert main(["convert", str(tmp_path / "ours"), "--from", "mobilenets", "--output", str(tmp_path / "back"),
                 "--to", "keras"]) == 0
    x = _inputs(9, 96)
    ref = _keras_logits(logit_model, x)
    assert rel_err(_ours(load_model(tmp_path / "ours"), x), ref) <= TOL
    assert rel_err(_ours(from_keras(tmp_path / "back" / "model.keras"), x), ref) <= TOL
    # tf_same weights do not map to timm: refused with one line, nothing written
    assert main(["convert", str(tmp_path / "ours"), "--from", "mobilenets", "--output", str(tmp_path / "t"),
                 "--to", "timm"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "padding 'tf_same' does not map" in lines[-1]
    assert not (tmp_path / "t").exists()
    # a timm-compatible model goes to a file timm loads
    ours = randomize(MobileNet(MobileNetConfig(resolution=64, num_classes=4, activation="relu6")), 800)
    save_model(ours, tmp_path / "sym")
    assert main(["convert", str(tmp_path / "sym"), "--from", "mobilenets", "--output", str(tmp_path / "t"),
                 "--to", "timm"]) == 0
    theirs = timm.create_model("mobilenetv1_100", checkpoint_path=str(tmp_path / "t" / "mobilenetv1_100.safetensors"),
                               num_classes=4).eval()
    x = _inputs(10, 64)
    with torch.no_grad():
        assert rel_err(theirs(torch.from_numpy(x)).numpy(), _ours(ours, x)) <= TOL


# --- convert(): the one call ----------------------------------------------------------------------

def test_convert_refuses_a_non_empty_output_unless_overwrite(tmp_path):
    model = MobileNet(MobileNetConfig(alpha=0.25, resolution=32, num_classes=3, activation="relu6"))
    save_model(model, tmp_path / "src")
    (tmp_path / "out").mkdir()  # an empty folder is fine
    convert(tmp_path / "src", "mobilenets", tmp_path / "out")
    before = (tmp_path / "out" / "model.safetensors").read_bytes()
    with pytest.raises(MobileNetsError, match=r"output_dir .*out exists and is not empty; give overwrite=True"):
        convert(tmp_path / "src", "mobilenets", tmp_path / "out")
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == before
    (tmp_path / "out" / "keep.txt").write_text("mine")
    other = MobileNet(MobileNetConfig(alpha=0.5, resolution=32, num_classes=3, activation="relu6"))
    save_model(other, tmp_path / "src2")
    _, written = convert(tmp_path / "src2", "mobilenets", tmp_path / "out", overwrite=True)
    assert written == tmp_path / "out" and load_model(written).config.alpha == 0.5
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"  # files of other names are left alone
    (tmp_path / "file").write_text("x")
    with pytest.raises(MobileNetsError, match="exists and is not a folder"):
        convert(tmp_path / "src", "mobilenets", tmp_path / "file", overwrite=True)


def test_convert_errors_name_arguments_not_flags(tmp_path):
    cases = [
        (dict(source_format="timm", keep_background=True), "keep_background applies to TF-slim"),
        (dict(source_format="hf", resolution=96), "resolution applies to TF-slim"),
        (dict(source_format="onnx"), "unknown source_format 'onnx'"),
        (dict(source_format="timm", to="onnx"), "unknown target format to='onnx'"),
    ]
    for kwargs, message in cases:
        with pytest.raises(MobileNetsError, match=message) as info:
            convert(tmp_path / "missing", output_dir=tmp_path / "out", **kwargs)
        assert "--" not in str(info.value)
    assert not (tmp_path / "out").exists()
