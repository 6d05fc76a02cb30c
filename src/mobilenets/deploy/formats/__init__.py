"""The export formats: their names, which offer int8, and one writer module per format.

Each writer module (``onnx``, ``tflite``, ``executorch``, ``torchscript``) has
``write(net, path, resolution, calibration)``: it writes the folded network (an
:class:`~mobilenets.deploy.fold.InferenceNet`) for a ``resolution`` px input to ``path``,
float32, or int8 where ``calibration`` (float32 NCHW images) is given. This package itself
imports nothing heavy, so the command line can list the formats at once.

A file's format follows from its suffix (:data:`SUFFIXES`; :func:`format_for_output`): an export
is never written under a name that says another format.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

FORMATS = ("onnx", "tflite", "executorch", "torchscript")
INT8_FORMATS = ("onnx", "tflite", "executorch")
# Exports that write a folder, not one file (the command line's --format offers them too): "web" is
# the ONNX export (fp32 or int8) with ONNX Runtime Web and a page (mobilenets.deploy.web.export_web).
FOLDER_FORMATS = ("web",)
# How each int8 format quantizes activations (weights: int8 symmetric per output channel in all).
ACTIVATION_SCHEMES = {
    "onnx": "uint8 asymmetric, per tensor (QDQ), min/max calibration",
    "tflite": "int8 asymmetric, per tensor, min/max calibration",
    "executorch": "int8 asymmetric, per tensor, min/max calibration",
}
# The file names each format is written and read under (the first one of a format is its usual one).
SUFFIXES = {".onnx": "onnx", ".tflite": "tflite", ".pte": "executorch", ".pt": "torchscript", ".ts": "torchscript",
            ".torchscript": "torchscript"}
SIDECAR_SUFFIX = ".json"  # OUTPUT.json beside OUTPUT: the preprocessing and the export report


def sidecar_path(output: str | os.PathLike) -> Path:
    """Where the sidecar of the export ``output`` is: ``OUTPUT.json``."""
    return Path(os.fspath(output) + SIDECAR_SUFFIX)


def suffix_format(path: str | os.PathLike) -> str | None:
    """The format a file name's suffix stands for (any case), or None for another suffix."""
    return SUFFIXES.get(Path(os.fspath(path)).suffix.lower())


def format_for_output(output: str | os.PathLike, format: str | None = None) -> str:
    """The format to write ``output`` in: ``format`` if given (one of :data:`FORMATS`), else the
    one its suffix names. A ``format`` that the suffix contradicts (``format="onnx"`` for
    ``x.tflite``), and a suffix that names no format when ``format`` is None, are refused."""
    from mobilenets.errors import MobileNetsError, arg

    if format is not None and format not in FORMATS:
        raise MobileNetsError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
    named = suffix_format(output)
    if format is None:
        if named is None:
            raise MobileNetsError(f"cannot tell the format from the file name {os.fspath(output)}: end it in "
                                  f"{', '.join(SUFFIXES)} or give {arg('format')} (one of {', '.join(FORMATS)})")
        return named
    if named is not None and named != format:
        raise MobileNetsError(f"output {os.fspath(output)} is named like a {named} file but {arg('format', format)}; "
                              f"change the suffix or the format")
    return format


def write(fmt: str, net: Any, path: str, resolution: int, calibration: Any = None, quantized: Any = None) -> None:
    """Write ``net`` in format ``fmt`` (one of :data:`FORMATS`); int8 where ``calibration`` is given.
    ``quantized``: the converted PT2E int8 graph of quantization-aware fine-tuning, which ExecuTorch
    lowers as it is (ONNX Runtime and TFLite quantize ``net``, the fine-tuned float weights, with
    their own calibrators)."""
    from mobilenets.errors import MobileNetsError

    if fmt not in FORMATS:
        raise MobileNetsError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if calibration is not None and fmt not in INT8_FORMATS:
        raise MobileNetsError(f"int8=True is not offered for {fmt}; use one of {', '.join(INT8_FORMATS)}")
    writer = importlib.import_module(f"mobilenets.deploy.formats.{fmt}")
    if quantized is not None and fmt == "executorch":
        writer.write(net, path, resolution, calibration, quantized=quantized)
    else:
        writer.write(net, path, resolution, calibration)
