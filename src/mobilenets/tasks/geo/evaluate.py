"""Geolocation error as PlaNet and the paper's Table 11 measure it: great-circle distances and the
share of photos placed within 1, 25, 200, 750 and 2500 km, the median error, the Table 11 layout
and a plot of the cumulative error distribution."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mobilenets.errors import MobileNetsError

EARTH_RADIUS_KM = 6371.0  # mean Earth radius (IUGG), what geopy's great_circle uses
THRESHOLDS_KM = (1, 25, 200, 750, 2500)
SCALES = {1: "Street", 25: "City", 200: "Region", 750: "Country", 2500: "Continent"}
# Table 11: percent of Im2GPS photos within each distance (2500, 750, 200, 25, 1 km).
TABLE11 = {
    "Im2GPS": {2500: 51.9, 750: 35.4, 200: 32.1, 25: 21.9, 1: 2.5},
    "PlaNet": {2500: 77.6, 750: 64.0, 200: 51.1, 25: 31.7, 1: 11.0},
    "PlaNet MobileNet": {2500: 79.3, 750: 60.3, 200: 45.2, 25: 31.7, 1: 11.4},
}


def haversine_km(lat1, lon1, lat2, lon2) -> np.ndarray:
    """Great-circle distance in km between points in degrees (float64; haversine, R = 6371.0 km).
    The haversine term is clipped to [0, 1] so rounding never pushes antipodes past pi R."""
    p1, p2 = np.radians(np.asarray(lat1, np.float64)), np.radians(np.asarray(lat2, np.float64))
    dp = p2 - p1
    dl = np.radians(np.asarray(lon2, np.float64) - np.asarray(lon1, np.float64))
    h = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2.0 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))


def distance_metrics(distances_km) -> dict[str, float]:
    """``{"1": f, "25": f, "200": f, "750": f, "2500": f, "median_km": m, "n": n}``: the fraction
    of photos within each threshold (distance <= threshold), the median error and the count."""
    d = np.asarray(distances_km, np.float64).ravel()
    if not len(d):
        raise MobileNetsError("no photos to evaluate")
    out: dict[str, float] = {str(t): float(np.mean(d <= t)) for t in THRESHOLDS_KM}
    out["median_km"] = float(np.median(d))
    out["n"] = int(len(d))
    return out


def table11_text(columns: dict[str, dict[str, float]], paper: bool = True) -> str:
    """The paper's Table 11 layout (scale, then percent within the distance), one column per
    entry of ``columns`` (each a :func:`distance_metrics` result), after the paper's columns."""
    cols: dict[str, dict[int, float]] = dict(TABLE11) if paper else {}
    for name, m in columns.items():
        cols[name] = {t: 100.0 * m[str(t)] for t in THRESHOLDS_KM}
    widths = [max(len(n), 7) for n in cols]
    head = f"{'Scale':<20}" + "".join(f"  {n:>{w}}" for n, w in zip(cols, widths))
    lines = [head, "-" * len(head)]
    for t in sorted(THRESHOLDS_KM, reverse=True):
        lines.append(f"{SCALES[t] + f' ({t} km)':<20}" + "".join(f"  {v[t]:>{w - 1}.1f}%" for v, w in zip(cols.values(), widths)))
    medians = [f"  {m['median_km']:>{w - 3}.0f} km" if (m := columns.get(n)) else f"  {'':>{w}}" for n, w in zip(cols, widths)]
    lines.append(f"{'Median error':<20}" + "".join(medians))
    if columns:
        lines.append("photos: " + ", ".join(f"{n} {m['n']}" for n, m in columns.items())
                     + ("; paper columns: Im2GPS test set (237 photos)" if paper else ""))
    return "\n".join(lines)


def plot_cdf(curves: dict[str, Any], path: str | Path, title: str = "Geolocation error") -> Path:
    """PNG of the cumulative error distribution of each entry of ``curves`` (arrays of km), with
    the Table 11 thresholds marked and the paper's PlaNet MobileNet points for reference."""
    from mobilenets.utils.scoped import matplotlib_backend

    path = Path(path)
    with matplotlib_backend("Agg") as plt:
        fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
        try:
            for k, (name, d) in enumerate(curves.items()):
                d = np.sort(np.maximum(np.asarray(d, np.float64), 0.01))  # 0 km shows at the left edge
                ax.step(d, np.arange(1, len(d) + 1) / len(d) * 100, where="post", label=f"{name} (n={len(d)})",
                        ls=("-", "--", ":", "-.")[k % 4], lw=1.6)
            paper = TABLE11["PlaNet MobileNet"]
            ax.plot(list(paper), list(paper.values()), "k*", ms=9, label="paper: PlaNet MobileNet (Im2GPS)")
            for t in THRESHOLDS_KM:
                ax.axvline(t, color="0.8", lw=0.8, zorder=0)
                ax.text(t, 101, f"{t} km", ha="center", va="bottom", fontsize=7, color="0.4")
            ax.set_xscale("log")
            ax.set_xlim(0.1, 20040)
            ax.set_ylim(0, 100)
            ax.set_xlabel("great-circle error (km, log scale)")
            ax.set_ylabel("photos within the error (%)")
            ax.set_title(title, pad=14)
            ax.grid(True, which="major", axis="y", color="0.9")
            ax.legend(loc="upper left", fontsize=8)
            fig.tight_layout()
            path.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(path)
        finally:
            plt.close(fig)
    return path


def plot_path(plot: str | Path | bool | None, default: Path) -> Path | None:
    """Where a ``plot`` argument says to draw: a path is itself, True is ``default``, None or
    False is no plot (None)."""
    if plot is None or plot is False:
        return None
    return default if plot is True else Path(plot)


def eval_files(truth: str | Path, predictions: str | Path, plot: str | Path | bool | None = True,
               log: Any = print) -> dict[str, Any]:
    """``mobilenet geo eval --truth CSV --predictions CSV``: the :func:`distance_metrics` of the
    predictions (both files are photo CSVs; rows are matched on the path as written), the Table 11
    text and the CDF PNG ``plot`` (True, the default: ``<predictions>.cdf.png``; None or False: no
    plot, and the result's ``plot`` is None). Unusable rows of either file, a
    second prediction for the same photo and truth photos without a prediction are counted, said
    in one line per file and listed in ``<predictions>.skipped.csv``, never dropped silently."""
    from mobilenets.tasks.geo.data import read_photos, write_skipped

    gold = read_photos(truth, check_images=False)
    pred = read_photos(predictions, check_images=False, unique=False)  # repeats: listed below
    first: dict[str, int] = {}
    dup = np.zeros(len(pred), bool)
    for k, key in enumerate(pred.keys):
        dup[k] = key in first
        first.setdefault(key, k)
    if dup.any():
        lines = pred.lines if pred.lines is not None else np.zeros(len(pred), np.int64)
        pred = pred.drop(dup, [f"a second prediction for this photo (first on line {lines[first[key]]})"
                               for key, d in zip(pred.keys, dup) if d])
    at = {key: k for k, key in enumerate(pred.keys)}
    index = np.array([at.get(key, -1) for key in gold.keys], np.int64)
    missing = index < 0
    if missing.all():
        raise MobileNetsError(f"no photo of {truth} has a prediction in {predictions} (paths are matched as written)")
    gold = gold.drop(missing, "no prediction for this photo") if missing.any() else gold
    index = index[~missing]
    listed = write_skipped(Path(predictions).with_suffix(".skipped.csv"), gold, pred)
    for table in (gold, pred):
        if table.skipped_line(listed):
            log(table.skipped_line(listed))
    km = haversine_km(gold.lat, gold.lon, pred.lat[index], pred.lon[index])
    result = distance_metrics(km)
    png = plot_path(plot, Path(predictions).with_suffix(".cdf.png"))
    return {"metrics": result, "table": table11_text({"predictions": result}),
            "plot": str(plot_cdf({Path(predictions).name: km}, png)) if png else None,
            "skipped_truth_rows": len(gold.bad),
            "skipped_prediction_rows": len(pred.bad)}


__all__ = ["EARTH_RADIUS_KM", "TABLE11", "THRESHOLDS_KM", "distance_metrics", "eval_files", "haversine_km", "plot_cdf", "plot_path",
           "table11_text"]
