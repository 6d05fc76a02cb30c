"""ONNX export: ``torch.onnx.export(dynamo=True)``, opset 20, symbolic batch dimension.

Int8: ONNX Runtime's ``quantize_static`` in QDQ format (uint8 activations, int8 symmetric
per-channel weights, min/max calibration) after ``quant_pre_process``, as the ORT quantization
docs recommend; on x86-64 CPUs without VNNI the weights use 7 bits (:func:`reduce_range`); the
classifier (the last Gemm/MatMul) stays float, as in every int8 format here (see
:func:`mobilenets.deploy.quantizer.int8_quantizer`).
"""

from __future__ import annotations

import os
import tempfile
import warnings

import numpy as np
import torch
from torch import nn

MAX_BATCH = 65536  # the symbolic batch dimension's declared bound
REDUCE_RANGE_ENV = "MOBILENETS_ORT_REDUCE_RANGE"


def reduce_range(cpuinfo: str | None = None, machine: str | None = None) -> bool:
    """Whether ORT int8 weights should use 7 bits (ORT's ``reduce_range``) for this machine.

    On x86-64 CPUs without VNNI, ONNX Runtime's uint8 x int8 kernels add pairs of products in
    16 bits (VPMADDUBSW), which saturate (255 * 127 * 2 > 32767); ORT's quantization docs and
    OpenVINO's both give 7-bit weights as the fix. Measured here on a 2-core AVX2 EPYC: the
    digits model's int8 ONNX agreed with fp32 on 89.1 % of images with 8-bit weights, >= 99 %
    with 7. CPUs with AVX-512 VNNI, AVX-VNNI or AMX, and ARM, keep 8 bits. The environment
    variable ``MOBILENETS_ORT_REDUCE_RANGE`` (1 or 0) decides instead, e.g. when the file is made
    on one machine for another. ``cpuinfo`` and ``machine`` default to this machine's
    ``/proc/cpuinfo`` and ``platform.machine()``."""
    forced = os.environ.get(REDUCE_RANGE_ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    if forced:
        from mobilenets.errors import MobileNetsError

        raise MobileNetsError(f"{REDUCE_RANGE_ENV} must be 1 (7-bit weights) or 0 (8-bit), got {forced!r}")
    import platform
    import re

    if (machine or platform.machine()).lower() not in ("x86_64", "amd64"):
        return False
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as f:
                cpuinfo = f.read()
        except OSError:  # not Linux: no way to tell; 8-bit weights, as ORT's default
            return False
    return re.search(r"\b(avx512_vnni|avx_vnni|amx_int8)\b", cpuinfo) is None


def write_fp32(net: nn.Module, path: str, resolution: int) -> None:
    x = torch.randn(2, 3, resolution, resolution)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    with warnings.catch_warnings():  # the exporter's deprecation and "experimental" notices
        warnings.simplefilter("ignore")
        program = torch.onnx.export(net, (x,), dynamo=True, input_names=["input"], output_names=["logits"],
                                    dynamic_shapes={"x": {0: batch}}, optimize=True, verbose=False,
                                    opset_version=20)
    program.save(path)


class _Reader:
    """ONNX Runtime calibration data reader: batches of preprocessed images."""

    def __init__(self, images: np.ndarray, name: str, batch_size: int = 32) -> None:
        self.batches = [images[i:i + batch_size] for i in range(0, len(images), batch_size)]
        self.name = name
        self.i = 0

    def get_next(self):
        if self.i >= len(self.batches):
            return None
        self.i += 1
        return {self.name: np.ascontiguousarray(self.batches[self.i - 1], dtype=np.float32)}

    def rewind(self) -> None:
        self.i = 0


def classifier_nodes(path: str) -> list[str]:
    """The graph's classifier: its last Gemm or MatMul node (none for a headless network), kept
    float so that the logits are not rounded to 8 bits."""
    import onnx

    nodes = [n for n in onnx.load(path, load_external_data=False).graph.node if n.op_type in ("Gemm", "MatMul")]
    return [nodes[-1].name] if nodes else []


def write_int8(net: nn.Module, path: str, resolution: int, images: np.ndarray) -> None:
    """ONNX Runtime static quantization, QDQ format: per-channel symmetric int8 weights, uint8
    activations calibrated by min/max (ORT fuses Conv+Relu, so each conv's output range is its
    ReLU's). The float model is pre-processed (shape inference, graph optimisation) first."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="mobilenet-export-") as tmp:
        fp32, pre = os.path.join(tmp, "fp32.onnx"), os.path.join(tmp, "pre.onnx")
        write_fp32(net, fp32, resolution)
        quant_pre_process(fp32, pre, skip_symbolic_shape=True)
        quantize_static(pre, path, _Reader(images, "input"), quant_format=QuantFormat.QDQ, per_channel=True,
                        nodes_to_exclude=classifier_nodes(pre),
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, reduce_range=reduce_range(),
                        calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"WeightSymmetric": True, "ActivationSymmetric": False})


def write(net: nn.Module, path: str, resolution: int, calibration: np.ndarray | None = None) -> None:
    if calibration is None:
        write_fp32(net, path, resolution)
    else:
        write_int8(net, path, resolution, calibration)
