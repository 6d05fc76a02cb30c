"""The adaptive S2 partition: cell ids equal to the s2cell reference, PlaNet's invariants on a
million points drawn from real population density, the cells file and the map."""

from __future__ import annotations

import time

import numpy as np
import pytest
import s2cell

from mobilenets.errors import MobileNetsError
from mobilenets.tasks.geo.cells import (
    CellPartition,
    cell_levels,
    cell_ranges,
    leaf_cell_ids,
    mean_positions,
    parent_ids,
    partition,
    read_cells,
    write_cells,
)
from mobilenets.tasks.geo.maps import cell_outlines
from mobilenets.tasks.geo.run import make_cells
from mobilenets.tasks.geo.standin import population_points

# the poles, the date line from both sides, the cube's face centres, edges and corners
EDGES = [(90, 0), (-90, 0), (90, 180), (0, 180), (0, -180), (45, 180), (-45, -180), (0, 0), (0, 90), (0, -90),
         (0, 45), (0, -135), (35.26438968, 45), (-35.26438968, -135), (45, 0), (-45, 90), (89.9999999, 10),
         (-89.9999999, -170), (12.5, 179.9999999), (-12.5, -179.9999999)]


def random_points(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    lat = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))  # uniform on the sphere
    return np.concatenate([lat, [p[0] for p in EDGES]]), np.concatenate([rng.uniform(-180, 180, n),
                                                                         [p[1] for p in EDGES]])


def test_leaf_ids_and_parents_equal_s2cell():
    lat, lon = random_points(5000)
    leaves = leaf_cell_ids(lat, lon)
    assert leaves.dtype == np.uint64
    ref = [s2cell.lat_lon_to_cell_id(float(a), float(b), 30) for a, b in zip(lat, lon)]
    assert [int(v) for v in leaves] == ref
    for level in (0, 1, 2, 7, 13, 22, 29, 30):
        parents = parent_ids(leaves[:600], level)
        assert [int(v) for v in parents] == [s2cell.lat_lon_to_cell_id(float(a), float(b), level)
                                             for a, b in zip(lat[:600], lon[:600])]
        assert set(cell_levels(parents).tolist()) == {level}
    # a parent's leaf range holds its children's
    low, high = cell_ranges(parent_ids(leaves, 9))
    assert np.all((low <= leaves) & (leaves <= high))


def reference_partition(leaves: np.ndarray, t1: int, t2: int, lo: int, hi: int) -> np.ndarray:
    """The final cell (kept or dropped) of every point, level by level with np.unique over all points."""
    final = np.zeros(len(leaves), np.uint64)
    open_ = np.ones(len(leaves), bool)
    for level in range(lo, hi + 1):
        cells = parent_ids(leaves, level)
        ids, inverse, counts = np.unique(cells, return_inverse=True, return_counts=True)
        closes = open_ & ((counts[inverse] <= t1) | (level == hi))
        final[closes] = cells[closes]
        open_ &= ~closes
    return final


def test_partition_invariants_on_a_million_points_from_population_density():
    pts = population_points(1_000_000, seed=3)
    t1, t2, lo, hi = 2000, 40, 2, 10
    start, cpu = time.perf_counter(), time.process_time()
    cells, classes = partition(pts["lat"], pts["lon"], t1, t2, lo, hi)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(f"\npartition of 1,000,000 points: {len(cells)} cells in {seconds:.2f} s ({cpu:.2f} s CPU)")
    # CPU time, not wall time: the machine is shared. Measured ~1.5 s; the goal is <= 10 s.
    assert cpu < 10
    levels = cells.levels
    assert len(cells) > 1000 and levels.min() == lo and levels.max() == hi
    # every kept cell holds >= t2 photos, and <= t1 unless it is at max_level
    assert cells.counts.min() >= t2
    assert np.all((cells.counts <= t1) | (levels == hi))
    assert np.any((cells.counts > t1) & (levels == hi))  # the case exists here (dense city centres)
    # disjoint: no kept cell is an ancestor of another
    low, high = cell_ranges(cells.ids)
    assert np.all(np.diff(cells.ids.astype(np.float64)) > 0) and np.all(low[1:] > high[:-1])
    for level in range(lo, hi):
        deeper = cells.ids[levels > level]
        assert not np.isin(parent_ids(deeper, level), cells.ids[levels == level]).any()
    # each assigned photo lies in exactly one cell: its own, and no other
    leaves = leaf_cell_ids(pts["lat"], pts["lon"])
    used = classes >= 0
    assert np.all(parent_ids(leaves[used], 0) == parent_ids(cells.ids[classes[used]], 0))
    inside = (low[classes[used]] <= leaves[used]) & (leaves[used] <= high[classes[used]])
    assert inside.all()
    hits = np.searchsorted(low, leaves, side="right") - np.searchsorted(high, leaves, side="left")
    assert set(np.unique(hits[used])) == {1} and set(np.unique(hits[~used])) <= {0}
    # counts sum to the assigned photos, and match them cell by cell
    assert cells.counts.sum() == used.sum() and np.array_equal(cells.counts, np.bincount(classes[used],
                                                                                         minlength=len(cells)))
    assert 0 < (~used).sum() < 0.01 * len(classes)
    # the same cells as a plain level-by-level reference; dropped photos are those of cells under t2
    final = reference_partition(leaves, t1, t2, lo, hi)
    ids, counts = np.unique(final, return_counts=True)
    assert np.array_equal(ids[counts >= t2], cells.ids)
    assert np.array_equal(np.isin(final, ids[counts < t2]), ~used)
    assert np.array_equal(cells.assign(pts["lat"][:50000], pts["lon"][:50000]), classes[:50000])


def test_partition_arguments_and_edge_cases():
    lat, lon = random_points(200, seed=1)
    for bad in (dict(max_per_cell=0, min_per_cell=1), dict(max_per_cell=5, min_per_cell=6),
                dict(max_per_cell=5, min_per_cell=1, min_level=8, max_level=7),
                dict(max_per_cell=5, min_per_cell=1, max_level=31), dict(max_per_cell=2.5, min_per_cell=1)):
        with pytest.raises(MobileNetsError):
            partition(lat, lon, **bad)
    with pytest.raises(MobileNetsError, match="latitudes"):
        partition([91.0, 0.0], [0.0, 0.0], 5, 1)
    with pytest.raises(MobileNetsError, match="latitudes"):
        leaf_cell_ids([np.nan], [0.0])
    cells, classes = partition(lat, lon, 10**9, 10**9, 0, 0)  # nothing reaches t2: every photo unassigned
    assert len(cells) == 0 and np.all(classes == -1)
    cells, classes = partition(lat, lon, 10**9, 1, 0, 0)  # the six faces
    assert len(cells) == 6 and sorted(parent_ids(cells.ids, 0).tolist()) == cells.ids.tolist()
    assert cells.counts.sum() == len(lat)


def test_mean_positions_on_the_sphere():
    lat, lon = mean_positions([10.0, 10.0], [179.5, -179.5], np.array([0, 0]), 1)  # across the date line
    assert abs(abs(lon[0]) - 180.0) < 1e-9 and abs(lat[0] - 10.0) < 0.01
    lat, lon = mean_positions([0, 0, 30], [0, 90, 45], np.array([0, 0, 1]), 2)
    assert np.allclose([lat[0], lon[0], lat[1], lon[1]], [0, 45, 30, 45])


def test_cells_file_round_trip_and_errors(tmp_path):
    pts = population_points(20000, seed=0)
    cells, _ = partition(pts["lat"], pts["lon"], 500, 20, 3, 12)
    path = write_cells(cells, tmp_path / "cells.csv")
    back = read_cells(path)
    assert back.tokens == cells.tokens and np.array_equal(back.ids, cells.ids)
    assert np.array_equal(back.counts, cells.counts) and np.allclose(back.mean_lat, cells.mean_lat, atol=1e-6)
    header, first = path.read_text().splitlines()[:2]
    assert header == "class,token,level,photos,mean_latitude,mean_longitude,centre_latitude,centre_longitude"
    centre = s2cell.token_to_lat_lon(cells.tokens[0])
    assert first.split(",")[:4] == ["0", cells.tokens[0], str(cells.levels[0]), str(cells.counts[0])]
    assert np.allclose([float(v) for v in first.split(",")[6:]], centre, atol=1e-6)
    rows = path.read_text().splitlines()
    (tmp_path / "swapped.csv").write_text("\n".join([rows[0], rows[2], rows[1], *rows[3:]]))
    with pytest.raises(MobileNetsError, match="S2 id order"):
        read_cells(tmp_path / "swapped.csv")
    parent = s2cell.cell_id_to_token(int(parent_ids(cells.ids[:1], 1)[0]))
    (tmp_path / "overlap.csv").write_text(path.read_text() + f"{len(cells)},{parent},1,5,0,0,0,0\n")
    with pytest.raises(MobileNetsError, match="overlap"):
        read_cells(tmp_path / "overlap.csv")
    with pytest.raises(FileNotFoundError):
        read_cells(tmp_path / "missing.csv")
    with pytest.raises(MobileNetsError):
        CellPartition.from_tokens(["zz-not-a-token"], [1], [0.0], [0.0])


def test_make_cells_writes_cells_map_and_skipped_rows(tmp_path):
    pts = population_points(3000, seed=2)
    lines = ["path,latitude,longitude"] + [f"p{k}.jpg,{a:.6f},{b:.6f}" for k, (a, b) in
                                           enumerate(zip(pts["lat"], pts["lon"]))]
    lines += ["bad1.jpg,91.0,0", "bad2.jpg,10,not-a-number", "too,few", "missing.jpg,10,10"]
    (tmp_path / "photos.csv").write_text("\n".join(lines) + "\n")
    for k in range(3000):  # only coordinates are read, but a row whose image does not exist is skipped
        (tmp_path / f"p{k}.jpg").touch()
    said = []
    summary = make_cells(tmp_path / "photos.csv", 200, 10, tmp_path / "out" / "cells.csv", log=said.append)
    assert summary["photos"] == 3000 and summary["skipped_rows"] == 4
    assert summary["assigned"] + summary["unassigned"] == 3000
    assert len(said) == 1 and "skipped 4 of 3004 rows" in said[0] and "cells.skipped.csv" in said[0]
    skipped = (tmp_path / "out" / "cells.skipped.csv").read_text().splitlines()
    assert len(skipped) == 5 and "latitude 91.0 out of range" in skipped[1] and "image not found" in skipped[4]
    png = (tmp_path / "out" / "cells.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20000
    assert len(read_cells(tmp_path / "out" / "cells.csv")) == summary["cells"]


def test_cell_outlines_enclose_their_cells():
    pts = population_points(5000, seed=4)
    cells, _ = partition(pts["lat"], pts["lon"], 100, 1, 4, 12)
    lat, lon = cell_outlines(cells.ids, points_per_edge=4)
    assert lat.shape == (len(cells), 17) and np.allclose(lat[:, 0], lat[:, -1])
    clat, clon = cells.centres()
    # points a little inside each corner, towards the centre, lie in the cell itself
    for k in range(0, 17, 4):
        w = 0.05
        y = (1 - w) * lat[:, k] + w * clat
        x = np.degrees(np.angle((1 - w) * np.exp(1j * np.radians(lon[:, k])) + w * np.exp(1j * np.radians(clon))))
        assert np.array_equal(cells.assign(y, x), np.arange(len(cells)))
