"""``mobilenet export``: the README's commands, its flags, its one-line errors, its quiet output."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from mobilenets.cli.main import main
from mobilenets.deploy.runtime import load_runner

HAS_TF = importlib.util.find_spec("tensorflow") is not None


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mobilenet: error: "), err
    return err[0]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mobilenets", *args], capture_output=True, text=True, timeout=600)


# --------------------------------------------------------------------------- what the README shows


def test_cli_exports_trained_checkpoint_to_onnx(digits_run, tmp_path, capsys):
    import torch

    from mobilenets.weights.checkpoint import load_checkpoint

    out = tmp_path / "digits.onnx"
    assert main(["export", "--checkpoint", str(digits_run), "--format", "onnx", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "max abs difference vs eager" in printed and "wrote" in printed
    model, _ = load_checkpoint(digits_run)
    runner = load_runner(out)
    for n in (1, 9):  # inputs the exporter's own check never saw
        x = np.random.default_rng(n).standard_normal((n, 3, 32, 32)).astype(np.float32)
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        assert float(np.abs(runner(x) - ref).max()) <= 1e-4
    side = json.loads(out.with_name("digits.onnx.json").read_text())
    assert side["classes"] == [str(d) for d in range(10)] and side["model"]["resolution"] == 32


def test_int8_onnx_on_digits_keeps_accuracy(digits_run, digits_val, tmp_path, capsys):
    out = tmp_path / "digits-int8.onnx"
    assert main(["export", "--checkpoint", str(digits_run), "--output", str(out), "--int8"]) == 0
    assert "top-1 agreement with fp32" in capsys.readouterr().out
    import onnx

    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    x, labels, fp32 = digits_val
    top = load_runner(out)(x).argmax(1)
    agreement = float((top == fp32.argmax(1)).mean())
    loss = 100 * (float((fp32.argmax(1) == labels).mean()) - float((top == labels).mean()))
    assert agreement >= 0.99 and loss <= 1.0, (agreement, loss)
    side = json.loads((tmp_path / "digits-int8.onnx.json").read_text())
    assert side["precision"] == "int8" and "per output channel" in side["quantization"]["weights"]
    assert side["quantization"]["calibration_images"] == 256
    # the default export chose its method on the even-numbered held-out digits and checked on the others
    report_half = float((top[1::2] == fp32.argmax(1)[1::2]).mean())
    assert side["check"]["images"] == len(x[1::2]) and side["quantization"]["int8_method"] in side["quantization"][
        "selection"]["tried"]
    assert abs(side["check"]["agreement"] - report_half) < 1e-9  # the exporter's own check agrees


def test_registry_model_exports_untrained(tmp_path):
    out = tmp_path / "reg.pt"
    assert main(["export", "--model", "mobilenet_v1_0.25_128", "--format", "torchscript", "--output", str(out)]) == 0
    side = json.loads((tmp_path / "reg.pt.json").read_text())
    assert side["source"] == "registry model mobilenet_v1_0.25_128 (untrained weights)" and side["trained_on"] is None
    assert load_runner(out)(np.zeros((2, 3, 128, 128), np.float32)).shape == (2, 1000)


def test_model_flags_export_random_weights_and_json_report(tmp_path, capsys):
    out = tmp_path / "m.onnx"
    assert main(["export", "--alpha", "0.25", "--resolution", "64", "--num-classes", "7", "--output", str(out),
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)  # one JSON document, nothing else on stdout
    assert report["model"]["alpha"] == 0.25 and report["model"]["resolution"] == 64
    assert report["model"]["num_classes"] == 7 and report["format"] == "onnx"
    assert report["source"] == "model mobilenet_v1_0.25_64 (7 classes) (untrained weights)"
    assert load_runner(out)(np.zeros((3, 3, 64, 64), np.float32)).shape == (3, 7)


def test_help_names_every_default_and_loads_nothing_heavy():
    code = ("import sys; from mobilenets.cli.common import Parser; import mobilenets.cli.deploy as d; "
            "p = Parser(prog='mobilenet'); s = p.add_subparsers(parser_class=Parser); d.register(s); "
            "print(s.choices['export'].format_help()); "
            "print('heavy:', [m for m in ('torch', 'numpy', 'tensorflow') if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    assert "heavy: []" in text
    assert "the FILE to write; FILE.json gets the preprocessing" in text
    for default in ("the file format (default: from the --output suffix", "calibration images (default 256)",
                    "(default 0: none)", "checks the written file (default 2)", "default: mobilenet_v1_1.0_224",
                    "default: the data the checkpoint's run was trained on",
                    "default: float32", "quiet by default"):
        assert default in text, default


@pytest.mark.skipif(not HAS_TF, reason="tensorflow not installed")
def test_tflite_export_prints_only_its_own_lines_unless_verbose(tmp_path):
    """TensorFlow prints ~17 lines while converting (C++ logging, absl, the converter); they are
    silenced unless --verbose."""
    args = ["export", "--alpha", "0.25", "--resolution", "32", "--num-classes", "10", "--format", "tflite"]
    quiet = _run(*args, "--output", str(tmp_path / "q.tflite"))
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert quiet.stderr == ""
    lines = quiet.stdout.splitlines()
    assert len(lines) == 3 and lines[1].startswith("check: ") and lines[2].startswith("wrote "), lines
    loud = _run(*args, "--output", str(tmp_path / "v.tflite"), "--verbose")
    assert loud.returncode == 0, loud.stderr[-2000:]
    assert len(loud.stderr.splitlines()) >= 5, loud.stderr  # what quiet mode hid


# --------------------------------------------------------------------------- errors


def test_unknown_format_is_one_line_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "m.caffe"
    assert main(["export", "--model", "mobilenet_v1_0.25_128", "--format", "caffe", "--output", str(out)]) == 2
    line = _one_error_line(capsys)
    assert "--format" in line and "'caffe'" in line and "onnx" in line
    assert os.listdir(tmp_path) == []


def test_unwritable_output_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    out = blocker / "m.onnx"  # a folder that cannot exist: even root cannot write here
    assert main(["export", "--model", "mobilenet_v1_0.25_128", "--output", str(out)]) == 2
    assert f"cannot write to {blocker}: {blocker} is a file, not a folder" in _one_error_line(capsys)
    assert os.listdir(tmp_path) == ["a-file"]


@pytest.mark.parametrize(("flags", "message"), [
    (["--format", "torchscript", "--int8"], "--int8 is not offered for torchscript"),
    (["--qat-epochs", "1"], "--qat-epochs needs --int8"),
    (["--calibration", "images"], "--calibration needs --int8"),
    (["--qat-epochs", "-1", "--int8"], "argument --qat-epochs: must be >= 0"),
    (["--engine-threads", "0"], "argument --engine-threads: must be >= 1"),
    (["--calibration-images", "x", "--int8"], "argument --calibration-images/--calibration-size: not an integer"),
    (["--calibration-size", "0", "--int8"], "argument --calibration-images/--calibration-size: must be >= 1"),
])
def test_bad_flags_are_one_line_in_flag_terms(flags, message, tmp_path, capsys):
    assert main(["export", "--model", "mobilenet_v1_0.25_128", "--output", str(tmp_path / "m.onnx"), *flags]) == 2
    assert message in _one_error_line(capsys)
    assert os.listdir(tmp_path) == []


def test_checkpoint_of_other_architecture_is_one_line(digits_run, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    # The digits model is alpha 0.5 at 32 px; the registry name says 0.25.
    assert main(["export", "--checkpoint", str(digits_run), "--model", "mobilenet_v1_0.25_128",
                 "--output", str(out)]) == 2
    assert "different architecture from mobilenet_v1_0.25_128: alpha 0.5 (expected 0.25)" in _one_error_line(capsys)
    assert main(["export", "--checkpoint", str(digits_run), "--model", "mobilenet_v1_0.5_128", "--resolution", "64",
                 "--output", str(out)]) == 2
    assert "resolution 32 (expected 64)" in _one_error_line(capsys)
    # Flags that agree with the checkpoint are accepted.
    assert main(["export", "--checkpoint", str(digits_run), "--model", "mobilenet_v1_0.5_128", "--resolution", "32",
                 "--output", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["check"]["passed"]
    out.unlink()
    out.with_name("m.onnx.json").unlink()
    # Weights of one width under the config of another.
    from mobilenets.models.config import MobileNetConfig
    from mobilenets.models.mobilenet import MobileNet
    from mobilenets.weights.checkpoint import save_weights

    bad = tmp_path / "bad.safetensors"
    save_weights(MobileNet(alpha=0.25, resolution=32, num_classes=10), bad,
                 config=MobileNetConfig(alpha=0.5, resolution=32, num_classes=10))
    assert main(["export", "--checkpoint", str(bad), "--output", str(out)]) == 2
    assert "do not fit" in _one_error_line(capsys)
    assert os.listdir(tmp_path) == ["bad.safetensors"]


def test_text_file_named_pt_is_one_line(tmp_path, capsys):
    bad = tmp_path / "x.pt"
    bad.write_text("hello, I am not a checkpoint\n")
    assert main(["export", "--checkpoint", str(bad), "--output", str(tmp_path / "m.onnx")]) == 2
    assert "x.pt" in _one_error_line(capsys)
    assert os.listdir(tmp_path) == ["x.pt"]
