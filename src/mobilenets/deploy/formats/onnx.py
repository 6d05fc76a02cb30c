"""ONNX export: ``torch.onnx.export(dynamo=True)``, opset 20, symbolic batch dimension.

Int8: the package's one ONNX Runtime static quantization (:func:`mobilenets.deploy.ort.quantize_qdq`:
QDQ, uint8 activations, int8 symmetric per-channel weights, min/max calibration, in the one form
that is right on every CPU: 8-bit depthwise weights, 7-bit weights elsewhere, see
:mod:`mobilenets.deploy.ort`); the classifier (the last Gemm/MatMul) stays float, as in every int8
format here (see :func:`mobilenets.deploy.quantizer.int8_quantizer`).
"""

from __future__ import annotations

import os
import tempfile
import warnings

import numpy as np
import torch
from torch import nn

from mobilenets.deploy.ort import quantize_qdq

MAX_BATCH = 65536  # the symbolic batch dimension's declared bound


def write_fp32(net: nn.Module, path: str, resolution: int) -> None:
    x = torch.randn(2, 3, resolution, resolution)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    with warnings.catch_warnings():  # the exporter's deprecation and "experimental" notices
        warnings.simplefilter("ignore")
        program = torch.onnx.export(net, (x,), dynamo=True, input_names=["input"], output_names=["logits"],
                                    dynamic_shapes={"x": {0: batch}}, optimize=True, verbose=False,
                                    opset_version=20)
    program.save(path)


def write_int8(net: nn.Module, path: str, resolution: int, images: np.ndarray) -> None:
    """The float export, then the package's one ONNX Runtime static quantization
    (:func:`mobilenets.deploy.ort.quantize_qdq`: QDQ, per-channel symmetric int8 weights, uint8
    activations calibrated by min/max; ORT fuses Conv+Relu, so each conv's output range is its
    ReLU's), the classifier left float."""
    with tempfile.TemporaryDirectory(prefix="mobilenet-export-") as tmp:
        fp32 = os.path.join(tmp, "fp32.onnx")
        write_fp32(net, fp32, resolution)
        quantize_qdq(fp32, path, images, batch_size=32, float_classifier=True)


def write(net: nn.Module, path: str, resolution: int, calibration: np.ndarray | None = None) -> None:
    if calibration is None:
        write_fp32(net, path, resolution)
    else:
        write_int8(net, path, resolution, calibration)


__all__ = ["MAX_BATCH", "write", "write_fp32", "write_int8"]
