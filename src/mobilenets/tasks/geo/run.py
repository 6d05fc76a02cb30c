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


def make_cells(photos: str | Path, max_per_cell: int, min_per_cell: int, output: str | Path, min_level: int = 2,
               max_level: int = 18, map_png: str | Path | None = None, log=print) -> dict:
    """``mobilenet geo cells``: partition the photos of the CSV ``photos`` (coordinates only: the
    images are not opened, but rows whose image does not exist are skipped and counted), write ``output`` (one row per cell), the map PNG (default: beside
    ``output``) and the skipped rows (``<output>.skipped.csv``, if any); returns a summary."""
    check_partition_args(max_per_cell, min_per_cell, min_level, max_level)
    out = Path(output)
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
    png = plot_cells(cells, map_png or out.with_suffix(".png"), (table.lat, table.lon))
    levels = cells.levels
    return {"cells": len(cells), "output": str(out), "map": str(png), "photos": len(table),
            "assigned": int((classes >= 0).sum()), "unassigned": int((classes < 0).sum()),
            "skipped_rows": len(table.bad), "levels": [int(levels.min()), int(levels.max())],
            "largest_cell": int(cells.counts.max()), "seconds": round(seconds, 3), "cpu_seconds": round(cpu, 3)}


__all__ = ["make_cells"]
