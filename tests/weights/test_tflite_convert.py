"""Float TFLite MobileNetV1 files in: a real ImageNet model, proven equal to TFLite's interpreter.

The real model is the TF-slim MobilenetV1 1.0-224 inside the ``nudity`` package's frozen graph
(its 1001 ImageNet logits), turned into ``.tflite`` files by TensorFlow's own converter once per
module; ``from_tflite`` reads them without running them, and its logits are compared with the
interpreter's on real photos (skimage, scikit-learn and matplotlib sample images). A model of
ours rebuilt with plain TF ops (explicit PAD, MEAN, a dense head) covers the other layout, and
small made-up files the refusals. Nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from mobilenets.cli.main import main
from mobilenets.data.photos import load_photo
from mobilenets.errors import DataNotFoundError, MobileNetsError
from mobilenets.models.config import MobileNetConfig
from mobilenets.models.mobilenet import MobileNet, layer_plan
from mobilenets.utils.tf import import_tf
from mobilenets.weights.checkpoint import load_model
from mobilenets.weights.convert import from_tflite

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "china", "flower", "grace_hopper")
LOGITS = "MobilenetV1/Predictions/Reshape"  # the 1001 ImageNet logits of the TF-slim graph
TOL = 1e-4
MEASURED: dict[str, float] = {}


@pytest.fixture(scope="module", autouse=True)
def _report():
    """With MOBILENETS_TFLITE_REPORT=FILE, write the measured errors there as JSON at the end."""
    yield
    if os.environ.get("MOBILENETS_TFLITE_REPORT"):
        Path(os.environ["MOBILENETS_TFLITE_REPORT"]).write_text(json.dumps(MEASURED, indent=1))


def rel_err(a, b) -> float:
    """max|a - b| / max|b|: the error of ``a`` against the reference ``b``."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.fixture(scope="module")
def tf():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return import_tf("tensorflow")


@pytest.fixture(scope="module")
def real(tf, tmp_path_factory, real_mobilenet_pb):
    """The real model as TFLite files: logits.tflite (float32, ends at the logits, as the frozen
    graph's output) and probs_fp16.tflite (the hosted layout's softmax at the end, float16 weights)."""
    pb = Path(real_mobilenet_pb)  # the fixture skips the real-model tests if nudity is not installed
    root = tmp_path_factory.mktemp("tflite")
    shapes = {"input": [1, 224, 224, 3]}
    converter = tf.compat.v1.lite.TFLiteConverter.from_frozen_graph(str(pb), ["input"], [LOGITS], input_shapes=shapes)
    (root / "logits.tflite").write_bytes(converter.convert())
    graph = tf.compat.v1.GraphDef()
    graph.ParseFromString(pb.read_bytes())
    with tf.Graph().as_default() as g:
        tf.graph_util.import_graph_def(graph, name="")
        tf.nn.softmax(g.get_tensor_by_name(LOGITS + ":0"), name="probs")
        (root / "probs.pb").write_bytes(g.as_graph_def().SerializeToString())
    converter = tf.compat.v1.lite.TFLiteConverter.from_frozen_graph(str(root / "probs.pb"), ["input"], ["probs"],
                                                                    input_shapes=shapes)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
    (root / "probs_fp16.tflite").write_bytes(converter.convert())
    return root


@pytest.fixture(scope="module")
def photos():
    """The real photos, centre square crop resized to 224 (bilinear), as (x - 128) / 128 NHWC float32."""
    out = []
    for name in PHOTOS:
        im = load_photo(name)
        side = min(im.size)
        left, top = (im.width - side) // 2, (im.height - side) // 2
        im = im.crop((left, top, left + side, top + side)).resize((224, 224), resample=2)  # 2: bilinear
        out.append((np.asarray(im, dtype=np.float32) - 128) / 128)
    return np.stack(out)


def interpret(tf, path: Path, x: np.ndarray) -> np.ndarray:
    """TFLite's interpreter on each NHWC image of ``x`` (the files have batch 1)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
        interp = tf.lite.Interpreter(model_path=str(path))
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0]["index"], interp.get_output_details()[0]["index"]
    rows = []
    for image in x:
        interp.set_tensor(inp, image[None])
        interp.invoke()
        rows.append(interp.get_tensor(out)[0].copy())
    return np.stack(rows)


def ours(model: MobileNet, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()).double().numpy()


@pytest.fixture(scope="module")
def reference(tf, real, photos):
    return interpret(tf, real / "logits.tflite", photos)


def test_real_tflite_logits_equal_the_interpreter_on_real_photos(real, photos, reference):
    model = from_tflite(real / "logits.tflite", keep_background=True)
    cfg = model.config
    assert (cfg.alpha, cfg.resolution, cfg.num_classes, cfg.padding, cfg.activation) == \
        (1.0, 224, 1001, "tf_same", "relu6")
    logits = ours(model, photos)
    assert reference.std(axis=1).min() > 1 and np.abs(reference[0] - reference[1]).max() > 1  # non-trivial
    errors = [rel_err(a, b) for a, b in zip(logits, reference)]
    MEASURED.update({f"real_{name}": e for name, e in zip(PHOTOS, errors)})
    assert max(errors) <= TOL, dict(zip(PHOTOS, errors))
    assert (logits.argmax(1) == reference.argmax(1)).all()
    names = model.pretrained_cfg["label_names"]
    assert len(names) == 1001 and names[0] == "background"
    top = {p: names[i] for p, i in zip(PHOTOS, logits.argmax(1))}
    assert top["chelsea"] == "Egyptian cat" and top["coffee"] == "espresso", top


def test_background_dropped_by_default_with_imagenet_names_and_source(real, photos, reference):
    model = from_tflite(real / "logits.tflite")
    assert model.config.num_classes == 1000
    assert rel_err(ours(model, photos[:2]), reference[:2, 1:]) <= TOL  # the same logits, index 0 removed
    cfg = model.pretrained_cfg
    assert len(cfg["label_names"]) == 1000 and cfg["label_names"][285] == "Egyptian cat"
    assert cfg["source"]["framework"] == "tflite" and cfg["source"]["path"] == str(real / "logits.tflite")
    assert cfg["source"]["background_class"] == "dropped" and cfg["source"]["weights"] == "float32"
    assert cfg["input_size"] == (3, 224, 224) and cfg["mean"] == (0.5, 0.5, 0.5) and cfg["std"] == (0.5, 0.5, 0.5)
    assert cfg["interpolation"] == "bilinear" and cfg["crop_pct"] == 0.875


def test_float16_weights_and_a_final_softmax(tf, real, photos):
    path = real / "probs_fp16.tflite"
    model = from_tflite(path, keep_background=True)
    src = model.pretrained_cfg["source"]
    assert src["weights"] == "float16" and "before the file's softmax" in src["note"]
    probs = interpret(tf, path, photos[:3])
    ours_probs = torch.from_numpy(ours(model, photos[:3])).softmax(dim=1).numpy()
    MEASURED["fp16_probs"] = rel_err(ours_probs, probs)
    assert MEASURED["fp16_probs"] <= TOL


def _tf_function_of(tf, model: MobileNet):
    """``model`` (BN folded) as a tf.function of plain TF ops: each 3x3 conv an explicit zero PAD
    of 1 then a VALID conv (PyTorch's symmetric padding), a MEAN pool and a dense classifier."""
    steps = []
    for spec in layer_plan(model.config):
        unit = model.get_submodule(spec.name)
        scale = (unit.bn.weight / torch.sqrt(unit.bn.running_var + unit.bn.eps)).detach().double()
        bias = (unit.bn.bias.detach().double() - unit.bn.running_mean.double() * scale).numpy()
        w = (unit.conv.weight.detach().double() * scale[:, None, None, None]).numpy()
        kernel = w.transpose(2, 3, 0, 1) if spec.depthwise else w.transpose(2, 3, 1, 0)  # HWC1 / HWIO
        steps.append((spec, tf.constant(kernel.astype(np.float32)), tf.constant(bias.astype(np.float32))))
    head_w = tf.constant(model.classifier.weight.detach().numpy().T.copy())
    head_b = tf.constant(model.classifier.bias.detach().numpy())
    r = model.config.resolution

    @tf.function(input_signature=[tf.TensorSpec([1, r, r, 3], tf.float32)])
    def net(x):
        for spec, kernel, bias in steps:
            if spec.kernel == 3:
                x = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])
            s = spec.stride
            x = tf.nn.depthwise_conv2d(x, kernel, [1, s, s, 1], "VALID") if spec.depthwise else \
                tf.nn.conv2d(x, kernel, s, "VALID")
            x = tf.nn.relu6(x + bias)
        return tf.matmul(tf.reduce_mean(x, axis=[1, 2]), head_w) + head_b

    return net


def test_explicit_pads_mean_pool_and_dense_head_convert_back_to_the_model(tf, tmp_path, randomized_bn, photos):
    x = torch.nn.functional.interpolate(torch.from_numpy(photos).permute(0, 3, 1, 2), size=64, mode="area")
    torch.manual_seed(0)
    model = randomized_bn(MobileNet(MobileNetConfig(alpha=0.25, resolution=64, num_classes=10, activation="relu6",
                                                    padding="symmetric")), seed=1, classifier_std=0.5)
    # BN statistics of the photos themselves: random ones fade the input out within a few blocks
    for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        bn.reset_running_stats()
        bn.momentum = None  # a cumulative average: exactly this batch's statistics
    with torch.no_grad():
        model.train()(x)
    model.eval()
    x = x.permute(0, 2, 3, 1).contiguous().numpy()
    net = _tf_function_of(tf, model)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([net.get_concrete_function()], net)
    path = tmp_path / "symmetric.tflite"
    path.write_bytes(converter.convert())
    back = from_tflite(path)
    assert back.config.padding == "symmetric" and back.config.alpha == 0.25 and back.config.num_classes == 10
    assert back.pretrained_cfg["label_names"] is None  # 10 classes: not ImageNet's
    theirs = interpret(tf, path, x)
    assert np.abs(theirs[0] - theirs[1]).max() > 0.1 and theirs.std(axis=1).min() > 0.1  # non-trivial
    MEASURED["symmetric_vs_interpreter"] = rel_err(ours(back, x), theirs)
    MEASURED["symmetric_vs_original"] = rel_err(ours(back, x), ours(model, x))
    assert MEASURED["symmetric_vs_interpreter"] <= TOL and MEASURED["symmetric_vs_original"] <= TOL


def _tiny_tflite(tf, path: Path, quantized: bool) -> Path:
    """A made-up 16x16 model that is not a MobileNet: a conv, a slice of the input, an add."""
    kernel = tf.constant(np.random.default_rng(0).normal(size=(3, 3, 3, 4)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([1, 16, 16, 3], tf.float32)])
    def net(x):
        return tf.nn.relu(tf.nn.conv2d(x, kernel, 1, "SAME") + x[..., :1])

    converter = tf.lite.TFLiteConverter.from_concrete_functions([net.get_concrete_function()], net)
    if quantized:  # full-integer, as TFLite's int8 deployment files are
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: (
            [np.random.default_rng(i).uniform(-1, 1, (1, 16, 16, 3)).astype(np.float32)] for i in range(4))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = tf.int8
    path.write_bytes(converter.convert())
    return path


def test_refuses_what_is_not_a_float_mobilenet_in_one_line(tf, tmp_path):
    small = MobileNet(MobileNetConfig(alpha=0.25, resolution=32, num_classes=10, activation="relu6")).eval()
    net = _tf_function_of(tf, small)
    (tmp_path / "small.tflite").write_bytes(
        tf.lite.TFLiteConverter.from_concrete_functions([net.get_concrete_function()], net).convert())
    assert from_tflite(tmp_path / "small.tflite").config.num_classes == 10
    with pytest.raises(MobileNetsError, match="10 classes, not 1001: there is no background class to keep"):
        from_tflite(tmp_path / "small.tflite", keep_background=True)
    cases = [
        (_tiny_tflite(tf, tmp_path / "tiny.tflite", False), MobileNetsError,
         r"tiny.tflite is not a MobileNetV1: .*\(its ops: .*CONV_2D.*ADD"),
        (_tiny_tflite(tf, tmp_path / "int8.tflite", True), MobileNetsError,
         r"int8.tflite is a quantized TFLite model \(int8\); from_tflite reads float models only"),
        (tmp_path / "missing.tflite", DataNotFoundError, "TFLite file not found"),
    ]
    (tmp_path / "text.tflite").write_text("not a flatbuffer at all")
    cases.append((tmp_path / "text.tflite", MobileNetsError, "is not a TFLite file"))
    data = (tmp_path / "small.tflite").read_bytes()
    (tmp_path / "cut.tflite").write_bytes(data[: len(data) // 2])
    cases.append((tmp_path / "cut.tflite", MobileNetsError, "cut.tflite is a damaged TFLite file"))
    for path, error, message in cases:
        with pytest.raises(error, match=message) as info:
            from_tflite(path)
        assert "\n" not in str(info.value) and "--" not in str(info.value)


def test_cli_detects_tflite_and_predict_prints_imagenet_names(real, tmp_path, capsys):
    out = tmp_path / "converted"
    assert main(["convert", str(real / "logits.tflite"), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "converted tflite (detected) -> mobilenets: alpha 1, 224 px, 1000 classes" in printed
    assert load_model(out).pretrained_cfg["label_names"][967] == "espresso"
    load_photo("chelsea").save(tmp_path / "chelsea.jpg", quality=95)
    assert main(["predict", "--checkpoint", str(out), str(tmp_path / "chelsea.jpg"), "--top-k", "1"]) == 0
    assert "Egyptian cat" in capsys.readouterr().out


@pytest.mark.slow  # Keras's TFLite export goes through a SavedModel: ~10 s
def test_keras_tflite_file(tf, tmp_path):
    keras = import_tf("keras")
    kmodel = keras.applications.MobileNet(input_shape=(128, 128, 3), alpha=0.5, weights=None, classes=1000)
    rng = np.random.default_rng(0)
    for layer in kmodel.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, n), rng.uniform(-0.2, 0.2, n), rng.uniform(-0.2, 0.2, n),
                               rng.uniform(0.5, 1.5, n)])
    path = tmp_path / "keras.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(kmodel).convert())
    model = from_tflite(path)
    assert (model.config.alpha, model.config.resolution, model.config.num_classes) == (0.5, 128, 1000)
    assert model.pretrained_cfg["label_names"][285] == "Egyptian cat"  # a 1000-class file: ImageNet's names
    x = np.random.default_rng(1).uniform(-1, 1, (2, 128, 128, 3)).astype(np.float32)
    probs = torch.from_numpy(ours(model, x)).softmax(dim=1).numpy()
    MEASURED["keras_probs"] = rel_err(probs, interpret(tf, path, x))
    assert MEASURED["keras_probs"] <= TOL
