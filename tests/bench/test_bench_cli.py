"""The `bench` and `profile` command lines: what each flag hands the library (the library
replaced by a recorder, so nothing is timed), bad values as one line and exit status 2, and no
torch imported before a command runs."""

import json
import subprocess
import sys

import pytest

from mobilenets.bench.catalog import QUICK_ENGINES
from mobilenets.cli.main import main
from mobilenets.models.config import MobileNetConfig


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def recorded(monkeypatch):
    """``bench``, ``bench_all_models`` and ``profile`` replaced by recorders of their arguments."""
    import mobilenets.bench.profiling as P
    import mobilenets.bench.run as R

    calls = {}

    def recorder(name):
        def record(*args, **kwargs):
            calls[name] = (args, kwargs)
            return [{"model": "recorded"}]
        return record

    monkeypatch.setattr(R, "bench", recorder("bench"))
    monkeypatch.setattr(R, "bench_all_models", recorder("bench_all_models"))
    monkeypatch.setattr(P, "profile", recorder("profile"))
    return calls


def test_quick_names_the_model_by_its_flags_and_runs_the_quick_engines(capsys, recorded):
    code, out, _ = run(capsys, "bench", "--alpha", "0.5", "--resolution", "160", "--quick", "--json")
    assert code == 0 and json.loads(out) == [{"model": "recorded"}]
    (model,), kw = recorded["bench"]
    assert isinstance(model, MobileNetConfig) and (model.alpha, model.resolution) == (0.5, 160)
    assert kw["engines"] == list(QUICK_ENGINES) and kw["peers"] is False
    s = kw["settings"]
    assert (s.threads, s.batch, s.rounds, s.matmul_size) == (2, 4, 2, 1024)
    assert kw["progress"] is True and kw["verbose"] is False


def test_every_bench_flag_reaches_the_library(capsys, recorded):
    code, _, _ = run(capsys, "bench", "--model", "mobilenet_v1_0.75_192", "--variant", "shallow", "--engines",
                     "torch-eager, onnxruntime-int8", "--peers", "--batch-size", "6", "--rounds", "3",
                     "--threads", "1", "--verbose", "--no-progress", "--json")
    assert code == 0
    (model,), kw = recorded["bench"]
    assert (model.alpha, model.resolution, model.variant) == (0.75, 192, "shallow")
    assert kw["engines"] == ["torch-eager", "onnxruntime-int8"] and kw["peers"] is True
    s = kw["settings"]
    assert (s.threads, s.batch, s.rounds, s.matmul_size) == (1, 6, 3, 4096)
    assert kw["progress"] is False and kw["verbose"] is True
    run(capsys, "bench", "--json")
    (model,), kw = recorded["bench"]
    assert (model.alpha, model.resolution) == (1.0, 224) and kw["engines"] is None  # all of ours
    assert (kw["settings"].batch, kw["settings"].rounds) == (8, 10)


def test_all_models_and_profile_flags_reach_the_library(capsys, recorded, tmp_path):
    plot = str(tmp_path / "l.png")
    code, _, _ = run(capsys, "bench", "--all-models", "--quick", "--plot", plot, "--json", "--no-progress")
    assert code == 0
    _, kw = recorded["bench_all_models"]
    assert kw["plot"] == plot and kw["engines"] == list(QUICK_ENGINES) and kw["progress"] is False
    code, _, _ = run(capsys, "profile", "--alpha", "0.25", "--resolution", "128", "--batch-size", "2", "--runs", "4",
                     "--engines", "torch-eager", "--threads", "1", "--json", "--verbose")
    assert code == 0
    (model,), kw = recorded["profile"]
    assert (model.alpha, model.resolution) == (0.25, 128)
    assert (kw["batch"], kw["runs"], kw["threads"], kw["engines"], kw["verbose"]) == (2, 4, 1, ["torch-eager"], True)


@pytest.mark.parametrize("argv, message", [
    (["bench", "--threads", "0", "--quick"], "argument --threads: must be >= 1, got 0"),
    (["bench", "--alpha", "0", "--quick"], "argument --alpha: must be > 0, got 0"),
    (["bench", "--batch-size", "0", "--quick"], "argument --batch-size: must be >= 1, got 0"),
    (["bench", "--rounds", "two", "--quick"], "argument --rounds: not an integer: 'two'"),
    (["profile", "--batch-size", "0"], "argument --batch-size: must be >= 1, got 0"),
    (["profile", "--runs", "0"], "argument --runs: must be >= 1, got 0"),
    (["bench", "--engines", "torch-eager,nope", "--quick"], "unknown engine(s) nope"),
    (["bench", "--plot", "x.png", "--quick"], "--plot needs --all-models"),
    (["bench", "--all-models", "--alpha", "0.5", "--quick"], "--all-models runs the 16 paper models: drop --alpha"),
    (["bench", "--all-models", "--plot", "x.jpg", "--quick"], "PNG"),
    (["bench", "--all-models", "--plot", "no/such/folder/x.png", "--quick"], "folder not found"),
    (["bench", "--model", "mobilenet_v9", "--engines", "torch-eager", "--quick"], "unknown model"),
    (["bench", "--resolution", "16", "--engines", "torch-eager", "--quick"], "resolution"),
    (["profile", "--engines", "tflite"], "cannot profile tflite"),
])
def test_bad_input_is_one_line_exit_2(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith("mobilenet: error: ") and message in err and err.count("\n") == 1


def test_help_names_the_defaults_and_imports_no_torch():
    code = ("import json, sys\n"
            "from mobilenets.cli.common import Parser\n"
            "from mobilenets.cli.bench import register\n"
            "p = Parser(prog='mobilenet')\n"
            "sub = p.add_subparsers(dest='command', parser_class=Parser)\n"
            "register(sub)\n"
            "helps = {c: {a.option_strings[0]: a.help for a in sub.choices[c]._actions if a.option_strings}\n"
            "         for c in ('bench', 'profile')}\n"
            "heavy = [m for m in ('torch', 'numpy', 'tensorflow') if m in sys.modules]\n"
            "print(json.dumps({'helps': helps, 'heavy': heavy}))\n")
    out = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                    check=True).stdout)
    assert out["heavy"] == []
    bench, prof = out["helps"]["bench"], out["helps"]["profile"]
    assert {"--model", "--alpha", "--resolution", "--variant", "--num-classes", "--checkpoint", "--engines", "--peers",
            "--batch-size", "--rounds", "--quick", "--all-models", "--plot", "--threads", "--engine-threads", "--json",
            "--verbose",
            "--no-progress"} <= set(bench)
    assert "--batch" not in bench and "--batch" not in prof
    assert {"--model", "--alpha", "--checkpoint", "--engines", "--batch-size", "--runs", "--threads", "--engine-threads",
            "--json",
            "--verbose", "--no-progress"} <= set(prof)
    for flag in ("--batch-size", "--rounds", "--threads", "--engines", "--plot", "--model"):
        assert "default" in bench[flag], flag
    assert "(default: 8; 4 with --quick)" in bench["--batch-size"] and "(default 2)" in bench["--threads"]
    assert "torch" in bench["--threads"] and "ONNX Runtime" in bench["--engine-threads"]
    assert "default: the same as --threads" in bench["--engine-threads"]
    assert f"with --quick {','.join(QUICK_ENGINES)}" in bench["--engines"]
    assert ",".join(QUICK_ENGINES) in bench["--quick"]
    assert "PNG file" in bench["--plot"] and "'none' for no plot" in bench["--plot"]
    assert "(default 1)" in prof["--batch-size"] and "(default 20)" in prof["--runs"]
