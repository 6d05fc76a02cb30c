"""PlaNet's adaptive partition of the globe into S2 cells, on NumPy arrays of 64-bit cell ids.

PlaNet (Weyand et al., 2016) starts from coarse S2 cells, splits a cell while it holds more than
``max_per_cell`` (t1) training photos and drops cells holding fewer than ``min_per_cell`` (t2);
each kept cell is one class. A photo's leaf cell id (level 30) is computed for all photos at once
(:func:`leaf_cell_ids`, the S2 reference's projection and Hilbert curve in NumPy, checked against
``s2cell`` by the tests); its ancestors are then pure bit arithmetic (:func:`parent_ids`), and
because the Hilbert order nests (a parent's descendants are one contiguous id range) one sort of
the leaf ids serves every level. Tokens and cell centres come from ``s2cell`` (once per cell).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mobilenets.errors import DataNotFoundError, MobileNetsError, arg

MAX_LEVEL = 30  # S2's leaf level (cells of about 1 cm)
_U64 = np.uint64
# S2's Hilbert-curve tables (s2coords.h): the child position of each (i, j) bit pair in each of the
# four orientations, and how visiting child `pos` changes the orientation (bit 0 swap, bit 1 invert).
IJ_TO_POS = np.array([[0, 1, 3, 2], [0, 3, 1, 2], [2, 3, 1, 0], [2, 1, 3, 0]], dtype=np.int64)
POS_TO_ORIENTATION = np.array([1, 0, 0, 3], dtype=np.int64)
LOOKUP_BITS = 4


def _lookup_table() -> np.ndarray:
    """``table[(i4 << 6) | (j4 << 2) | orientation] = (pos8 << 2) | orientation_after``: four levels
    of the Hilbert curve at once, built from the one-level rule above (as S2 itself does)."""
    entry = np.arange(1 << (2 * LOOKUP_BITS + 2), dtype=np.int64)
    i4, j4, orient = entry >> (LOOKUP_BITS + 2), (entry >> 2) & 15, entry & 3
    pos = np.zeros_like(entry)
    for k in range(LOOKUP_BITS - 1, -1, -1):
        child = IJ_TO_POS[orient, (((i4 >> k) & 1) << 1) | ((j4 >> k) & 1)]
        pos = (pos << 2) | child
        orient = orient ^ POS_TO_ORIENTATION[child]
    return (pos << 2) | orient


LOOKUP_POS = _lookup_table()


def _uv_to_st(u: np.ndarray) -> np.ndarray:
    """S2's quadratic projection (the default), C++ convention."""
    return np.where(u >= 0, 0.5 * np.sqrt(1.0 + 3.0 * np.abs(u)), 1.0 - 0.5 * np.sqrt(1.0 + 3.0 * np.abs(u)))


def leaf_cell_ids(lat, lon) -> np.ndarray:
    """The level-30 S2 cell ids (``uint64``) of points given in degrees; equal to
    ``s2cell.lat_lon_to_cell_id(lat, lon, 30)`` (up to the last ulp of NumPy's sin/cos)."""
    lat, lon = np.asarray(lat, np.float64).ravel(), np.asarray(lon, np.float64).ravel()
    if lat.shape != lon.shape:
        raise MobileNetsError(f"lat and lon must have the same length, got {lat.size} and {lon.size}")
    if not (np.all(np.abs(lat) <= 90) and np.all(np.isfinite(lon))):
        raise MobileNetsError("latitudes must lie in [-90, 90] and longitudes be finite (degrees)")
    lat_r, lon_r = np.radians(lat), np.radians(lon)
    cos_lat = np.cos(lat_r)
    xyz = np.stack([cos_lat * np.cos(lon_r), cos_lat * np.sin(lon_r), np.sin(lat_r)])
    axis = np.argmax(np.abs(xyz), axis=0)  # the first of equal components, as the reference
    n = np.arange(axis.size)
    face = axis + 3 * (xyz[axis, n] < 0)
    # (u, v) numerators per face: +x: (y, z); +y: (-x, z); +z: (-x, -y); -x: (z, y); -y: (z, -x); -z: (-y, -x)
    u_axis, v_axis = 1 - ((face + 1) >> 1), 2 - (face >> 1)
    u_sign = np.where(np.isin(face, (1, 2, 5)), -1.0, 1.0)
    v_sign = np.where(np.isin(face, (2, 4, 5)), -1.0, 1.0)
    w = xyz[axis, n]
    u, v = u_sign * (xyz[u_axis, n] / w), v_sign * (xyz[v_axis, n] / w)
    size = float(1 << MAX_LEVEL)
    i = np.clip(np.floor(size * _uv_to_st(u)), 0, size - 1).astype(np.int64)
    j = np.clip(np.floor(size * _uv_to_st(v)), 0, size - 1).astype(np.int64)
    ids = face.astype(np.int64) << 60
    bits = face.astype(np.int64) & 1  # each face's starting orientation: odd faces start swapped
    for k in range(7, -1, -1):  # 8 x 4 bits of i and j (the top chunk holds 2 of the 30)
        bits = LOOKUP_POS[(((i >> (4 * k)) & 15) << 6) | (((j >> (4 * k)) & 15) << 2) | (bits & 3)]
        ids |= (bits >> 2) << (8 * k)
    return (ids.astype(_U64) << _U64(1)) | _U64(1)


def lsb_for_level(level: int) -> np.uint64:
    """The lowest set bit of every cell id at ``level``."""
    return _U64(1) << _U64(2 * (MAX_LEVEL - int(level)))


def parent_ids(ids: np.ndarray, level: int) -> np.ndarray:
    """The ancestors at ``level`` of cells at ``level`` or finer: clear the bits below the
    level's lowest bit and set it."""
    lsb = lsb_for_level(level)
    return (np.asarray(ids, _U64) & ~(lsb * _U64(2) - _U64(1))) | lsb


def cell_levels(ids: np.ndarray) -> np.ndarray:
    """The level of each cell id (from its lowest set bit)."""
    ids = np.asarray(ids, _U64)
    lsb = ids & (~ids + _U64(1))
    return MAX_LEVEL - np.log2(lsb.astype(np.float64)).astype(np.int64) // 2  # powers of 2 are exact


def cell_ranges(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(min, max)`` leaf ids each cell covers (inclusive)."""
    ids = np.asarray(ids, _U64)
    lsb = ids & (~ids + _U64(1))
    return ids - (lsb - _U64(1)), ids + (lsb - _U64(1))


def mean_positions(lat, lon, groups: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean position of the points of each group, on the sphere (the mean of their unit vectors,
    so a cell that spans the date line does not average to the wrong side of the globe)."""
    lat_r, lon_r = np.radians(np.asarray(lat, np.float64)), np.radians(np.asarray(lon, np.float64))
    x, y, z = np.cos(lat_r) * np.cos(lon_r), np.cos(lat_r) * np.sin(lon_r), np.sin(lat_r)
    sx, sy, sz = (np.bincount(groups, weights=c, minlength=n_groups) for c in (x, y, z))
    return np.degrees(np.arctan2(sz, np.hypot(sx, sy))), np.degrees(np.arctan2(sy, sx))


@dataclass
class CellPartition:
    """The kept cells, one class each, in S2 id order (so class ``k`` is ``ids[k]``)."""

    ids: np.ndarray  # uint64 S2 cell ids, sorted
    counts: np.ndarray  # training photos in each cell
    mean_lat: np.ndarray  # mean position of each cell's photos, degrees
    mean_lon: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def levels(self) -> np.ndarray:
        return cell_levels(self.ids)

    @property
    def tokens(self) -> list[str]:
        import s2cell

        return [s2cell.cell_id_to_token(int(c)) for c in self.ids]

    def centres(self) -> tuple[np.ndarray, np.ndarray]:
        """Latitude and longitude of each cell's centre."""
        import s2cell

        ll = np.array([s2cell.cell_id_to_lat_lon(int(c)) for c in self.ids], np.float64).reshape(-1, 2)
        return ll[:, 0], ll[:, 1]

    def locations(self, where: str = "mean") -> tuple[np.ndarray, np.ndarray]:
        """Where a prediction of each cell points: its photos' mean (``"mean"``) or its centre."""
        if where not in ("mean", "centre"):
            raise MobileNetsError(f"where must be 'mean' or 'centre', got {where!r}")
        return (self.mean_lat, self.mean_lon) if where == "mean" else self.centres()

    def assign(self, lat, lon) -> np.ndarray:
        """The class of each point (-1 where no kept cell holds it)."""
        return self.assign_leaves(leaf_cell_ids(lat, lon))

    def assign_leaves(self, leaves: np.ndarray) -> np.ndarray:
        if not len(self.ids):
            return np.full(len(leaves), -1, np.int64)
        low, high = cell_ranges(self.ids)  # disjoint cells: sorted by id is sorted by range
        k = np.searchsorted(low, leaves, side="right") - 1
        inside = (k >= 0) & (leaves <= high[np.maximum(k, 0)])
        return np.where(inside, k, -1).astype(np.int64)

    @classmethod
    def from_tokens(cls, tokens, counts, mean_lat, mean_lon) -> CellPartition:
        import s2cell

        try:
            ids = np.array([s2cell.token_to_cell_id(t) for t in tokens], _U64)
        except (ValueError, TypeError) as exc:
            raise MobileNetsError(f"not an S2 cell token: {exc}") from None
        order = np.argsort(ids, kind="stable")
        low, high = cell_ranges(ids[order])
        if len(ids) > 1 and np.any(low[1:] <= high[:-1]):
            raise MobileNetsError("the cells overlap (one is inside another): not a partition")
        return cls(ids[order], np.asarray(counts, np.int64)[order], np.asarray(mean_lat, np.float64)[order],
                   np.asarray(mean_lon, np.float64)[order])


def check_partition_args(max_per_cell: int, min_per_cell: int, min_level: int, max_level: int) -> None:
    for name, value in (("max_per_cell", max_per_cell), ("min_per_cell", min_per_cell),
                        ("min_level", min_level), ("max_level", max_level)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise MobileNetsError(f"{arg(name)} must be an integer, got {value!r}")
    if max_per_cell < 1 or min_per_cell < 1:
        raise MobileNetsError(f"{arg('max_per_cell')} and {arg('min_per_cell')} must be >= 1, got {max_per_cell} "
                              f"and {min_per_cell}")
    if min_per_cell > max_per_cell:
        raise MobileNetsError(f"{arg('min_per_cell')} ({min_per_cell}) must not exceed {arg('max_per_cell')} "
                              f"({max_per_cell})")
    if not 0 <= min_level <= max_level <= MAX_LEVEL:
        raise MobileNetsError(f"levels must satisfy 0 <= {arg('min_level')} <= {arg('max_level')} <= 30, got "
                              f"{min_level} and {max_level}")


def partition(lat, lon, max_per_cell: int, min_per_cell: int, min_level: int = 2,
              max_level: int = 18) -> tuple[CellPartition, np.ndarray]:
    """PlaNet's adaptive partition of the points ``(lat, lon)`` (degrees): ``(cells, classes)``
    with ``classes[p]`` the class of point ``p`` or -1 if its cell was dropped (fewer than
    ``min_per_cell`` points). Cells start at ``min_level`` and a cell holding more than
    ``max_per_cell`` points is split into its four children, down to ``max_level``."""
    check_partition_args(max_per_cell, min_per_cell, min_level, max_level)
    lat, lon = np.asarray(lat, np.float64).ravel(), np.asarray(lon, np.float64).ravel()
    leaves = leaf_cell_ids(lat, lon)
    order = np.argsort(leaves, kind="stable")
    sorted_leaves = leaves[order]
    cell_of = np.zeros(len(leaves), _U64)  # final cell (kept or dropped) of each sorted point
    kept: list[np.ndarray] = []
    active = np.arange(len(leaves))  # sorted positions still inside a cell being split
    for level in range(min_level, max_level + 1):
        if not len(active):
            break
        p = parent_ids(sorted_leaves[active], level)  # sorted, since the Hilbert order nests
        first = np.ones(len(p), bool)
        first[1:] = p[1:] != p[:-1]
        starts = np.flatnonzero(first)
        counts = np.diff(np.append(starts, len(p)))
        split = (counts > max_per_cell) & (level < max_level)
        done = ~np.repeat(split, counts)
        cell_of[active[done]] = p[done]
        kept.append(p[starts][~split & (counts >= min_per_cell)])
        active = active[~done]
    ids = np.concatenate(kept) if kept else np.zeros(0, _U64)
    ids.sort()
    sorted_classes = np.full(len(leaves), -1, np.int64)
    if len(ids):
        k = np.minimum(np.searchsorted(ids, cell_of), len(ids) - 1)
        sorted_classes = np.where(ids[k] == cell_of, k, -1)
    classes = np.empty(len(leaves), np.int64)
    classes[order] = sorted_classes
    used = classes >= 0
    counts = np.bincount(classes[used], minlength=len(ids)).astype(np.int64)
    mean_lat, mean_lon = mean_positions(lat[used], lon[used], classes[used], len(ids))
    return CellPartition(ids, counts, mean_lat, mean_lon), classes


CELL_COLUMNS = ("class", "token", "level", "photos", "mean_latitude", "mean_longitude", "centre_latitude",
                "centre_longitude")


def write_cells(cells: CellPartition, path: str | Path) -> Path:
    """One row per cell (:data:`CELL_COLUMNS`), the class index first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clat, clon = cells.centres()
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(CELL_COLUMNS)
        for k, (token, level) in enumerate(zip(cells.tokens, cells.levels)):
            writer.writerow((k, token, int(level), int(cells.counts[k]), f"{cells.mean_lat[k]:.6f}",
                             f"{cells.mean_lon[k]:.6f}", f"{clat[k]:.6f}", f"{clon[k]:.6f}"))
    return path


def read_cells(path: str | Path) -> CellPartition:
    """The cells :func:`write_cells` wrote (classes must be 0..n-1 in S2 id order, as written)."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"cells file not found: {path}")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or set(CELL_COLUMNS[:6]) - set(rows[0]):
        raise MobileNetsError(f"{path} is not a cells file (expected the columns {','.join(CELL_COLUMNS)})")
    short = next((k for k, r in enumerate(rows) if None in r.values()), None)
    if short is not None:  # csv.DictReader fills the missing fields with None
        raise MobileNetsError(f"{path} line {short + 2}: {sum(v is not None for v in rows[short].values())} fields, "
                              f"expected {len(rows[0])} ({','.join(CELL_COLUMNS)})")
    try:
        cells = CellPartition.from_tokens([r["token"] for r in rows], [int(r["photos"]) for r in rows],
                                          [float(r["mean_latitude"]) for r in rows],
                                          [float(r["mean_longitude"]) for r in rows])
        classes = [int(r["class"]) for r in rows]
    except (ValueError, TypeError, MobileNetsError) as exc:  # TypeError: a short row (a field is None)
        raise MobileNetsError(f"{path}: {exc}") from None
    bad = next((i for i, c in enumerate(cells.counts) if c < 1), None)
    if bad is None:
        bad = next((i for i, (y, x) in enumerate(zip(cells.mean_lat, cells.mean_lon))
                    if not (-90 <= y <= 90 and -180 <= x <= 180)), None)
    if bad is not None:  # cells are in S2 id order, as the rows are in a file `geo cells` wrote
        raise MobileNetsError(f"{path}: cell {cells.tokens[bad]} has {int(cells.counts[bad])} photos at "
                              f"({cells.mean_lat[bad]}, {cells.mean_lon[bad]}): a cell holds >= 1 photo at a "
                              f"latitude in [-90, 90] and a longitude in [-180, 180]")
    if classes != list(range(len(rows))) or cells.tokens != [r["token"] for r in rows]:
        raise MobileNetsError(f"{path}: classes must be 0..{len(rows) - 1} in S2 id order, as `geo cells` writes them")
    return cells


__all__ = ["CELL_COLUMNS", "CellPartition", "read_cells", "write_cells", "MAX_LEVEL", "cell_levels", "cell_ranges",
           "check_partition_args", "leaf_cell_ids", "lsb_for_level", "mean_positions", "parent_ids", "partition"]
