"""A distillation run's student: read back from its run folder (without the training-only
projection of an embedding student) and saved as a plain model folder (``RUN/student``) that
every command reading a checkpoint loads."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from mobilenets.data.preprocess import Preprocessing
from mobilenets.errors import MobileNetsError
from mobilenets.models.config import MobileNetConfig


def save_student(run: str | os.PathLike) -> Path:
    """Write the run's student (without a training projection) as a model folder ``RUN/student``
    that every command reading a checkpoint loads (``mobilenet predict --checkpoint RUN/student``):
    its preprocessing, its output names as classes, the teacher and task as its source."""
    from mobilenets.weights.folder import save_model

    student, meta = load_student(run)
    names = meta.get("output_names")
    distilled = meta.get("distill") or {}
    source = {"framework": "mobilenets", "distilled_from": (meta.get("teacher") or {}).get("spec"),
              "task": distilled.get("mode"), "run": str(run)}
    classes = names if names and len(names) == student.config.num_classes else None
    return save_model(student, Path(run) / "student", preprocessing=student_preprocessing(meta, student),
                      source=source, classes=classes)


def load_student(path: str | os.PathLike) -> tuple[torch.nn.Module, dict[str, Any]]:
    """``(student, run metadata)`` of a distillation run folder or weights file, in eval mode; a
    projected embedding student (``embedding_dim``: weights ``student.*`` and ``projection.*``)
    comes back without its projection (its output is the embedding)."""
    from mobilenets.models.mobilenet import MobileNet
    from mobilenets.weights.checkpoint import read_safetensors, resolve_checkpoint

    file = resolve_checkpoint(path)
    state, header = read_safetensors(file)
    if "mobilenet_config" not in header:
        raise MobileNetsError(f"{file} is not a mobilenets weights file (no mobilenet_config)")
    cfg = MobileNetConfig.from_json(header["mobilenet_config"])
    meta = json.loads(header.get("run", "{}"))
    if any(k.startswith("student.") for k in state):
        state = {k.removeprefix("student."): v for k, v in state.items() if k.startswith("student.")}
    with torch.random.fork_rng(devices=[]):  # the initial weights are overwritten: draw nothing of the caller's
        model = MobileNet(cfg)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise MobileNetsError(f"{file}: weights do not fit its config: {str(exc).splitlines()[0]}") from None
    return model.eval(), meta


def student_preprocessing(meta: dict[str, Any], model: torch.nn.Module) -> Preprocessing:
    """The student's preprocessing, as its run recorded it."""
    return Preprocessing.from_dict(meta.get("preprocessing") or {}, resolution=model.config.resolution)


__all__ = ["load_student", "save_student", "student_preprocessing"]
