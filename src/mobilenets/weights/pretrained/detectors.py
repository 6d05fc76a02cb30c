"""The registry's detectors (``tf-od`` entries: TF Object Detection API archives; ``face-api``:
face-api's TF.js face detector in its npm tarball): fetched like every entry (:mod:`.download`), converted by ``mobilenets.tasks.detect.convert.convert_detector`` into a
detector folder, cached under ``<cache root>/mobilenets/<entry>/``. Apart from :mod:`.fetch`
because the detection code imports the training code, which imports :mod:`.fetch`."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from mobilenets.errors import MobileNetsError
from mobilenets.weights.pretrained.download import verify_cached
from mobilenets.weights.pretrained.fetch import (
    PREFIX,
    converted_path,
    download_entry,
    extract,
    find,
    is_cached,
    staging,
)
from mobilenets.weights.pretrained.registry import Entry, get_entry


def detector_path(spec: str | Entry, progress: bool = True) -> Path:
    """The cached detector folder of a detector entry (``tf-od:NAME``, ``face-api:...``; with or
    without ``pretrained:``), fetched and converted on first use by
    ``mobilenets.tasks.detect.convert.convert_detector``: the archive's ``pipeline.config`` folder,
    or the file the entry names inside it (a TF.js weights manifest)."""
    entry = spec if isinstance(spec, Entry) else get_entry(spec[len(PREFIX):] if spec.startswith(PREFIX) else spec)
    if entry.kind != "detector":
        raise MobileNetsError(f"{entry.name} is a {entry.kind}, not a detector")
    if entry.refusal:
        raise MobileNetsError(f"{entry.name} is listed but not supported: {entry.refusal}")
    if is_cached(entry):
        return converted_path(entry)
    # Imported here: the detection code imports the training code, which imports .fetch.
    from mobilenets.tasks.detect.convert import convert_detector

    archive = verify_cached(download_entry(entry, progress), entry.sha256)
    final = converted_path(entry)
    stage = staging(final)
    try:
        extract(archive, stage / "work")
        work = stage / "work"
        if entry.files:  # the file to convert inside the archive (face-api's TF.js manifest)
            source = work / entry.files[0]
            if not source.is_file():
                raise MobileNetsError(f"{entry.filename} holds no {entry.files[0]}: not the published layout")
        else:
            config = find(work, "pipeline.config")
            source = config.parent if config is not None else work
        convert_detector(source, stage / "model")
        if not final.exists():
            os.replace(stage / "model", final)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return final


__all__ = ["detector_path"]
