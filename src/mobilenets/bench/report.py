"""What ``mobilenet bench`` and ``profile`` print: the tables, the issue's speed goals, the
scaling of latency with mult-adds across the family, and its plot (a PNG)."""

from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mobilenets.bench.catalog import EXPORTED, NATIVE, PEERS, PRECISION
from mobilenets.errors import DataNotFoundError, MobileNetsError
from mobilenets.utils.scoped import matplotlib_backend


def fmt(v: Any, spec: str) -> str:
    """``v`` formatted, or "-" for a missing value."""
    return "-" if v is None else format(v, spec)


def peaks_text(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The peaks the rows' floors use, one line per precision, with how each was measured."""
    how = {r["precision"]: r.get("peak_how") or f"{r['precision']} {r['peak_gops']:g} GOP/s"
           for r in rows if r.get("peak_gops")}
    if not how:
        return []
    threads = next(r["threads"] for r in rows if r.get("peak_gops"))
    return ([f"peaks on {threads} thread{'s' if threads != 1 else ''} (FLOP floor = 2 x mult-adds x batch / peak; "
             f"peak = the best GEMM library's square matmul on these threads):"] + [f"  {how[p]}" for p in sorted(how)])


def bench_text(rows: Sequence[dict[str, Any]]) -> str:
    """The peaks the floors use, the bench table, then the speed comparisons the rows allow."""
    lines = peaks_text(rows)
    lines.append(f"{'engine':<24} {'prec':<5} {'batch':>5} {'median ms':>10} {'p10-p90 ms':>16} {'spread':>7} "
                 f"{'img/s':>9} {'x fastest':>9} {'% floor':>8}")
    for r in rows:
        name = r["engine"] + (" *" if r["peer"] else "")
        if r["median_ms"] is None:
            lines.append(f"{name:<24} {r['precision']:<5} {r['batch']:>5}   {r['status']}: {r['note']}")
            continue
        lines.append(f"{name:<24} {r['precision']:<5} {r['batch']:>5} {r['median_ms']:>10.2f} "
                     f"{r['p10_ms']:>7.2f}-{r['p90_ms']:<8.2f} {r['spread_pct']:>6.0f}% {r['images_per_s']:>9.1f} "
                     f"{r['vs_fastest']:>9.2f} {100 * r['floor_fraction']:>7.1f}%")
    lines.append("* peer (not ours). x fastest: median / fastest median at that batch size. % floor: the FLOP "
                 "floor (2 x mult-adds x batch at the peak of that precision) / median.")
    above = sorted({r["engine"] for r in rows if (r.get("floor_fraction") or 0) > 1})
    if above:  # cannot happen with a true peak: say so loudly rather than print it as a result
        lines.append(f"warning: {', '.join(above)} ran above the measured peak: the peak measurement was "
                     f"disturbed (machine load?); its % floor is not meaningful")
    notes = [f"{r['engine']}: {r['note']}" for r in rows if r["status"] == "ok" and r["note"] and r["batch"] == 1]
    lines += notes
    lines += [f"goal: {g}" for g in speed_goals(rows)]
    return "\n".join(lines)


def speed_goals(rows: Sequence[dict[str, Any]], batch: int = 1) -> list[str]:
    """The issue's speed goals at ``batch``, where the rows hold both sides of a comparison."""
    med = {r["engine"]: r["median_ms"] for r in rows if r["batch"] == batch and r["median_ms"] is not None}

    def best(names: Iterable[str]) -> tuple[str, float] | None:
        c = [(med[n], n) for n in names if n in med]
        return (min(c)[1], min(c)[0]) if c else None

    out = []
    ours32 = best(e for e in EXPORTED if PRECISION[e] == "fp32")
    peer32 = best(e for e in PEERS if PRECISION[e] == "fp32")
    if ours32 and peer32:
        ratio = ours32[1] / peer32[1]
        out.append(f"fastest fp32 export {ours32[0]} {ours32[1]:.2f} ms / fastest fp32 peer {peer32[0]} "
                   f"{peer32[1]:.2f} ms = {ratio:.2f}x (goal <= 1.0: {'met' if ratio <= 1 else 'NOT met'})")
    ours8 = best(e for e in EXPORTED if PRECISION[e] == "int8")
    if ours8 and "timm-onnxruntime-int8" in med:
        ratio = ours8[1] / med["timm-onnxruntime-int8"]
        out.append(f"fastest int8 export {ours8[0]} {ours8[1]:.2f} ms / timm-onnxruntime-int8 "
                   f"{med['timm-onnxruntime-int8']:.2f} ms = {ratio:.2f}x (goal <= 1.0: {'met' if ratio <= 1 else 'NOT met'})")
    if "torch-fast" in med and "timm-eager" in med and min((med[n], n) for n in NATIVE if n in med)[1] != "torch-fast":
        fp32 = med["timm-eager"] / med["torch-fast"]
        out.append(f"fp32 only: timm-eager {med['timm-eager']:.2f} ms / torch-fast {med['torch-fast']:.2f} ms = "
                   f"{fp32:.2f}x faster (goal >= 1.5: {'met' if fp32 >= 1.5 else 'NOT met'})")
    native = best(NATIVE)
    if native and "timm-eager" in med:
        speedup = med["timm-eager"] / native[1]
        out.append(f"timm-eager {med['timm-eager']:.2f} ms / {native[0]} {native[1]:.2f} ms = {speedup:.2f}x faster "
                   f"(goal >= 1.5: {'met' if speedup >= 1.5 else 'NOT met'})")
    return out


def all_models_text(rows: Sequence[dict[str, Any]]) -> str:
    """The all-models table (batch-1 median ms per model and engine) and each engine's slope k
    of latency against mult-adds."""
    engines = list(dict.fromkeys(r["engine"] for r in rows))
    models = list(dict.fromkeys(r["model"] for r in rows))
    ma = {r["model"]: r["mult_adds"] for r in rows}
    med = {(r["model"], r["engine"]): r["median_ms"] for r in rows}
    lines = [f"{'model':<24} {'M mult-adds':>11} " + " ".join(f"{e + ' ms':>18}" for e in engines)]
    for m in models:
        lines.append(f"{m:<24} {ma[m] / 1e6:>11.1f} " + " ".join(f"{fmt(med.get((m, e)), '.2f'):>18}" for e in engines))
    fits = scaling_fit(rows)
    if fits:
        lines.append("latency ~ mult-adds^k (k = 1: time falls with alpha^2 and rho^2 as the cost does): "
                     + ", ".join(f"{e} k = {k:.2f}" for e, k in fits.items()))
    return "\n".join(lines)


def profile_text(rows: Sequence[dict[str, Any]]) -> str:
    """The model and its weights, then per engine: ms per forward, then each layer type's time
    and share beside its mult-add share."""
    lines = [f"{rows[0]['model']} ({rows[0]['weights']})"] if rows and rows[0].get("weights") else []
    for engine in dict.fromkeys(r["engine"] for r in rows):
        er = [r for r in rows if r["engine"] == engine]
        if er[0]["status"] != "ok":
            lines.append(f"{engine}: {er[0]['status']}: {er[0]['note']}")
            continue
        lines.append(f"{engine} ({er[0]['precision']}, batch {er[0]['batch']}, {er[0]['threads']} threads): "
                     f"{er[0]['total_ms']:.2f} ms per forward")
        lines.append(f"  {'layer type':<12} {'ms':>9} {'time %':>8} {'mult-adds %':>12}")
        for r in er:
            lines.append(f"  {r['group']:<12} {r['time_ms']:>9.3f} {100 * r['time_share']:>7.1f}% "
                         f"{100 * r['mult_adds_share']:>11.1f}%")
    return "\n".join(lines)


def check_plot_path(path: str | os.PathLike) -> None:
    """A plot path must end in .png and its folder must exist."""
    p = Path(path)
    if p.suffix.lower() != ".png":
        raise MobileNetsError(f"the plot is a PNG file: {p} does not end in .png")
    if not p.parent.is_dir():
        raise DataNotFoundError(f"folder not found: {p.parent}")


def scaling_fit(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Per engine, the slope k of log(latency) against log(mult-adds) over the models: latency
    grows as mult-adds^k (1.0: exactly as the paper's α² and ρ² cost claims predict)."""
    out = {}
    for engine in dict.fromkeys(r["engine"] for r in rows):
        pts = [(math.log(r["mult_adds"]), math.log(r["median_ms"])) for r in rows
               if r["engine"] == engine and r.get("median_ms")]
        if len({p[0] for p in pts}) >= 2:
            out[engine] = float(np.polyfit([p[0] for p in pts], [p[1] for p in pts], 1)[0])
    return out


def plot_latency(rows: Sequence[dict[str, Any]], path: str | os.PathLike) -> Path:
    """A PNG of batch-1 median latency against mult-adds, one series per engine, log-log. Drawn
    with the Agg backend; the caller's matplotlib backend is left as it was."""
    check_plot_path(path)
    if importlib.util.find_spec("matplotlib") is None:
        raise MobileNetsError("the plot needs matplotlib: pip install matplotlib")
    fits = scaling_fit(rows)
    with matplotlib_backend("Agg") as plt:
        fig, ax = plt.subplots(figsize=(9, 6.5), dpi=100)
        try:
            guide_done = False
            for engine in dict.fromkeys(r["engine"] for r in rows):
                er = [r for r in rows if r["engine"] == engine and r.get("median_ms")]
                if not er:
                    continue
                k = fits.get(engine)
                color = ax.plot([r["mult_adds"] / 1e6 for r in er], [r["median_ms"] for r in er], "o",
                                label=f"{engine}" + (f" (slope {k:.2f})" if k else ""))[0].get_color()
                for alpha in dict.fromkeys(r.get("alpha") for r in er):  # one thin line per width: the rho series
                    line = sorted((r["mult_adds"] / 1e6, r["median_ms"]) for r in er if r.get("alpha") == alpha)
                    if alpha is not None and len(line) > 1:
                        ax.plot([p[0] for p in line], [p[1] for p in line], "-", color=color, alpha=0.35, linewidth=1)
                for r in er:
                    ax.annotate(r["model"].replace("mobilenet_v1_", ""), (r["mult_adds"] / 1e6, r["median_ms"]),
                                fontsize=6, xytext=(3, 2), textcoords="offset points")
                if not guide_done:  # latency proportional to mult-adds, through this engine's largest model
                    top = max(er, key=lambda r: r["mult_adds"])
                    xs = sorted({r["mult_adds"] / 1e6 for r in rows})
                    scale = top["median_ms"] / (top["mult_adds"] / 1e6)
                    ax.plot(xs, [x * scale for x in xs], "--", color="gray", linewidth=1,
                            label="latency proportional to mult-adds")
                    guide_done = True
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("mult-adds (millions)")
            ax.set_ylabel("batch-1 median latency (ms)")
            ax.set_title("MobileNet batch-1 latency vs mult-adds (lines join the resolutions of one width)")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
            fig.tight_layout()
            fig.savefig(path, format="png")
        finally:
            plt.close(fig)
    return Path(path)
