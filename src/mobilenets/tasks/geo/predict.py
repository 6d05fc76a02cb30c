"""Where a trained geolocation model places photos: ``mobilenet geo predict`` (top cells with
probabilities for image files) and ``mobilenet geo eval --checkpoint RUN --data CSV`` (every
photo of a list, scored against its coordinates, beside the always-the-biggest-cell baseline)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mobilenets.errors import MobileNetsError
from mobilenets.tasks.geo.evaluate import distance_metrics, haversine_km, plot_cdf, plot_path, table11_text
from mobilenets.tasks.geo.task import GeoPhotos, biggest_cell_distances, cells_from_meta


def load_geo_checkpoint(checkpoint: str):
    """``(model, cells, meta)`` of a geolocation run folder or weights file."""
    from mobilenets.weights.checkpoint import load_checkpoint

    model, meta = load_checkpoint(checkpoint)
    try:
        cells = cells_from_meta(meta)
    except MobileNetsError as exc:
        raise MobileNetsError(f"{checkpoint}: {exc}") from None
    if len(cells) != model.config.num_classes:
        raise MobileNetsError(f"{checkpoint}: {len(cells)} cells but {model.config.num_classes} classifier outputs")
    return model, cells, meta


def predict(checkpoint: str, images: Sequence[str], top_k: int = 5, centre: bool = False,
            device: str = "cpu", *, amp: bool = False, channels_last: bool = False,
            batch_size: int = 32) -> list[dict[str, Any]]:
    """For each image: ``latitude``/``longitude`` of the top cell (its photos' mean position, or
    its centre with ``centre=True``) and the ``top_k`` cells (token, probability, position). The
    images run in batches of ``batch_size`` on ``device``, with bf16 autocast (``amp``) and
    ``channels_last`` as asked (:func:`~mobilenets.infer.images.predict_files`)."""
    from mobilenets.data.datasets import Augment, eval_transform
    from mobilenets.infer.context import inference_context, prepare_model
    from mobilenets.infer.images import predict_files

    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise MobileNetsError(f"top_k must be an integer >= 1, got {top_k!r}")
    ctx = inference_context(device, amp, channels_last)
    model, cells, meta = load_geo_checkpoint(checkpoint)
    model = prepare_model(model, ctx)
    transform = eval_transform(model.config.resolution, Augment.for_eval(meta))
    lat, lon = cells.locations("centre" if centre else "mean")
    tokens = meta["classes"]
    probs = predict_files(model, images, transform, ctx, batch_size=batch_size)
    results = []
    for path, row in zip(images, probs):
        p, idx = row.topk(min(top_k, len(cells)))
        top = [{"cell": tokens[i], "probability": float(v), "latitude": float(lat[i]), "longitude": float(lon[i])}
               for v, i in zip(p.tolist(), idx.tolist())]
        results.append({"image": str(path), "latitude": top[0]["latitude"], "longitude": top[0]["longitude"],
                        "top": top})
    return results


def write_predictions(results: list[dict[str, Any]], path: str | Path) -> Path:
    """Predictions as a photo CSV (``path,latitude,longitude``), what ``geo eval --predictions`` reads."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(("path", "latitude", "longitude"))
        writer.writerows((r["image"], f"{r['latitude']:.6f}", f"{r['longitude']:.6f}") for r in results)
    return path


def predict_table(model, cells, meta: dict[str, Any], table, batch_size: int = 256, workers: int = 0,
                  device: str = "auto", centre: bool = False, progress: bool = False, *, amp: bool = False,
                  channels_last: bool = False):
    """Top-cell positions for every photo of ``table``: ``(lat, lon, used, bad)`` where ``used``
    marks the photos that decoded and ``bad`` lists ``(path, reason)`` of those that did not.
    The photos run through the one inference loop (:func:`~mobilenets.infer.loop.run_batches`)
    on ``device``, with bf16 autocast (``amp``) and ``channels_last`` as asked."""
    from torch.utils.data import DataLoader

    from mobilenets.data.datasets import Augment, eval_transform
    from mobilenets.data.samples import collate_skip_bad
    from mobilenets.infer.context import inference_context, prepare_model
    from mobilenets.infer.loop import run_batches

    ctx = inference_context(device, amp, channels_last)
    model = prepare_model(model, ctx)
    res = model.config.resolution
    photos = GeoPhotos(table, eval_transform(res, Augment.for_eval(meta)), res)
    loader = DataLoader(photos, batch_size=batch_size, num_workers=workers, collate_fn=collate_skip_bad,
                        pin_memory=ctx.device.type == "cuda")
    cell_lat, cell_lon = cells.locations("centre" if centre else "mean")
    top = np.full(len(table), -1, np.int64)
    bad: list[tuple[str, str]] = []

    def collect(logits: torch.Tensor, rows: torch.Tensor) -> None:
        top[rows.cpu().numpy()] = logits.argmax(dim=1).cpu().numpy()

    run_batches(model, loader, collect, ctx, progress=progress, desc="geo eval", skipped=bad.extend)
    used = top >= 0
    return np.where(used, cell_lat[top], np.nan), np.where(used, cell_lon[top], np.nan), used, bad


def eval_checkpoint(checkpoint: str, data: str | None = None, batch_size: int = 256, workers: int = 0,
                    device: str = "auto", centre: bool = False, plot: str | Path | bool | None = True,
                    progress: bool = False, log: Any = print, *, amp: bool = False,
                    channels_last: bool = False) -> dict[str, Any]:
    """Score a geolocation checkpoint on the photo CSV ``data`` (default: the run's validation
    list): distance metrics of the model and of the always-the-biggest-cell baseline, the Table 11
    text, and the CDF PNG ``plot`` (True, the default: ``geo_eval_cdf.png`` beside the checkpoint;
    None or False: no plot, the result's ``plot`` is None)."""
    from mobilenets.tasks.geo.data import read_photos, write_skipped
    from mobilenets.weights.checkpoint import resolve_checkpoint

    model, cells, meta = load_geo_checkpoint(checkpoint)
    data = data or meta.get("val")
    if not data:
        raise MobileNetsError(f"{checkpoint} records no validation list: give data=")
    table = read_photos(data, progress=progress)
    lat, lon, used, bad = predict_table(model, cells, meta, table, batch_size, workers, device, centre, progress,
                                        amp=amp, channels_last=channels_last)
    why = dict(bad)
    scored = table.drop(~used, [f"unreadable image ({why.get(p, 'not decoded')})" for p in np.asarray(table.paths)[~used]])
    default_png = resolve_checkpoint(checkpoint).parent / "geo_eval_cdf.png"
    png = plot_path(plot, default_png)
    beside = png or default_png  # the skipped rows are listed beside the plot, or where it would be
    line = scored.skipped_line(write_skipped(beside.with_name(beside.stem + "_skipped.csv"), scored))
    if line:
        log(line)
    if not len(scored):
        raise MobileNetsError(f"{data}: none of its {len(table)} images could be decoded")
    km = haversine_km(scored.lat, scored.lon, lat[used], lon[used])
    base_km = biggest_cell_distances(cells, scored)
    result = {"model": distance_metrics(km), "baseline": distance_metrics(base_km), "skipped_rows": len(scored.bad),
              "cells": len(cells)}
    result["plot"] = str(plot_cdf({"MobileNet": km, "biggest cell": base_km}, png,
                                  title=f"Geolocation error on {Path(data).name}")) if png else None
    result["table"] = table11_text({"MobileNet": result["model"], "biggest cell": result["baseline"]})
    return result


__all__ = ["eval_checkpoint", "load_geo_checkpoint", "predict", "predict_table", "write_predictions"]
