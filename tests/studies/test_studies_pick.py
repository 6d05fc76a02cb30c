"""pick: budgets, the frontier, the pick's optimality, the cache, and one-line errors."""

import json
import time

import pytest

import mobilenets.studies.pick as pick_module
from mobilenets.cli.main import main
from mobilenets.errors import MobileNetsError
from mobilenets.studies.pick import candidates, machine_key, pareto, pick


@pytest.fixture
def cached(tmp_path, monkeypatch):
    """A cache that holds made-up times of all 16 paper models (eager, 2 threads); timing anything
    would be a bug in these tests, so bench raises."""
    folder = tmp_path / "cache" / "pick"
    folder.mkdir(parents=True)
    times = {}
    for i, c in enumerate(candidates("paper")):
        # latency grows with mult-adds, with a wobble so that the frontier is not every model
        ms = c["mult_adds"] / 50e6 + (0.7 if i % 3 == 0 else 0.0)
        times[c["model"]] = {"median_ms": ms, "p10_ms": ms * 0.9, "p90_ms": ms * 1.2, "measured": "test"}
    (folder / f"{machine_key('torch-eager', 2)}.json").write_text(json.dumps({"times": times}))

    def no_timing(*args, **kwargs):
        raise AssertionError("timed although everything is cached")

    monkeypatch.setattr("mobilenets.bench.run.bench", no_timing)
    monkeypatch.setenv("MOBILENETS_CACHE", str(tmp_path / "cache"))
    return folder


@pytest.mark.parametrize("budget", [2.0, 5.0, 9.0, 20.0])
@pytest.mark.parametrize("source", ["paper", "slim"])
def test_pick_is_the_best_within_budget_and_on_the_frontier(cached, budget, source):
    r = pick(budget, "torch-eager", accuracy_from=source, margin=0.1)
    inside = [c for c in r["candidates"] if c["latency_ms"] <= 0.9 * budget]
    assert r["model"] == max(inside, key=lambda c: c["predicted_top1"])["model"]
    assert r["latency_ms"] <= 0.9 * budget
    assert r["model"] in [f["model"] for f in r["frontier"]]
    better = [f for f in r["frontier"] if f["latency_ms"] <= 0.9 * budget and f["predicted_top1"] > r["predicted_top1"]]
    assert better == []
    assert r["timed_now"] == [] and any(c.startswith("mobilenet train --data DIR") for c in r["commands"])


def test_frontier_is_pareto():
    rows = [{"model": m, "latency_ms": ms, "predicted_top1": a} for m, ms, a in
            [("a", 1, 50), ("b", 2, 49), ("c", 3, 60), ("d", 3, 55), ("e", 5, 70)]]
    assert [r["model"] for r in pareto(rows)] == ["a", "c", "e"]


def test_static_budgets_filter_before_timing(cached):
    r = pick(None, "torch-eager", params=1.5e6, mult_adds=100e6)
    assert all(c["params"] <= 1.5e6 and c["mult_adds"] <= 100e6 for c in r["candidates"])
    assert r["model"] == "mobilenet_v1_0.5_160"  # 76.5M mult-adds; 0.5-192 has 110M
    sized = pick(None, "torch-eager", size_mb=6.0)  # fp32: 4 bytes a weight; 0.5: 5.4 MB, 0.75: 10.3 MB
    assert all(c["size_mb"] <= 6.0 for c in sized["candidates"]) and sized["model"].startswith("mobilenet_v1_0.5")


def test_bad_budgets_are_one_line_each(cached, capsys):
    with pytest.raises(MobileNetsError, match="latency_ms must be a number > 0, got -3"):
        pick(-3, "torch-eager")
    with pytest.raises(MobileNetsError, match="unknown engine"):
        pick(3, "no-such-engine")
    with pytest.raises(MobileNetsError, match="no candidate meets params=1000"):
        pick(3, "torch-eager", params=1000)
    assert pick(0.01, "torch-eager")["model"] is None
    for argv, message in ((["--latency-ms", "-1"], "--latency-ms must be a number > 0"),
                          (["--latency-ms", "3", "--engine", "warp-drive"], "unknown engine"),
                          (["--latency-ms", "0.01"], "no candidate meets --latency-ms 0.01"),
                          (["--latency-ms", "3", "--size-mb", "0.1"], "no candidate meets --size-mb 0.1"),
                          (["--latency-ms", "3", "--engine", "timm-eager"], "peer")):
        engine = [] if "--engine" in argv else ["--engine", "torch-eager"]
        code = main(["pick", *argv, *engine, "--plot", "none", "--json", "--no-progress"])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and message in err, (argv, err)


def test_cli_json_and_plot(cached, tmp_path, capsys):
    t = time.perf_counter()
    code = main(["pick", "--latency-ms", "6", "--engine", "torch-eager", "--plot", str(tmp_path / "p.png"), "--json"])
    assert code == 0 and time.perf_counter() - t < 5  # cached: no timing
    out = json.loads(capsys.readouterr().out)
    assert set(out) >= {"model", "alpha", "resolution", "latency_ms", "predicted_top1", "frontier"}
    assert out["latency_ms"] <= 6 * 0.9 and (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_measure_times_only_what_is_missing(tmp_path, monkeypatch):
    calls = []

    def fake_bench(cfg, **kwargs):
        calls.append((cfg.alpha, cfg.resolution))
        return [{"median_ms": cfg.alpha * 10, "p10_ms": 1.0, "p90_ms": 2.0}]

    monkeypatch.setattr("mobilenets.bench.run.bench", fake_bench)
    two = candidates("paper")[:2]
    first = pick_module.measure(two, "onnxruntime", cache=tmp_path)
    again = pick_module.measure(candidates("paper")[:3], "onnxruntime", cache=tmp_path)
    assert first["timed"] == [c["model"] for c in two] and len(again["timed"]) == 1 and len(calls) == 3


def test_candidates_are_counted_directly_and_named_as_the_registry_names(tmp_path, monkeypatch):
    """No on-disk cost cache: the counts are the counter's own (so a fix to the counter is seen at
    once), the names are the registry's, and nothing is written."""
    from mobilenets.cost.count import analytical_cost
    from mobilenets.models.registry import get_config

    monkeypatch.setenv("MOBILENETS_CACHE", str(tmp_path / "cache"))
    for c in candidates("fine"):
        counted = analytical_cost(get_config("mobilenet_v1_1.0_224", alpha=c["alpha"], resolution=c["resolution"]))
        assert (c["mult_adds"], c["params"], c["params_total"]) == (counted.mult_adds, counted.params,
                                                                     counted.params_total)
        if c["alpha"] in (1.0, 0.75, 0.5, 0.25) and c["resolution"] in (224, 192, 160, 128):
            assert get_config(c["model"]).alpha == c["alpha"]  # a registry name, e.g. mobilenet_v1_1.0_224
    assert not (tmp_path / "cache").exists()


def test_candidates_load_no_torch():
    import subprocess
    import sys

    code = ("import sys\nfrom mobilenets.studies.pick import candidates\ncandidates('fine')\n"
            "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
