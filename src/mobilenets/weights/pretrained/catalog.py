"""What ``mobilenet weights list`` and ``mobilenet weights download`` do: every entry with its cost
and cache state, and fetching entries ahead of time (classifiers, int8 TFLite files, detectors)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mobilenets.errors import MobileNetsError
from mobilenets.weights.pretrained.fetch import archive_path, download_entry, is_cached, pretrained_path, resolve_spec


def entry_rows(source: str | None = None) -> list[dict[str, Any]]:
    """One row per registry entry, as ``mobilenet weights list`` shows it: the entry's fields,
    our own mult-adds/params count, and what is in the cache (file size, converted or not)."""
    from mobilenets.weights.pretrained.registry import entry_cost, list_entries

    rows = []
    for entry in list_entries(source):
        mult_adds, params = entry_cost(entry)
        archive = archive_path(entry) if entry.repo is None else None
        size = archive.stat().st_size if archive is not None and archive.is_file() else None
        rows.append({**entry.to_dict(), "mult_adds": mult_adds, "params": params, "file_size": size,
                     "cached": is_cached(entry), "downloaded": size is not None})
    return rows


def download_entries(names: list[str], convert: bool = True, progress: bool = True) -> list[dict[str, Any]]:
    """Fetch (and, with ``convert``, convert) each named entry ahead of time, for a machine that will
    run offline; one row per entry (name, what is cached where)."""
    from mobilenets.weights.pretrained.registry import get_entry

    entries = [resolve_spec(n) if n.startswith("mobilenet_v1_") else get_entry(n) for n in names]
    out = []
    for entry in entries:
        if entry.refusal:
            raise MobileNetsError(f"{entry.name} is listed but not supported: {entry.refusal}")
        if not convert:
            path = download_entry(entry, progress)
        elif entry.kind == "detector":
            from mobilenets.weights.pretrained.detectors import detector_path

            path = detector_path(entry, progress)
        else:
            path = pretrained_path(entry, progress=progress)
        shown = path if isinstance(path, Path) else next(iter(path.values())).parent
        out.append({"name": entry.name, "path": str(shown), "converted": convert})
    return out


__all__ = ["download_entries", "entry_rows"]
