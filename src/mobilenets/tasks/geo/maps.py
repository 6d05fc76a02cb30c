"""A map of the cells: S2 cell outlines (each edge drawn as a curve: S2 edges are great-circle
arcs, not straight in longitude/latitude) over a plain longitude/latitude grid, coloured by how
many photos each cell holds, with the photos as dots."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mobilenets.tasks.geo.cells import MAX_LEVEL, CellPartition, cell_levels


def _st_to_uv(s: np.ndarray) -> np.ndarray:
    """Inverse of S2's quadratic projection (C++ convention)."""
    return np.where(s >= 0.5, (4.0 * s * s - 1.0) / 3.0, (1.0 - 4.0 * (1.0 - s) ** 2) / 3.0)


def _face_uv_to_xyz(face: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """S2's (face, u, v) -> unnormalised xyz, ``[cells, points, 3]`` (``face`` per cell)."""
    one = np.ones_like(u)
    xyz = np.empty(u.shape + (3,))
    for f, parts in enumerate(((one, u, v), (-u, one, v), (-u, -v, one), (-one, -v, -u), (v, -one, -u),
                               (v, u, -one))):
        on = face == f
        xyz[on] = np.stack([p[on] for p in parts], axis=-1)
    return xyz


def cell_outlines(ids: np.ndarray, points_per_edge: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Closed outlines of cells: latitude and longitude arrays ``[cells, 4 * points_per_edge + 1]``."""
    import s2cell

    ids = np.asarray(ids, np.uint64)
    fij = np.array([s2cell.s2_cell_id_to_face_ij(int(c)) for c in ids], np.int64).reshape(-1, 3)
    levels = cell_levels(ids)
    size = np.left_shift(1, MAX_LEVEL - levels)
    i0, j0 = fij[:, 1] & ~(size - 1), fij[:, 2] & ~(size - 1)
    t = np.linspace(0.0, 1.0, points_per_edge, endpoint=False)
    # counter-clockwise in (s, t): bottom, right, top, left edges, then back to the start
    ds = np.concatenate([t, np.ones_like(t), 1 - t, np.zeros_like(t), [0.0]])
    dt = np.concatenate([np.zeros_like(t), t, np.ones_like(t), 1 - t, [0.0]])
    full = float(1 << MAX_LEVEL)
    s = (i0[:, None] + ds[None, :] * size[:, None]) / full
    tt = (j0[:, None] + dt[None, :] * size[:, None]) / full
    xyz = _face_uv_to_xyz(fij[:, 0], _st_to_uv(s), _st_to_uv(tt))
    lat = np.degrees(np.arctan2(xyz[..., 2], np.hypot(xyz[..., 0], xyz[..., 1])))
    lon = np.degrees(np.arctan2(xyz[..., 1], xyz[..., 0]))
    return lat, lon


def plot_cells(cells: CellPartition, path: str | Path, photos: tuple[np.ndarray, np.ndarray] | None = None,
               title: str | None = None, max_dots: int = 20000) -> Path:
    """Write the map PNG of ``cells`` (and up to ``max_dots`` of the ``photos``' ``(lat, lon)``)."""
    from matplotlib.collections import LineCollection

    from mobilenets.utils.scoped import matplotlib_backend

    path = Path(path)
    lat, lon = cell_outlines(cells.ids) if len(cells) else (np.zeros((0, 2)), np.zeros((0, 2)))
    lon = np.degrees(np.unwrap(np.radians(lon), axis=1))  # no jumps at the date line
    segments, counts = [], []
    for k in range(len(lat)):
        outline = np.stack([lon[k], lat[k]], axis=1)
        for shift in (-360.0, 0.0, 360.0):  # a cell across the date line shows at both edges
            moved = outline + [shift, 0.0]
            if moved[:, 0].max() >= -180 and moved[:, 0].min() <= 180:
                segments.append(moved)
                counts.append(cells.counts[k])
    with matplotlib_backend("Agg") as plt:
        fig, ax = plt.subplots(figsize=(12, 6.4), dpi=110)
        try:
            ax.set_facecolor("#f4f6f8")
            if photos is not None and len(photos[0]):
                step = max(1, len(photos[0]) // max_dots)
                dot = float(np.clip(4e4 / len(photos[0]), 1.5, 8.0))  # a few photos: bigger dots
                ax.scatter(photos[1][::step], photos[0][::step], s=dot, c="#7a8899", alpha=0.5, lw=0, zorder=1)
            if segments:
                colours = np.log10(np.maximum(np.asarray(counts, np.float64), 1))
                lines = LineCollection(segments, array=colours, cmap="viridis", linewidths=0.8, zorder=2)
                ax.add_collection(lines)
                bar = fig.colorbar(lines, ax=ax, fraction=0.025, pad=0.01)
                bar.set_label("photos in the cell (log10)")
            ax.set_xlim(-180, 180)
            ax.set_ylim(-90, 90)
            ax.set_xticks(np.arange(-180, 181, 30))
            ax.set_yticks(np.arange(-90, 91, 30))
            ax.grid(True, color="#d5dbe1", lw=0.6, zorder=0)
            ax.set_aspect("equal")
            ax.set_xlabel("longitude (degrees)")
            ax.set_ylabel("latitude (degrees)")
            levels = cells.levels
            span = f"levels {levels.min()}-{levels.max()}" if len(cells) else "no cells"
            ax.set_title(title or f"{len(cells)} S2 cells ({span}), {int(cells.counts.sum())} photos")
            fig.tight_layout()
            path.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(path)
        finally:
            plt.close(fig)
    return path


__all__ = ["cell_outlines", "plot_cells"]
