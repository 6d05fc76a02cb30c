"""Geolocation as PlaNet trains it: a MobileNet classifies a photo into one of the S2 cells
(softmax over the cell index, cross-entropy), trained through the one loop
(:func:`mobilenets.train.loop.fit`), validated by great-circle error (the share of photos within
1/25/200/750/2500 km and the median, predicting the mean position of the top cell's photos).

Training photos whose cell was dropped (fewer than ``min_per_cell`` photos) are left out of
training and counted; validation photos outside every cell still count in the distance metrics
(their cell accuracy cannot be scored). Cells travel with the weights: the run metadata holds
their tokens (as ``classes``), photo counts and mean positions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from mobilenets.errors import MobileNetsError, arg
from mobilenets.models.config import MobileNetConfig
from mobilenets.tasks.geo.cells import CellPartition, read_cells
from mobilenets.tasks.geo.data import PhotoTable, read_photos, write_skipped
from mobilenets.tasks.geo.evaluate import THRESHOLDS_KM, distance_metrics, haversine_km
from mobilenets.train.options import TrainOptions
from mobilenets.train.recipes import Recipe, get_recipe
from mobilenets.train.tasks import Metrics, Task, accuracy_counts, full_precision

# The default student: sized for the built-in stand-in (64 px photos); any member of the family works.
DEFAULT_MODEL = MobileNetConfig(alpha=0.5, resolution=64)
SKIPPED_ROWS_FILE = "skipped_rows.csv"


class GeoPhotos(Dataset):
    """The photos of a :class:`PhotoTable`; items are ``(image, row)`` (``row = offset + index``:
    the task looks up the cell and coordinates) or a ``BadSample`` for an image that won't decode."""

    def __init__(self, table: PhotoTable, transform: Any, resolution: int, loader: Any = None, offset: int = 0):
        from mobilenets.data.folders import ImageFolderDataset

        self.table = table
        self.images = ImageFolderDataset(Path(table.source).parent, [(p, offset + i) for i, p in enumerate(table.paths)],
                                         [], transform, resolution, loader=loader)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return self.images[index]


def cells_meta(cells: CellPartition) -> dict[str, Any]:
    """What a run records of its cells (the tokens are its ``classes``)."""
    return {"photos": [int(c) for c in cells.counts], "mean_latitude": [round(float(v), 6) for v in cells.mean_lat],
            "mean_longitude": [round(float(v), 6) for v in cells.mean_lon]}


def cells_from_meta(meta: dict[str, Any]) -> CellPartition:
    """The cells a geolocation run or checkpoint recorded."""
    cells = meta.get("cells")
    if meta.get("task") != "geolocation" or not isinstance(cells, dict) or "classes" not in meta:
        raise MobileNetsError("not a geolocation checkpoint (its run metadata has no cells): train one with "
                              "`mobilenet geo train`")
    return CellPartition.from_tokens(meta["classes"], cells["photos"], cells["mean_latitude"], cells["mean_longitude"])


class GeoMetrics(Metrics):
    """Cell top-1/top-5 and loss over photos inside a cell; distances over all photos."""

    def __init__(self, cell_lat: np.ndarray, cell_lon: np.ndarray) -> None:
        self.cell_lat, self.cell_lon = cell_lat, cell_lon
        self.n = self.top1 = self.top5 = 0
        self.loss_sum = 0.0
        self.km: list[np.ndarray] = []

    def update(self, outputs: torch.Tensor, targets: dict[str, torch.Tensor]) -> None:
        cell, latlon = targets["cell"], targets["latlon"].detach().cpu().double().numpy()
        inside = cell >= 0
        if inside.any():
            self.loss_sum += float(F.cross_entropy(full_precision(outputs[inside]), cell[inside], reduction="sum"))
            c1, c5 = accuracy_counts(outputs[inside], cell[inside])
            self.top1, self.top5, self.n = self.top1 + c1, self.top5 + c5, self.n + int(inside.sum())
        top = outputs.argmax(dim=1).cpu().numpy()
        self.km.append(haversine_km(latlon[:, 0], latlon[:, 1], self.cell_lat[top], self.cell_lon[top]))

    def compute(self) -> dict[str, float]:
        km = np.concatenate(self.km) if self.km else np.zeros(0)
        n = max(self.n, 1)
        out = {"top1": self.top1 / n, "top5": self.top5 / n, "loss": self.loss_sum / n}
        if len(km):
            d = distance_metrics(km)
            out.update({f"within_{t}km": d[str(t)] for t in THRESHOLDS_KM})
            out["median_km"] = d["median_km"]
        out["images"] = int(len(km))
        return out


class GeoTask(Task):
    """Classification over S2 cells. ``train``/``val`` are :class:`PhotoTable` s (None: the model,
    loss and metrics alone); ``config`` the model (its ``num_classes`` is set to the cell count)."""

    name = "geolocation"
    monitor = "median_km"
    monitor_mode = "min"

    def __init__(self, config: MobileNetConfig, cells: CellPartition, train: PhotoTable | None = None,
                 val: PhotoTable | None = None, augment=None, label_smoothing: float = 0.0,
                 sources: dict[str, Any] | None = None, init_weights: dict[str, torch.Tensor] | None = None,
                 log: Any = None) -> None:
        if not len(cells):
            raise MobileNetsError("no cells: a geolocation task needs at least one cell")
        self.cells, self.augment, self.label_smoothing = cells, augment, float(label_smoothing)
        self.init_weights, self.log = init_weights, log
        self.tables = tuple(t for t in (train, val) if t is not None)  # as read: skipped rows listed
        self.config = config.replace(num_classes=len(cells))
        self.sources = dict(sources or {})
        self.unassigned_train = 0
        self.train, self.val = train, val
        if train is not None:
            cls = cells.assign(train.lat, train.lon)
            self.unassigned_train = int((cls < 0).sum())
            if self.unassigned_train == len(train):
                raise MobileNetsError(f"none of the {len(train)} training photos lies in one of the {len(cells)} cells")
            self.train = train.subset(cls >= 0)
        tables = [t for t in (self.train, self.val) if t is not None]
        lat = np.concatenate([t.lat for t in tables]) if tables else np.zeros(0)
        lon = np.concatenate([t.lon for t in tables]) if tables else np.zeros(0)
        self.row_cell = cells.assign(lat, lon)  # train rows first, then val rows
        self.row_latlon = np.stack([lat, lon], axis=1)

    def build_model(self) -> nn.Module:
        from mobilenets.models.mobilenet import MobileNet

        model = MobileNet(self.config)
        if self.init_weights is not None:
            from mobilenets.train.init import load_into

            load_into(model, self.init_weights)
        return model

    def write_files(self, out: Path) -> None:
        """``skipped_rows.csv``: the photo list rows that could not be used (one line says so)."""
        listed = write_skipped(out / SKIPPED_ROWS_FILE, *self.tables)
        for table in self.tables:
            line = table.skipped_line(listed)
            if line and self.log is not None:
                self.log(line)

    def datasets(self) -> tuple[Dataset, Dataset | None]:
        from mobilenets.data.jpeg import DraftRandomResizedCrop
        from mobilenets.data.transforms import eval_transform, train_transform

        if self.train is None or self.augment is None:
            raise MobileNetsError("this GeoTask was built without training data")
        res, aug = self.config.resolution, self.augment
        train = GeoPhotos(self.train, train_transform(res, aug, crop=False), res,
                          loader=DraftRandomResizedCrop(res, (aug.crop_min_area, 1.0)))
        val = None if self.val is None else GeoPhotos(self.val, eval_transform(res, aug), res, offset=len(self.train))
        return train, val

    def collate(self, items: Sequence[Any]):
        from mobilenets.data.samples import collate_skip_bad

        images, rows, bad = collate_skip_bad(items)
        idx = rows.numpy()
        return images, {"cell": torch.from_numpy(self.row_cell[idx]),
                        "latlon": torch.from_numpy(self.row_latlon[idx].reshape(-1, 2))}, bad

    def batch_len(self, targets: dict[str, torch.Tensor]) -> int:
        return len(targets["cell"])

    def loss(self, outputs: torch.Tensor, targets: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cell = targets["cell"]
        if not bool((cell >= 0).any()):  # an empty batch, or (val) photos outside every cell
            return {"loss": outputs.sum() * 0.0}
        return {"loss": F.cross_entropy(full_precision(outputs), cell, ignore_index=-1,
                                        label_smoothing=self.label_smoothing)}

    def new_metrics(self) -> Metrics:
        return GeoMetrics(self.cells.mean_lat, self.cells.mean_lon)

    def run_meta(self) -> dict[str, Any]:
        meta = {**self.sources, "classes": self.cells.tokens, "cells": cells_meta(self.cells),
                "unassigned_train_photos": self.unassigned_train}
        if self.augment is not None:
            meta["preprocessing"] = self.augment.preprocessing(self.config.resolution).to_dict()
        return meta

    def describe(self, metrics: dict[str, float]) -> str:
        if "median_km" not in metrics:
            return "no validation photo could be read"
        within = "/".join(f"{100 * metrics[f'within_{t}km']:.1f}" for t in sorted(THRESHOLDS_KM, reverse=True))
        return (f"val cell top-1 {100 * metrics['top1']:.1f}%  within 2500/750/200/25/1 km {within}%  "
                f"median {metrics['median_km']:.0f} km  loss {metrics['loss']:.3f}")


def biggest_cell_distances(cells: CellPartition, table: PhotoTable) -> np.ndarray:
    """Errors (km) of always predicting the cell with the most training photos (its photos' mean)."""
    big = int(np.argmax(cells.counts))
    return haversine_km(table.lat, table.lon, cells.mean_lat[big], cells.mean_lon[big])


def biggest_cell_baseline(cells: CellPartition, table: PhotoTable) -> dict[str, float]:
    """Distance metrics of always predicting the cell with the most training photos."""
    return distance_metrics(biggest_cell_distances(cells, table))


def train(data: str | None, val: str | None, cells: str | None, model: str | None = None, *,
          alpha: float | None = None, resolution: int | None = None, variant: str | None = None,
          recipe: str | Recipe = "paper", recipe_overrides: dict[str, Any] | None = None,
          model_overrides: dict[str, Any] | None = None, init: str | None = None,
          options: TrainOptions | None = None, log: Any = print) -> dict[str, Any]:
    """``mobilenet geo train``: a MobileNet over the ``cells`` (a ``geo cells`` file) on the photo
    CSVs ``data`` (training) and ``val``; the summary holds the last validation metrics and the
    always-the-biggest-cell baseline on the same photos. Unusable rows are listed in the run
    folder's ``skipped_rows.csv`` (one line says so). ``init``: start from the weights of a
    classification checkpoint or model folder (:mod:`mobilenets.train.init`; the classifier is new
    unless they were trained on the same cells). ``resume`` continues a run with its own data,
    cells, model and recipe (:func:`mobilenets.train.runner.open_run`)."""
    from mobilenets.models.registry import resolve_config
    from mobilenets.train.classify import augment_for
    from mobilenets.train.init import init_config, init_weights, load_init
    from mobilenets.train.loop import fit
    from mobilenets.train.runner import is_main, open_run, record_path, request_of, task_recipe

    request = request_of(data=record_path(data), val=record_path(val), cells=record_path(cells), model=model,
                         alpha=alpha, resolution=resolution, variant=variant, recipe=recipe,
                         overrides={**(recipe_overrides or {}), **(model_overrides or {})}, init=record_path(init))
    opts, saved = open_run(options, GeoTask.name, request, log)
    extra: dict[str, Any] = {"request": request}
    weights = pre = None
    if saved is not None:
        cfg, rec = MobileNetConfig.from_dict(saved["model"]), Recipe.from_dict(saved["recipe"])
        data, val, cells_file = saved["data"], saved["val"], saved.get("cells_file")
        cell_set = cells_from_meta(saved)
        extra = {"request": saved.get("request") or {}, **({"init": saved["init"]} if saved.get("init") else {})}
        from mobilenets.data.preprocess import Preprocessing

        pre = Preprocessing.from_dict(saved["preprocessing"]) if saved.get("preprocessing") else None
    else:
        if not (data and val and cells):
            raise MobileNetsError(f"geo train needs {arg('data')}, {arg('val')} and {arg('cells')} (training and "
                                  f"validation photo lists and a `geo cells` file)")
        rec = recipe if isinstance(recipe, Recipe) else get_recipe(recipe)
        if recipe_overrides:
            rec = rec.replace(**recipe_overrides)
        rec = task_recipe(rec, GeoTask.recipe_fields)
        data, val, cells_file = record_path(data), record_path(val), record_path(cells)
        cell_set = read_cells(cells)
        if init is not None:
            init_model, pre, init_classes = load_init(init)
            cfg = init_config(init_model.config, init, model, resolution,
                              dict(alpha=alpha, variant=variant, **(model_overrides or {})))
            weights, what = init_weights(init_model, init_classes, cell_set.tokens)
            if is_main():
                log(f"init from {init}: {what}")
            extra["init"] = {"path": record_path(init), "classifier": what}
        else:
            cfg = resolve_config(model, alpha=alpha, resolution=resolution, variant=variant, default=DEFAULT_MODEL,
                                 **(model_overrides or {}))
    train_table = read_photos(data, progress=opts.progress)
    val_table = read_photos(val, progress=opts.progress)
    task = GeoTask(cfg, cell_set, train_table, val_table, augment_for(rec, pre), rec.label_smoothing,
                   sources={"data": data, "val": val, "cells_file": cells_file}, init_weights=weights,
                   log=log if is_main() else None)
    if task.unassigned_train and is_main():
        log(f"{task.unassigned_train} of {len(train_table)} training photos lie in no cell (their cells had too few "
            f"photos) and are not trained on")
    summary = fit(task, rec, opts, extra_meta=extra, log=log)
    return {"output": summary["output"], "epochs": summary["epochs"], "steps": summary["steps"],
            "cells": len(cell_set), "train_photos": len(task.train), "val_photos": len(val_table),
            "skipped_rows": len(train_table.bad) + len(val_table.bad), "unassigned_train": task.unassigned_train,
            "metrics": summary["metrics"], "best_median_km": summary["best"],
            "baseline": biggest_cell_baseline(cell_set, val_table), "bad_files": summary["bad_files"],
            "model": summary["model"], "recipe": dataclasses.asdict(rec), "seconds": summary["seconds"]}


__all__ = ["DEFAULT_MODEL", "GeoMetrics", "GeoPhotos", "GeoTask", "biggest_cell_baseline", "biggest_cell_distances",
           "cells_from_meta",
           "cells_meta", "train"]
