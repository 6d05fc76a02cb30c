"""Loading any checkpoint this package writes, as a model with its metadata, in one call.

:func:`load_checkpoint` accepts a model folder (:mod:`mobilenets.weights.folder`), a training
run folder, a ``.safetensors`` weights file or a ``.pt`` training state
(:mod:`mobilenets.weights.files`: read without ever executing code from the file). A file that is
not what its name says is one :class:`~mobilenets.errors.MobileNetsError` naming the file and
what was expected. The writing side (:func:`save_model`, :func:`save_weights`,
:func:`save_state`, :func:`atomic_write`) is re-exported here, so this module is the one place
callers import checkpoints from.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from mobilenets.data.preprocess import Preprocessing
from mobilenets.errors import DataNotFoundError, MobileNetsError
from mobilenets.models.config import MobileNetConfig
from mobilenets.models.mobilenet import MobileNet
from mobilenets.weights.files import (
    atomic_write,
    load_state,
    read_json_object,
    read_safetensors,
    read_weights_file,
    save_state,
    save_weights,
    unwrap_state,
)
from mobilenets.weights.folder import (
    MODEL_CONFIG_FILE,
    MODEL_WEIGHTS_FILE,
    attach_pretrained_cfg,
    folder_config,
    folder_meta,
    folder_preprocessing,
    make_pretrained_cfg,
    pretrained_info,
    save_model,
)

__all__ = ["atomic_write", "attach_pretrained_cfg", "checkpoint_kind", "load_checkpoint", "load_model", "load_state", "run_weights",
           "make_pretrained_cfg", "pretrained_info", "read_json_object", "read_safetensors", "read_weights_file",
           "resolve_checkpoint", "run_task", "save_model", "save_state", "save_weights", "unwrap_state"]

CHECKPOINT_EXPECTED = ("expected a model folder (config.json + model.safetensors), a run folder, "
                       "a .safetensors file or a .pt/.pth training state")


def run_weights(run: str | os.PathLike) -> Path | None:
    """A run folder's best weights, else its last, else None (a run stopped inside its first
    epoch has only training states)."""
    for name in ("best.safetensors", "last.safetensors"):
        if (Path(run) / name).is_file():
            return Path(run) / name
    return None


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A run folder means its best weights (else its last); a model folder its model.safetensors;
    a file means itself."""
    path = Path(path)
    if path.is_dir():
        weights = run_weights(path)
        if weights is not None:
            return weights
        doc = folder_config(path)
        if (path / MODEL_WEIGHTS_FILE).is_file():
            return path / MODEL_WEIGHTS_FILE
        if doc is not None:
            raise DataNotFoundError(f"model folder {path} has config.json but no {MODEL_WEIGHTS_FILE}")
        states = sorted((path / "checkpoints").glob("step-*.pt"))
        if states:
            return states[-1]
        raise DataNotFoundError(f"no checkpoint in folder {path}; {CHECKPOINT_EXPECTED}")
    if not path.exists():
        raise DataNotFoundError(f"checkpoint not found: {path}")
    return path


def _json(text: Any, file: Path, what: str) -> Any:
    try:
        return json.loads(text)
    except (TypeError, json.JSONDecodeError) as exc:
        raise MobileNetsError(f"{file}: its {what} is not valid JSON ({exc})") from None


def _config(read: Any, file: Path, what: str) -> MobileNetConfig:
    """``read()`` gives the model config; any failure names the file and the field."""
    try:
        return read()
    except (TypeError, ValueError, KeyError) as exc:  # MobileNetsError is a ValueError
        raise MobileNetsError(f"{file}: its {what} is not a valid model config ({exc})") from None


def run_task(run_json: Any) -> str | None:
    """The task a checkpoint's ``run`` metadata (JSON text) names ("classification", "detection",
    ...), or None where it names none or cannot be read."""
    try:
        meta = json.loads(run_json) if isinstance(run_json, str) else None
    except json.JSONDecodeError:
        return None
    task = meta.get("task") if isinstance(meta, dict) else None
    return task if isinstance(task, str) else None


def checkpoint_kind(path: str | os.PathLike) -> str | None:
    """What a checkpoint file or folder is, in words, for a message about the wrong kind:
    "detection run", "classification checkpoint" (a MobileNet: model folder, run or weights), or
    None when it is neither or cannot be read. Reads metadata only where it can."""
    try:
        file = resolve_checkpoint(path)
        if file.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(file), "pt") as f:
                header = f.metadata() or {}
            run = header.get("run")
            if run_task(run) == "detection":
                return "detection run"
            return "classification checkpoint" if "mobilenet_config" in header or folder_config(file.parent) else None
        if file.suffix in (".pt", ".pth"):
            full = load_state(file)
            if run_task(full.get("run")) == "detection":
                return "detection run"
            return "classification checkpoint" if "model_config" in full else None
    except (OSError, ValueError, RuntimeError, TypeError, AttributeError):
        return None
    return None


def _refuse_detection(run_json: Any, shown: str | os.PathLike) -> None:
    if run_task(run_json) == "detection":
        what = "a detection run" if Path(shown).is_dir() else "a detection run's checkpoint"
        raise MobileNetsError(f"{shown} is {what}: use `mobilenet detect eval`, `mobilenet detect predict` "
                              f"or `mobilenet detect export`")


def _read_safetensors_checkpoint(file: Path, folder_doc: dict[str, Any] | None, shown: str | os.PathLike):
    state, header = read_safetensors(file)
    _refuse_detection(header.get("run"), shown)
    if folder_doc is not None:
        cfg = _config(lambda: MobileNetConfig.from_dict(folder_doc["model"]), file.parent / MODEL_CONFIG_FILE,
                      '"model"')
        pre = folder_preprocessing(folder_doc, file.parent / MODEL_CONFIG_FILE, cfg.resolution)
        return cfg, state, folder_meta(folder_doc, pre)
    if "mobilenet_config" not in header:
        raise MobileNetsError(f"{file} has no mobilenet_config in its metadata and no mobilenets config.json "
                              f"beside it: not a mobilenets checkpoint (see `mobilenet convert`)")
    cfg = _config(lambda: MobileNetConfig.from_json(header["mobilenet_config"]), file, "mobilenet_config metadata")
    meta = _json(header["run"], file, "run metadata") if "run" in header else {}
    return cfg, state, meta


def _read_state_checkpoint(file: Path, shown: str | os.PathLike):
    full = load_state(file)
    _refuse_detection(full.get("run"), shown)
    if "model" not in full or "model_config" not in full:
        raise MobileNetsError(f"{file} is not a mobilenets training checkpoint (no model/model_config entries)")
    cfg = _config(lambda: MobileNetConfig.from_json(full["model_config"]), file, "model_config")
    state = full["ema"] if full.get("ema") is not None else full["model"]
    return cfg, state, _json(full.get("run", "{}"), file, "run metadata")


def load_checkpoint(path: str | os.PathLike) -> tuple[MobileNet, dict[str, Any]]:
    """The model a checkpoint describes, with its weights, in eval mode, and the run metadata
    (run config, classes, preprocessing) where the checkpoint has them.

    Accepts a model folder (config.json + model.safetensors; its config.json is authoritative),
    a run folder, a ``.safetensors`` file written by this package, or a training state ``.pt``
    (read with ``torch.load(weights_only=True)``: never runs code from the file). The model
    carries a timm-style ``pretrained_cfg`` (preprocessing, class names, source)."""
    file = resolve_checkpoint(path)
    folder_doc = folder_config(file.parent) if file.name == MODEL_WEIGHTS_FILE else None
    if file.suffix == ".safetensors":
        cfg, state, meta = _read_safetensors_checkpoint(file, folder_doc, path)
    elif file.suffix in (".pt", ".pth"):
        cfg, state, meta = _read_state_checkpoint(file, path)
    else:
        raise MobileNetsError(f"unknown checkpoint format {file.suffix or file.name!r} for {file}; "
                              f"{CHECKPOINT_EXPECTED}")
    if not isinstance(meta, dict):
        raise MobileNetsError(f"{file}: its run metadata is not a JSON object")
    with torch.random.fork_rng(devices=[]):  # the initial weights are overwritten: draw nothing of the caller's
        model = MobileNet(cfg)
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise MobileNetsError(f"weights in {file} do not fit the model its config describes: "
                              f"{str(exc).strip().splitlines()[0]}") from None
    if folder_doc is not None:
        pre = Preprocessing.from_dict(meta["preprocessing"])
        source = meta.get("source") or {"framework": "mobilenets"}
    else:
        # a run's metadata records mean/std/eval_crop (or a "preprocessing" object) at the top level
        try:
            pre = Preprocessing.from_dict(meta.get("preprocessing") or meta, resolution=cfg.resolution)
        except MobileNetsError as exc:
            raise MobileNetsError(f"{file}: {exc}") from None
        source = {"framework": "mobilenets", "path": str(file)}
    attach_pretrained_cfg(model, pre.at(cfg.resolution), meta.get("classes"), source)
    return model.eval(), meta


def load_model(path: str | os.PathLike) -> MobileNet:
    """The model a checkpoint (model folder, run folder, .safetensors or .pt) describes, with its
    weights, in eval mode, carrying a timm-style ``pretrained_cfg`` (its preprocessing in timm's
    keys, ``label_names`` and ``source``: what a model folder records)."""
    return load_checkpoint(path)[0]
