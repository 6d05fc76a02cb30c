"""Geotagged photo lists: CSV files of ``path, latitude, longitude`` (the layout of the MP-16 /
YFCC lists and of Im2GPS), read into arrays, with every unusable row skipped, counted and listed.

A header row is optional; when present (a first row naming the columns) its names pick the columns (``path``/``image``/
``img_id``/``id``/``file``, ``latitude``/``lat``, ``longitude``/``lon``/``lng``, any case; other
columns are ignored), else the first three columns are used. Relative image paths are relative
to the CSV's folder (or ``image_root``). A row is skipped (and listed, with its line number and
why) when it has too few fields, coordinates that are not finite numbers or out of range
(latitude in [-90, 90], longitude in [-180, 180]), or, with ``check_images``, an image that is
missing or whose header cannot be read (images that fail only when fully decoded are caught by
the training loop and listed in the run's ``bad_files.txt``); with ``check_images="exists"`` only
a missing image (``geo cells``, which reads coordinates only).

A photo listed twice (the same image file) with the same coordinates is reported: the second row
is skipped and listed as a duplicate of the first. Listed twice with different coordinates it
would train under two labels: that is refused, naming both lines.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mobilenets.errors import DataNotFoundError, MobileNetsError

PATH_NAMES = ("path", "image", "img_id", "image_id", "id", "file", "filename", "img_path")
LAT_NAMES = ("latitude", "lat")
LON_NAMES = ("longitude", "lon", "lng", "long")


@dataclass
class PhotoTable:
    """The usable rows of a photo CSV, and the others with their reasons."""

    source: str  # the CSV file
    keys: list[str]  # the path column as written (what predictions are matched on)
    paths: list[str]  # the image files (keys resolved against the CSV's folder or image_root)
    lat: np.ndarray  # float64 degrees
    lon: np.ndarray
    rows: int  # data rows read (usable + skipped)
    bad: list[tuple[int, str, str]] = field(default_factory=list)  # (line, path or text, reason)
    lines: np.ndarray | None = None  # the CSV line of each usable row

    def __len__(self) -> int:
        return len(self.keys)

    def subset(self, mask: np.ndarray) -> PhotoTable:
        """The rows where ``mask`` is true (the others are not listed as bad: the caller says why)."""
        idx = np.flatnonzero(mask)
        return PhotoTable(self.source, [self.keys[i] for i in idx], [self.paths[i] for i in idx], self.lat[idx],
                          self.lon[idx], self.rows, list(self.bad), None if self.lines is None else self.lines[idx])

    def drop(self, mask: np.ndarray, reason: str | Sequence[str]) -> PhotoTable:
        """The rows where ``mask`` is false; those where it is true become skipped rows (``reason``:
        one for all, or one per row)."""
        idx = np.flatnonzero(mask)
        reasons = [reason] * len(idx) if isinstance(reason, str) else list(reason)
        kept = self.subset(~np.asarray(mask, bool))
        lines = self.lines if self.lines is not None else np.zeros(len(self), np.int64)
        kept.bad = sorted(self.bad + [(int(lines[i]), self.keys[i], r) for i, r in zip(idx, reasons)])
        return kept

    def skipped_line(self, listed: str | Path | None = None) -> str | None:
        """One line saying how many rows were skipped and why the first was (None if none)."""
        if not self.bad:
            return None
        line, what, reason = self.bad[0]
        where = f"; all listed in {listed}" if listed else ""
        return (f"{self.source}: skipped {len(self.bad)} of {self.rows} rows (first: line {line}, {what}: "
                f"{reason}){where}")

    def write_bad_rows(self, path: str | Path) -> Path | None:
        """List the skipped rows in ``path`` (see :func:`write_skipped`); nothing when none."""
        return write_skipped(path, self)


def write_skipped(path: str | Path, *tables: PhotoTable) -> Path | None:
    """List the skipped rows of ``tables`` in one CSV (``csv, line, path, reason``); nothing
    written (None) when no row was skipped."""
    if not any(t.bad for t in tables):
        return None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(("csv", "line", "path", "reason"))
        for t in tables:
            writer.writerows((t.source, *row) for row in t.bad)
    return path


def _column(names: list[str], choices: tuple[str, ...]) -> int | None:
    lowered = [n.strip().lower() for n in names]
    return next((lowered.index(c) for c in choices if c in lowered), None)


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def image_problem(path: str) -> str | None:
    """None if ``path`` is an image whose header PIL can read, else what is wrong with it."""
    if not os.path.isfile(path):
        return "image not found"
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.size  # noqa: B018 - open() parses the header; size is what training needs
    except Exception as exc:  # noqa: BLE001 - PIL raises many types on malformed files
        return f"unreadable image ({type(exc).__name__})"
    return None


def read_photos(csv_path: str | Path, check_images: bool | str = True, image_root: str | Path | None = None,
                progress: bool = False, unique: bool = True) -> PhotoTable:
    """The photos listed in ``csv_path``; raises :class:`MobileNetsError` when no row is usable
    (naming how many were read and why the first was skipped) or when one image is listed with two
    different coordinates (``unique`` False: every row is kept, for a caller that reports repeats
    itself, such as ``geo eval``'s predictions). ``check_images``: True (the image exists and its header reads),
    ``"exists"`` (the file exists) or False (coordinates only)."""
    src = Path(csv_path)
    if not src.is_file():
        raise DataNotFoundError(f"photo list not found: {src}")
    root = Path(image_root) if image_root is not None else src.parent
    with open(src, newline="", encoding="utf-8-sig") as fh:
        lines = list(csv.reader(fh))
    cols, start = (0, 1, 2), 0
    if lines and len(lines[0]) >= 3 and (_number(lines[0][1]) is None or _number(lines[0][2]) is None):
        found = (_column(lines[0], PATH_NAMES), _column(lines[0], LAT_NAMES), _column(lines[0], LON_NAMES))
        if None not in found:  # a header; a first row that names no columns is data (and bad)
            cols, start = found, 1
    keys, paths, lat, lon, bad, used = [], [], [], [], [], []
    first_row: dict[str, int] = {}  # image file -> its first usable row's index
    need = max(cols) + 1
    body = enumerate(lines[start:], start=start + 1)
    if progress and check_images:
        from tqdm import tqdm

        body = tqdm(body, total=len(lines) - start, desc=f"checking {src.name}", leave=False)
    for line, row in body:
        if not row or not any(f.strip() for f in row):
            continue  # blank lines are not rows
        if len(row) < need:
            bad.append((line, ",".join(row)[:200], f"{len(row)} fields, expected at least {need}"))
            continue
        key = row[cols[0]].strip()
        y, x = _number(row[cols[1]]), _number(row[cols[2]])
        reason = None
        if not key:
            reason = "empty path"
        elif y is None or x is None:
            reason = f"coordinates are not numbers: {row[cols[1]]!r}, {row[cols[2]]!r}"
        elif not -90.0 <= y <= 90.0:
            reason = f"latitude {y} out of range [-90, 90]"
        elif not -180.0 <= x <= 180.0:
            reason = f"longitude {x} out of range [-180, 180]"
        path = str(root / key) if key and not os.path.isabs(key) else key
        if reason is None and check_images == "exists":
            reason = None if os.path.isfile(path) else "image not found"
        elif reason is None and check_images:
            reason = image_problem(path)
        if reason is None and unique:
            same = os.path.normpath(path)
            if same in first_row:
                at = first_row[same]
                if (lat[at], lon[at]) != (y, x):
                    raise MobileNetsError(f"{src}: {key} is listed twice with different coordinates: line "
                                          f"{used[at]} ({lat[at]}, {lon[at]}) and line {line} ({y}, {x}); "
                                          f"keep one of the two rows")
                reason = f"duplicate of line {used[at]} (same image and coordinates)"
            else:
                first_row[same] = len(keys)
        if reason is not None:
            bad.append((line, key, reason))
            continue
        keys.append(key)
        used.append(line)
        paths.append(path)
        lat.append(y)
        lon.append(x)
    table = PhotoTable(str(src), keys, paths, np.array(lat, np.float64), np.array(lon, np.float64),
                       len(keys) + len(bad), bad, np.array(used, np.int64))
    if not keys:
        first = f" (first: line {bad[0][0]}, {bad[0][1]}: {bad[0][2]})" if bad else ""
        raise MobileNetsError(f"{src}: no usable rows: {len(bad)} of {table.rows} rows skipped{first}")
    return table


__all__ = ["PhotoTable", "image_problem", "read_photos", "write_skipped"]
