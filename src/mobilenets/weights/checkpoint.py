"""Checkpoints that are written atomically and read without ever executing code from the file.

* Model weights: safetensors (``*.safetensors``), with the model's config in the file's metadata.
* Full training state (model, optimizer, scheduler, EMA, RNG states, position in the epoch):
  ``torch.save`` of plain tensors/numbers/strings, read back only with
  ``torch.load(weights_only=True)``, which refuses any pickle that would run code.
* Every write goes to a temporary file in the same folder, is flushed to disk, then renamed over
  the target, so a crash never leaves a half-written checkpoint under the real name.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from mobilenets.models.config import MobileNetConfig
from mobilenets.models.mobilenet import MobileNet


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)``, fsync, then rename the temporary file to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def save_weights(model: nn.Module, path: str | os.PathLike, config: MobileNetConfig | None = None,
                 extra: dict[str, str] | None = None) -> Path:
    """Model weights (parameters and buffers) to a safetensors file, config in its metadata."""
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    meta = dict(extra or {})
    cfg = config if config is not None else getattr(model, "config", None)
    if isinstance(cfg, MobileNetConfig):
        meta["mobilenet_config"] = cfg.to_json()
    return atomic_write(path, lambda tmp: save_file(state, tmp, metadata=meta))


def save_state(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """A full training state (plain tensors and numbers only) with ``torch.save``, atomically."""
    return atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_state(path: str | os.PathLike) -> dict[str, Any]:
    """Read a training state written by :func:`save_state`; never runs code from the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        with warnings.catch_warnings():
            # torch warns (on stderr) about pickle protocols it did not write; the load below is
            # still weights-only, and a bad file gets one clear error line instead
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        why = next((ln for ln in lines if ln.startswith("Unsupported")), "torch's weights-only unpickler refused it")
        raise ValueError(f"refusing to load {path}: it is not a plain weights file and only plain tensors "
                         f"are read, never code ({why})") from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise ValueError(f"cannot read checkpoint {path}: {str(exc).splitlines()[0] if str(exc) else exc!r}") from None
    if not isinstance(state, dict):
        raise ValueError(f"cannot read checkpoint {path}: expected a dict of tensors, got {type(state).__name__}")
    return state


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        return load_file(str(path)), meta
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(f"cannot read weights {path}: {exc}") from None


# --- our model folder: config.json + model.safetensors (Hugging Face Hub style) -----------------

MODEL_FORMAT = "mobilenets-model"  # the "format" field of a model folder's config.json
MODEL_CONFIG_FILE = "config.json"
MODEL_WEIGHTS_FILE = "model.safetensors"

# What a model trained by this package expects (data.Augment's defaults): pixels in [0, 1],
# normalised with mean 0.5 / std 0.5 (so the network sees [-1, 1]), eval centre crop 0.875.
DEFAULT_PREPROCESSING: dict[str, Any] = {
    "pixel_range": [0.0, 1.0],
    "mean": [0.5, 0.5, 0.5],
    "std": [0.5, 0.5, 0.5],
    "input_range": [-1.0, 1.0],
    "crop_fraction": 0.875,
    "interpolation": "bilinear",
}


def save_model(model: MobileNet, path: str | os.PathLike, *, preprocessing: dict[str, Any] | None = None,
               source: dict[str, Any] | None = None, classes: list[str] | None = None) -> Path:
    """Write ``model`` as a folder ``path`` holding ``config.json`` (the model config, the input
    preprocessing, where the weights came from, class names) and ``model.safetensors``.

    ``preprocessing``/``source``/``classes`` default to what the model carries in its
    ``pretrained_cfg`` (set by the converters and by :func:`load_model`)."""
    if not isinstance(model, MobileNet):
        raise ValueError(f"save_model expects a mobilenets.MobileNet, got {type(model).__name__}")
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder} exists and is not a folder")
    carried = dict(getattr(model, "pretrained_cfg", None) or {})
    if classes is None:
        classes = carried.get("classes")
    if classes is not None:
        classes = [str(c) for c in classes]
        if model.config.num_classes and len(classes) != model.config.num_classes:
            raise ValueError(f"{len(classes)} class names for a model with {model.config.num_classes} classes")
    doc = {
        "format": MODEL_FORMAT,
        "format_version": 1,
        "model": model.config.to_dict(),
        "preprocessing": dict(preprocessing or carried.get("preprocessing") or DEFAULT_PREPROCESSING),
        "source": dict(source or carried.get("source") or {"framework": "mobilenets"}),
        "classes": classes,
    }
    text = json.dumps(doc, indent=2) + "\n"
    save_weights(model, folder / MODEL_WEIGHTS_FILE, model.config)

    def write(tmp: str) -> None:
        Path(tmp).write_text(text)

    atomic_write(folder / MODEL_CONFIG_FILE, write)
    return folder


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON file that must hold an object; anything else is one clear ValueError."""
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{path} is not a JSON object")
    return doc


def _folder_config(folder: Path) -> dict[str, Any] | None:
    """The parsed config.json of a model folder written by :func:`save_model`; None if the folder
    has no config.json. Another project's config.json gives a clear error."""
    file = folder / MODEL_CONFIG_FILE
    if not file.is_file():
        return None
    doc = read_json_object(file)
    if doc.get("format") == MODEL_FORMAT:
        if not isinstance(doc.get("model"), dict):
            raise ValueError(f"{file} has no \"model\" object")
        return doc
    if "model_type" in doc:
        raise ValueError(f"{folder} holds a Hugging Face {doc['model_type']!r} model, not a mobilenets checkpoint; "
                         f"convert it first: mobilenet convert {folder} --from hf --output DIR")
    return None  # a training run's config.json: the run's weights carry their own config


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A run folder means its best weights (else its last); a model folder its model.safetensors;
    a file means itself."""
    path = Path(path)
    if path.is_dir():
        for name in ("best.safetensors", "last.safetensors"):
            if (path / name).is_file():
                return path / name
        doc = _folder_config(path)
        if (path / MODEL_WEIGHTS_FILE).is_file():
            return path / MODEL_WEIGHTS_FILE
        if doc is not None:
            raise FileNotFoundError(f"model folder {path} has config.json but no {MODEL_WEIGHTS_FILE}")
        states = sorted((path / "checkpoints").glob("step-*.pt"))
        if states:
            return states[-1]
        raise FileNotFoundError(f"no checkpoint in folder {path} (expected config.json + model.safetensors, "
                                f"best.safetensors or checkpoints/)")
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return path


def _meta_from_folder(doc: dict[str, Any]) -> dict[str, Any]:
    """The run-style metadata (classes, mean/std, eval crop) that eval/predict read."""
    pre = doc.get("preprocessing") or DEFAULT_PREPROCESSING
    meta: dict[str, Any] = {"preprocessing": pre, "source": doc.get("source")}
    if doc.get("classes"):
        meta["classes"] = list(doc["classes"])
    for ours, theirs in (("mean", "mean"), ("std", "std"), ("eval_crop", "crop_fraction")):
        if pre.get(theirs) is not None:
            meta[ours] = pre[theirs]
    return meta


def load_checkpoint(path: str | os.PathLike) -> tuple[MobileNet, dict[str, Any]]:
    """The model a checkpoint describes, with its weights, in eval mode, and the run metadata
    (run config, classes, preprocessing) where the checkpoint has them.

    Accepts a model folder (config.json + model.safetensors; its config.json is authoritative),
    a run folder, a ``.safetensors`` file written by this package, or a training state ``.pt``
    (read with ``torch.load(weights_only=True)``: never runs code from the file)."""
    file = resolve_checkpoint(path)
    meta: dict[str, Any] = {}
    folder_doc = _folder_config(file.parent) if file.name == MODEL_WEIGHTS_FILE else None
    if file.suffix == ".safetensors":
        state, header = _read_safetensors(file)
        if folder_doc is not None:
            try:
                cfg = MobileNetConfig.from_dict(folder_doc["model"])
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{file.parent / MODEL_CONFIG_FILE}: {exc}") from None
            meta = _meta_from_folder(folder_doc)
        elif "mobilenet_config" in header:
            cfg = MobileNetConfig.from_json(header["mobilenet_config"])
            if "run" in header:
                meta = json.loads(header["run"])
        else:
            raise ValueError(f"{file} has no mobilenet_config in its metadata and no mobilenets config.json "
                             f"beside it: not a mobilenets checkpoint (see `mobilenet convert`)")
    elif file.suffix in (".pt", ".pth"):
        full = load_state(file)
        if "model" not in full or "model_config" not in full:
            raise ValueError(f"{file} is not a mobilenets training checkpoint (no model/model_config)")
        cfg = MobileNetConfig.from_json(full["model_config"])
        state = full["ema"] if full.get("ema") is not None else full["model"]
        meta = json.loads(full.get("run", "{}"))
    else:
        raise ValueError(f"unknown checkpoint format {file.suffix or file.name!r} for {file}; expected a model "
                         f"folder, .safetensors or .pt")
    model = MobileNet(cfg)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"weights in {file} do not fit the model its config describes: "
                         f"{str(exc).splitlines()[0]}") from None
    if folder_doc is not None:
        model.pretrained_cfg = {"preprocessing": meta.get("preprocessing"), "source": meta.get("source"),
                                "classes": meta.get("classes")}
    return model.eval(), meta


def load_model(path: str | os.PathLike) -> MobileNet:
    """The model a checkpoint (model folder, run folder, .safetensors or .pt) describes, with its
    weights, in eval mode. A model folder's preprocessing, source and class names are in
    ``model.pretrained_cfg``."""
    model, meta = load_checkpoint(path)
    if not hasattr(model, "pretrained_cfg"):
        pre = {**DEFAULT_PREPROCESSING}
        for ours, theirs in (("mean", "mean"), ("std", "std"), ("eval_crop", "crop_fraction")):
            if meta.get(ours) is not None:
                pre[theirs] = meta[ours]
        model.pretrained_cfg = {"preprocessing": pre, "source": {"framework": "mobilenets"},
                                "classes": meta.get("classes")}
    return model
