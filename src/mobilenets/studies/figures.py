"""The paper's Figures 4 and 5 as PNGs: ImageNet top-1 against mult-adds and against parameters,
both on log axes, with the log-linear fit (and its R²) of each source.

Figure 4 is the paper's claim that accuracy is log-linear in mult-adds across the 16 models;
Figure 5 shows that the parameters depend on α alone (vertical clusters, one per width). The
paper's own points are the 7 models it prints an accuracy for (Tables 6-7; its figures plot all
16, whose other 9 accuracies it never prints); the TF-slim table gives all 16; run folders add
the user's own models (on their own data, so on their own scale).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mobilenets.errors import MobileNetsError, arg
from mobilenets.studies.accuracy import Point, loglinear_fit, paper_points, run_points, slim_points
from mobilenets.utils.scoped import matplotlib_backend

STYLE = {"paper": ("tab:red", "o"), "slim": ("tab:blue", "s"), "runs": ("tab:green", "^")}


def figure_series(runs: Sequence[str | os.PathLike] = ()) -> dict[str, list[Point]]:
    """The points of each source: "paper", "slim" and (with ``runs``) "runs"."""
    series = {"paper": paper_points(), "slim": slim_points()}
    if runs:
        points = run_points(runs)
        if not points:
            raise MobileNetsError(f"none of the run folders {', '.join(map(str, runs))} is an image classifier's "
                                  f"run with a finished epoch")
        series["runs"] = points
    return series


def _fits(series: dict[str, list[Point]], axis: str) -> dict[str, dict[str, Any]]:
    out = {}
    for name, points in series.items():
        xs = [getattr(p, axis) / 1e6 for p in points]
        if len(set(xs)) >= 3:  # through two points any line fits (R² = 1): no fit drawn
            fit = loglinear_fit(xs, [p.top1 for p in points])
            out[name] = {"slope": fit.slope, "intercept": fit.intercept, "r2": fit.r2, "n": fit.n,
                         "text": fit.describe("M " + axis.replace("_", "-"))}
    return out


def _plot(series: dict[str, list[Point]], fits: dict[str, dict[str, Any]], axis: str, title: str, path: Path) -> None:
    import numpy as np

    with matplotlib_backend("Agg") as plt:
        fig, ax = plt.subplots(figsize=(7.5, 5))
        for name, points in series.items():
            colour, marker = STYLE[name]
            xs = np.array([getattr(p, axis) / 1e6 for p in points])
            what = "ImageNet" if name != "runs" else "their own data"
            ax.scatter(xs, [p.top1 for p in points], color=colour, marker=marker, zorder=3,
                       label=f"{name} ({len(points)} models, {what})")
            for p, x in zip(points, xs):
                kind = "" if p.variant == "separable" else f" {p.variant}"
                ax.annotate(f"{p.alpha:g}-{p.resolution}{kind}", (x, p.top1), fontsize=6, xytext=(3, 3),
                            textcoords="offset points", color=colour)
            if name in fits:
                f = fits[name]
                grid = np.geomspace(xs.min(), xs.max(), 50)
                ax.plot(grid, f["intercept"] + f["slope"] * np.log10(grid), color=colour, lw=1, alpha=0.7,
                        label=f"{name} fit: {f['slope']:.1f} per decade, R² {f['r2']:.3f}")
        ax.set_xscale("log")
        from matplotlib.ticker import FuncFormatter

        plain = FuncFormatter(lambda v, _pos: f"{v:g}")  # 300, not 3x10^2
        ax.xaxis.set_major_formatter(plain)
        ax.xaxis.set_minor_formatter(plain)
        ax.tick_params(axis="x", which="minor", labelsize=7)
        ax.set_xlabel(f"million {axis.replace('_', '-')} (log scale; our counter)")
        ax.set_ylabel("top-1 accuracy (%)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)


def figures(output: str | os.PathLike = ".", runs: Sequence[str | os.PathLike] = ()) -> dict[str, Any]:
    """Write ``figure4.png`` (top-1 vs mult-adds) and ``figure5.png`` (top-1 vs parameters) into
    the folder ``output``; returns the paths and each source's fits."""
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise MobileNetsError(f"{arg('output')} must be a folder, and {out} is a file")
    series = figure_series(runs)
    out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"points": {k: len(v) for k, v in series.items()}}
    for fig, axis, title in (("figure4", "mult_adds", "Figure 4: top-1 accuracy vs mult-adds"),
                             ("figure5", "params", "Figure 5: top-1 accuracy vs parameters")):
        fits = _fits(series, axis)
        path = out / f"{fig}.png"
        _plot(series, fits, axis, title, path)
        result[fig] = {"path": str(path), "fits": fits}
    return result


def figures_text(result: dict[str, Any]) -> str:
    lines = []
    for fig, what in (("figure4", "mult-adds"), ("figure5", "parameters")):
        lines.append(f"{result[fig]['path']}: top-1 vs log {what}")
        for name, f in result[fig]["fits"].items():
            lines.append(f"  {name:<6} {f['text']}")
    return "\n".join(lines)


__all__ = ["figure_series", "figures", "figures_text"]
