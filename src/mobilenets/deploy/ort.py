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
weights, min/max calibration). The classifier's export and the detector's export both call it.

**One file for every CPU.** ONNX Runtime picks its int8 kernels by the CPU the file runs on. On
x86-64 without VNNI (AVX2: Intel before Cascade Lake / Ice Lake, AMD Zen 1-3; AVX-512 without
VNNI: Skylake-SP) its uint8 x int8 matrix products add pairs of products in 16 bits (VPMADDUBSW)
and saturate when ``2 * 255 * |w| > 32767``, i.e. for 8-bit weights. Its depthwise convs have their
own kernels, which add in 32 bits on every CPU. So the default form (:data:`DEFAULT_FORM`) gives
the convs that run as matrix products 7-bit weights (ORT's ``reduce_range``: ``2 * 255 * 64 <
32767``, never saturates) and keeps 8 bits for the depthwise weights, where a folded MobileNet needs
them (BatchNorm leaves depthwise weights up to |48|). The form never depends on the exporting
machine. Measured on the real MobileNetV1 natively and under ``qemu-x86_64 -cpu Haswell``:
docs/results/2026-12-05-int8-cpus.md. :func:`conv_weight_bits` tells a remedy (bias correction,
learned rounding) which grid each conv's weights use.

Only ``import onnxruntime`` (inside the functions) is heavy here: no torch.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mobilenets.errors import MobileNetsError

# The integer grids of the weights in the files quantize_qdq writes by default (symmetric, per
# output channel: w ~ scale * q with q in weight_range(bits)): WEIGHT_BITS for every weight that ORT
# multiplies in a matrix product (a full or grouped conv, Gemm, MatMul), DEPTHWISE_WEIGHT_BITS for
# depthwise convs. Remedies that compute the rounding error (bias correction, learned rounding)
# use conv_weight_bits() per layer, not an assumed 8 bits.
WEIGHT_BITS = 7
DEPTHWISE_WEIGHT_BITS = 8


def weight_range(bits: int | None = None) -> tuple[int, int]:
    """``(qmin, qmax)`` of symmetric int8 weights of ``bits`` bits (default :data:`WEIGHT_BITS`):
    ``(-127, 127)`` for 8 bits, ``(-64, 64)`` for 7 (ORT's ``reduce_range``), as ORT's own
    ``get_qmin_qmax_for_qType`` gives them."""
    bits = WEIGHT_BITS if bits is None else bits
    if bits == 8:
        return (-127, 127)
    if bits == 7:
        return (-64, 64)
    raise MobileNetsError(f"weight bits must be 7 or 8, got {bits!r}")


def is_depthwise(weight_shape: Sequence[int], groups: int) -> bool:
    """Whether a conv with this weight shape (``[out, in / groups, kh, kw]``) and ``groups`` is
    depthwise with one output channel per group: the convs ORT runs with its depthwise kernels."""
    return groups > 1 and weight_shape[0] == groups and weight_shape[1] == 1


def conv_weight_bits(weight_shape: Sequence[int], groups: int = 1) -> int:
    """The bits of this conv's weights in the default int8 ONNX form: 8 for a depthwise conv
    (:func:`is_depthwise`), 7 for any other (e.g. ``conv_weight_bits(conv.weight.shape,
    conv.groups)`` for a ``torch.nn.Conv2d``)."""
    return DEPTHWISE_WEIGHT_BITS if is_depthwise(weight_shape, groups) else WEIGHT_BITS


def weight_qmax(weight_shape: Sequence[int], groups: int = 1) -> int:
    """The largest integer of this conv's symmetric weight grid in the default int8 ONNX form
    (scale ``max|w| / qmax`` per output channel): 127 for a depthwise conv, 64 for any other."""
    return weight_range(conv_weight_bits(weight_shape, groups))[1]
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


@dataclass(frozen=True)
class Int8Form:
    """One ONNX int8 QDQ form: the types of the activations and the weights (ORT's ``QuantType``
    names), whether weights use 7 bits (ORT's ``reduce_range``) and whether activations are
    symmetric. Weights are always symmetric and per output channel."""
    activations: str
    weights: str
    reduce_range: bool = False
    symmetric_activations: bool = False
    depthwise_8bit: bool = False  # with reduce_range: depthwise conv weights keep 8 bits


    @property
    def weight_bits(self) -> int:
        return 7 if self.reduce_range else 8

    def describe(self) -> dict[str, str]:
        sign = {"QUInt8": "uint8", "QInt8": "int8"}
        bits = ("8 bits in depthwise convs, 7 bits (ORT's reduce_range) in the others" if self.depthwise_8bit
                else "7 bits (ORT's reduce_range)" if self.reduce_range else "8 bits")
        return {"weights": f"{sign[self.weights]} symmetric, per output channel, {bits}",
                "activations": f"{sign[self.activations]} {'symmetric' if self.symmetric_activations else 'asymmetric'}"
                               ", per tensor, min/max calibration"}


# The forms measured across CPUs (docs/results/2026-12-05-int8-cpus.md). "u8s8" is ORT's default
# form (and this package's before): its kernels on x86-64 without VNNI add pairs of uint8 x int8
# products in 16 bits (VPMADDUBSW) and saturate. "s8s8" is converted to u8s8 by ORT on x86-64.
# "u8u8" does not saturate but its kernels are slower. The default is DEFAULT_FORM.
FORMS: dict[str, Int8Form] = {
    "u8s8": Int8Form("QUInt8", "QInt8"),
    "u8s8-7bit": Int8Form("QUInt8", "QInt8", reduce_range=True),
    "u8s8-7bit-dw8": Int8Form("QUInt8", "QInt8", reduce_range=True, depthwise_8bit=True),
    "u8u8": Int8Form("QUInt8", "QUInt8"),
    "s8s8": Int8Form("QInt8", "QInt8"),
    "s8s8-symmetric": Int8Form("QInt8", "QInt8", symmetric_activations=True),
}
DEFAULT_FORM = "u8s8-7bit-dw8"


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


def depthwise_weights(path: str | os.PathLike) -> list[str]:
    """The weight initializers of the graph's depthwise convs (one input and one output channel
    per group): ONNX Runtime runs these with its own depthwise kernels, which add in 32 bits on
    every CPU, while every other conv goes through its int8 matrix product."""
    import onnx

    graph = onnx.load(os.fspath(path), load_external_data=False).graph
    shapes = {i.name: tuple(i.dims) for i in graph.initializer}
    out = []
    for n in graph.node:
        if n.op_type != "Conv" or len(n.input) < 2 or n.input[1] not in shapes:
            continue
        group = next((a.i for a in n.attribute if a.name == "group"), 1)
        shape = shapes[n.input[1]]
        if group > 1 and shape[0] == group and shape[1] == 1:
            out.append(n.input[1])
    return out


def quantize_qdq(float_model: str | os.PathLike, output: str | os.PathLike, images: np.ndarray | Sequence[np.ndarray],
                 *, batch_size: int = 32, float_classifier: bool = False, network_only: bool = False,
                 form: str = DEFAULT_FORM) -> dict[str, Any]:
    """Write ``output``: the float ONNX graph ``float_model`` statically quantized to int8 (see the
    module docstring), calibrated on ``images`` fed ``batch_size`` at a time.

    ``float_classifier``: the last Gemm/MatMul stays float (:func:`classifier_nodes`);
    ``network_only``: only :data:`NETWORK_OPS` are quantized (a detector's box decoding and
    scores stay float); otherwise every op ORT quantizes. Either way a ReLU6 (Clip) after a conv
    is quantized with it, so the conv's output range is the clamp's. ``form``: one of
    :data:`FORMS` (measurements only; the default is the one that is right on every CPU).
    Returns the settings used (for an export's report)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if form not in FORMS:
        raise MobileNetsError(f"unknown int8 form {form!r}; choose from {', '.join(FORMS)}")
    chosen = FORMS[form]
    with tempfile.TemporaryDirectory(prefix="mobilenet-int8-") as tmp:
        pre = os.path.join(tmp, "pre.onnx")
        quant_pre_process(os.fspath(float_model), pre, skip_symbolic_shape=True)
        kept = classifier_nodes(pre) if float_classifier else []
        overrides = ({w: [{"axis": 0, "reduce_range": False}] for w in depthwise_weights(pre)}
                     if chosen.depthwise_8bit else {})
        quantize_static(pre, os.fspath(output), CalibrationReader(images, "input", batch_size),
                        quant_format=QuantFormat.QDQ, per_channel=True, nodes_to_exclude=kept,
                        op_types_to_quantize=list(NETWORK_OPS) if network_only else None,
                        activation_type=QuantType[chosen.activations], weight_type=QuantType[chosen.weights],
                        reduce_range=chosen.reduce_range, calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"WeightSymmetric": True, "ActivationSymmetric": chosen.symmetric_activations,
                                      "TensorQuantOverrides": overrides})
    return {"format": "QDQ", "form": form, **chosen.describe(), "float_nodes": kept,
            "ops": list(NETWORK_OPS) if network_only else "all"}


__all__ = ["DEFAULT_FORM", "DEPTHWISE_WEIGHT_BITS", "FORMS", "NETWORK_OPS", "WEIGHT_BITS", "CalibrationReader", "Int8Form",
           "classifier_nodes", "conv_weight_bits", "depthwise_weights", "is_depthwise", "quantize_qdq", "session",
           "weight_qmax", "weight_range"]
