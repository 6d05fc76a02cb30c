"""From a registry entry to something the package runs: the file fetched (:mod:`.download` or
:mod:`.hub`), converted by the existing converters (:mod:`mobilenets.weights.convert`) and cached
as a model folder (config.json + model.safetensors) under ``<cache root>/mobilenets/<entry>/``, so
the second call reads only that folder.

A ``tflite-int8`` entry (TF-slim's ``_quant`` archives) is cached as its runnable int8 ``.tflite``
file (``eval``/``predict``/``bench`` take it); ``detector`` entries are converted by
:mod:`.detectors` (the detector importer imports the training code, which imports this module). Every step writes beside its destination and
renames when complete: an interrupted conversion leaves nothing that counts as cached.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from mobilenets.errors import MobileNetsError
from mobilenets.weights.pretrained.download import cache_root, download, offline, verify_cached
from mobilenets.weights.pretrained.registry import ENTRIES, SOURCES, Entry, choose, get_entry

PREFIX = "pretrained:"  # --init pretrained:ENTRY-OR-MODEL, --checkpoint pretrained:...


def fetch_hint(entry: Entry) -> str:
    return f"mobilenet weights download {entry.name}"


def converted_path(entry: Entry) -> Path:
    """Where the entry's converted model (folder, or .tflite file) is cached."""
    folder = cache_root() / "mobilenets" / entry.name.replace(":", "--").replace("/", "--")
    return folder / f"{entry.filename.split('.tgz')[0]}.tflite" if entry.kind == "tflite-int8" else folder


def is_cached(entry: Entry) -> bool:
    """True when the converted model is in the cache (what a second call reads)."""
    path = converted_path(entry)
    if entry.kind == "tflite-int8":
        return path.is_file()
    # a detector folder (tasks.detect.convert) has detector.json, a classifier's model folder config.json
    return (path / ("detector.json" if entry.kind == "detector" else "config.json")).is_file()


def archive_path(entry: Entry) -> Path:
    return cache_root() / entry.filename


def resolve_spec(spec: str, source: str | bool | None = True) -> Entry:
    """The entry a spec names, with or without the ``pretrained:`` prefix: an entry name
    (``keras:mobilenet_5_0_160_tf``), ``SOURCE:MODEL`` (``keras:mobilenet_v1_0.5_160``), or
    ``MODEL`` (``mobilenet_v1_0.5_160``) picked by :func:`choose` from ``source``."""
    name = spec[len(PREFIX):] if spec.startswith(PREFIX) else spec
    head, sep, rest = name.partition(":")
    if sep and name not in ENTRIES and head in SOURCES and rest.startswith("mobilenet_v1_"):
        return choose(rest, head)
    return get_entry(name) if sep else choose(name, source)


def download_entry(entry: Entry, progress: bool = True) -> Path | dict[str, Path]:
    """Fetch the entry's file(s) into the cache (no conversion): the archive or .h5 path, or the
    Hub files."""
    if entry.refusal:
        raise MobileNetsError(f"{entry.name} is listed but not supported: {entry.refusal}")
    if entry.repo is not None:
        from mobilenets.weights.pretrained.hub import hub_files

        return hub_files(entry, fetch_hint(entry))
    return download(entry.url, archive_path(entry), sha256=entry.sha256, progress=progress,
                    fetch_hint=fetch_hint(entry))


def extract(archive: Path, into: Path) -> None:
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(into, filter="data")  # no absolute paths, links out, devices
    except (tarfile.TarError, OSError, EOFError) as exc:
        archive.unlink(missing_ok=True)
        raise MobileNetsError(f"{archive.name} is not a readable tar archive ({exc}); it was removed from the "
                              f"cache, fetch it again") from None


def find(root: Path, pattern: str) -> Path | None:
    found = sorted(root.rglob(pattern))
    return found[0] if found else None


def _read_tf_slim(entry: Entry, folder: Path) -> Any:
    """The official archive holds ``<stem>.ckpt.*`` (the checkpoint) and ``<stem>_frozen.pb``:
    the checkpoint is converted, else the frozen graph."""
    index = find(folder, "*.ckpt.index")
    if index is not None:
        from mobilenets.weights.convert.tf_slim import from_tf_slim

        return from_tf_slim(str(index)[: -len(".index")], resolution=entry.resolution)
    frozen = find(folder, "*_frozen.pb") or find(folder, "*.pb")
    if frozen is None:
        raise MobileNetsError(f"{entry.filename} holds neither a TF checkpoint (*.ckpt.index) nor a frozen graph "
                              f"(*_frozen.pb): not the official TF-slim layout")
    from mobilenets.weights.convert.tf_frozen import from_tf_frozen

    return from_tf_frozen(frozen, resolution=entry.resolution)


def _read_keras(entry: Entry, file: Path) -> Any:
    """Keras's files hold weights only: ``keras.applications.MobileNet`` builds the model and loads
    them (as ``weights=`` does in Keras), then :func:`from_keras` converts it."""
    from mobilenets.utils.tf import import_tf
    from mobilenets.weights.convert.keras import from_keras

    keras = import_tf("keras")
    try:
        model = keras.applications.MobileNet(input_shape=(entry.resolution, entry.resolution, 3), alpha=entry.alpha,
                                             include_top=entry.include_top, weights=str(file))
    except Exception as exc:  # h5py / Keras raise many types for a bad file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MobileNetsError(f"cannot load {file.name} into Keras's MobileNet (alpha {entry.alpha:g}, "
                              f"{entry.resolution} px): {first}") from None
    return from_keras(model)


def _convert(entry: Entry, fetched: Path | dict[str, Path], work: Path) -> Any:
    if entry.source == "tf-slim":
        extract(fetched, work)
        return _read_tf_slim(entry, work)
    if entry.source == "keras":
        return _read_keras(entry, fetched)
    weights = next(p for n, p in fetched.items() if n != "config.json")
    if entry.source == "timm":
        from mobilenets.weights.convert.timm import from_timm

        return from_timm(weights)
    from mobilenets.weights.convert.hf import from_hf

    return from_hf(fetched["config.json"].parent)  # the Hub snapshot folder holds both files


def staging(final: Path) -> Path:
    final.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{final.name}.staging-", dir=final.parent))


def _convert_classifier(entry: Entry, progress: bool) -> Path:
    from mobilenets.utils.scoped import quiet_output
    from mobilenets.weights.checkpoint import save_model

    fetched = download_entry(entry, progress)
    if isinstance(fetched, Path):
        verify_cached(fetched, entry.sha256)
    final = converted_path(entry)
    stage = staging(final)
    try:
        with quiet_output(True):  # TensorFlow's start-up lines
            model = _convert(entry, fetched, stage / "work")
        carried = dict(model.pretrained_cfg.get("source") or {})
        carried.pop("path", None)  # a temporary folder, gone after this call
        source = {**carried, "registry": entry.name, "url": entry.url}
        save_model(model, stage / "model", source=source)
        if final.exists():  # another process finished first: theirs is as good
            return final
        os.replace(stage / "model", final)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return final


def _tflite_sidecar(entry: Entry) -> dict[str, Any]:
    """The sidecar of a published int8 TFLite file, as ``mobilenet export`` writes one: TF-slim's
    preprocessing (the file's uint8 input is quantized from [-1, 1] with scale 1/128, zero point
    128: the runner does it) and the 1001 classes, background first."""
    from mobilenets.data.preprocess import Preprocessing
    from mobilenets.weights.imagenet import imagenet_classes_for

    return {"format": "tflite", "precision": "int8", "source": {"registry": entry.name, "url": entry.url},
            "preprocessing": Preprocessing(interpolation="bilinear").at(entry.resolution).to_dict(),
            "classes": imagenet_classes_for(entry.classes)}


def _extract_tflite(entry: Entry, progress: bool) -> Path:
    archive = verify_cached(download_entry(entry, progress), entry.sha256)
    final = converted_path(entry)
    stage = staging(final.parent / "tmp")
    try:
        extract(archive, stage)
        found = find(stage, final.name) or find(stage, "*.tflite")
        if found is None:
            raise MobileNetsError(f"{entry.filename} holds no .tflite file: not the official _quant layout")
        final.parent.mkdir(parents=True, exist_ok=True)
        sidecar = final.with_name(final.name + ".json")  # what eval/predict read beside an exported file
        sidecar.write_text(json.dumps(_tflite_sidecar(entry), indent=2) + "\n")
        os.replace(found, final)  # last: the .tflite is what counts as cached
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return final


def pretrained_path(spec: str | Entry, source: str | bool | None = True, progress: bool = True) -> Path:
    """The cached, converted model of ``spec`` (an :class:`Entry`, an entry name, or a model name
    with ``source``; see :func:`resolve_spec`), fetching and converting it on first use: a model
    folder (classifiers, detectors) or an int8 ``.tflite`` file (``_quant`` entries)."""
    entry = spec if isinstance(spec, Entry) else resolve_spec(spec, source)
    if entry.refusal:
        raise MobileNetsError(f"{entry.name} is listed but not supported: {entry.refusal}")
    if is_cached(entry):
        return converted_path(entry)
    if entry.kind == "tflite-int8":
        return _extract_tflite(entry, progress)
    if entry.kind == "detector":  # kept apart: the detector importer lives in tasks/, which imports this module
        raise MobileNetsError(f"{entry.name} is a detector: mobilenets.weights.pretrained.detectors.detector_path, "
                              f"or `{fetch_hint(entry)}`")
    return _convert_classifier(entry, progress)


def load_pretrained(model: str, source: str | bool = True, progress: bool = True):
    """The pretrained classifier ``model`` names (``mobilenet_v1_0.5_160``, or an entry name), from
    ``source`` (``tf-slim``, ``keras``, ``timm``, ``hf``; True: the best available), as a MobileNet
    in eval mode carrying its preprocessing and class names."""
    from mobilenets.weights.checkpoint import load_model

    entry = resolve_spec(model, source)
    if entry.kind != "classifier":
        raise MobileNetsError(f"{entry.name} is a {entry.kind}, not a classifier model folder")
    return load_model(pretrained_path(entry, progress=progress))




__all__ = ["PREFIX", "archive_path", "converted_path", "download_entry", "fetch_hint",
           "is_cached", "load_pretrained", "offline", "pretrained_path", "resolve_spec"]
