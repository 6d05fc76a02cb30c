"""The export formats: their names, which offer int8, and one writer module per format.

Each writer module (``onnx``, ``tflite``, ``executorch``, ``torchscript``) has
``write(net, path, resolution, calibration)``: it writes the folded network (an
:class:`~mobilenets.deploy.fold.InferenceNet`) for a ``resolution`` px input to ``path``,
float32, or int8 where ``calibration`` (float32 NCHW images) is given. This package itself
imports nothing heavy, so the command line can list the formats at once.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

FORMATS = ("onnx", "tflite", "executorch", "torchscript")
INT8_FORMATS = ("onnx", "tflite", "executorch")
# How each int8 format quantizes activations (weights: int8 symmetric per output channel in all).
ACTIVATION_SCHEMES = {
    "onnx": "uint8 asymmetric, per tensor (QDQ), min/max calibration",
    "tflite": "int8 asymmetric, per tensor, min/max calibration",
    "executorch": "int8 asymmetric, per tensor, min/max calibration",
}
SIDECAR_SUFFIX = ".json"  # OUTPUT.json beside OUTPUT: the preprocessing and the export report


def sidecar_path(output: str | os.PathLike) -> Path:
    """Where the sidecar of the export ``output`` is: ``OUTPUT.json``."""
    return Path(os.fspath(output) + SIDECAR_SUFFIX)


def write(fmt: str, net: Any, path: str, resolution: int, calibration: Any = None) -> None:
    """Write ``net`` in format ``fmt`` (one of :data:`FORMATS`); int8 where ``calibration`` is given."""
    from mobilenets.errors import MobileNetsError

    if fmt not in FORMATS:
        raise MobileNetsError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if calibration is not None and fmt not in INT8_FORMATS:
        raise MobileNetsError(f"int8=True is not offered for {fmt}; use one of {', '.join(INT8_FORMATS)}")
    importlib.import_module(f"mobilenets.deploy.formats.{fmt}").write(net, path, resolution, calibration)
