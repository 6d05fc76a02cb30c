"""``bench()``: the inference latency of one MobileNet in every engine asked for, and of the whole
paper family (:func:`bench_all_models`).

The model is a registry name or config (random weights with BatchNorm statistics from random
images), a MobileNet, any checkpoint (run folder, model folder, converted weights), or an
exported file, which is timed itself (:mod:`mobilenets.bench.exported`). Engines are built only
when asked for; one that cannot be built (ExecuTorch not installed, ...) gives a row with
``status`` "unavailable" and the reason, not an error. Timing is interleaved
(:mod:`mobilenets.bench.timing`). Each row reports the median, p10 and p90 of the per-call times,
images/s, the ratio to the fastest engine at that batch size, and the fraction of the FLOP floor
it reaches: ``2 x mult-adds x batch / peak``, with the peak of the row's precision measured
before the timing (:func:`mobilenets.bench.roofline.hardware_peaks`: the best of the GEMM
libraries).

Nothing of the caller's process is left changed: torch's thread count is restored, dynamo's
caches are emptied around the compiled engines only (see :func:`bench`), third-party output is
silenced unless ``verbose``.
"""

from __future__ import annotations

import contextlib
import os
import platform
import tempfile
import time
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mobilenets.bench.catalog import (
    ALL_MODELS_ENGINES,
    COMPILED,
    DESCRIPTION,
    NATIVE,
    PEERS,
    PRECISION,
    resolve_engines,
)
from mobilenets.bench.engines import (
    OUR_BUILDERS,
    RANDOM_WEIGHTS,
    BenchContext,
    EngineUnavailable,
    Run,
    build_exported_file,
    load_model,
    model_label,
    weights_label,
)
from mobilenets.bench.exported import ExportedFile, exported_format, open_exported
from mobilenets.bench.peers import PEER_BUILDERS, peer_config
from mobilenets.bench.roofline import hardware_peaks
from mobilenets.bench.timing import BenchSettings, interleave, progress_bar, sample_stats, warm_up
from mobilenets.cost.count import analytical_cost
from mobilenets.errors import MobileNetsError
from mobilenets.models.config import MobileNetConfig
from mobilenets.models.mobilenet import MobileNet
from mobilenets.utils.scoped import fresh_dynamo, quiet_output, torch_threads

BUILDERS: dict[str, Callable[[BenchContext, int], Run]] = {**OUR_BUILDERS, **PEER_BUILDERS}
EMPTY_TIMES = {"median_ms": None, "p10_ms": None, "p90_ms": None, "spread_pct": None, "images_per_s": None,
               "samples": 0, "floor_ms": None, "floor_fraction": None, "peak_gops": None}


def file_engines(f: ExportedFile, engines: Iterable[str] | None, peers: bool) -> list[str]:
    """An exported file runs as its own engine; ``engines`` may add peers only."""
    named = resolve_engines(engines, peers) if engines is not None else [p for p in PEERS if peers]
    others = [e for e in named if e not in PEERS and e != f.engine]
    if others:
        raise MobileNetsError(f"{f.path} is timed as itself ({f.engine}); engines= may add only the peers "
                              f"{', '.join(PEERS)}, not {', '.join(others)}")
    return [f.engine] + [e for e in named if e in PEERS]


def bench(model: str | MobileNetConfig | MobileNet | Mapping[str, Any] | None = None, *,
          engines: Iterable[str] | None = None, peers: bool = False, settings: BenchSettings | None = None,
          checkpoint: str | os.PathLike | None = None, calibration: str | os.PathLike | None = None,
          int8_method: str = "auto", progress: bool = True, check: bool = True,
          verbose: bool = False) -> list[dict[str, Any]]:
    """Time ``model`` (a registry name or config, default ``mobilenet_v1_1.0_224``; a
    MobileNet; or with ``checkpoint`` what that checkpoint must be: a name, config or mapping of
    config fields) in every engine of ``engines`` (default: all of ours; ``peers`` adds timm's and
    Keras's), at batch 1 and ``settings.batch``. ``checkpoint`` is any checkpoint, run folder or
    converted model folder (its weights are timed), or an exported file (``.onnx``, ``.tflite``,
    ``.pte``, TorchScript), timed itself as the one engine of its format beside any peers. Returns
    one row per (engine, batch); see the module doc. ``calibration`` (a folder of images, or
    "digits") calibrates the int8 exports; default the data the checkpoint records, else the
    built-in digits (the int8 rows say so: it is their latency, not their accuracy, that is
    measured here); ``int8_method``: their label-free remedy, as ``export``'s (``"auto"``: the export
    tries each and keeps the best; the graph is the same whichever, so the latency should be). ``check`` compares the fast paths' logits with eager's (a wrong fast path is
    not timed); ``verbose`` lets third-party libraries print (TensorFlow, ExecuTorch, ...)."""
    s = (settings or BenchSettings()).validate()
    exported = open_exported(checkpoint, model) if checkpoint is not None and exported_format(checkpoint) else None
    if exported is not None:
        names, net, weights = file_engines(exported, engines, peers), None, f"exported file {exported.path}"
    else:
        names = resolve_engines(engines, peers)
        net = load_model(model, checkpoint)
        weights = weights_label(net, checkpoint) if isinstance(model, MobileNet) or checkpoint is not None else RANDOM_WEIGHTS
    batches = [1] if s.batch == 1 else [1, s.batch]
    # Dynamo's caches are process-wide. Around the compiled engines they are emptied on entry (so
    # that dynamo's limit on compilations per function, beyond which it silently runs eager, is
    # never reached by earlier compiles) and on exit (no compiled engine stays behind). What the
    # reset costs the caller: functions it compiled before recompile on their next call (seconds
    # each, same results); so a benchmark without compiled engines leaves the caches alone.
    # (ExecuTorch's lowering resets dynamo itself: the executorch engines cost the same.)
    compiled = fresh_dynamo() if any(n in COMPILED for n in names) else contextlib.nullcontext()
    with torch_threads(s.threads), compiled, tempfile.TemporaryDirectory(prefix="mobilenet-bench-") as workdir:
        ctx = BenchContext(net, s, workdir, verbose, exported=exported, checkpoint=checkpoint if net is not None else None,
                           calibration=calibration, int8_method=int8_method)
        rows, runs, call_seconds = build_engines(ctx, names, batches, progress, verbose)
        for row in rows.values():
            row["weights"] = weights if not row["peer"] else "random (the peer's own model)"
        if check and net is not None:
            check_fast_paths(net, ctx, rows, runs, batches)
        precisions = sorted({r["precision"] for r in rows.values()})
        # measured again for this bench (refresh); the best of this process's measurements counts,
        # since a busy machine only lowers one
        peaks = hardware_peaks(precisions, s.threads, s.matmul_size, refresh=True)
        samples = interleave(runs, call_seconds, s, progress)
    out = summarize(list(rows.values()), samples, {p: v.ops_per_s for p, v in peaks.items()},
                    {p: v.describe() for p, v in peaks.items()})
    if not any(r["median_ms"] is not None for r in out):
        notes = "; ".join(dict.fromkeys(f"{r['engine']}: {r['note']}" for r in out))
        raise MobileNetsError(f"no engine could run: {notes}")
    return out


def build_engines(ctx: BenchContext, names: Sequence[str], batches: Sequence[int], progress: bool,
                  verbose: bool) -> tuple[dict[tuple[str, int], dict[str, Any]], dict[Hashable, Run], dict[Hashable, float]]:
    """Build and warm up every (engine, batch): the rows (without times yet), the runs that
    built, and the seconds a warm call of each took."""
    cfg, s, f = ctx.cfg, ctx.settings, ctx.exported
    label = model_label(cfg)
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    runs: dict[Hashable, Run] = {}
    call_seconds: dict[Hashable, float] = {}
    bar = progress_bar(len(names) * len(batches), "building engines", progress)
    for name in names:
        mult_adds = analytical_cost(peer_config(name, cfg)).mult_adds
        mine = f is not None and name == f.engine  # the exported file given to bench
        build = build_exported_file if mine else BUILDERS[name]
        for b in batches:
            rows[(name, b)] = {"model": label, "alpha": cfg.alpha, "resolution": cfg.resolution,
                               "engine": name, "precision": f.precision if mine else PRECISION[name], "batch": b,
                               "peer": name in PEERS,
                               "threads": s.threads if name in (*NATIVE, "timm-eager") else s.runtime_threads,
                               "description": f"{f.path} ({f.format}), load_runner" if mine else DESCRIPTION[name],
                               "status": "ok", "note": "; ".join(f.notes) if mine and f.notes else None,
                               "mult_adds": mult_adds}
            try:
                with quiet_output(not verbose):  # exporters and converters print; the bar does not
                    run = build(ctx, b)
                    call_seconds[(name, b)] = warm_up(run, s.warmup)
                runs[(name, b)] = run
                rows[(name, b)]["note"] = rows[(name, b)]["note"] or ctx.notes.get(name)
            except EngineUnavailable as exc:
                rows[(name, b)].update(status="unavailable", note=str(exc))
            bar.update()
    bar.close()
    return rows, runs, call_seconds


def fast_vs_eager(net: MobileNet, fast: Callable[[], torch.Tensor], x: np.ndarray) -> float:
    """Max abs difference of the torch-fast runner's logits (on ``x``) from eager's; a
    RuntimeError beyond 1e-4 of the logit scale."""
    with torch.inference_mode():
        ref = net(torch.from_numpy(x))
        diff = float((fast() - ref).abs().max())
    # 1e-4 absolute on logits of order 1; relative to the largest logit beyond that
    if not diff <= 1e-4 * max(1.0, float(ref.abs().max())):
        raise RuntimeError(f"torch-fast differs from eager by {diff:.3g} (> 1e-4 of the logit scale)")
    return diff


def check_fast_paths(net: MobileNet, ctx: BenchContext, rows: dict, runs: dict, batches: Sequence[int]) -> None:
    """Notes on the rows of torch-fast (its logits within 1e-4 of eager's, else "failed" and not
    timed) and torch-fast-bf16 (its difference from eager, beside the logit scale)."""
    if ("torch-fast", 1) in runs:
        try:
            diff = fast_vs_eager(net, runs[("torch-fast", 1)], ctx.images(1))
            note = f"{ctx.notes.get('torch-fast')}; max abs diff vs eager {diff:.1e}"
        except RuntimeError as exc:  # a wrong fast path is not timed
            note = str(exc)
            for b in batches:
                runs.pop(("torch-fast", b), None)
                rows[("torch-fast", b)]["status"] = "failed"
        for b in batches:
            rows[("torch-fast", b)]["note"] = note
    if ("torch-fast-bf16", 1) in runs:
        with torch.inference_mode():
            ref = net(torch.from_numpy(ctx.images(1)))
            diff = float((runs[("torch-fast-bf16", 1)]() - ref).abs().max())
        for b in batches:
            rows[("torch-fast-bf16", b)]["note"] = (f"max abs diff vs eager {diff:.1e} (bf16; largest logit "
                                                    f"{float(ref.abs().max()):.2g})")


def summarize(rows: Sequence[dict[str, Any]], samples: dict[Hashable, Sequence[float]],
              peaks: dict[str, float], how: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The rows with their times: from ``samples`` (seconds per call, by (engine, batch)) the
    median, p10, p90, spread, images/s; from ``peaks`` (operations/s by precision) the FLOP floor
    and the fraction of it reached, with ``how`` (by precision) the peak was measured as
    ``peak_how``; ``vs_fastest``: median / the fastest median at that batch."""
    out = []
    for row in rows:
        row = dict(row)
        if how and row["precision"] in how:
            row["peak_how"] = how[row["precision"]]
        ts = samples.get((row["engine"], row["batch"]))
        if ts:
            st = sample_stats(ts)
            med, b, peak = st["median_ms"], row["batch"], peaks[row["precision"]]
            floor_ms = 2 * row["mult_adds"] * b / peak * 1e3
            row.update(median_ms=round(med, 4), p10_ms=round(st["p10_ms"], 4), p90_ms=round(st["p90_ms"], 4),
                       spread_pct=round(100 * (st["p90_ms"] - st["p10_ms"]) / med, 1),
                       images_per_s=round(1e3 * b / med, 2), samples=len(ts), floor_ms=round(floor_ms, 4),
                       floor_fraction=round(floor_ms / med, 4), peak_gops=round(peak / 1e9, 2))
        else:
            row.update(EMPTY_TIMES)
        out.append(row)
    for b in dict.fromkeys(r["batch"] for r in out):
        meds = [r["median_ms"] for r in out if r["batch"] == b and r["median_ms"] is not None]
        for r in out:
            if r["batch"] == b:
                r["vs_fastest"] = round(r["median_ms"] / min(meds), 3) if r["median_ms"] is not None else None
    return out


def bench_all_models(models: Sequence[str] | None = None, *, engines: Iterable[str] | None = None,
                     settings: BenchSettings | None = None, plot: str | os.PathLike | None = None,
                     calibration: str | os.PathLike | None = None, progress: bool = True,
                     verbose: bool = False) -> list[dict[str, Any]]:
    """Batch-1 latency of each of ``models`` (default: the paper's 16) in ``engines`` (default
    torch-eager, torch-fast, onnxruntime), and a PNG of latency against mult-adds at ``plot``."""
    from mobilenets.bench.report import check_plot_path, plot_latency
    from mobilenets.models.registry import PAPER_ALPHAS, PAPER_RESOLUTIONS, model_name

    models = list(models) if models is not None else [model_name(a, r) for a in PAPER_ALPHAS for r in PAPER_RESOLUTIONS]
    if not models:
        raise MobileNetsError("no models to run")
    names = resolve_engines(engines if engines is not None else ALL_MODELS_ENGINES)
    s = replace(settings or BenchSettings(), batch=1).validate()
    if plot is not None:
        check_plot_path(plot)  # before the minutes of timing, not after
    rows: list[dict[str, Any]] = []
    bar = progress_bar(len(models), "models", progress)
    for name in models:
        rows += bench(name, engines=names, settings=s, calibration=calibration, progress=False, check=False,
                      verbose=verbose)
        bar.update()
    bar.close()
    if plot is not None:
        plot_latency(rows, plot)
    return rows


def machine_info(threads: int) -> dict[str, Any]:
    """The CPU, cores, threads, versions of the engines' packages, load average and date."""
    from importlib import metadata

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def version(pkg: str) -> str | None:
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return None

    return {"cpu": cpu, "cores": os.cpu_count(), "threads": threads, "python": platform.python_version(),
            "torch": torch.__version__, "onnxruntime": version("onnxruntime"),
            "tensorflow": version("tensorflow-cpu") or version("tensorflow"), "timm": version("timm"),
            "executorch": version("executorch"),
            "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
            "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
