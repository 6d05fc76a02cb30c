"""``mobilenet convert``: how the source is named, the output folder policy, the help text,
TensorFlow kept quiet unless ``--verbose``, and a parser that loads nothing heavy."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest
import torch._dynamo  # noqa: F401 - before TensorFlow: loading triton after it segfaults (mobilenets.utils.tf)

from mobilenets import MobileNet, MobileNetConfig, load_model, save_model
from mobilenets.cli.main import main


@pytest.fixture
def source(tmp_path) -> Path:
    model = MobileNet(MobileNetConfig(alpha=0.25, resolution=32, num_classes=3, activation="relu6"))
    return save_model(model, tmp_path / "src", classes=["a", "b", "c"])


def _error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_source_as_positional_or_checkpoint(tmp_path, capsys, source):
    assert main(["convert", str(source), "--from", "mobilenets", "--output", str(tmp_path / "a")]) == 0
    assert main(["convert", "--checkpoint", str(source), "--from", "mobilenets", "--output", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert out.count("converted mobilenets -> mobilenets: alpha 0.25, 32 px, 3 classes") == 2
    for name in ("a", "b"):
        assert (tmp_path / name / "config.json").read_text() == (tmp_path / "a" / "config.json").read_text()
        assert load_model(tmp_path / name).pretrained_cfg["label_names"] == ["a", "b", "c"]
    # exactly one of them
    assert main(["convert", str(source), "--checkpoint", str(source), "--from", "mobilenets",
                 "--output", str(tmp_path / "c")]) == 2
    assert "either SOURCE or --checkpoint SOURCE" in _error_line(capsys)
    assert main(["convert", "--from", "mobilenets", "--output", str(tmp_path / "c")]) == 2
    assert "either SOURCE or --checkpoint SOURCE" in _error_line(capsys)
    assert not (tmp_path / "c").exists()


def test_non_empty_output_needs_force(tmp_path, capsys, source):
    out = tmp_path / "out"
    argv = ["convert", str(source), "--from", "mobilenets", "--output", str(out)]
    assert main(argv) == 0
    capsys.readouterr()
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    assert main(argv) == 2
    line = _error_line(capsys)
    assert f"--output {out} exists and is not empty; pass --force" in line and "overwrite=" not in line
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp
    assert main(argv + ["--force"]) == 0
    assert "wrote" in capsys.readouterr().out
    # a file where the folder should be
    (tmp_path / "file").write_text("x")
    assert main(["convert", str(source), "--from", "mobilenets", "--output", str(tmp_path / "file"), "--force"]) == 2
    assert "exists and is not a folder" in _error_line(capsys)


def test_help_shows_defaults_and_names_a_folder():
    from mobilenets.cli import weights

    sub = argparse.ArgumentParser().add_subparsers()
    weights.register(sub)
    parser = sub.choices["convert"]
    options = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    assert {a.dest for a in options} >= {"checkpoint", "source_format", "output", "to", "keep_background",
                                         "resolution", "force", "verbose"}
    for action in options:
        assert "default" in action.help, action.option_strings
    output = next(a for a in options if a.dest == "output")
    assert output.metavar == "FOLDER" and "FOLDER" in output.help


def test_parser_loads_nothing_heavy():
    code = ("import argparse, sys; from mobilenets.cli import weights; "
            "weights.register(argparse.ArgumentParser().add_subparsers()); "
            "print(sorted(m for m in ('torch', 'numpy', 'tensorflow', 'keras', 'timm', 'transformers') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_cli_starts_without_tensorflow():
    code = ("import sys; from mobilenets.cli.main import build_parser; build_parser(); "
            "print(any(m in sys.modules for m in ('tensorflow', 'keras', 'transformers')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_tensorflow_quiet_unless_verbose(tmp_path):
    import keras

    keras.applications.MobileNet(weights=None, alpha=0.25, input_shape=(96, 96, 3)).save(tmp_path / "k.keras")
    runs = {}
    for flags in ([], ["--verbose"]):
        out = tmp_path / f"out{len(flags)}"
        runs[bool(flags)] = subprocess.run(
            [sys.executable, "-m", "mobilenets", "convert", str(tmp_path / "k.keras"), "--from", "keras",
             "--output", str(out), *flags], cwd=tmp_path, capture_output=True, text=True)
        assert runs[bool(flags)].returncode == 0, runs[bool(flags)].stderr
        assert load_model(out).config.alpha == 0.25
    quiet, verbose = runs[False], runs[True]
    assert quiet.stderr == "" and quiet.stdout.splitlines()[1] == f"wrote {tmp_path / 'out0'}"
    assert len(quiet.stdout.splitlines()) == 2
    # the check above means something only if TensorFlow does print when allowed to
    assert verbose.stderr.strip(), "TensorFlow printed nothing even with --verbose"
