"""What the browser benchmarks share: one page per configuration, loaded once, then timed in
interleaved rounds (``bench_web.py``, ``bench_web_forms.py``, ``bench_web_detect.py``).

Each page defines ``window.bench.time(n)`` (``n`` timed runs, their milliseconds) once it is ready,
and may set ``window.engineInfo``."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np


def open_pages(browser: Any, url: str, runs: list[dict], query: Callable[[dict], str],
               timeout_ms: int = 120_000) -> list[Any]:
    """A page per run, at ``url`` + ``query(run)``, waited for until ``window.bench`` exists; each
    run gets its ``engine_info`` and an empty ``times`` list."""
    pages = []
    for r in runs:
        page = browser.new_page()
        page.goto(url + query(r))
        page.wait_for_function("window.bench !== undefined", timeout=timeout_ms)
        r["engine_info"] = page.evaluate("window.engineInfo || ''")
        r["times"] = []
        pages.append(page)
    return pages


def time_rounds(runs: list[dict], pages: list[Any], rounds: int, per_round: int) -> None:
    """``rounds`` rounds, each running ``per_round`` timed runs on every page in turn (so that a slow
    moment of the machine touches every configuration alike); the times go to each run's ``times``."""
    for k in range(rounds):
        for r, page in zip(runs, pages):
            r["times"] += page.evaluate(f"window.bench.time({per_round})")
        print(f"round {k + 1}/{rounds}", file=sys.stderr)


def summarize(runs: list[dict], per: Callable[[dict], float] = lambda r: 1) -> None:
    """Replace each run's ``times`` by its median and p10/p90 (ms, divided by ``per(run)``)."""
    for r in runs:
        t = np.array(r.pop("times")) / per(r)
        r.update(median_ms=float(np.median(t)), p10_ms=float(np.percentile(t, 10)), p90_ms=float(np.percentile(t, 90)))
