"""``pick``: which MobileNet fits a budget on this machine, and what accuracy to expect from it.

The candidates are α x resolution (the paper's 16, or a finer grid), 1000 ImageNet classes.
Budgets on parameters, mult-adds and file size are checked from our counter before anything is
timed; the candidates left are timed at batch 1 in the asked engine by the bench package
(:func:`mobilenets.bench.run.bench`, its interleaved timing), and the times are cached per
machine, engine and thread count (``cache_dir("pick")``: ``~/.cache/mobilenets/pick/`` by default,
see :mod:`mobilenets.utils.cache`), so a second query times only
what is missing. Accuracy is predicted from a source (:class:`~mobilenets.studies.accuracy.Predictor`:
the paper's printed Tables 6-7, the TF-slim table, or run folders; the log-linear fit of Figure 4
where the source lacks a model). The frontier is the Pareto set (faster, or more accurate); the
pick is the most accurate candidate inside every budget, its median latency with ``margin``
headroom, because a shared machine's re-measurement can come out a little slower.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mobilenets.cost.count import analytical_cost
from mobilenets.errors import MobileNetsError, arg, from_cli
from mobilenets.models.config import MobileNetConfig
from mobilenets.models.registry import model_name
from mobilenets.utils.cache import cache_dir

GRIDS = {
    "paper": ((1.0, 0.75, 0.5, 0.25), (224, 192, 160, 128)),
    "fine": ((1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25), (224, 208, 192, 176, 160, 144, 128)),
}
BYTES_PER_WEIGHT = {"fp32": 4, "bf16": 2, "int8": 1}


def machine_key(engine: str, threads: int) -> str:
    """What a cached time belongs to: this CPU and host, the engines' package versions, the engine
    and the thread count. Read without importing any engine, so a cached query stays quick."""
    from importlib import metadata

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), cpu)
    except OSError:
        pass
    versions = []
    for pkg in ("torch", "onnxruntime", "tensorflow-cpu", "tensorflow", "executorch"):
        try:
            versions.append(f"{pkg}={metadata.version(pkg)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{pkg}=-")
    ident = "|".join([cpu, str(os.cpu_count()), platform.node(), *versions])
    return f"{hashlib.sha1(ident.encode()).hexdigest()[:12]}-{engine}-t{threads}"


def check_budgets(latency_ms: float | None, params: float | None, mult_adds: float | None,
                  size_mb: float | None) -> None:
    """Each budget given is a finite number > 0 (one line naming the bad one)."""
    for name, value in (("latency_ms", latency_ms), ("params", params), ("mult_adds", mult_adds), ("size_mb", size_mb)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise MobileNetsError(f"{arg(name)} must be a number > 0, got {value!r}")


def candidates(grid: str = "paper") -> list[dict[str, Any]]:
    """The grid's models with our counter's cost (1000 classes)."""
    if grid not in GRIDS:
        raise MobileNetsError(f"unknown grid {grid!r}; choose one of {', '.join(GRIDS)}")
    alphas, sizes = GRIDS[grid]
    out = []
    for a in alphas:
        for r in sizes:
            # counted from the formulas every time (torch-free, well under a millisecond a model)
            cost = analytical_cost(MobileNetConfig(alpha=a, resolution=r, num_classes=1000))
            out.append({"model": model_name(a, r), "alpha": a, "resolution": r, "mult_adds": cost.mult_adds,
                        "params": cost.params, "params_total": cost.params_total})
    return out


def measure(cands: Sequence[dict[str, Any]], engine: str, threads: int = 2, rounds: int = 3,
            progress: bool = True, verbose: bool = False, cache: str | os.PathLike | None = None) -> dict[str, Any]:
    """Batch-1 times of ``cands`` in ``engine`` ({model: {"median_ms", "p10_ms", "p90_ms"}}), from
    the cache where there, else timed now (and cached); ``"timed"`` lists what was timed now."""
    folder = Path(cache) if cache is not None else cache_dir("pick")
    path = folder / f"{machine_key(engine, threads)}.json"
    try:
        cached = json.loads(path.read_text()) if path.is_file() else {}
    except ValueError:
        cached = {}  # a cache cut mid-write is only lost time: measure again
    times = cached.get("times", {})
    todo = [c for c in cands if c["model"] not in times]
    if not todo:  # all cached: nothing of the bench stack (torch engines, ONNX, ...) is loaded
        return {"times": times, "timed": [], "cache": str(path)}
    from mobilenets.bench.run import bench
    from mobilenets.bench.timing import BenchSettings, progress_bar

    # Short visits, few rounds: the machine is shared, and the pick needs ranks and a budget
    # check, not a benchmark; the small matmul keeps the bench's peak measurement cheap.
    settings = BenchSettings(threads=threads, batch=1, rounds=rounds, unit_seconds=0.1, warmup=2,
                             calibration_size=16, matmul_size=512)
    bar = progress_bar(len(todo), f"timing candidates ({engine})", progress)
    for c in todo:
        cfg = MobileNetConfig(alpha=c["alpha"], resolution=c["resolution"], num_classes=1000)
        row = bench(cfg, engines=[engine], settings=settings, progress=False, check=False, verbose=verbose)[0]
        if row["median_ms"] is None:
            raise MobileNetsError(f"engine {engine} cannot run here: {row.get('note')}")
        times[c["model"]] = {k: row[k] for k in ("median_ms", "p10_ms", "p90_ms")}
        times[c["model"]]["measured"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"engine": engine, "threads": threads, "rounds": rounds, "times": times}, indent=1))
        os.replace(tmp, path)  # after every model: a killed first query keeps what it timed
        bar.update()
    bar.close()
    return {"times": times, "timed": [c["model"] for c in todo], "cache": str(path)}


def pareto(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows no other row beats on both latency (lower) and predicted top-1 (higher), by latency."""
    out, best = [], -math.inf
    for r in sorted(rows, key=lambda r: (r["latency_ms"], -r["predicted_top1"])):
        if r["predicted_top1"] > best:
            out.append(r)
            best = r["predicted_top1"]
    return out


def commands(row: dict[str, Any], engine: str) -> list[str]:
    """How to get the picked model: convert the TF-slim checkpoint or train it, then export it."""
    from mobilenets.studies.accuracy import SLIM_TOP1

    name, int8 = row["model"], engine.endswith("int8")
    fmt = {"onnx": "onnx", "tfli": "tflite", "exec": "executorch"}.get(engine[:4])
    lines = []
    if (row["alpha"], row["resolution"]) in SLIM_TOP1:
        lines.append(f"mobilenet convert {name}.ckpt --from tf-slim --output weights/{name}   # the TF-slim checkpoint")
    lines.append(f"mobilenet train --data DIR --alpha {row['alpha']:g} --resolution {row['resolution']} "
                 f"--output runs/{name}   # or train it")
    if fmt:
        suffix = {"onnx": "onnx", "tflite": "tflite", "executorch": "pte"}[fmt]
        lines.append(f"mobilenet export --checkpoint weights/{name} --output {name}{'-int8' if int8 else ''}.{suffix}"
                     f"{' --int8 --calibration DIR' if int8 else ''}")
    else:
        lines.append(f"(engine {engine} runs the PyTorch model itself: load weights/{name} with "
                     f"mobilenets.weights.checkpoint.load_model)")
    return lines


def pick(latency_ms: float | None = None, engine: str = "onnxruntime", *, params: float | None = None,
         mult_adds: float | None = None, size_mb: float | None = None, accuracy_from: str | Sequence[str] = "paper",
         grid: str = "paper", engine_threads: int = 2, rounds: int = 3, margin: float = 0.1,
         plot: str | os.PathLike | None = None,
         progress: bool = True, verbose: bool = False, cache: str | os.PathLike | None = None) -> dict[str, Any]:
    """The most accurate candidate of ``grid`` within every budget given (``latency_ms`` in
    ``engine`` on this machine, its median at most ``(1 - margin) x latency_ms``; ``params`` and
    ``mult_adds`` in units, our counter's convention; ``size_mb`` the weights at the engine's
    precision, 10^6 bytes), predicted top-1 from ``accuracy_from``; the engine runs on
    ``engine_threads`` CPU threads; ``plot``: a PNG path, or None for no plot. Returns the pick (``model``
    None when nothing fits the latency budget), the frontier, the candidates and the commands."""
    from mobilenets.bench.catalog import OURS, PRECISION, resolve_engines
    from mobilenets.studies.accuracy import Predictor

    check_budgets(latency_ms, params, mult_adds, size_mb)
    resolve_engines([engine])  # an unknown engine: one line, before anything runs
    if engine not in OURS:
        raise MobileNetsError(f"engine {engine!r} is a peer's model; pick times ours: {', '.join(OURS)}")
    if not (isinstance(margin, (int, float)) and 0 <= margin < 1):
        raise MobileNetsError(f"{arg('margin')} must be in [0, 1), got {margin!r}")
    predictor = Predictor(accuracy_from)
    per_weight = BYTES_PER_WEIGHT[PRECISION[engine]]
    cands = candidates(grid)
    for c in cands:
        c["size_mb"] = c["params_total"] * per_weight / 1e6
        c["predicted_top1"], c["prediction"] = predictor.predict(c["alpha"], c["resolution"], c["mult_adds"])
    static = [c for c in cands if (params is None or c["params"] <= params) and
              (mult_adds is None or c["mult_adds"] <= mult_adds) and (size_mb is None or c["size_mb"] <= size_mb)]
    if not static:
        smallest = min(cands, key=lambda c: c["params"])
        raise MobileNetsError(f"no candidate meets {_budget_text(None, params, mult_adds, size_mb)}: the smallest, "
                              f"{smallest['model']}, has {smallest['params'] / 1e6:.3f}M params, "
                              f"{smallest['mult_adds'] / 1e6:.1f}M mult-adds, {smallest['size_mb']:.2f} MB")
    started = time.perf_counter()
    measured = measure(static, engine, engine_threads, rounds, progress, verbose, cache)
    for c in static:
        t = measured["times"][c["model"]]
        c.update(latency_ms=t["median_ms"], p10_ms=t["p10_ms"], p90_ms=t["p90_ms"])
    limit = None if latency_ms is None else latency_ms * (1 - margin)
    inside = [c for c in static if limit is None or c["latency_ms"] <= limit]
    frontier = pareto(static)
    best = max(inside, key=lambda c: (c["predicted_top1"], -c["latency_ms"])) if inside else None
    result = {"model": best["model"] if best else None, "alpha": best["alpha"] if best else None,
              "resolution": best["resolution"] if best else None,
              "latency_ms": best["latency_ms"] if best else None,
              "predicted_top1": best["predicted_top1"] if best else None,
              "frontier": [_short(c) for c in frontier],
              "engine": engine, "threads": engine_threads, "budget": {"latency_ms": latency_ms, "params": params,
                                                                "mult_adds": mult_adds, "size_mb": size_mb},
              "margin": margin, "accuracy_from": predictor.source, "fit": predictor.fit.describe("M mult-adds"),
              "candidates": [_short(c) for c in static], "timed_now": measured["timed"], "cache": measured["cache"],
              "seconds": round(time.perf_counter() - started, 2)}
    if best is None:
        fastest = min(static, key=lambda c: c["latency_ms"])
        result["none_fits"] = (f"no candidate meets {_budget_text(latency_ms, None, None, None)} in {engine} (with {margin:.0%} "
                               f"headroom, <= {limit:.3g} ms): the fastest, {fastest['model']}, takes "
                               f"{fastest['latency_ms']:.3g} ms")
    else:
        result["pick"] = _short(best)
        result["commands"] = commands(best, engine)
    if plot is not None:
        result["plot"] = str(plot_pick(static, frontier, best, latency_ms, engine, plot))
    return result


def _short(c: dict[str, Any]) -> dict[str, Any]:
    keys = ("model", "alpha", "resolution", "latency_ms", "p10_ms", "p90_ms", "predicted_top1", "prediction",
            "mult_adds", "params", "size_mb")
    return {k: c[k] for k in keys if k in c}


def _budget_text(latency_ms, params, mult_adds, size_mb) -> str:
    parts = [f"{arg(k)} {v:g}" if from_cli() else f"{k}={v:g}" for k, v in (("latency_ms", latency_ms), ("params", params), ("mult_adds", mult_adds),
                                       ("size_mb", size_mb)) if v is not None]
    return ", ".join(parts) or "no budget"


def plot_pick(rows, frontier, best, latency_ms, engine: str, path: str | os.PathLike) -> Path:
    """Predicted top-1 against measured latency: every candidate, the frontier, the pick and the budget."""
    from mobilenets.bench.report import check_plot_path
    from mobilenets.utils.scoped import matplotlib_backend

    check_plot_path(path)
    with matplotlib_backend("Agg") as plt:
        fig, ax = plt.subplots(figsize=(7.5, 5))
        ax.scatter([r["latency_ms"] for r in rows], [r["predicted_top1"] for r in rows], color="0.6", s=18,
                   label="candidates")
        for r in rows:
            ax.annotate(f"{r['alpha']:g}-{r['resolution']}", (r["latency_ms"], r["predicted_top1"]), fontsize=6,
                        xytext=(3, -8), textcoords="offset points", color="0.4")
        ax.plot([r["latency_ms"] for r in frontier], [r["predicted_top1"] for r in frontier], "o-", color="tab:blue",
                ms=4, label="Pareto frontier")
        if latency_ms is not None:
            ax.axvline(latency_ms, color="tab:red", ls="--", label=f"budget {latency_ms:g} ms")
        if best is not None:
            ax.scatter([best["latency_ms"]], [best["predicted_top1"]], marker="*", s=220, color="tab:orange", zorder=4,
                       label=f"pick {best['model']}")
        ax.set_xscale("log")
        ax.set_xlabel(f"measured batch-1 latency, {engine} (ms, log scale)")
        ax.set_ylabel("predicted ImageNet top-1 (%)")
        ax.set_title("pick: predicted accuracy vs latency on this machine")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
    return Path(path)


def pick_text(result: dict[str, Any]) -> str:
    lines = [f"candidates timed in {result['engine']} ({result['threads']} threads) on this machine; "
             f"{len(result['timed_now'])} timed now, the rest from {result['cache']}",
             f"predicted top-1 from {result['accuracy_from']}: {result['fit']}",
             "Pareto frontier (faster or more accurate than every other candidate):",
             f"  {'model':<24} {'ms':>8} {'p10-p90':>15} {'top-1':>7} {'how':<10} {'M mult-adds':>11} "
             f"{'M params':>8} {'MB':>6}"]
    for r in result["frontier"]:
        mark = " <- pick" if r["model"] == result["model"] else ""
        lines.append(f"  {r['model']:<24} {r['latency_ms']:8.3f} {r['p10_ms']:7.3f}-{r['p90_ms']:<7.3f} "
                     f"{r['predicted_top1']:6.1f}% {r['prediction']:<10} {r['mult_adds'] / 1e6:11.1f} "
                     f"{r['params'] / 1e6:8.3f} {r['size_mb']:6.2f}{mark}")
    b = result["budget"]
    budget = _budget_text(b["latency_ms"], b["params"], b["mult_adds"], b["size_mb"])
    if result["model"] is None:
        lines.append(f"pick: none ({result['none_fits']})")
    else:
        lines.append(f"pick for {budget} (latency with {result['margin']:.0%} headroom): {result['model']}, "
                     f"{result['latency_ms']:.3f} ms, predicted top-1 {result['predicted_top1']:.1f}%")
        lines += ["  " + c for c in result["commands"]]
    if result.get("plot"):
        lines.append(f"plot: {result['plot']}")
    return "\n".join(lines)


__all__ = ["GRIDS", "candidates", "check_budgets", "measure", "pareto", "pick", "pick_text", "plot_pick"]
