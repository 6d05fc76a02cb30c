"""`mobilenet bench` / `mobilenet profile`: row schema, interleaving, the fast path's numerics,
profile accounting, and the all-models plot. Small model, quick settings, 1 thread."""

import json
import math

import numpy as np
import pytest
import torch

from mobilenets.bench import engines as B
from mobilenets.cli.main import main
from mobilenets.cost.count import analytical_cost
from mobilenets.models.config import MobileNetConfig
from mobilenets.models.registry import create_model

SMALL = "mobilenet_v1_0.25_128"


def quick(**kw):
    s = B.BenchSettings.quick(threads=1, batch=3)
    s.rounds = 2
    for k, v in kw.items():
        setattr(s, k, v)
    return s


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_bench_json_rows_schema_and_peer_flag(capsys):
    code, out, _ = run(capsys, "bench", "--model", SMALL, "--engines", "torch-eager,torch-fast,timm-eager",
                       "--quick", "--threads", "1", "--batch", "3", "--rounds", "2", "--json", "--no-progress")
    assert code == 0
    rows = json.loads(out)
    assert isinstance(rows, list) and len(rows) == 6  # 3 engines x batch 1 and 3
    assert {(r["engine"], r["batch"]) for r in rows} == {(e, b) for e in ("torch-eager", "torch-fast", "timm-eager")
                                                          for b in (1, 3)}
    for r in rows:
        assert {"engine", "precision", "batch", "median_ms", "peer", "p10_ms", "p90_ms", "images_per_s",
                "vs_fastest", "floor_fraction"} <= set(r)
        assert r["peer"] is (r["engine"] == "timm-eager")
        assert r["precision"] == "fp32" and r["status"] == "ok"
        assert r["p10_ms"] <= r["median_ms"] <= r["p90_ms"]
        assert r["images_per_s"] == pytest.approx(1e3 * r["batch"] / r["median_ms"], rel=1e-3)
        assert 0 < r["floor_fraction"] < 1  # no engine beats the matmul-peak floor
        want = MobileNetConfig(alpha=1.0, resolution=128) if r["peer"] else create_model(SMALL).config
        assert r["mult_adds"] == analytical_cost(want).mult_adds
    assert all("max abs diff vs eager" in r["note"] for r in rows if r["engine"] == "torch-fast")
    for b in (1, 3):
        ratios = [r["vs_fastest"] for r in rows if r["batch"] == b]
        assert min(ratios) == 1.0 and all(x >= 1.0 for x in ratios)


def test_bench_text_table(capsys):
    code, out, _ = run(capsys, "bench", "--model", SMALL, "--engines", "torch-fast,timm-eager", "--quick",
                       "--threads", "1", "--batch", "1", "--rounds", "1", "--no-progress")
    assert code == 0
    assert "torch-fast" in out and "timm-eager *" in out and "x fastest" in out and "% floor" in out
    assert "goal: timm-eager" in out and "faster (goal >= 1.5" in out


def test_missing_engine_is_a_row_not_a_crash(monkeypatch):
    def not_installed(ctx, batch):  # what an engine's builder does when its package is missing
        raise B.EngineUnavailable("ExecuTorch is not installed (pip install executorch)")

    monkeypatch.setitem(B._BUILDERS, "executorch", not_installed)
    rows = B.bench(SMALL, engines=["executorch", "torch-eager"], settings=quick(batch=2), progress=False)
    et = [r for r in rows if r["engine"] == "executorch"]
    assert len(et) == 2 and all(r["status"] == "unavailable" and r["median_ms"] is None for r in et)
    assert all("not installed" in r["note"] and r["vs_fastest"] is None for r in et)
    ok = [r for r in rows if r["engine"] == "torch-eager"]
    assert all(r["status"] == "ok" and r["vs_fastest"] == 1.0 for r in ok)
    assert "unavailable: ExecuTorch is not installed" in B.bench_text(rows)
    with pytest.raises(ValueError, match="no engine could run: executorch: ExecuTorch is not installed"):
        B.bench(SMALL, engines=["executorch"], settings=quick(batch=1), progress=False)


def test_round_order_rotates_every_unit_through_every_position():
    units = ["a", "b", "c", "d"]
    orders = [B.round_order(units, r) for r in range(4)]
    assert orders[0] == units and orders[1] == ["b", "c", "d", "a"]
    for pos in range(4):
        assert sorted(o[pos] for o in orders) == units
    assert B.round_order(units, 5) == orders[1]


def test_interleave_runs_units_in_rotated_rounds():
    log = []
    runs = {u: (lambda u=u: log.append(u)) for u in ("x", "y", "z")}
    rows = {u: {"_warm_s": 1.0} for u in runs}  # slow units: one call each per round
    s = B.BenchSettings(rounds=3, unit_seconds=0.01)
    samples = B._interleave(runs, rows, s, progress=False)
    # each visit: one untimed call, then the timed one(s)
    assert log == [u for u in "xyzyzxzxy" for _ in range(2)]
    assert all(len(v) == 3 and all(t >= 0 for t in v) for v in samples.values())


def test_torch_fast_matches_eager():
    torch.manual_seed(0)
    model = B.realistic_batchnorm(create_model(SMALL))
    with torch.no_grad():  # BatchNorm far from identity, so the folding is really exercised
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.8, 1.25)
                m.bias.uniform_(-0.1, 0.1)
    x = torch.randn(3, 3, 128, 128)
    fast, how = B.fast_inference(model, x)
    assert how.startswith(("torch.compile", "TorchScript"))
    with torch.inference_mode():
        ref = model(x)
        got = fast(x)
    scale = float(ref.abs().max())
    assert scale > 0.1  # realistic logits, not vanishing activations
    assert float((got - ref).abs().max()) <= 1e-4 * max(1.0, scale)
    assert B._fast_vs_eager(model, lambda: fast(x), x.numpy()) <= 1e-4 * max(1.0, scale)
    with pytest.raises(RuntimeError, match="torch-fast differs from eager"):
        B._fast_vs_eager(model, lambda: fast(x) + 1e-3 * max(1.0, scale), x.numpy())
    if how.startswith("torch.compile"):
        # A dynamo reset (ExecuTorch's lowering does one) must not turn the next compile into an
        # unfrozen one: the frozen graph runs prepacked oneDNN convs, never aten::convolution.
        torch._dynamo.reset()
        with torch.inference_mode():
            fast(x)  # compiles again
            with torch.profiler.profile() as prof:
                got = fast(x)
        assert float((got - ref).abs().max()) <= 1e-4 * max(1.0, scale)
        assert "aten::convolution" not in {e.key for e in prof.key_averages()}
    # the TorchScript fallback (used where Inductor cannot compile) is exact too
    from mobilenets.deploy.fold import inference_network

    ts = B._torchscript_fast(inference_network(model).to(memory_format=torch.channels_last), x)
    with torch.inference_mode():
        assert float((ts(x) - ref).abs().max()) <= 1e-4 * max(1.0, scale)


def test_realistic_batchnorm_keeps_activations_in_scale():
    raw = create_model(SMALL).eval()
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        raw_f = raw.forward_features(x).abs().mean()
        cal_f = B.realistic_batchnorm(raw).forward_features(x).abs().mean()
    assert raw_f < 1e-6  # untrained statistics let activations vanish
    assert cal_f > 0.05


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
    rows = B.profile(SMALL, engines=["torch-eager", "onnxruntime"], runs=3, threads=1, progress=False)
    eager = _check_profile(rows, "torch-eager")
    assert eager["BN+act"]["time_ms"] > 0 and eager["FC"]["time_ms"] > 0
    ort = _check_profile(rows, "onnxruntime")
    assert ort["FC"]["time_ms"] > 0
    text = B.profile_text(rows)
    assert "pointwise" in text and "mult-adds %" in text


def test_all_models_plot_is_a_png(tmp_path):
    plt = pytest.importorskip("matplotlib.pyplot")
    out = tmp_path / "latency.png"
    models = ["mobilenet_v1_0.25_128", "mobilenet_v1_0.5_128"]
    rows = B.bench_all_models(models, engines=["torch-eager"], settings=quick(), plot=out, progress=False)
    assert [r["model"] for r in rows] == models and all(r["batch"] == 1 for r in rows)
    assert rows[0]["mult_adds"] < rows[1]["mult_adds"]
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = plt.imread(out)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    assert "mult-adds^k" in B.all_models_text(rows)


def test_scaling_fit_recovers_a_power_law():
    rows = [{"engine": "e", "mult_adds": m, "median_ms": 0.01 * m ** 0.7, "model": str(m)} for m in (1e6, 4e6, 1.6e7)]
    assert B.scaling_fit(rows)["e"] == pytest.approx(0.7)


def test_matmul_peak_positive_and_validated():
    assert B.matmul_peak("fp32", threads=1, size=256, repeats=1) > 1e8
    assert B.matmul_peak("int8", threads=1, size=256, repeats=1) > 1e8
    with pytest.raises(ValueError, match="precision"):
        B.matmul_peak("fp64", threads=1, size=256)


@pytest.mark.parametrize("argv, message", [
    (["bench", "--threads", "0", "--quick"], "threads must be an integer >= 1"),
    (["bench", "--engines", "torch-eager,nope", "--quick"], "unknown engine(s) nope"),
    (["bench", "--plot", "x.png", "--quick"], "--plot needs --all-models"),
    (["bench", "--all-models", "--plot", "x.jpg", "--quick"], "PNG"),
    (["bench", "--model", "mobilenet_v9", "--engines", "torch-eager", "--quick"], "unknown model"),
    (["profile", "--engines", "tflite"], "cannot profile tflite"),
    (["profile", "--runs", "0"], "runs must be an integer >= 1"),
])
def test_bad_input_is_one_line_exit_2(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith("mobilenet: error: ") and message in err and err.count("\n") == 1


@pytest.mark.slow
def test_bench_peers_full(capsys):
    code, out, _ = run(capsys, "bench", "--model", SMALL, "--peers", "--quick", "--threads", "1", "--json",
                       "--no-progress")
    assert code == 0
    rows = json.loads(out)
    assert {r["engine"] for r in rows if r["peer"]} == set(B.PEERS)
    assert all(r["peer"] is (r["engine"] in B.PEERS) for r in rows)
    assert {r["engine"] for r in rows} == set(B.OURS) | set(B.PEERS)
    for r in rows:
        assert r["status"] in ("ok", "unavailable")
        assert (r["median_ms"] is None) == (r["status"] == "unavailable")
        assert math.isfinite(r["median_ms"]) if r["median_ms"] is not None else r["note"]
    assert np.all([r["vs_fastest"] >= 1 for r in rows if r["median_ms"] is not None])


def test_bench_gives_the_callers_thread_count_back():
    """bench() times at settings.threads, but torch's thread count is process-wide: the caller's
    is restored (a bench test once left an xdist worker at 1 thread and changed a later model)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        B.bench(SMALL, engines=["torch-eager"], settings=quick(batch=1), progress=False)
        assert torch.get_num_threads() == 2
        B.profile_eager(create_model(SMALL).eval(), runs=1, threads=1)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(saved)
