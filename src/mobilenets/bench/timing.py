"""Interleaved timing: how ``mobilenet bench`` (and the demo) time several callables fairly.

Every round runs every unit (an engine at a batch size) in turn, the starting unit rotated each
round (:func:`round_order`), so that drift in machine load hits all alike. Each visit starts with
a 20 ms pause (the previous engine's spinning threads go to sleep) and one untimed call (this
engine's threads wake, its weights return to cache), then a few timed calls.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from mobilenets.errors import MobileNetsError


@dataclass
class BenchSettings:
    """How a benchmark runs: torch threads and the exported files' runtime threads (ONNX Runtime,
    TFLite, ExecuTorch; None: the same as torch's), the batch-N size, interleaved rounds, the time
    per unit per round (it sets the calls per visit), untimed warm-up calls, the int8 exports'
    calibration images and the size of the GEMMs that measure the peak."""

    threads: int = 2
    engine_threads: int | None = None
    batch: int = 8
    rounds: int = 10
    unit_seconds: float = 0.25
    warmup: int = 3
    calibration_size: int = 64
    matmul_size: int = 4096

    @classmethod
    def quick(cls, threads: int = 2, batch: int = 4, **changes: Any) -> BenchSettings:
        """A smoke run's settings: 2 rounds, short visits, 16 calibration images, 1024² GEMMs;
        ``changes`` override any of them."""
        settings = dict(threads=threads, batch=batch, rounds=2, unit_seconds=0.03, warmup=1, calibration_size=16,
                        matmul_size=1024)
        return cls(**{**settings, **changes})

    @property
    def runtime_threads(self) -> int:
        """The CPU threads of ONNX Runtime, TFLite and ExecuTorch: ``engine_threads``, else ``threads``."""
        return self.threads if self.engine_threads is None else self.engine_threads

    def validate(self) -> BenchSettings:
        """``self``, once every field is checked (integers >= 1, ``warmup`` >= 0, positive
        ``unit_seconds``); else :class:`~mobilenets.errors.MobileNetsError`."""
        for f in fields(self):
            if f.name == "unit_seconds":
                value = getattr(self, f.name)
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                    raise MobileNetsError(f"{f.name} must be a number > 0, got {value!r}")
            elif not (f.name == "engine_threads" and self.engine_threads is None):
                check_int(f.name, getattr(self, f.name), 0 if f.name == "warmup" else 1)
        return self


def check_int(name: str, value: Any, low: int = 1) -> int:
    """``value`` if it is an integer >= ``low``; else :class:`~mobilenets.errors.MobileNetsError`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise MobileNetsError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


def round_order(units: Sequence[Any], round_index: int) -> list[Any]:
    """The order of the units in round ``round_index``: all of them, the start rotated by one
    each round, so every unit runs first, second, ... equally often."""
    if not units:
        return []
    k = round_index % len(units)
    return list(units[k:]) + list(units[:k])


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile of ``values`` (numpy's linear interpolation)."""
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def sample_stats(seconds: Sequence[float]) -> dict[str, float]:
    """Median, p10 and p90 (in ms) of per-call times in seconds, and their count."""
    return {"median_ms": statistics.median(seconds) * 1e3, "p10_ms": percentile(seconds, 10) * 1e3,
            "p90_ms": percentile(seconds, 90) * 1e3, "samples": len(seconds)}


def progress_bar(total: int, desc: str, enabled: bool) -> Any:
    """A tqdm bar on stderr (a no-op one when not ``enabled``)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="step", disable=not enabled, file=sys.stderr, leave=False)


def warm_up(run: Callable[[], Any], calls: int) -> float:
    """Call ``run`` ``calls`` times (at least once), untimed for the results; the mean seconds a
    call, which sets how many calls a timing visit makes."""
    calls = max(calls, 1)
    t = time.perf_counter()
    for _ in range(calls):
        run()
    return (time.perf_counter() - t) / calls


def interleave(runs: dict[Hashable, Callable[[], Any]], call_seconds: dict[Hashable, float], settings: BenchSettings,
               progress: bool = False) -> dict[Hashable, list[float]]:
    """The per-call times (seconds) of each of ``runs`` over ``settings.rounds`` interleaved
    rounds. ``call_seconds`` (from :func:`warm_up`) sizes each visit to ~``unit_seconds``
    (1 to 50 calls)."""
    units = list(runs)
    calls = {u: max(1, min(50, int(settings.unit_seconds / max(call_seconds.get(u, 1e-3), 1e-6)))) for u in units}
    samples: dict[Hashable, list[float]] = {u: [] for u in units}
    bar = progress_bar(settings.rounds * sum(calls.values()), "timing", progress)
    for r in range(settings.rounds):
        for u in round_order(units, r):
            run = runs[u]
            time.sleep(0.02)  # let the previous engine's spinning worker threads go to sleep
            run()  # untimed: wakes this engine's threads and refills caches after the previous engine
            for _ in range(calls[u]):
                t = time.perf_counter()
                run()
                samples[u].append(time.perf_counter() - t)
            bar.update(calls[u])
    bar.close()
    return samples


def time_interleaved(runs: dict[str, Callable[[], Any]], settings: BenchSettings | None = None,
                     progress: bool = False) -> dict[str, dict[str, float]]:
    """Time ready-made callables the way :func:`mobilenets.bench.run.bench` times its engines
    (warm-up, then interleaved rounds); returns ``{name: {"median_ms", "p10_ms", "p90_ms",
    "samples"}}``."""
    s = (settings or BenchSettings()).validate()
    call_seconds = {name: warm_up(run, s.warmup) for name, run in runs.items()}
    samples = interleave(runs, call_seconds, s, progress)
    return {name: sample_stats(ts) for name, ts in samples.items()}
