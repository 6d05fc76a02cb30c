"""Exports (ONNX, TorchScript, TFLite, ExecuTorch; fp32 and int8) against the eager model.

Every comparison here is recomputed independently of the exporter's own check: the exported file
is loaded with :func:`mobilenets.deploy.runtime.load_runner` and run on inputs the exporter never saw.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re

import numpy as np
import pytest
import torch
from torch import nn

from mobilenets.data.preprocess import Preprocessing
from mobilenets.deploy.export import FP32_TOLERANCE, ExportCheckFailed, export_model
from mobilenets.deploy.fold import inference_network
from mobilenets.deploy.formats.tflite import tf_steps
from mobilenets.deploy.runtime import load_runner
from mobilenets.deploy.sources import resolve_source
from mobilenets.errors import MobileNetsError
from mobilenets.models.config import MobileNetConfig
from mobilenets.models.mobilenet import MobileNet

HAS_TF = importlib.util.find_spec("tensorflow") is not None
HAS_ET = importlib.util.find_spec("executorch") is not None
SUFFIX = {"onnx": ".onnx", "torchscript": ".pt", "tflite": ".tflite", "executorch": ".pte"}
FORMAT_PARAMS = [
    "onnx",
    "torchscript",
    pytest.param("tflite", marks=pytest.mark.skipif(not HAS_TF, reason="tensorflow not installed")),
    pytest.param("executorch", marks=pytest.mark.skipif(not HAS_ET, reason="executorch not installed")),
]


def _max_abs_vs_eager(model: MobileNet, path, batch_sizes=(2, 7)) -> float:
    runner = load_runner(path)
    res = model.config.resolution
    gen = torch.Generator().manual_seed(1234)
    worst = 0.0
    for n in batch_sizes:
        x = torch.randn(n, 3, res, res, generator=gen)
        with torch.no_grad():
            ref = model(x).numpy()
        out = runner(x.numpy())
        assert out.shape == ref.shape
        worst = max(worst, float(np.abs(out - ref).max()))
    return worst


@pytest.fixture
def tf_same_model(randomized_bn) -> MobileNet:
    # tf_same on an even input: every stride-2 conv pads (0, 1), which becomes an explicit pad.
    # Non-trivial BatchNorm statistics and logits of O(10) make folding and export errors show.
    model = MobileNet(alpha=0.25, resolution=48, num_classes=10, padding="tf_same", activation="relu6")
    return randomized_bn(model, classifier_std=1.0)


def _int8_figures(path, digits_val) -> tuple[float, float]:
    """Top-1 agreement with fp32 eager and accuracy loss in points, on the 450 test digits."""
    x, labels, fp32 = digits_val
    out = load_runner(path)(x)
    agreement = float((out.argmax(1) == fp32.argmax(1)).mean())
    loss = 100 * (float((fp32.argmax(1) == labels).mean()) - float((out.argmax(1) == labels).mean()))
    return agreement, loss


# --------------------------------------------------------------------------- the network


def test_inference_network_folds_batchnorm_and_makes_padding_explicit(tf_same_model, randomized_bn):
    net = inference_network(tf_same_model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    pads = [m for m in net.modules() if isinstance(m, nn.ZeroPad2d)]
    # Stride-2 convs see 48, 24, 12, 6 and 3 px: the even ones pad (0, 1), explicitly; on 3 px
    # TF "SAME" pads (1, 1), which stays inside the conv.
    assert len(pads) == 4 and all(p.padding == (0, 1, 0, 1) for p in pads)
    strided = [m for m in net.modules() if isinstance(m, nn.Conv2d) and m.stride == (2, 2)]
    assert [c.padding for c in strided] == [(0, 0)] * 4 + [(1, 1)]
    x = torch.randn(3, 3, 48, 48)
    with torch.no_grad():
        ref = tf_same_model(x)
        # Folding reorders float32 rounding, which grows with the logits (O(10) here; measured
        # 1.5e-5 of the largest): the limit is export's, relative. (1e-5 absolute held only while
        # the randomized model's logits did not depend on the input.)
        assert float((net(x) - ref).abs().max()) <= FP32_TOLERANCE * max(1.0, float(ref.abs().max()))
    sym = randomized_bn(MobileNet(alpha=0.25, resolution=32, num_classes=10), classifier_std=1.0)
    net = inference_network(sym)
    assert not any(isinstance(m, nn.ZeroPad2d) for m in net.modules())
    with torch.no_grad():
        small = x[:, :, :32, :32]
        ref_sym = sym(small)
        assert float((net(small) - ref_sym).abs().max()) <= FP32_TOLERANCE * max(1.0, float(ref_sym.abs().max()))
    # randomized_bn's logits depend on the input far beyond the tolerance (its BatchNorm statistics
    # are measured on images), so a fold that mishandles the input (e.g. swaps the first conv's RGB
    # to BGR) fails the comparisons above
    for out in (ref, ref_sym):
        assert float((out - out.mean(0)).abs().max()) > 100 * FP32_TOLERANCE * max(1.0, float(out.abs().max()))


def test_tf_graph_uses_the_tf_same_rule(tf_same_model, randomized_bn):
    """The TF rebuild writes a pad that equals TF "SAME" (models.layers.same_padding) as SAME in
    the conv, and any other pad as an explicit pad then VALID."""
    steps = tf_steps(inference_network(tf_same_model), 48)
    convs = [arg for kind, arg in steps if kind in ("conv", "dwconv")]
    assert len(convs) == 27 and all(arg[3] == "SAME" for arg in convs)
    assert not any(kind == "pad" for kind, _ in steps)  # the four explicit (0, 1) pads are TF's SAME
    # Symmetric padding: a stride-2 conv on an even input pads (1, 1), which is not TF's SAME
    # (0, 1); the five stride-2 convs (at 32, 16, 8, 4 and 2 px) get explicit pads.
    sym = randomized_bn(MobileNet(alpha=0.25, resolution=32, num_classes=10))
    steps = tf_steps(inference_network(sym), 32)
    pads = [arg for kind, arg in steps if kind == "pad"]
    assert pads == [[[0, 0], [1, 1], [1, 1], [0, 0]]] * 5
    modes = [arg[3] for kind, arg in steps if kind in ("conv", "dwconv")]
    assert modes.count("VALID") == 5 and modes.count("SAME") == 22


# --------------------------------------------------------------------------- fp32


@pytest.mark.parametrize("fmt", FORMAT_PARAMS)
def test_fp32_export_matches_eager_at_two_batch_sizes(fmt, tf_same_model, tmp_path):
    out = tmp_path / f"model{SUFFIX[fmt]}"
    threads = torch.get_num_threads()
    report = export_model(tf_same_model, out, fmt)
    assert torch.get_num_threads() == threads  # the check's runner gave the caller's count back
    # relative to the logits' size (O(10)): measured 1.3e-5 (executorch) to 4.9e-5 (tflite) of the
    # largest logit; 1e-4 absolute held only while the model's logits did not depend on the input
    assert report["check"]["passed"] and report["check"]["max_abs_diff"] <= report["check"]["tolerance"]
    assert report["check"]["tolerance"] == FP32_TOLERANCE * max(1.0, report["check"]["max_abs_logit"])
    assert _max_abs_vs_eager(tf_same_model, out) <= report["check"]["tolerance"]
    side = json.loads((tmp_path / f"model{SUFFIX[fmt]}.json").read_text())
    assert side["precision"] == "fp32" and side["format"] == fmt
    assert side["model"] == tf_same_model.config.to_dict() and side["classes"] is None
    pre = side["preprocessing"]  # timm's keys, read back by the one Preprocessing
    assert Preprocessing.from_dict(pre) == Preprocessing(input_size=(3, 48, 48))
    assert pre["mean"] == [0.5, 0.5, 0.5] and pre["crop_pct"] == 0.875 and pre["resize"] == 54
    assert pre["dtype"] == "float32" and pre["layout"] == ("NHWC" if fmt == "tflite" else "NCHW")
    assert pre["shape"] == ([None, 48, 48, 3] if fmt == "tflite" else [None, 3, 48, 48])
    assert sorted(os.listdir(tmp_path)) == sorted([out.name, out.name + ".json"])  # no temporary left
    runner = load_runner(out)  # native() takes the engine's own layout and gives the same logits
    assert runner.layout == ("NHWC" if fmt == "tflite" else "NCHW")
    x = np.random.default_rng(0).standard_normal((3, 3, 48, 48)).astype(np.float32)
    native = np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if fmt == "tflite" else x
    np.testing.assert_array_equal(runner.native(native), runner(x))
    if fmt == "executorch":  # the runner sizes XNNPACK's process-wide thread pool as asked
        from executorch.extension.pybindings import portable_lib

        for threads in (1, 2):
            load_runner(out, threads=threads)
            assert portable_lib._threadpool_get_thread_count() == threads


def test_sidecar_records_the_checkpoints_preprocessing(tmp_path, randomized_bn):
    """A run's metadata (the old keys mean/std/eval_crop) becomes the Source's Preprocessing and
    the sidecar's, in timm's keys."""
    from mobilenets.weights.checkpoint import save_weights

    model = randomized_bn(MobileNet(alpha=0.25, resolution=32, num_classes=3), classifier_std=1.0)
    run = {"mean": [0.4, 0.45, 0.5], "std": [0.2, 0.25, 0.3], "eval_crop": 0.9, "classes": ["a", "b", "c"],
           "data": "/data/abc"}
    ckpt = tmp_path / "run.safetensors"
    save_weights(model, ckpt, extra={"run": json.dumps(run)})
    source = resolve_source(str(ckpt))
    want = Preprocessing(mean=(0.4, 0.45, 0.5), std=(0.2, 0.25, 0.3), crop_pct=0.9, input_size=(3, 32, 32))
    assert source.preprocessing == want and source.classes == ["a", "b", "c"] and source.trained
    report = export_model(str(ckpt), tmp_path / "m.pt", "torchscript")
    side = json.loads((tmp_path / "m.pt.json").read_text())
    assert side == json.loads(json.dumps({k: v for k, v in report.items() if k not in ("size_bytes", "seconds")}))
    assert Preprocessing.from_dict(side["preprocessing"]) == want
    assert side["preprocessing"]["crop_pct"] == 0.9 and side["preprocessing"]["resize"] == 35  # floor(32 / 0.9)
    assert side["classes"] == ["a", "b", "c"] and side["trained_on"] == "/data/abc"
    assert side["source"] == f"checkpoint {ckpt}"


def test_config_and_registry_name_export_untrained(tmp_path):
    cfg = MobileNetConfig(alpha=0.25, resolution=32, num_classes=10, activation="relu6")
    source = resolve_source(cfg)
    assert not source.trained and source.model.config == cfg
    assert source.description == "model mobilenet_v1_0.25_32 (10 classes, relu6) (untrained weights)"
    named = resolve_source("mobilenet_v1_0.25_128")
    assert named.description == "registry model mobilenet_v1_0.25_128 (untrained weights)"
    report = export_model(cfg, tmp_path / "c.onnx")
    assert report["trained_on"] is None and report["model"]["activation"] == "relu6"


# --------------------------------------------------------------------------- int8


@pytest.mark.skipif(not HAS_TF, reason="tensorflow not installed")
def test_int8_tflite_on_digits_keeps_accuracy(digits_run, digits_val, tmp_path):
    out = tmp_path / "digits-int8.tflite"
    report = export_model(str(digits_run), out, "tflite", int8=True)
    assert report["precision"] == "int8"
    agreement, loss = _int8_figures(out, digits_val)
    assert agreement >= 0.99 and loss <= 1.0, (agreement, loss)
    import warnings

    import tensorflow as tf

    with warnings.catch_warnings():  # tf.lite.Interpreter's deprecation notice
        warnings.simplefilter("ignore")
        details = tf.lite.Interpreter(model_path=str(out)).get_tensor_details()
    assert any(d["dtype"] == np.int8 and len(d["quantization_parameters"]["scales"]) > 1 for d in details)


@pytest.mark.slow
@pytest.mark.skipif(not HAS_ET, reason="executorch not installed")
def test_int8_executorch_on_digits_keeps_accuracy(digits_run, digits_val, tmp_path):
    out = tmp_path / "digits-int8.pte"
    export_model(str(digits_run), out, "executorch", int8=True)
    agreement, loss = _int8_figures(out, digits_val)
    assert agreement >= 0.99 and loss <= 1.0, (agreement, loss)


@pytest.mark.slow
def test_qat_fine_tuning_then_int8_onnx(digits_run, digits_val, tmp_path):
    out = tmp_path / "digits-qat.onnx"
    report = export_model(str(digits_run), out, "onnx", int8=True, qat_epochs=1)
    assert report["quantization"]["qat"]["epochs"] == 1
    _agreement, loss = _int8_figures(out, digits_val)
    assert loss <= 1.0


def test_int8_from_a_folder_of_images(digits_run, tmp_path):
    """Calibration on a folder: labels from sub-folders named like the classes; every 5th image
    (sorted) is held out for the check, whose accuracy is then known."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    folder = tmp_path / "cal"
    for i in range(10):  # the first ten digits are 0, 1, ..., 9
        (folder / str(digits.target[i])).mkdir(parents=True)
        pixels = (digits.images[i] * (255 / 16)).astype(np.uint8)
        Image.fromarray(pixels).resize((40, 40)).convert("RGB").save(folder / str(digits.target[i]) / f"{i}.png")
    report = export_model(str(digits_run), tmp_path / "f.onnx", int8=True, calibration=folder)
    assert report["quantization"]["calibration"] == str(folder)
    assert report["quantization"]["calibration_images"] == 8
    assert report["check"]["inputs"] == f"2 held-out images ({folder})"
    assert report["check"]["accuracy_int8"] is not None
    with pytest.raises(MobileNetsError, match=r"holds 1 readable image\(s\); need at least 2"):
        export_model(str(digits_run), tmp_path / "g.onnx", int8=True, calibration=folder / "3")
    with pytest.raises(FileNotFoundError, match="calibration folder not found"):
        export_model(str(digits_run), tmp_path / "g.onnx", int8=True, calibration=tmp_path / "none")


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"format": "caffe"}, "unknown format 'caffe'; choose one of onnx, tflite, executorch, torchscript"),
    ({"format": "torchscript", "int8": True}, "int8=True is not offered for torchscript"),
    ({"qat_epochs": 2}, "qat_epochs > 0 needs int8=True"),
    ({"qat_epochs": -1, "int8": True}, "qat_epochs must be an integer >= 0"),
    ({"calibration": "images"}, "calibration needs int8=True"),
    ({"calibration_images": 0, "int8": True}, "calibration_images must be an integer >= 1"),
    ({"calibration_size": 0, "int8": True}, "calibration_images must be an integer >= 1"),  # its old name
    ({"threads": 0}, "threads must be an integer >= 1"),
])
def test_bad_arguments_are_one_error_in_library_terms(kwargs, message, tmp_path):
    out = tmp_path / ("m" + SUFFIX.get(kwargs.get("format"), ".onnx"))  # a name that fits the format
    with pytest.raises(MobileNetsError) as info:
        export_model("mobilenet_v1_0.25_128", out, **kwargs)
    assert message in str(info.value) and "--" not in str(info.value)
    assert os.listdir(tmp_path) == []


def test_unwritable_output_is_one_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    # A folder that cannot exist (its parent is a file): even root cannot write here.
    with pytest.raises(MobileNetsError, match=re.escape(f"cannot write to {blocker / 'sub'}: {blocker} is a file")):
        export_model("mobilenet_v1_0.25_128", blocker / "sub" / "m.onnx")
    with pytest.raises(MobileNetsError, match="is a folder; give a file name"):
        export_model("mobilenet_v1_0.25_128", tmp_path)
    assert os.listdir(tmp_path) == ["a-file"]


def test_text_file_named_pt_is_one_error(tmp_path):
    # torch's unpickler reads the text as a pickle and fails with a bare KeyError; the checkpoint
    # loader must turn that into a MobileNetsError naming the file.
    bad = tmp_path / "x.pt"
    bad.write_text("hello, I am not a checkpoint\n")
    with pytest.raises(MobileNetsError, match="x.pt"):
        export_model(str(bad), tmp_path / "m.onnx")
    assert sorted(os.listdir(tmp_path)) == ["x.pt"]


def test_missing_checkpoint_and_other_architecture(digits_run, tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a registry model"):
        export_model(str(tmp_path / "nope.pt"), tmp_path / "m.onnx")
    with pytest.raises(MobileNetsError, match=r"different architecture from mobilenet_v1_0.25_128: "
                                              r"alpha 0.5 \(expected 0.25\)"):
        export_model(str(digits_run), tmp_path / "m.onnx", expect_model="mobilenet_v1_0.25_128")
    with pytest.raises(MobileNetsError, match=r"different architecture from the expected model: "
                                              r"activation 'relu' \(expected 'relu6'\)"):
        export_model(str(digits_run), tmp_path / "m.onnx", expect_model={"alpha": 0.5, "activation": "relu6"})
    assert os.listdir(tmp_path) == []


def test_failed_check_leaves_no_file(tmp_path, randomized_bn, monkeypatch):
    # The exported file's runner is off by 1% of the largest logit (the check's limit is relative
    # to it, so scaling the logits up no longer makes rounding fail it): the check must fail after
    # the file has been written to its temporary name, and nothing may remain.
    import mobilenets.deploy.runtime as runtime

    real = runtime.load_runner

    def off(*args, **kwargs):
        runner = real(*args, **kwargs)
        return lambda x: runner(x) + 0.01 * np.abs(runner(x)).max()

    monkeypatch.setattr(runtime, "load_runner", off)
    model = randomized_bn(MobileNet(alpha=0.25, resolution=32, num_classes=10), classifier_std=1.0)
    with pytest.raises(ExportCheckFailed, match="differs from the eager model"):
        export_model(model, tmp_path / "big.onnx", "onnx")
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(not HAS_TF, reason="tensorflow not installed")
def test_tensorflow_is_imported_only_through_import_tf():
    """Loading triton after TensorFlow segfaults with these wheels (measured: `import tensorflow;
    import triton` exits with SIGSEGV). Every TensorFlow import of the package goes through
    `import_tf`, which loads torch._dynamo (and so triton) first: checked in a fresh process, and
    no module imports tensorflow itself."""
    import ast
    import subprocess
    import sys
    from pathlib import Path

    import mobilenets

    code = "from mobilenets.utils.tf import import_tf; import_tf(); import triton; import torch._inductor; print('ok')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-500:]
    package = Path(mobilenets.__file__).parent
    for path in package.rglob("*.py"):
        if path.relative_to(package).as_posix() == "utils/tf.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n == "tensorflow" or n.startswith("tensorflow.") for n in names), \
                f"{path.name}:{node.lineno} imports tensorflow directly; use mobilenets.utils.tf.import_tf"
