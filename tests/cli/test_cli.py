"""The `mobilenet` command: outputs with numbers in them, and one-line errors with exit 2."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mobilenets.cli.main import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cost_json(capsys):
    code, out, err = run(capsys, "cost", "--model", "mobilenet_v1_1.0_224", "--json")
    assert code == 0 and err == ""
    data = json.loads(out)
    assert data["mult_adds"] == 568_740_352 and data["params"] == 4_209_088
    assert isinstance(data["mult_adds"], int) and isinstance(data["params"], int)
    assert len(data["layers"]) == 1 + 2 * 13 + 2  # stem, 13 dw+pw, pool, fc
    assert round(100 * data["by_type"]["conv1x1"]["mult_adds_share"], 2) == 94.86


def test_cost_alpha_resolution_and_measure_agree(capsys):
    args = ["cost", "--alpha", "0.6", "--resolution", "150", "--variant", "shallow", "--num-classes", "7", "--json"]
    _, a, _ = run(capsys, *args)
    _, m, _ = run(capsys, *args, "--measure")
    a, m = json.loads(a), json.loads(m)
    assert a["source"] == "analytical" and m["source"] == "measured"
    assert a["mult_adds"] == m["mult_adds"] and a["params"] == m["params"] and a["layers"] == m["layers"]
    assert a["config"]["num_classes"] == 7


def test_cost_text_shows_tables_and_paper(capsys):
    code, out, _ = run(capsys, "cost", "--model", "mobilenet_v1_1.0_224")
    assert code == 0
    assert "blocks.13.pw.conv" in out and "Conv dw / s2" in out and "94.86%" in out
    assert "568,740,352 mult-adds" in out and "The paper prints: 569M mult-adds, 4.2M parameters" in out


def test_cost_torchvision(capsys):
    code, out, _ = run(capsys, "cost", "--model", "torchvision:alexnet", "--json")
    data = json.loads(out)
    assert code == 0 and data["source"] == "measured"
    assert data["params_total"] == 61_100_840  # torchvision's AlexNet


def test_single_layer(capsys):
    code, out, _ = run(capsys, "cost", "--single-layer", "--json")
    rows = json.loads(out)
    assert code == 0 and [round(r["mult_adds"] / 1e6, 1) for r in rows] == [462.4, 52.3, 29.6, 15.1]


def test_models(capsys):
    code, out, _ = run(capsys, "models", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert code == 0 and len(rows) == 18
    assert rows["mobilenet_v1_0.5_160"]["mult_adds"] == 76_524_800


def test_tables_without_reference_nets(capsys):
    code, out, _ = run(capsys, "tables", "--no-reference-nets", "--json")
    data = json.loads(out)
    t6 = {r["model"]: r for r in data["Table 6: MobileNet Width Multiplier"]}
    assert code == 0 and t6["mobilenet_v1_0.25_224"]["match_mult_adds"] == "rounded"
    assert len(data["The 16 paper models (Figures 4 and 5)"]) == 16


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["cost", "--alpha", "0"], "alpha"),
        (["cost", "--alpha", "-0.5"], "alpha"),
        (["cost", "--alpha", "abc"], "not a number"),
        (["cost", "--resolution", "31"], "resolution"),
        (["cost", "--model", "mobilenet_v9"], "unknown model"),
        (["cost", "--model", "torchvision:nope"], "unknown torchvision model"),
        (["cost", "--variant", "deep"], "invalid choice"),
        (["cost", "--num-classes", "-3"], "num-classes"),
        (["bench", "--alpha", "0", "--quick"], "alpha"),
        (["bench", "--batch-size", "0"], "batch-size"),
        (["train", "--device", "tpu", "--epochs", "1"], "unknown device 'tpu'"),
        (["eval", "--checkpoint", "/nonexistent/run"], "not found"),
        (["train", "--data", "/nonexistent/data"], "not found"),
        (["train", "--lr", "-1"], "lr must be"),
        (["train", "--recipe", "fancy"], "invalid choice"),
        (["export", "--output", "model.onnx"], "give --checkpoint PATH"),
        (["bench", "--batch", "3"], "unrecognized arguments: --batch"),
        (["frobnicate"], "invalid choice"),
        ([], "required"),
    ],
)
def test_bad_input_is_one_line(capsys, argv, needle):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith("mobilenet: error: ") and needle in err
    assert err.count("\n") == 1, err


def test_console_script_installed():
    """The installed `mobilenet` entry point (and `python -m mobilenets`) run end to end."""
    exe = Path(sys.executable).with_name("mobilenet")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "mobilenets"]
    ok = subprocess.run(cmd + ["cost", "--model", "mobilenet_v1_0.25_128", "--json"], capture_output=True, text=True)
    assert ok.returncode == 0 and json.loads(ok.stdout)["mult_adds"] == 13_570_048
    bad = subprocess.run([sys.executable, "-m", "mobilenets", "cost", "--alpha", "-1"], capture_output=True, text=True,
                         env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "Traceback" not in bad.stderr


def test_help_and_usage_errors_load_no_heavy_module():
    """`mobilenet --help` and argument errors answer without importing torch (or TensorFlow):
    the import alone takes seconds. Checked by what is imported, not by a clock."""
    code = ("import sys\n"
            "from mobilenets.cli.main import build_parser, main\n"
            "build_parser()\n"
            "assert main(['cost', '--alpha', 'x']) == 2\n"
            "heavy = [m for m in ('torch', 'tensorflow', 'numpy', 'onnxruntime', 'timm') if m in sys.modules]\n"
            "print(heavy)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_no_gpu_is_said_plainly(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the message for a missing one cannot be produced here")
    code, _, err = run(capsys, "eval", "--checkpoint", ".", "--device", "cuda")
    assert code == 2 and "no CUDA GPU" in err and err.count("\n") == 1


@pytest.mark.parametrize("command", [["eval", "--checkpoint"], ["predict", "--checkpoint"], ["export", "--output",
                                     "OUT/m.onnx", "--checkpoint"], ["bench", "--quick", "--checkpoint"],
                                     ["cost", "--checkpoint"]])
def test_a_text_file_named_pt_is_one_line(tmp_path, capsys, command):
    bad = tmp_path / "x.pt"
    bad.write_text("not a checkpoint\n")
    argv = [a.replace("OUT", str(tmp_path)) for a in command] + [str(bad)]
    if command[0] == "predict":
        argv.append(str(bad))
    code, out, err = run(capsys, *argv)
    assert code == 2 and err.startswith("mobilenet: error: ") and err.count("\n") == 1, err
    assert "x.pt" in err and "Traceback" not in err
