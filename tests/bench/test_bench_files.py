"""`bench` and `profile` on real files: a model folder (as `mobilenet convert` writes), and an
exported file (.onnx, int8 too) timed itself, with or without its sidecar; what the rows say of
the weights, the mult-adds the floor counts, the int8 calibration, and the refusals."""

import json
import shutil

import pytest

from mobilenets.bench import run as R
from mobilenets.bench.exported import exported_format, open_exported
from mobilenets.bench.profiling import profile
from mobilenets.bench.report import bench_text
from mobilenets.bench.timing import BenchSettings
from mobilenets.cli.main import main
from mobilenets.cost.count import analytical_cost
from mobilenets.errors import MobileNetsError
from mobilenets.models.registry import create_model, get_config

SMALL = "mobilenet_v1_0.25_128"
pytest.importorskip("onnxruntime")


def quick(**kw):
    return BenchSettings.quick(**{"threads": 1, "batch": 2, "rounds": 1, **kw})


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory):
    """A small model exported to ONNX fp32 by `export`, statically quantized to int8 by ONNX
    Runtime (QDQ; faster here than an int8 export), each with its sidecar, and copies of both
    without one."""
    import numpy as np
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    from mobilenets.deploy.export import export_model
    from mobilenets.deploy.fast import realistic_batchnorm

    folder = tmp_path_factory.mktemp("exports")
    fp32, int8 = folder / "small.onnx", folder / "small-int8.onnx"
    # BatchNorm statistics from random images, as bench gives a random model (a module-scoped
    # fixture cannot use the function-scoped randomized_bn)
    export_model(realistic_batchnorm(create_model(SMALL)), fp32)

    class Images(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"input": np.random.default_rng(i).standard_normal((1, 3, 128, 128), np.float32)}
                                 for i in range(4)])

        def get_next(self):
            return next(self.batches, None)

    quantize_static(str(fp32), str(int8), Images(), quant_format=QuantFormat.QDQ, per_channel=True)
    side = json.loads((folder / "small.onnx.json").read_text())
    (folder / "small-int8.onnx.json").write_text(json.dumps({**side, "precision": "int8"}))
    bare = folder / "bare"
    bare.mkdir()
    for f in (fp32, int8):
        shutil.copy(f, bare / f.name)
    return {"fp32": fp32, "int8": int8, "bare-fp32": bare / fp32.name, "bare-int8": bare / int8.name}


def test_an_exported_file_is_timed_as_itself(onnx_files):
    path = onnx_files["fp32"]
    rows = R.bench(checkpoint=path, settings=quick(), progress=False)
    assert [(r["engine"], r["batch"]) for r in rows] == [("onnxruntime", 1), ("onnxruntime", 2)]
    for r in rows:
        assert r["status"] == "ok" and r["precision"] == "fp32" and not r["peer"]
        assert r["model"] == SMALL and r["weights"] == f"exported file {path}"
        assert r["description"].startswith(f"{path} (onnx)")
        assert r["mult_adds"] == analytical_cost(get_config(SMALL)).mult_adds  # from the sidecar's config
        assert r["note"] is None and 0 < r["floor_fraction"] <= 1
    rows = R.bench(checkpoint=path, engines=["timm-eager"], settings=quick(batch=1), progress=False)
    assert [(r["engine"], r["peer"]) for r in rows] == [("onnxruntime", False), ("timm-eager", True)]
    with pytest.raises(MobileNetsError, match=r"timed as itself \(onnxruntime\); engines= may add only the peers"):
        R.bench(checkpoint=path, engines=["torch-eager"], settings=quick(), progress=False)


def test_an_int8_file_is_its_int8_engine_with_or_without_a_sidecar(onnx_files):
    for key in ("int8", "bare-int8"):
        f = open_exported(onnx_files[key])
        assert (f.format, f.precision, f.engine) == ("onnx", "int8", "onnxruntime-int8")  # bare: read from its ops
    assert open_exported(onnx_files["bare-fp32"]).precision == "fp32"
    rows = R.bench(checkpoint=onnx_files["int8"], engines=["timm-eager"], settings=quick(batch=1), progress=False)
    assert [(r["engine"], r["precision"], r["status"]) for r in rows] == [("onnxruntime-int8", "int8", "ok"),
                                                                          ("timm-eager", "fp32", "ok")]
    assert all(0 < r["floor_fraction"] <= 1 for r in rows)
    assert rows[0]["peak_how"].startswith("int8 ") and rows[1]["peak_how"].startswith("fp32 ")
    lines = bench_text(rows).splitlines()  # both peaks above the table, by precision
    assert [ln.split()[0] for ln in lines[1:3]] == ["fp32", "int8"] and lines[3].startswith("engine ")


def test_without_a_sidecar_the_named_model_is_counted(onnx_files):
    bare = onnx_files["bare-fp32"]
    f = open_exported(bare, SMALL)
    assert f.config == get_config(SMALL) and "no sidecar small.onnx.json" in f.notes[0]
    f = open_exported(bare)  # nothing named: the default model's mult-adds, and the note says which
    assert f.config == get_config("mobilenet_v1_1.0_224") and "alpha 1, 224 px" in f.notes[0]
    rows = R.bench(SMALL, checkpoint=bare, settings=quick(batch=1), progress=False)
    assert rows[0]["mult_adds"] == analytical_cost(get_config(SMALL)).mult_adds and "no sidecar" in rows[0]["note"]
    # with a sidecar, a model named otherwise is refused
    with pytest.raises(MobileNetsError, match="different model from the one named: alpha 0.25 .expected 1.0."):
        open_exported(onnx_files["fp32"], "mobilenet_v1_1.0_224")
    assert open_exported(onnx_files["fp32"], {"alpha": 0.25}).config == get_config(SMALL)


@pytest.mark.filterwarnings("ignore:`torch.jit.save` is deprecated:FutureWarning")  # TorchScript on purpose
def test_what_counts_as_an_exported_file(tmp_path, onnx_files):
    import torch

    state = tmp_path / "state.pt"
    torch.save({"model": {}}, state)
    script = tmp_path / "net.pt"
    torch.jit.save(torch.jit.script(torch.nn.ReLU()), script)
    assert exported_format(state) is None and exported_format(script) == "torchscript"  # a .pt by its content
    assert exported_format(tmp_path) is None and exported_format(tmp_path / "w.safetensors") is None
    assert exported_format(onnx_files["fp32"]) == "onnx" and exported_format(tmp_path / "m.PTE") == "executorch"


def test_profile_takes_an_onnx_file_only(onnx_files, tmp_path):
    rows = profile(checkpoint=onnx_files["int8"], runs=2, threads=1, progress=False)
    assert {r["engine"] for r in rows} == {"onnxruntime-int8"} and all(r["status"] == "ok" for r in rows)
    assert sum(r["time_share"] for r in rows) == pytest.approx(1.0, abs=2e-3)
    assert rows[0]["weights"] == f"exported file {onnx_files['int8']}"
    fake = tmp_path / "m.tflite"
    fake.write_bytes(b"not read: the sidecar says what it is")
    (tmp_path / "m.tflite.json").write_text(json.dumps({"precision": "fp32", "model": get_config(SMALL).to_dict()}))
    with pytest.raises(MobileNetsError, match="cannot profile .*m.tflite: profile takes an .onnx file or a checkpoint"):
        profile(checkpoint=fake, progress=False)
    with pytest.raises(MobileNetsError, match="profiled as itself"):
        profile(checkpoint=onnx_files["fp32"], engines=["torch-eager"], progress=False)


def test_cli_bench_and_profile_an_exported_file(capsys, onnx_files):
    path = str(onnx_files["fp32"])
    code, out, _ = run(capsys, "bench", "--checkpoint", path, "--quick", "--threads", "1", "--batch-size", "1",
                       "--rounds", "1", "--json", "--no-progress")
    assert code == 0 and [r["engine"] for r in json.loads(out)] == ["onnxruntime"]  # --quick: the file only
    code, out, err = run(capsys, "bench", "--checkpoint", path, "--engines", "torch-eager", "--quick")
    assert code == 2 and out == "" and "timed as itself" in err and err.count("\n") == 1
    code, out, err = run(capsys, "bench", "--checkpoint", path, "--alpha", "0.5", "--quick")
    assert code == 2 and "alpha 0.25 (expected 0.5)" in err and err.count("\n") == 1
    code, out, _ = run(capsys, "profile", "--checkpoint", path, "--runs", "2", "--threads", "1", "--no-progress")
    assert code == 0 and out.startswith(f"{SMALL} (exported file {path})\nonnxruntime (fp32, batch 1, 1 threads)")


def test_a_model_folder_is_benched_with_its_weights(capsys, tmp_path, randomized_bn):
    from mobilenets.weights.checkpoint import save_model

    folder = save_model(randomized_bn(create_model("mobilenet_v1_1.0_224")), tmp_path / "model")
    code, out, _ = run(capsys, "bench", "--checkpoint", str(folder), "--engines", "torch-eager", "--quick",
                       "--threads", "1", "--batch-size", "1", "--rounds", "1", "--no-progress")
    assert code == 0
    assert out.startswith(f"mobilenet_v1_1.0_224 (checkpoint {folder}): ")
    code, out, _ = run(capsys, "profile", "--checkpoint", str(folder), "--engines", "torch-eager", "--runs", "1",
                       "--threads", "1", "--json", "--no-progress")
    rows = json.loads(out)
    assert code == 0 and {r["weights"] for r in rows} == {f"checkpoint {folder}"}


def test_int8_exports_calibrate_on_the_recorded_data_else_on_digits_and_say_so(tmp_path, randomized_bn):
    from mobilenets.bench.engines import BenchContext
    from mobilenets.weights.checkpoint import save_model, save_weights

    net = randomized_bn(create_model(SMALL))
    folder = save_model(net, tmp_path / "model")  # a model folder records no training data
    trained = save_weights(net, tmp_path / "run.safetensors", extra={"run": json.dumps({"recipe": "paper", "data": None})})  # a run on the digits

    def choice(**kw):
        return BenchContext(net, quick(), str(tmp_path), **kw).int8_calibration()

    assert choice(calibration="photos/", checkpoint=trained) == ("photos/", None)  # given: it
    assert choice(checkpoint=trained) == (None, None)  # the run's own data, as export finds it
    for kw in ({"checkpoint": folder}, {}):  # no data recorded, or random weights: digits, said
        cal, note = choice(**kw)
        assert cal == "digits"
        assert note.startswith("calibrated on the built-in digits (the model records no training data")


def test_int8_method_reaches_the_int8_exports_only(tmp_path, randomized_bn, monkeypatch):
    import mobilenets.deploy.export as export_module
    from mobilenets.bench.engines import BenchContext

    seen = []
    monkeypatch.setattr(export_module, "export_model", lambda *a, **kw: seen.append((a[2], kw)))
    ctx = BenchContext(randomized_bn(create_model(SMALL)), quick(), str(tmp_path), calibration="digits",
                       int8_method="learned_rounding")
    ctx.export("onnx", True)
    ctx.export("onnx", False)
    assert [(fmt, kw["int8"], kw["int8_method"]) for fmt, kw in seen] == [("onnx", True, "learned_rounding"),
                                                                          ("onnx", False, "auto")]


def test_bench_int8_method_flag_is_exports(monkeypatch):
    """`bench --int8-method` takes export's values, and `--bias-correction` is its former spelling."""
    import mobilenets.bench.run as run_module
    from mobilenets.cli.main import main

    seen = []
    monkeypatch.setattr(run_module, "bench", lambda *a, **kw: seen.append(kw["int8_method"]) or [])
    monkeypatch.setattr(run_module, "machine_info", lambda *a, **kw: {})
    for argv, want in ((["--int8-method", "plain"], "plain"), (["--bias-correction"], "bias_correction"), ([], "auto")):
        main(["bench", "--quick", "--json", *argv])
        assert seen.pop() == want
    assert main(["bench", "--quick", "--bias-correction", "--int8-method", "plain"]) == 2


@pytest.mark.slow
def test_the_real_imagenet_mobilenet(real_mobilenet):
    """The ImageNet MobileNetV1 1.0-224 that the nudity package ships as a frozen graph, converted
    and saved as a model folder (the session fixture): real weights, and no engine beats its floor."""
    rows = R.bench(checkpoint=real_mobilenet, engines=["torch-eager", "onnxruntime", "onnxruntime-int8"],
                   settings=quick(batch=2, rounds=2), progress=False)
    assert {r["status"] for r in rows} == {"ok"}
    assert {r["model"] for r in rows} == {"mobilenet_v1_1.0_224 (relu6, tf_same padding)"}
    assert all(r["weights"].startswith(f"checkpoint {real_mobilenet}, converted from tf-slim") for r in rows)
    assert all(0 < r["floor_fraction"] <= 1 for r in rows)
