"""An exported file (``.onnx``, ``.tflite``, ``.pte``, TorchScript) as what ``bench`` times.

``bench(checkpoint="model-int8.tflite")`` times the file itself, run by
:func:`mobilenets.deploy.runtime.load_runner`, as the engine of its format and precision
(``tflite-int8`` here), beside the peers if asked. What the file is comes from its sidecar
(``FILE.json``, written by ``mobilenet export``): the model config (for the mult-adds of the
FLOP floor) and the precision. Without a sidecar the architecture is the one the caller names
(default ``mobilenet_v1_1.0_224``) and the precision is read from the file where its format
allows (ONNX and TFLite: quantized tensors), else fp32 is assumed; the row's note says so.
"""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mobilenets.errors import DataNotFoundError, MobileNetsError
from mobilenets.models.config import MobileNetConfig

DEFAULT_MODEL = "mobilenet_v1_1.0_224"
SUFFIX_FORMAT = {".onnx": "onnx", ".tflite": "tflite", ".pte": "executorch", ".ts": "torchscript",
                 ".torchscript": "torchscript"}
# The engine name of a file, by (format, precision): the names of the engines that export it.
FILE_ENGINE = {("onnx", "fp32"): "onnxruntime", ("onnx", "int8"): "onnxruntime-int8", ("tflite", "fp32"): "tflite",
               ("tflite", "int8"): "tflite-int8", ("executorch", "fp32"): "executorch",
               ("executorch", "int8"): "executorch-int8", ("torchscript", "fp32"): "torchscript"}
QUANTIZED_ONNX_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger",
                      "MatMulInteger"}


@dataclasses.dataclass
class ExportedFile:
    """An exported model to time: its path, format, precision, the config its mult-adds are
    counted for, the engine name its rows carry, and notes on what was assumed."""

    path: str
    format: str
    precision: str
    config: MobileNetConfig
    engine: str
    notes: list[str]


def torchscript_archive(path: Path) -> bool:
    """Whether a ``.pt`` file is a TorchScript archive (a zip with compiled ``code/``), not a
    ``torch.save`` training state."""
    try:
        with zipfile.ZipFile(path) as z:
            return any("/code/" in n or n.startswith("code/") for n in z.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def exported_format(path: str | os.PathLike) -> str | None:
    """The export format of ``path`` (by its suffix; a ``.pt`` by its content), or None for a
    checkpoint (a run or model folder, ``.safetensors``, a ``.pt`` training state)."""
    p = Path(path)
    if p.is_dir():
        return None
    suffix = p.suffix.lower()
    if suffix == ".pt":
        return "torchscript" if p.is_file() and torchscript_archive(p) else None
    return SUFFIX_FORMAT.get(suffix)


def read_sidecar(path: Path) -> dict[str, Any] | None:
    from mobilenets.deploy.formats import sidecar_path

    side = sidecar_path(path)
    if not side.is_file():
        return None
    try:
        doc = json.loads(side.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise MobileNetsError(f"{side}: not a readable export sidecar ({exc})") from None
    return doc if isinstance(doc, dict) else None


def sniff_precision(path: Path, fmt: str) -> str | None:
    """int8 or fp32 from the file itself (ONNX: quantized ops; TFLite: int8 tensors), or None."""
    if fmt == "onnx":
        import onnx

        ops = {n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node}
        return "int8" if ops & QUANTIZED_ONNX_OPS else "fp32"
    if fmt == "tflite":
        import numpy as np

        from mobilenets.utils.tf import import_tf

        interp = import_tf().lite.Interpreter(model_path=str(path))
        return "int8" if any(t["dtype"] in (np.int8, np.uint8) for t in interp.get_tensor_details()) else "fp32"
    return "fp32" if fmt == "torchscript" else None


def expected_and_default(model: Any) -> tuple[dict[str, Any] | None, MobileNetConfig]:
    """What the file must be (None: anything) and the config to count without a sidecar, from
    ``model``: None, a registry name, a :class:`MobileNetConfig` or a mapping of config fields."""
    from mobilenets.models.registry import ARCHITECTURE_FIELDS, expected_fields, get_config

    if model is None:
        return None, get_config(DEFAULT_MODEL)
    if isinstance(model, str):
        return expected_fields(model), get_config(model)
    if isinstance(model, MobileNetConfig):
        return {f: getattr(model, f) for f in (*ARCHITECTURE_FIELDS, "resolution")}, model
    if isinstance(model, Mapping):
        fields = expected_fields(**model)
        return fields, dataclasses.replace(get_config(DEFAULT_MODEL), **fields)
    raise TypeError(f"with an exported file, model is a registry name, a MobileNetConfig or a mapping of "
                    f"config fields, got {type(model).__name__}")


def open_exported(path: str | os.PathLike, model: Any = None) -> ExportedFile:
    """The :class:`ExportedFile` at ``path``; ``model`` (see :func:`expected_and_default`) is the
    architecture it must have, and the one counted when it has no sidecar."""
    from mobilenets.models.registry import config_differences

    p = Path(path)
    if not p.is_file():
        raise DataNotFoundError(f"exported model not found: {p}")
    fmt = exported_format(p)
    if fmt is None:
        raise MobileNetsError(f"{p} is not an exported model (.onnx, .tflite, .pte, TorchScript)")
    expected, default = expected_and_default(model)
    side, notes = read_sidecar(p), []
    if side is not None and isinstance(side.get("model"), dict):
        config = MobileNetConfig.from_dict(side["model"])
        if expected:
            differ = config_differences(config, expected)
            if differ:
                raise MobileNetsError(f"{p} is a different model from the one named: {', '.join(differ)}")
    else:
        config = default
        notes.append(f"no sidecar {p.name}.json: mult-adds counted for alpha {config.alpha:g}, "
                     f"{config.resolution} px")
    precision = side.get("precision") if side is not None else None
    if precision not in ("fp32", "int8"):
        precision = sniff_precision(p, fmt)
        if precision is None:
            precision = "fp32"
            notes.append(f"precision unknown (no sidecar): fp32 assumed for {p.name}")
    engine = FILE_ENGINE.get((fmt, precision))
    if engine is None:
        raise MobileNetsError(f"{p}: no engine runs {fmt} in {precision}")
    return ExportedFile(str(p), fmt, precision, config, engine, notes)
