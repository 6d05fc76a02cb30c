"""Where an accuracy comes from: the paper's printed Tables 6-7, the TF-slim checkpoint table, or
the user's own run folders; the log-linear fit of Figures 4 and 5 and predictions from it.

Every point is ``(alpha, resolution, variant, top1 %, mult-adds, params)`` with the cost from our
own counter (:func:`~mobilenets.cost.count.analytical_cost`, 1000 classes for ImageNet points, the
run's own classes for run folders), so that the three sources share one x axis.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mobilenets.cost.count import analytical_cost
from mobilenets.errors import DataNotFoundError, MobileNetsError
from mobilenets.models.config import MobileNetConfig

# The TF-slim checkpoints of the 16 paper models (the 2018_02_22 release), ImageNet top-1 % as
# listed in tensorflow/models research/slim/nets/mobilenet_v1.md ("Pre-trained Models" table,
# single-crop evaluation). Keyed by (alpha, resolution).
SLIM_TOP1 = {
    (1.0, 224): 70.9, (1.0, 192): 70.0, (1.0, 160): 68.0, (1.0, 128): 65.2,
    (0.75, 224): 68.4, (0.75, 192): 67.2, (0.75, 160): 65.3, (0.75, 128): 62.1,
    (0.5, 224): 63.3, (0.5, 192): 61.7, (0.5, 160): 59.1, (0.5, 128): 56.3,
    (0.25, 224): 49.8, (0.25, 192): 47.7, (0.25, 160): 45.5, (0.25, 128): 41.5,
}
SOURCES = ("paper", "slim")  # or run folders


@dataclass(frozen=True)
class Point:
    """One model's measured (or printed) accuracy beside its cost from our counter."""

    label: str
    alpha: float
    resolution: int
    variant: str
    top1: float  # percent
    mult_adds: int
    params: int


@dataclass(frozen=True)
class Fit:
    """``top1 = intercept + slope * log10(x)``, fitted by least squares, with R² and its points."""

    slope: float
    intercept: float
    r2: float
    n: int

    def predict(self, x: float) -> float:
        return self.intercept + self.slope * math.log10(x)

    def describe(self, unit: str = "mult-adds") -> str:
        return (f"top-1 = {self.intercept:.1f} + {self.slope:.2f} x log10({unit}), R² = {self.r2:.3f} "
                f"({self.n} points)")


def _cost(cfg: MobileNetConfig) -> tuple[int, int]:
    cost = analytical_cost(cfg)  # torch-free and fast: no cache needed
    return cost.mult_adds, cost.params


def registry_alpha_resolution(name: str) -> tuple[float, int]:
    """(alpha, resolution) of a separable registry name ``mobilenet_v1_<alpha>_<resolution>``,
    read from the name itself."""
    alpha, resolution = name.rsplit("_", 2)[-2:]
    return float(alpha), int(resolution)


def imagenet_point(label: str, alpha: float, resolution: int, top1: float, variant: str = "separable") -> Point:
    madds, params = _cost(MobileNetConfig(alpha=alpha, resolution=resolution, variant=variant, num_classes=1000))
    return Point(label, alpha, resolution, variant, float(top1), madds, params)


def paper_points() -> list[Point]:
    """The 7 distinct separable models the paper prints an accuracy for (Tables 6 and 7)."""
    from mobilenets.paper.printed import TABLE6, TABLE7

    out = []
    for name, (top1, _madds, _params) in {**TABLE6, **TABLE7}.items():
        alpha, resolution = registry_alpha_resolution(name)
        out.append(imagenet_point(f"paper {alpha:g}-{resolution}", alpha, resolution, top1))
    return out


def slim_points() -> list[Point]:
    """The 16 TF-slim checkpoints (:data:`SLIM_TOP1`)."""
    return [imagenet_point(f"slim {a:g}-{r}", a, r, top1) for (a, r), top1 in SLIM_TOP1.items()]


def _run_folders(path: Path) -> list[Path]:
    if (path / "config.json").is_file():
        return [path]
    found = sorted(p.parent for p in path.glob("*/config.json"))
    if not found:
        raise DataNotFoundError(f"{path} is not a run folder (no config.json) and holds none")
    return found


# The runs whose val_top1 is an image classifier's top-1: a geolocation run's is the share of
# photos put in the right cell, a distillation run's agreement with its teacher.
TOP1_TASKS = ("classification", "finetune")
TOP1_TASKS_TEXT = "`mobilenet train`, `finetune` and `reproduce`"


def run_points(paths: Iterable[str | Path]) -> list[Point]:
    """One point per run folder (or per run folder inside each of ``paths``): its best
    ``val_top1`` in ``metrics.jsonl`` beside the cost of the model its ``config.json`` records.
    Runs without a finished epoch are skipped; a run of another task (:data:`TOP1_TASKS`) is
    refused when named, skipped inside a folder of runs."""
    out = []
    for given in paths:
        base = Path(given)
        if not base.exists():
            raise DataNotFoundError(f"run folder {base} does not exist")
        for folder in _run_folders(base):
            try:
                config = json.loads((folder / "config.json").read_text())
                cfg = MobileNetConfig.from_dict(config["model"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise MobileNetsError(f"{folder}/config.json is not a training run's config: {exc}") from None
            task = config.get("task", "classification")
            if task not in TOP1_TASKS:
                if folder == base:  # named on its own: say why it cannot be a point
                    raise MobileNetsError(f"{folder} is a {task} run: its validation figures are not an image "
                                          f"classifier's top-1 ({TOP1_TASKS_TEXT} runs only)")
                continue  # inside a folder of runs: only the classifiers are points
            metrics = folder / "metrics.jsonl"
            tops = []
            if metrics.is_file():
                for line in metrics.read_text().splitlines():
                    try:
                        record = json.loads(line)
                    except ValueError:
                        continue  # a line cut by a kill mid-write
                    if isinstance(record, dict) and record.get("val_top1") is not None:
                        tops.append(float(record["val_top1"]))
            if not tops:
                continue
            madds, params = _cost(cfg)
            out.append(Point(f"run {folder.name}", cfg.alpha, cfg.resolution, cfg.variant, 100 * max(tops), madds,
                             params))
    return out


def points_for(source: str | Sequence[str | Path]) -> list[Point]:
    """The points of ``source``: "paper", "slim", or a list of run folders."""
    if isinstance(source, str) and source in SOURCES:
        return paper_points() if source == "paper" else slim_points()
    paths = [source] if isinstance(source, (str, Path)) else list(source)
    points = run_points(paths)
    if not points:
        raise MobileNetsError(f"no finished epoch with val_top1 in the run folders {', '.join(map(str, paths))}")
    return points


def loglinear_fit(xs: Sequence[float], ys: Sequence[float]) -> Fit:
    """Least-squares ``y = a + b log10(x)``; needs two distinct x values."""
    if len(xs) != len(ys) or len(set(xs)) < 2:
        raise MobileNetsError(f"a log-linear fit needs at least two distinct x values, got {len(set(xs))}")
    lx = [math.log10(x) for x in xs]
    n = len(lx)
    mx, my = sum(lx) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in lx)
    slope = sum((x - mx) * (y - my) for x, y in zip(lx, ys)) / sxx
    intercept = my - slope * mx
    ss_tot = sum((y - my) ** 2 for y in ys)
    ss_res = sum((y - intercept - slope * x) ** 2 for x, y in zip(lx, ys))
    return Fit(slope, intercept, 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0, n)


class Predictor:
    """Predicted top-1 of any (alpha, resolution) model: the source's own figure where it has
    that model, else the log-linear fit of its points in mult-adds (Figure 4)."""

    def __init__(self, source: str | Sequence[str | Path]) -> None:
        self.source = source if isinstance(source, str) and source in SOURCES else "runs"
        self.points = points_for(source)
        # fitted in millions, as Figure 4 is drawn, so that the intercept reads as the top-1 at 1M
        self.fit = loglinear_fit([p.mult_adds / 1e6 for p in self.points], [p.top1 for p in self.points])
        self.exact = {(p.alpha, p.resolution): p.top1 for p in self.points if p.variant == "separable"}

    def predict(self, alpha: float, resolution: int, mult_adds: int) -> tuple[float, str]:
        """``(top-1 %, how)``; how is "printed"/"slim table"/"run" or "fit"."""
        key = (float(alpha), int(resolution))
        if key in self.exact:
            return self.exact[key], {"paper": "printed", "slim": "slim table"}.get(self.source, "run")
        return self.fit.predict(mult_adds / 1e6), "fit"


__all__ = ["Fit", "Point", "Predictor", "SLIM_TOP1", "SOURCES", "imagenet_point", "loglinear_fit",
           "paper_points", "points_for", "run_points", "slim_points"]
