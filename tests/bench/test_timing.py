"""Interleaved timing and the row arithmetic of ``bench``: round order, visits, the statistics
and ratios a row reports (recomputed here from known samples), settings validation."""

import pytest

from mobilenets.bench.run import EMPTY_TIMES, summarize
from mobilenets.bench.timing import BenchSettings, interleave, round_order, sample_stats, time_interleaved
from mobilenets.errors import MobileNetsError


def test_round_order_rotates_every_unit_through_every_position():
    units = ["a", "b", "c", "d"]
    orders = [round_order(units, r) for r in range(4)]
    assert orders[0] == units and orders[1] == ["b", "c", "d", "a"]
    for pos in range(4):
        assert sorted(o[pos] for o in orders) == units
    assert round_order(units, 5) == orders[1]
    assert round_order([], 3) == []


def test_interleave_runs_units_in_rotated_rounds():
    log = []
    runs = {u: (lambda u=u: log.append(u)) for u in ("x", "y", "z")}
    slow = {u: 1.0 for u in runs}  # slow units: one timed call each per visit
    samples = interleave(runs, slow, BenchSettings(rounds=3, unit_seconds=0.01))
    # each visit: one untimed call, then the timed one
    assert log == [u for u in "xyzyzxzxy" for _ in range(2)]
    assert all(len(v) == 3 and all(t >= 0 for t in v) for v in samples.values())


def test_interleave_sizes_visits_by_the_warm_call_time():
    calls = {"fast": 0, "slow": 0}
    runs = {u: (lambda u=u: calls.__setitem__(u, calls[u] + 1)) for u in calls}
    samples = interleave(runs, {"fast": 1e-3, "slow": 0.5}, BenchSettings(rounds=2, unit_seconds=0.01))
    assert len(samples["fast"]) == 2 * 10 and len(samples["slow"]) == 2 * 1  # 0.01 s / call time, >= 1
    assert calls == {"fast": 2 * 11, "slow": 2 * 2}  # plus one untimed call per visit


def test_sample_stats_and_time_interleaved():
    st = sample_stats([0.001, 0.002, 0.003, 0.004, 0.005])
    assert st["median_ms"] == pytest.approx(3.0)
    assert st["p10_ms"] == pytest.approx(1.4) and st["p90_ms"] == pytest.approx(4.6)  # linear interpolation
    assert st["samples"] == 5
    out = time_interleaved({"a": lambda: None, "b": lambda: sum(range(2000))},
                           BenchSettings(rounds=2, unit_seconds=0.002, warmup=1))
    assert set(out) == {"a", "b"} and all(v["samples"] >= 2 for v in out.values())
    assert out["a"]["median_ms"] < out["b"]["median_ms"]


def _row(engine, batch, precision="fp32", mult_adds=1_000_000):
    return {"engine": engine, "batch": batch, "precision": precision, "mult_adds": mult_adds,
            "status": "ok", "note": None}


def test_summarize_recomputes_every_column_from_the_samples():
    rows = [_row("a", 1), _row("b", 1), _row("c", 1), _row("a", 4), _row("b", 4, "int8", 3_000_000)]
    rows[2]["status"] = "unavailable"
    ms = [1e-3 * v for v in (1, 2, 3, 4, 5)]
    samples = {("a", 1): ms, ("b", 1): [2 * t for t in ms], ("a", 4): [4 * t for t in ms],
               ("b", 4): [3 * t for t in ms]}
    peaks = {"fp32": 1e11, "int8": 4e11}
    out = {(r["engine"], r["batch"]): r for r in summarize(rows, samples, peaks)}
    a1, b1, c1, a4, b4 = out[("a", 1)], out[("b", 1)], out[("c", 1)], out[("a", 4)], out[("b", 4)]
    assert (a1["median_ms"], a1["p10_ms"], a1["p90_ms"]) == (3.0, 1.4, 4.6)
    assert b1["median_ms"] == 6.0 and a4["median_ms"] == 12.0 and b4["median_ms"] == 9.0
    assert a1["spread_pct"] == pytest.approx(100 * (4.6 - 1.4) / 3.0, abs=0.05)
    assert a1["images_per_s"] == pytest.approx(1e3 / 3.0, abs=0.01)
    assert a4["images_per_s"] == pytest.approx(4e3 / 12.0, abs=0.01)
    # the ratio to the fastest median of the same batch size; unavailable rows take no part
    assert (a1["vs_fastest"], b1["vs_fastest"], c1["vs_fastest"]) == (1.0, 2.0, None)
    assert (a4["vs_fastest"], b4["vs_fastest"]) == (pytest.approx(12 / 9, abs=1e-3), 1.0)
    # the FLOP floor: 2 x mult-adds x batch at the peak of the row's own precision
    assert a4["floor_ms"] == pytest.approx(2 * 1e6 * 4 / 1e11 * 1e3, abs=1e-4)
    assert b4["floor_ms"] == pytest.approx(2 * 3e6 * 4 / 4e11 * 1e3, abs=1e-4)
    assert b4["floor_fraction"] == pytest.approx(b4["floor_ms"] / 9.0, abs=1e-4)
    assert (a4["peak_gops"], b4["peak_gops"]) == (100.0, 400.0)
    assert all(c1[k] == v for k, v in EMPTY_TIMES.items())
    assert rows[0].get("median_ms") is None  # the input rows are not changed


@pytest.mark.parametrize("field, value, message", [
    ("threads", 0, "threads must be an integer >= 1, got 0"),
    ("batch", 2.0, "batch must be an integer >= 1"),
    ("rounds", True, "rounds must be an integer >= 1"),
    ("warmup", -1, "warmup must be an integer >= 0"),
    ("unit_seconds", 0, "unit_seconds must be a number > 0"),
])
def test_settings_are_validated(field, value, message):
    s = BenchSettings(**{field: value})
    with pytest.raises(MobileNetsError, match=message):
        s.validate()


def test_quick_settings_are_a_short_run():
    q, full = BenchSettings.quick(threads=3), BenchSettings()
    assert q.validate() is q and q.threads == 3 and q.batch == 4
    assert q.rounds <= 2 and q.matmul_size <= 1024 and q.calibration_size < full.calibration_size
