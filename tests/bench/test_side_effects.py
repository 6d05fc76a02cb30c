"""``bench`` leaves the caller's process as it found it: torch's thread count, dynamo's caches
(touched only when a compiled engine runs), the random generators, the matplotlib backend, the
environment; and what third-party code prints is silenced unless asked for."""

import os
import random
import sys

import numpy as np
import pytest
import torch
import torch._dynamo.testing
from torch._dynamo.eval_frame import _debug_get_cache_entry_list

from mobilenets.bench import run as R
from mobilenets.bench.engines import build_torch_eager
from mobilenets.bench.profiling import profile, profile_eager
from mobilenets.bench.report import plot_latency
from mobilenets.bench.roofline import matmul_peak
from mobilenets.bench.timing import BenchSettings
from mobilenets.models.registry import create_model

SMALL = "mobilenet_v1_0.25_128"


def quick(**kw):
    return BenchSettings.quick(**{"threads": 1, "batch": 1, "rounds": 1, **kw})


@pytest.fixture
def caller_threads():
    """The caller runs at 3 torch threads (not the 1 that the benchmarks here ask for)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(3)
    yield 3
    torch.set_num_threads(saved)


def test_bench_and_profile_give_the_callers_thread_count_back(caller_threads):
    """torch's thread count is process-wide: a bench test once left an xdist worker at 1 thread
    and changed a later model's numbers."""
    R.bench(SMALL, engines=["torch-eager"], settings=quick(), progress=False)
    assert torch.get_num_threads() == caller_threads
    profile_eager(create_model(SMALL).eval(), runs=1, threads=1)
    assert torch.get_num_threads() == caller_threads
    profile(SMALL, engines=["torch-eager"], runs=1, threads=1, progress=False)
    assert torch.get_num_threads() == caller_threads
    matmul_peak("fp32", threads=1, size=64, repeats=1, refresh=True)
    assert torch.get_num_threads() == caller_threads


def test_threads_are_given_back_when_bench_fails(caller_threads, monkeypatch):
    def broken(ctx, batch):
        raise RuntimeError("boom")

    monkeypatch.setitem(R.BUILDERS, "torch-eager", broken)
    with pytest.raises(RuntimeError, match="boom"):
        R.bench(SMALL, engines=["torch-eager"], settings=quick(), progress=False)
    assert torch.get_num_threads() == caller_threads


def _caller_function():
    def add_one(x):
        return x + 1

    counter = torch._dynamo.testing.CompileCounter()
    return add_one, torch.compile(add_one, backend=counter), counter


def test_bench_leaves_dynamo_alone_without_compiled_engines():
    torch._dynamo.reset()
    add_one, compiled, counter = _caller_function()
    compiled(torch.ones(2))
    R.bench(SMALL, engines=["torch-eager"], settings=quick(), progress=False)
    compiled(torch.ones(2))
    assert counter.frame_count == 1  # the caller's compiled code survived: no recompile
    assert len(_debug_get_cache_entry_list(add_one.__code__)) == 1
    torch._dynamo.reset()


def test_bench_leaves_no_compiled_engine_behind(monkeypatch):
    """Around a compiled engine dynamo starts and ends empty: the engine's compiled code is not
    left in the caller's process (the documented cost: the caller's compiled code goes too)."""
    def engine_body(x):
        return x * 2

    def fake_compiled_engine(ctx, batch):  # a torch-compile stand-in that compiles in milliseconds
        fn = torch.compile(engine_body, backend="eager")
        fn(torch.ones(batch))
        return lambda: fn(torch.ones(batch))

    monkeypatch.setitem(R.BUILDERS, "torch-compile", fake_compiled_engine)
    torch._dynamo.reset()
    add_one, compiled, counter = _caller_function()
    compiled(torch.ones(2))
    rows = R.bench(SMALL, engines=["torch-compile"], settings=quick(), progress=False)
    assert rows[0]["status"] == "ok"
    assert _debug_get_cache_entry_list(engine_body.__code__) == []
    assert _debug_get_cache_entry_list(add_one.__code__) == []
    compiled(torch.ones(2))  # recompiles, and still computes the right thing
    assert counter.frame_count == 2
    torch._dynamo.reset()


def test_bench_keeps_the_callers_random_state():
    model = create_model(SMALL)  # (building a model draws from torch's generator, as any module does)
    torch_state, np_state, py_state = torch.get_rng_state(), np.random.get_state(), random.getstate()
    rows = R.bench(model, engines=["torch-eager", "timm-eager"], settings=quick(), progress=False)
    assert {r["status"] for r in rows} == {"ok"}
    assert torch.equal(torch.get_rng_state(), torch_state)  # timm's model is built seeded, on a fork
    assert random.getstate() == py_state
    now = np.random.get_state()
    assert now[0] == np_state[0] and np.array_equal(now[1], np_state[1]) and now[2:] == np_state[2:]


def test_plot_latency_keeps_the_callers_matplotlib_backend(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    saved = matplotlib.get_backend()
    plt.switch_backend("svg")  # a backend that is not the Agg the plot draws with
    try:
        rows = [{"engine": "e", "model": f"m{i}", "alpha": 1.0, "mult_adds": m, "median_ms": 0.01 * m ** 0.5}
                for i, m in enumerate((1e6, 4e6, 1.6e7))]
        out = plot_latency(rows, tmp_path / "p.png")
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert matplotlib.get_backend() == "svg"
    finally:
        plt.switch_backend(saved)


def test_third_party_output_is_silenced_unless_verbose(capfd, monkeypatch):
    def chatty(ctx, batch):  # an engine whose library prints, from Python and from C
        print("python chatter")
        os.write(2, b"C-level chatter\n")
        return build_torch_eager(ctx, batch)

    monkeypatch.setitem(R.BUILDERS, "torch-eager", chatty)
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    # as in a real process, sys.stdout and sys.stderr write to descriptors 1 and 2 (pytest's
    # capture replaces them with streams that have none; capfd reads the descriptors)
    for name, fd in (("stdout", 1), ("stderr", 2)):
        monkeypatch.setattr(sys, name, open(fd, "w", buffering=1, closefd=False))
    R.bench(SMALL, engines=["torch-eager"], settings=quick(), progress=False)
    out, err = capfd.readouterr()
    assert "chatter" not in out + err
    assert "TF_CPP_MIN_LOG_LEVEL" not in os.environ  # the silencer's setting is not left behind
    R.bench(SMALL, engines=["torch-eager"], settings=quick(), progress=False, verbose=True)
    out, err = capfd.readouterr()
    assert "python chatter" in out and "C-level chatter" in err
