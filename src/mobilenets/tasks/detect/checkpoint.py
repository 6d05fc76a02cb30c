"""A detector checkpoint read back: :func:`load_detector` (run folders, detector folders written by
``detect convert``, ``.safetensors`` / ``.pt`` files of a detection run) and :func:`detector_init`,
which tells a detector checkpoint from a classifier's for ``detect train --init``."""

from __future__ import annotations

import json
import os
from typing import Any

import torch

from mobilenets.errors import MobileNetsError
from mobilenets.tasks.detect.build import build_detector
from mobilenets.tasks.detect.config import DetectorConfig


def load_detector(path: str | os.PathLike) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The detector a run folder, ``.safetensors`` or ``.pt`` file of a detection run holds, in
    eval mode, and the run's metadata (classes, category ids, data, ...)."""
    from mobilenets.weights.checkpoint import load_state, read_safetensors, resolve_checkpoint

    file = resolve_checkpoint(path)
    if file.suffix == ".safetensors":
        state, header = read_safetensors(file)
        meta = json.loads(header.get("run", "{}"))
    elif file.suffix in (".pt", ".pth"):
        full = load_state(file)
        state = full["ema"] if full.get("ema") is not None else full.get("model")
        meta = json.loads(full.get("run", "{}"))
    elif file.suffix.lower() in (".onnx", ".tflite"):
        raise MobileNetsError(f"{file} is an exported model: give the detection run it was exported from "
                              f"(--checkpoint RUN); the exported file runs in ONNX Runtime / TFLite as its sidecar "
                              f"{file.name}.json describes")
    else:
        raise MobileNetsError(f"unknown checkpoint format {file.suffix!r} for {file}: give a detection run folder, "
                              f"or its best.safetensors / last.safetensors")
    if meta.get("task") != "detection" or not isinstance(meta.get("model"), dict):
        from mobilenets.weights.checkpoint import checkpoint_kind

        kind = checkpoint_kind(file)
        raise MobileNetsError(f"{file} is " + (f"a {kind}: use `mobilenet eval`, `mobilenet predict` or "
                                               f"`mobilenet export`" if kind else "not a detection checkpoint "
                                               "(no detection run metadata)"))
    model = build_detector(DetectorConfig.from_dict(meta["model"]))
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise MobileNetsError(f"weights in {file} do not fit the detector its metadata describes: "
                              f"{str(exc).splitlines()[0]}") from None
    return model.eval(), meta


def detector_init(path: str | os.PathLike) -> tuple[torch.nn.Module, dict[str, Any]] | None:
    """The detector and metadata ``path`` holds when it is a detection checkpoint (a run or a
    converted detector folder), else None (a classifier's weights, or nothing readable: the
    classifier loader then says what is wrong)."""
    from mobilenets.weights.checkpoint import resolve_checkpoint
    from mobilenets.weights.files import read_safetensors

    try:
        file = resolve_checkpoint(path)
        if file.suffix != ".safetensors":
            return None
        _, header = read_safetensors(file)
    except (MobileNetsError, OSError):
        return None
    if json.loads(header.get("run", "{}")).get("task") != "detection":
        return None
    return load_detector(path)


__all__ = ["detector_init", "load_detector"]
