"""One vocabulary across the commands: --threads is torch's, --engine-threads an exported file's
runtime's; one spelling per choice (hyphens accepted); --plot none is no plot; text by default and
JSON with --json; --version."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from mobilenets.cli.common import Choices, choice, plot_file
from mobilenets.cli.main import build_parser, main
from mobilenets.tasks.detect.config import DETECTORS


def options(*path: str) -> dict[str, argparse.Action]:
    parser = build_parser()
    for name in path:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
    return {s: a for a in parser._actions for s in a.option_strings}


# ------------------------------------------------------------------ threads


@pytest.mark.parametrize("path", [("eval",), ("predict",), ("bench",), ("profile",), ("detect", "bench"), ("demo",)])
def test_threads_are_torch_and_engine_threads_are_the_runtime(path):
    opts = options(*path)
    assert "torch" in opts["--threads"].help
    assert "ONNX Runtime" in opts["--engine-threads"].help


def test_pick_times_one_engine_with_engine_threads():
    opts = options("pick")
    assert "--threads" not in opts and opts["--engine-threads"].default == 2


@pytest.mark.parametrize("path", [("predict",), ("detect", "predict"), ("geo", "predict")])
def test_every_predict_command_has_device_and_threads(path):
    opts = options(*path)
    assert opts["--device"].default == "auto" and opts["--threads"].default is None


def test_predict_runs_torch_on_threads_and_the_runtime_on_engine_threads(monkeypatch, capsys):
    """The library gets engine_threads= and device=, and runs inside --threads torch threads."""
    import torch

    import mobilenets.deploy.predict as library

    seen = {}

    def fake(checkpoint, images, top_k, **kwargs):
        seen.update(kwargs, torch_threads=torch.get_num_threads())
        return [{"image": images[0], "top": [{"label": "cat", "probability": 0.75}]}]

    monkeypatch.setattr(library, "predict", fake)
    before = torch.get_num_threads()
    assert main(["predict", "--checkpoint", "m.onnx", "a.jpg", "--threads", "1", "--engine-threads", "3",
                 "--device", "cpu"]) == 0
    assert seen == {"engine_threads": 3, "device": "cpu", "torch_threads": 1}
    assert torch.get_num_threads() == before  # the caller's count comes back
    assert capsys.readouterr().out == "a.jpg\n   75.00%  cat\n"


# ------------------------------------------------------------------ --json and text


def test_eval_prints_text_by_default_and_json_with_json(monkeypatch, capsys):
    import mobilenets.train.classify as library

    result = {"checkpoint": "runs/x", "data": "digits", "top1": 0.9125, "top5": 1.0, "loss": 0.31234, "images": 360}
    monkeypatch.setattr(library, "eval_checkpoint", lambda *a, **k: dict(result, kwargs=sorted(k)))
    assert main(["eval", "--checkpoint", "runs/x"]) == 0
    assert capsys.readouterr().out == "top-1 91.25%  top-5 100.00%  loss 0.3123  (360 images of digits; runs/x)\n"
    assert main(["eval", "--checkpoint", "runs/x", "--json", "--engine-threads", "4"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["top1"] == 0.9125 and "engine_threads" in got["kwargs"] and "threads" not in got["kwargs"]


def leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield " ".join(path), parser
    for action in subs:
        for name, child in action.choices.items():
            yield from leaves(child, (*path, name))


@pytest.mark.parametrize("name, parser", sorted(leaves(build_parser()), key=lambda x: x[0]),
                         ids=lambda x: x if isinstance(x, str) else "")
def test_every_command_takes_json(name, parser):
    """Every command prints a summary, so every command takes --json (text by default). The
    training commands (`train`, `detect train`, `geo train`) get it from the lead's one builder."""
    assert "--json" in {s for a in parser._actions for s in a.option_strings}, name
    assert parser.get_default("json") is False


# ------------------------------------------------------------------ one spelling per choice


def test_choices_show_underscores_and_accept_hyphens():
    c = Choices(("keras", "tf-slim", "faster_rcnn"))
    assert list(c) == ["keras", "tf_slim", "faster_rcnn"]
    assert c.parse("tf_slim") == c.parse("tf-slim") == "tf-slim"  # the library's spelling
    assert c.parse("faster-rcnn") == "faster_rcnn" and "faster-rcnn" in c and "nope" not in c


def test_detector_names_come_from_the_library():
    from mobilenets.cli.detect import DETECTOR_CHOICES

    assert tuple(DETECTOR_CHOICES) == DETECTORS
    for path in (("cost",), ("detect", "anchors"), ("bench",), ("detect", "bench")):
        assert set(options(*path)["--detector"].choices) <= set(DETECTORS)


@pytest.mark.parametrize("spelling", ["faster-rcnn", "faster_rcnn"])
def test_both_spellings_parse_to_the_library_name(spelling):
    for argv in (["cost", "--detector", spelling], ["detect", "anchors", "--detector", spelling]):
        assert build_parser().parse_args(argv).detector == "faster_rcnn"


def test_a_wrong_choice_names_the_canonical_spellings(capsys):
    assert main(["cost", "--detector", "yolo"]) == 2
    err = capsys.readouterr().err
    assert "faster_rcnn" in err and "faster-rcnn" not in err and err.count("\n") == 1
    assert main(["convert", "x", "--from", "slim", "--output", "o"]) == 2
    assert "tf_slim" in capsys.readouterr().err


def test_help_shows_only_the_canonical_spelling(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["cost", "--help"])
    out = capsys.readouterr().out
    assert "{ssd,ssdlite,faster_rcnn}" in out and "faster-rcnn" not in out


def test_convert_from_accepts_either_spelling():
    assert build_parser().parse_args(["convert", "x", "--from", "tf_slim", "--output", "o"]).source_format == "tf-slim"
    assert build_parser().parse_args(["convert", "x", "--from", "tf-frozen", "--output", "o"]).source_format == \
        "tf-frozen"


def test_choice_keywords_are_choices_and_type():
    kw = choice(("a-b", "c"))
    p = argparse.ArgumentParser()
    p.add_argument("--x", **kw)
    assert p.parse_args(["--x", "a_b"]).x == "a-b"


# ------------------------------------------------------------------ --plot none


def test_plot_none_is_no_plot_everywhere():
    assert plot_file("none") is False and plot_file("None") is False and plot_file("a.png") == "a.png"
    for path in (("pick",), ("geo", "eval"), ("bench",), ("detect", "eval")):
        assert options(*path)["--plot"].type is plot_file, path
    assert options("pick")["--plot"].default == "pick.png"


def test_geo_eval_plot_none_draws_nothing(tmp_path, capsys):
    truth, pred = tmp_path / "truth.csv", tmp_path / "pred.csv"
    truth.write_text("path,latitude,longitude\na.jpg,48.85,2.35\nb.jpg,40.71,-74.0\n")
    pred.write_text("path,latitude,longitude\na.jpg,48.80,2.30\nb.jpg,41.0,-73.0\n")
    assert main(["geo", "eval", "--truth", str(truth), "--predictions", str(pred), "--plot", "none"]) == 0
    out = capsys.readouterr().out
    assert "CDF plot" not in out and not list(tmp_path.glob("*.png"))
    assert main(["geo", "eval", "--truth", str(truth), "--predictions", str(pred)]) == 0  # default: beside
    assert f"CDF plot: {pred.with_suffix('.cdf.png')}" in capsys.readouterr().out
    assert pred.with_suffix(".cdf.png").is_file() and not (tmp_path / "none").exists()


# ------------------------------------------------------------------ --version


def test_version_imports_no_torch():
    code = ("import sys\nfrom mobilenets.cli.main import main\n"
            "try:\n    main(['--version'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
            "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].startswith("mobilenet ") and done.stdout.splitlines()[-1] == "False"


def test_add_command_reads_description_and_examples_from_the_docstring():
    from mobilenets.cli.common import Parser, add_command

    def cmd_toy(args):
        """Count the toys in a box:
        every toy, once.

        Broken toys too.

        examples:
          mobilenet toy --box a
          mobilenet toy --box b --json
        """

    sub = Parser(prog="mobilenet").add_subparsers()
    p = add_command(sub, "toy", cmd_toy, help="count toys")
    assert p.description == "Count the toys in a box: every toy, once.\n\nBroken toys too."
    assert p.epilog == "examples:\n  mobilenet toy --box a\n  mobilenet toy --box b --json"
    assert p.get_default("func") is cmd_toy
