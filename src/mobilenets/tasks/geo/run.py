"""The ``geo cells`` command as a function: read the photos, partition them (:mod:`.cells`), write the
cells file, the skipped rows and the map (:mod:`.maps`). Orchestration lives here so that
``cells`` stays pure arithmetic and imports neither the photo reader nor the map."""

from __future__ import annotations

import time
from pathlib import Path

from mobilenets.errors import MobileNetsError, arg
from mobilenets.tasks.geo.cells import check_partition_args, partition, write_cells
from mobilenets.tasks.geo.data import read_photos
from mobilenets.tasks.geo.maps import plot_cells


def check_file_target(path: Path, name: str) -> None:
    """One line, before any work, if the file ``path`` cannot be written: it is a folder, or a
    folder on its way is a file (nothing is created here)."""
    if path.is_dir():
        raise MobileNetsError(f"{name} {path} is a folder, not a file")
    blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise MobileNetsError(f"cannot write {name} {path}: {blocker} is a file, not a folder")


def make_cells(photos: str | Path, max_per_cell: int, min_per_cell: int, output: str | Path, min_level: int = 2,
               max_level: int = 18, map_png: str | Path | None = None, log=print) -> dict:
    """``mobilenet geo cells``: partition the photos of the CSV ``photos`` (coordinates only: the
    images are not opened, but rows whose image does not exist are skipped and counted), write ``output`` (one row per cell), the map PNG (default: beside
    ``output``) and the skipped rows (``<output>.skipped.csv``, if any); returns a summary."""
    check_partition_args(max_per_cell, min_per_cell, min_level, max_level)
    out = Path(output)
    png_path = Path(map_png) if map_png else out.with_suffix(".png")
    for name, path in ((arg("output"), out), (arg("map_png", flag="--map"), png_path)):
        check_file_target(path, name)  # before any work: a cells file never lacks its map
    table = read_photos(photos, check_images="exists")
    start, cpu = time.perf_counter(), time.process_time()
    cells, classes = partition(table.lat, table.lon, max_per_cell, min_per_cell, min_level, max_level)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    if not len(cells):
        raise MobileNetsError(f"no cell holds {arg('min_per_cell', min_per_cell)} photos ({len(table)} photos): "
                              f"lower {arg('min_per_cell')}")
    write_cells(cells, out)
    skipped = table.write_bad_rows(out.with_suffix(".skipped.csv"))
    line = table.skipped_line(skipped)
    if line:
        log(line)
    png = plot_cells(cells, png_path, (table.lat, table.lon))
    levels = cells.levels
    return {"cells": len(cells), "output": str(out), "map": str(png), "photos": len(table),
            "assigned": int((classes >= 0).sum()), "unassigned": int((classes < 0).sum()),
            "skipped_rows": len(table.bad), "levels": [int(levels.min()), int(levels.max())],
            "largest_cell": int(cells.counts.max()), "seconds": round(seconds, 3), "cpu_seconds": round(cpu, 3)}


__all__ = ["make_cells"]
