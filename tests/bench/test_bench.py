"""`mobilenet bench` / `mobilenet profile` end to end: the row schema and the arithmetic of its
columns, missing engines, profile accounting, the all-models plot, the matmul peak. Small model,
quick settings, 1 thread."""

import json
import math

import pytest

from mobilenets.bench import run as R
from mobilenets.bench.catalog import OURS, PEERS
from mobilenets.bench.engines import EngineUnavailable
from mobilenets.bench.profiling import profile
from mobilenets.bench.report import all_models_text, bench_text, profile_text, scaling_fit
from mobilenets.bench.roofline import matmul_peak
from mobilenets.bench.timing import BenchSettings
from mobilenets.cli.main import main
from mobilenets.cost.count import analytical_cost
from mobilenets.errors import MobileNetsError
from mobilenets.models.config import MobileNetConfig
from mobilenets.models.registry import create_model

SMALL = "mobilenet_v1_0.25_128"


def quick(**kw):
    return BenchSettings.quick(**{"threads": 1, "batch": 3, "rounds": 2, **kw})


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_bench_json_rows_schema_and_arithmetic(capsys):
    code, out, _ = run(capsys, "bench", "--alpha", "0.25", "--resolution", "128", "--engines",
                       "torch-eager,torch-fast,timm-eager", "--quick", "--threads", "1", "--batch-size", "3",
                       "--rounds", "2", "--json", "--no-progress")
    assert code == 0
    rows = json.loads(out)
    assert isinstance(rows, list) and len(rows) == 6  # 3 engines x batch 1 and 3
    assert {(r["engine"], r["batch"]) for r in rows} == {(e, b) for e in ("torch-eager", "torch-fast", "timm-eager")
                                                          for b in (1, 3)}
    for r in rows:
        assert {"engine", "precision", "batch", "median_ms", "peer", "p10_ms", "p90_ms", "images_per_s",
                "vs_fastest", "floor_fraction"} <= set(r)
        assert r["model"] == SMALL and r["threads"] == 1
        assert r["peer"] is (r["engine"] == "timm-eager")
        assert r["precision"] == "fp32" and r["status"] == "ok"
        assert r["samples"] >= 2  # 2 rounds, at least one timed call a visit
        assert r["images_per_s"] == pytest.approx(1e3 * r["batch"] / r["median_ms"], rel=1e-3)
        assert r["spread_pct"] == pytest.approx(100 * (r["p90_ms"] - r["p10_ms"]) / r["median_ms"], abs=0.1)
        # the FLOP floor, recomputed from the row: 2 x mult-adds x batch at the measured peak
        assert r["floor_ms"] == pytest.approx(2 * r["mult_adds"] * r["batch"] / (r["peak_gops"] * 1e9) * 1e3,
                                              rel=2e-3)
        assert r["floor_fraction"] == pytest.approx(r["floor_ms"] / r["median_ms"], rel=2e-3, abs=1e-4)
        assert 0 < r["floor_fraction"] < 1  # no engine beats the matmul-peak floor
        want = MobileNetConfig(alpha=1.0, resolution=128) if r["peer"] else create_model(SMALL).config
        assert r["mult_adds"] == analytical_cost(want).mult_adds
    assert all("max abs diff vs eager" in r["note"] for r in rows if r["engine"] == "torch-fast")
    for b in (1, 3):
        at_b = [r for r in rows if r["batch"] == b]
        fastest = min(r["median_ms"] for r in at_b)
        for r in at_b:
            assert r["vs_fastest"] == pytest.approx(r["median_ms"] / fastest, rel=2e-3)


def test_bench_text_table(capsys):
    code, out, _ = run(capsys, "bench", "--model", SMALL, "--engines", "torch-fast,timm-eager", "--quick",
                       "--threads", "1", "--batch-size", "1", "--rounds", "1", "--no-progress")
    assert code == 0
    assert out.startswith(f"{SMALL} (random weights, BatchNorm statistics from random images): ")
    assert "1 interleaved rounds" in out
    assert "torch-fast" in out and "timm-eager *" in out and "x fastest" in out and "% floor" in out
    # the peak of the floor and how it was measured, above the table
    lines = out.splitlines()
    table = next(i for i, line in enumerate(lines) if line.startswith("engine "))
    assert lines[1].startswith("peaks on 1 thread (") and lines[2].startswith("  fp32 ") and "GOP/s: " in lines[2]
    assert table == 3
    assert "goal: timm-eager" in out and "faster (goal >= 1.5" in out


def test_bench_runs_a_checkpoints_weights(capsys, tmp_path, randomized_bn):
    from mobilenets.weights.checkpoint import save_weights

    path = save_weights(randomized_bn(create_model("mobilenet_v1_0.25_160")), tmp_path / "m.safetensors")
    code, out, _ = run(capsys, "bench", "--checkpoint", str(path), "--engines", "torch-eager", "--quick",
                       "--threads", "1", "--batch-size", "1", "--rounds", "1", "--json", "--no-progress")
    assert code == 0
    assert [(r["model"], r["alpha"], r["resolution"]) for r in json.loads(out)] == [("mobilenet_v1_0.25_160", 0.25, 160)]
    code, out, err = run(capsys, "bench", "--checkpoint", str(path), "--alpha", "0.5", "--quick")
    assert code == 2 and out == "" and "does not match the model flags" in err


def test_missing_engine_is_a_row_not_a_crash(monkeypatch):
    def not_installed(ctx, batch):  # what an engine's builder does when its package is missing
        raise EngineUnavailable("ExecuTorch is not installed (pip install executorch)")

    monkeypatch.setitem(R.BUILDERS, "executorch", not_installed)
    rows = R.bench(SMALL, engines=["executorch", "torch-eager"], settings=quick(batch=2), progress=False)
    et = [r for r in rows if r["engine"] == "executorch"]
    assert len(et) == 2 and all(r["status"] == "unavailable" and r["median_ms"] is None for r in et)
    assert all("not installed" in r["note"] and r["vs_fastest"] is None and r["samples"] == 0 for r in et)
    ok = [r for r in rows if r["engine"] == "torch-eager"]
    assert [r["batch"] for r in ok] == [1, 2] and all(r["status"] == "ok" and r["median_ms"] > 0 for r in ok)
    assert "unavailable: ExecuTorch is not installed" in bench_text(rows)
    with pytest.raises(MobileNetsError, match="no engine could run: executorch: ExecuTorch is not installed"):
        R.bench(SMALL, engines=["executorch"], settings=quick(batch=1), progress=False)


def test_library_checks_its_arguments():
    with pytest.raises(MobileNetsError, match="unknown engine"):
        R.bench(SMALL, engines="torch-eager,nope")
    with pytest.raises(MobileNetsError, match="threads must be an integer >= 1"):
        R.bench(SMALL, engines=["torch-eager"], settings=BenchSettings(threads=0))
    with pytest.raises(MobileNetsError, match="runs must be an integer >= 1"):
        profile(SMALL, runs=0)
    with pytest.raises(MobileNetsError, match="cannot profile tflite"):
        profile(SMALL, engines=["tflite"])
    with pytest.raises(MobileNetsError, match="PNG"):
        R.bench_all_models([SMALL], engines=["torch-eager"], plot="latency.jpg")
    with pytest.raises(MobileNetsError, match="precision"):
        matmul_peak("fp64", threads=1, size=256)


def _check_profile(rows, engine):
    er = [r for r in rows if r["engine"] == engine]
    assert er and all(r["status"] == "ok" for r in er)
    total = er[0]["total_ms"]
    assert total > 0
    assert sum(r["time_ms"] for r in er) == pytest.approx(total, rel=1e-3, abs=1e-3)
    assert all(r["time_ms"] >= 0 for r in er)
    assert sum(r["time_share"] for r in er) == pytest.approx(1.0, abs=2e-3)
    assert sum(r["mult_adds_share"] for r in er) == pytest.approx(1.0, abs=2e-3)
    by = {r["group"]: r for r in er}
    assert by["pointwise"]["mult_adds_share"] > 0.8
    # the convolutions are measured, not left to "other"
    assert by["pointwise"]["time_ms"] > 0 and by["depthwise"]["time_ms"] > 0 and by["first conv"]["time_ms"] > 0
    assert by["other"]["time_ms"] < 0.8 * total
    return by


def test_profile_eager_and_onnxruntime_groups_sum_to_total():
    pytest.importorskip("onnxruntime")
    rows = profile(SMALL, engines=["torch-eager", "onnxruntime"], runs=3, threads=1, progress=False)
    eager = _check_profile(rows, "torch-eager")
    assert eager["BN+act"]["time_ms"] > 0 and eager["FC"]["time_ms"] > 0
    ort = _check_profile(rows, "onnxruntime")
    assert ort["FC"]["time_ms"] > 0
    text = profile_text(rows)
    assert "pointwise" in text and "mult-adds %" in text


def test_all_models_plot_is_a_png(tmp_path):
    plt = pytest.importorskip("matplotlib.pyplot")
    out = tmp_path / "latency.png"
    models = ["mobilenet_v1_0.25_128", "mobilenet_v1_0.5_128"]
    rows = R.bench_all_models(models, engines=["torch-eager"], settings=quick(), plot=out, progress=False)
    assert [r["model"] for r in rows] == models and all(r["batch"] == 1 for r in rows)
    assert rows[0]["mult_adds"] < rows[1]["mult_adds"]
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = plt.imread(out)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    assert "mult-adds^k" in all_models_text(rows)


def test_scaling_fit_recovers_a_power_law():
    rows = [{"engine": "e", "mult_adds": m, "median_ms": 0.01 * m ** 0.7, "model": str(m)} for m in (1e6, 4e6, 1.6e7)]
    assert scaling_fit(rows)["e"] == pytest.approx(0.7)


def test_matmul_peak_is_a_plausible_rate():
    for precision in ("fp32", "int8"):
        peak = matmul_peak(precision, threads=1, size=256, repeats=1)
        assert 1e8 < peak < 1e13  # between a slow CPU core and far beyond any CPU's matmul rate
        assert matmul_peak(precision, threads=1, size=256) == peak  # the best so far, kept


@pytest.mark.slow
def test_bench_peers_full(capsys):
    code, out, _ = run(capsys, "bench", "--model", SMALL, "--peers", "--engines", ",".join(OURS), "--quick",
                       "--threads", "1", "--json", "--no-progress")
    assert code == 0
    rows = json.loads(out)
    assert {r["engine"] for r in rows if r["peer"]} == set(PEERS)
    assert all(r["peer"] is (r["engine"] in PEERS) for r in rows)
    assert {r["engine"] for r in rows} == set(OURS) | set(PEERS)
    for r in rows:
        assert r["status"] in ("ok", "unavailable")
        assert (r["median_ms"] is None) == (r["status"] == "unavailable")
        assert math.isfinite(r["median_ms"]) if r["median_ms"] is not None else r["note"]
