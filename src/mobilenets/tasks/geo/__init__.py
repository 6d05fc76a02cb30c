"""Geolocation as PlaNet does it (paper Section 4, Table 11): an adaptive partition of the globe
into S2 cells (:mod:`.cells`; the ``geo cells`` command: :mod:`.run`), classification of photos into
cells through the one training loop (:mod:`.task`), and great-circle evaluation at 1/25/200/750/2500 km (:mod:`.evaluate`), with a
built-in geotagged stand-in (:mod:`.standin`) so the whole path runs without downloads."""

from mobilenets.utils.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    ".cells": ["CellPartition", "leaf_cell_ids", "parent_ids", "partition", "read_cells", "write_cells"],
    ".data": ["PhotoTable", "read_photos"],
    ".evaluate": ["TABLE11", "THRESHOLDS_KM", "distance_metrics", "eval_files", "haversine_km", "plot_cdf",
                  "table11_text"],
    ".maps": ["plot_cells"],
    ".predict": ["eval_checkpoint", "predict", "write_predictions"],
    ".run": ["make_cells"],
    ".standin": ["population_points", "write_standin"],
    ".task": ["GeoTask", "biggest_cell_baseline", "train"],
})
