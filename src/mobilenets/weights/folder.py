"""Our model folder (``config.json`` + ``model.safetensors``, Hugging Face Hub style) and the
timm-style ``pretrained_cfg`` that every loaded or converted model carries.

``config.json`` holds the model config, the input preprocessing
(:meth:`Preprocessing.to_dict <mobilenets.data.preprocess.Preprocessing.to_dict>`: timm's keys),
where the weights came from, and the class names. Folders written before format version 2 named
the crop ``crop_fraction``; they are still read.

``model.pretrained_cfg`` is a flat dict in timm's layout (``input_size``, ``mean``, ``std``,
``crop_pct``, ``crop_mode``, ``interpolation``, plus ``num_classes``, ``label_names`` and
``source``), so ``timm.data.resolve_data_config(model=m)`` reads our models as it reads timm's.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mobilenets.data.preprocess import Preprocessing
from mobilenets.errors import MobileNetsError
from mobilenets.models.mobilenet import MobileNet
from mobilenets.weights.files import atomic_write, read_json_object, save_weights

MODEL_FORMAT = "mobilenets-model"  # the "format" field of a model folder's config.json
# 2: preprocessing in timm's keys (crop_pct, input_size); 1 wrote crop_fraction, pixel_range.
MODEL_FORMAT_VERSION = 2
MODEL_CONFIG_FILE = "config.json"
MODEL_WEIGHTS_FILE = "model.safetensors"
DEFAULT_SOURCE = {"framework": "mobilenets"}


def make_pretrained_cfg(preprocessing: Preprocessing, num_classes: int, classes: list[str] | None = None,
                        source: dict[str, Any] | None = None) -> dict[str, Any]:
    """A timm-style flat ``pretrained_cfg``: what ``timm.data.resolve_data_config`` reads, the
    class count, the class names (``label_names``, None if unknown) and where the weights came from."""
    return {**preprocessing.to_timm(), "num_classes": int(num_classes),
            "label_names": [str(c) for c in classes] if classes else None,
            "source": dict(source or DEFAULT_SOURCE)}


def attach_pretrained_cfg(model: MobileNet, preprocessing: Preprocessing, classes: list[str] | None = None,
                          source: dict[str, Any] | None = None) -> MobileNet:
    """Set ``model.pretrained_cfg`` (see :func:`make_pretrained_cfg`); returns the model."""
    model.pretrained_cfg = make_pretrained_cfg(preprocessing, model.config.num_classes, classes, source)
    return model


def pretrained_info(model: MobileNet) -> tuple[Preprocessing, list[str] | None, dict[str, Any]]:
    """The preprocessing, class names and source a model carries in its ``pretrained_cfg``
    (defaults where it carries none), preprocessing at the model's resolution."""
    carried = dict(getattr(model, "pretrained_cfg", None) or {})
    pre = Preprocessing.from_dict(carried).at(model.config.resolution)
    classes = carried.get("label_names")
    return pre, (list(classes) if classes else None), dict(carried.get("source") or DEFAULT_SOURCE)


def save_model(model: MobileNet, path: str | os.PathLike, *, preprocessing: Preprocessing | dict[str, Any] | None = None,
               source: dict[str, Any] | None = None, classes: list[str] | None = None) -> Path:
    """Write ``model`` as a folder ``path`` holding ``config.json`` (the model config, the input
    preprocessing, where the weights came from, class names) and ``model.safetensors``.

    ``preprocessing``/``source``/``classes`` default to what the model carries in its
    ``pretrained_cfg`` (set by the converters and by :func:`~mobilenets.weights.checkpoint.load_model`)."""
    if not isinstance(model, MobileNet):
        raise MobileNetsError(f"save_model expects a mobilenets.MobileNet, got {type(model).__name__}")
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise MobileNetsError(f"path {folder} exists and is not a folder")
    carried_pre, carried_classes, carried_source = pretrained_info(model)
    resolution = model.config.resolution
    if preprocessing is None:
        pre = carried_pre
    else:
        pre = preprocessing if isinstance(preprocessing, Preprocessing) else \
            Preprocessing.from_dict(preprocessing, resolution=resolution)
        if pre.resolution != resolution:
            raise MobileNetsError(f"preprocessing input_size {pre.input_size} does not match the model's "
                                  f"resolution {resolution}")
    classes = carried_classes if classes is None else [str(c) for c in classes]
    if classes is not None and model.config.num_classes and len(classes) != model.config.num_classes:
        raise MobileNetsError(f"{len(classes)} class names for a model with {model.config.num_classes} classes")
    doc = {
        "format": MODEL_FORMAT,
        "format_version": MODEL_FORMAT_VERSION,
        "model": model.config.to_dict(),
        "preprocessing": pre.to_dict(),
        "source": dict(source or carried_source),
        "classes": classes,
    }
    text = json.dumps(doc, indent=2) + "\n"
    save_weights(model, folder / MODEL_WEIGHTS_FILE, model.config)

    def write(tmp: str) -> None:
        Path(tmp).write_text(text)

    atomic_write(folder / MODEL_CONFIG_FILE, write)
    return folder


def folder_config(folder: Path) -> dict[str, Any] | None:
    """The parsed config.json of a model folder written by :func:`save_model`; None if the folder
    has no config.json, or a training run's (whose weights carry their own config). Another
    project's config.json gives a clear error."""
    file = folder / MODEL_CONFIG_FILE
    if not file.is_file():
        return None
    doc = read_json_object(file)
    if doc.get("format") == MODEL_FORMAT:
        if not isinstance(doc.get("model"), dict):
            raise MobileNetsError(f"{file} has no \"model\" object")
        return doc
    if "model_type" in doc:
        raise MobileNetsError(f"{folder} holds a Hugging Face {doc['model_type']!r} model, not a mobilenets "
                              f"checkpoint; convert it first (mobilenets.from_hf, or the `mobilenet convert` command)")
    return None


def folder_preprocessing(doc: dict[str, Any], file: Path, resolution: int) -> Preprocessing:
    """A model folder's preprocessing (either format version) at the model's ``resolution``;
    defaults where it records none."""
    try:
        return Preprocessing.from_dict(doc.get("preprocessing") or {}).at(resolution)
    except MobileNetsError as exc:
        raise MobileNetsError(f"{file}: {exc}") from None


def folder_meta(doc: dict[str, Any], pre: Preprocessing) -> dict[str, Any]:
    """The run-style metadata that eval/predict/export read (``classes``, ``mean``, ``std``,
    ``eval_crop``), plus the folder's ``preprocessing`` (timm's keys) and ``source``."""
    meta: dict[str, Any] = {"preprocessing": pre.to_dict(), "source": doc.get("source"),
                            "mean": list(pre.mean), "std": list(pre.std), "eval_crop": pre.crop_pct}
    if doc.get("classes"):
        meta["classes"] = [str(c) for c in doc["classes"]]
    return meta
