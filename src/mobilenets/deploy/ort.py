"""ONNX Runtime in one place: the session every caller opens, and the one static int8 pipeline.

:func:`session` is the only place the package builds ``onnxruntime.SessionOptions``: the CPU
provider, graph optimisation level ALL, ``threads`` intra-op threads, one inter-op thread and
sequential execution (a MobileNet is one chain of ops: a second pool only adds threads that
compete for the cores). What differs per caller is a keyword: ``spinning=False`` for a
measurement that must not leave spinning threads behind to slow what runs next, ``quiet`` for
graphs whose load warnings are expected (QDQ and NMS graphs), ``profile_prefix`` and
``optimized_model`` for the profiler.

:func:`quantize_qdq` is the only static int8 quantization: ``quant_pre_process`` then
``quantize_static`` in QDQ format (uint8 asymmetric activations, int8 symmetric per-channel
weights, min/max calibration), as ORT's quantization docs recommend, with 7-bit weights where
:func:`reduce_range` says so. The classifier's export and the detector's export both call it.

Only ``import onnxruntime`` (inside the functions) is heavy here: no torch.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np

from mobilenets.errors import MobileNetsError

REDUCE_RANGE_ENV = "MOBILENETS_ORT_REDUCE_RANGE"
# The integer grid of the weights in every file quantize_qdq writes (symmetric, per output
# channel: w ~ scale * q with q in weight_range()). Remedies that compute the rounding error
# (bias correction, learned rounding) must use this grid, not assume 8 bits.
# PROVISIONAL: being measured across CPUs (issue 25); the name stays, the value may change.
WEIGHT_BITS = 8


def weight_range(bits: int | None = None) -> tuple[int, int]:
    """``(qmin, qmax)`` of the symmetric int8 weights quantize_qdq writes: ``(-127, 127)`` for 8
    bits, ``(-64, 64)`` for 7 (ORT's ``reduce_range``), as ORT's own ``get_qmin_qmax_for_qType``
    gives them. ``bits`` defaults to :data:`WEIGHT_BITS`."""
    bits = WEIGHT_BITS if bits is None else bits
    if bits == 8:
        return (-127, 127)
    if bits == 7:
        return (-64, 64)
    raise MobileNetsError(f"weight bits must be 7 or 8, got {bits!r}")
# A conv net's ops: the convs and their activations. ReLU6 is ONNX's Clip: naming it here makes
# ORT fold each clamp into the output range of the conv before it (with Conv alone that range was
# the unclamped one: AP50 -2.23 points on the real-MobileNet SSD, -0.38 with the Clips).
NETWORK_OPS = ("Conv", "Clip", "Relu")


def session(model: str | os.PathLike | bytes, threads: int = 2, *, spinning: bool = True, quiet: bool = False,
            profile_prefix: str | None = None, optimized_model: str | None = None):
    """An ``onnxruntime.InferenceSession`` on the CPU for ``model`` (a path or the serialized
    bytes), with the settings the module docstring gives. ``spinning=False``: intra-op threads
    sleep when idle instead of spinning; ``quiet``: ORT logs errors only; ``profile_prefix``:
    ORT's profiler on, its trace named so (``session.end_profiling()`` returns the file);
    ``optimized_model``: where ORT writes the graph it optimised. A file ORT cannot load is one
    :class:`~mobilenets.errors.MobileNetsError` line."""
    import onnxruntime as ort

    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise MobileNetsError(f"threads must be an integer >= 1, got {threads!r}")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if quiet or optimized_model is not None:  # not the warning that a saved graph is machine-specific
        opts.log_severity_level = 3
    if optimized_model is not None:
        opts.optimized_model_filepath = os.fspath(optimized_model)
    if profile_prefix is not None:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile_prefix
    source = model if isinstance(model, bytes) else os.fspath(model)
    try:
        return ort.InferenceSession(source, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - ORT's errors (InvalidArgument, Fail, ...) derive from Exception only
        what = "(in memory)" if isinstance(model, bytes) else source
        raise MobileNetsError(f"cannot load ONNX model {what}: {str(exc).splitlines()[0]}") from None


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
        raise MobileNetsError(f"{REDUCE_RANGE_ENV} must be 1 (7-bit weights) or 0 (8-bit), got {forced!r}")
    import platform

    if (machine or platform.machine()).lower() not in ("x86_64", "amd64"):
        return False
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as f:
                cpuinfo = f.read()
        except OSError:  # not Linux: no way to tell; 8-bit weights, as ORT's default
            return False
    return re.search(r"\b(avx512_vnni|avx_vnni|amx_int8)\b", cpuinfo) is None


class CalibrationReader:
    """ONNX Runtime's calibration data reader: ``images`` (float32 ``[N, 3, H, W]``, or a list of
    ``[3, H, W]``) fed to input ``name`` in batches of ``batch_size`` (1 for a batch-1 graph)."""

    def __init__(self, images: np.ndarray | Sequence[np.ndarray], name: str = "input", batch_size: int = 32) -> None:
        stacked = np.asarray(images, dtype=np.float32)
        self.batches = [stacked[i:i + batch_size] for i in range(0, len(stacked), batch_size)]
        self.name = name
        self.i = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.i >= len(self.batches):
            return None
        self.i += 1
        return {self.name: np.ascontiguousarray(self.batches[self.i - 1])}

    def rewind(self) -> None:
        self.i = 0


def classifier_nodes(path: str | os.PathLike) -> list[str]:
    """The graph's classifier: its last Gemm or MatMul node (none for a headless network), kept
    float so that the logits are not rounded to 8 bits."""
    import onnx

    nodes = [n for n in onnx.load(os.fspath(path), load_external_data=False).graph.node
             if n.op_type in ("Gemm", "MatMul")]
    return [nodes[-1].name] if nodes else []


def quantize_qdq(float_model: str | os.PathLike, output: str | os.PathLike, images: np.ndarray | Sequence[np.ndarray],
                 *, batch_size: int = 32, float_classifier: bool = False, network_only: bool = False) -> dict[str, Any]:
    """Write ``output``: the float ONNX graph ``float_model`` statically quantized to int8 (see the
    module docstring), calibrated on ``images`` fed ``batch_size`` at a time.

    ``float_classifier``: the last Gemm/MatMul stays float (:func:`classifier_nodes`);
    ``network_only``: only :data:`NETWORK_OPS` are quantized (a detector's box decoding and
    scores stay float); otherwise every op ORT quantizes. Either way a ReLU6 (Clip) after a conv
    is quantized with it, so the conv's output range is the clamp's. Returns the settings used
    (for an export's report)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    seven_bits = reduce_range()
    with tempfile.TemporaryDirectory(prefix="mobilenet-int8-") as tmp:
        pre = os.path.join(tmp, "pre.onnx")
        quant_pre_process(os.fspath(float_model), pre, skip_symbolic_shape=True)
        kept = classifier_nodes(pre) if float_classifier else []
        quantize_static(pre, os.fspath(output), CalibrationReader(images, "input", batch_size),
                        quant_format=QuantFormat.QDQ, per_channel=True, nodes_to_exclude=kept,
                        op_types_to_quantize=list(NETWORK_OPS) if network_only else None,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, reduce_range=seven_bits,
                        calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"WeightSymmetric": True, "ActivationSymmetric": False})
    return {"format": "QDQ", "weights": "int8 symmetric, per output channel" + (" (7 bits)" if seven_bits else ""),
            "activations": "uint8 asymmetric, per tensor, min/max calibration", "reduce_range": seven_bits,
            "float_nodes": kept, "ops": list(NETWORK_OPS) if network_only else "all"}


__all__ = ["NETWORK_OPS", "REDUCE_RANGE_ENV", "WEIGHT_BITS", "weight_range", "CalibrationReader", "classifier_nodes", "quantize_qdq", "reduce_range",
           "session"]
