"""Float TFLite MobileNetV1 files in (the hosted ``mobilenet_v1_*.tflite`` layout, and what
TensorFlow's converter makes of a TF-slim graph or a Keras MobileNet), read without running them.

A ``.tflite`` file is a FlatBuffer in TFLite's schema (identifier ``TFL3`` at bytes 4..8). The
few tables needed (model, subgraph, operators, tensors, buffers and the conv/pool options) are
read here with :mod:`struct`, so converting needs neither TensorFlow nor a TFLite package. Layers
are found by walking the operators from the input, by op type and shape (tensor names differ
between converters)::

    CONV_2D 3x3/2, 13 x (DEPTHWISE_CONV_2D 3x3, CONV_2D 1x1), AVERAGE_POOL_2D or MEAN,
    [the classifier: CONV_2D 1x1 or FULLY_CONNECTED], then only RESHAPE / SQUEEZE / SOFTMAX

TFLite's converter folds each BatchNorm into its conv's weights and bias, so each of our layers
gets an identity BatchNorm: weight 1, bias = the conv's bias, mean 0, variance ``1 - eps`` (so
``var + eps`` is exactly 1). The activation is fused into each conv (RELU6 or RELU) or follows as
its own op. Padding is TF "SAME", or an explicit PAD before a VALID conv (Keras's (0, 1) before
stride-2 convs): the model gets ``padding="tf_same"`` when every conv pads as TF SAME does at
the file's resolution, ``"symmetric"`` when every 3x3 conv pads 1 on each side. Weights may be
float32 or float16 (DEQUANTIZE'd constants); quantized files (int8/uint8 tensors) are refused.
"""

from __future__ import annotations

import os
import struct
from collections import Counter, namedtuple
from pathlib import Path
from typing import Any

import numpy as np

from mobilenets.errors import DataNotFoundError, MobileNetsError
from mobilenets.models.config import MobileNetConfig
from mobilenets.models.layers import same_padding
from mobilenets.models.mobilenet import BLOCKS, STEM_STRIDE, MobileNet, layer_plan
from mobilenets.weights.convert.common import alpha_from_last, assemble, set_imagenet_info, tf_preprocessing, units

TFLITE_IDENTIFIER = b"TFL3"  # the FlatBuffer file identifier of TFLite's schema, at bytes 4..8
BN_EPS = 1e-3  # any eps works (the variance is 1 - eps); TF's, so the config looks like the other TF sources
# TFLite's BuiltinOperator codes (schema.fbs) of the ops a MobileNetV1 file has, and of common others
# (only to name them in an error)
OPS = {0: "ADD", 1: "AVERAGE_POOL_2D", 2: "CONCATENATION", 3: "CONV_2D", 4: "DEPTHWISE_CONV_2D", 6: "DEQUANTIZE",
       9: "FULLY_CONNECTED", 14: "LOGISTIC", 17: "MAX_POOL_2D", 18: "MUL", 19: "RELU", 21: "RELU6", 22: "RESHAPE",
       23: "RESIZE_BILINEAR", 25: "SOFTMAX", 28: "TANH", 34: "PAD", 39: "TRANSPOSE", 40: "MEAN", 41: "SUB",
       43: "SQUEEZE", 45: "STRIDED_SLICE", 55: "MAXIMUM", 57: "MINIMUM", 60: "PADV2", 74: "SUM", 77: "SHAPE",
       83: "PACK", 98: "LEAKY_RELU", 114: "QUANTIZE", 117: "HARD_SWISH", 126: "BATCH_MATMUL"}
# TensorType codes: the float types read, the integer ones constants may have, and the quantized ones refused
FLOAT32, FLOAT16 = 0, 1
DTYPES = {0: np.float32, 1: np.float16, 2: np.int32, 4: np.int64, 10: np.float64}
QUANTIZED = {3: "uint8", 7: "int16", 9: "int8", 17: "int4"}
ACTIVATIONS = {0: None, 1: "relu", 3: "relu6"}  # ActivationFunctionType -> ours (others do not map)
SAME = 0  # Padding code (VALID is 1)


class _Table:
    """One FlatBuffers table of ``buf`` starting at ``pos``; fields are numbered as in the schema."""

    def __init__(self, buf: memoryview, pos: int) -> None:
        self.buf, self.pos = buf, pos
        self.vtable = pos - struct.unpack_from("<i", buf, pos)[0]
        self.vtable_len = struct.unpack_from("<H", buf, self.vtable)[0]

    def position(self, field: int) -> int:
        """Absolute position of ``field``'s value; 0 if the field is absent (its default applies)."""
        slot = 4 + 2 * field
        if slot >= self.vtable_len:
            return 0
        rel = struct.unpack_from("<H", self.buf, self.vtable + slot)[0]
        return self.pos + rel if rel else 0

    def scalar(self, field: int, fmt: str, default: int = 0) -> int:
        at = self.position(field)
        return struct.unpack_from("<" + fmt, self.buf, at)[0] if at else default

    def target(self, field: int) -> int:
        at = self.position(field)
        return at + struct.unpack_from("<I", self.buf, at)[0] if at else 0

    def table(self, field: int) -> _Table | None:
        at = self.target(field)
        return _Table(self.buf, at) if at else None

    def vector(self, field: int) -> tuple[int, int]:
        at = self.target(field)
        return (at + 4, struct.unpack_from("<I", self.buf, at)[0]) if at else (0, 0)

    def tables(self, field: int) -> list[_Table]:
        start, n = self.vector(field)
        return [_Table(self.buf, start + 4 * i + struct.unpack_from("<I", self.buf, start + 4 * i)[0])
                for i in range(n)]

    def numbers(self, field: int, fmt: str) -> list[int]:
        start, n = self.vector(field)
        return list(struct.unpack_from(f"<{n}{fmt}", self.buf, start)) if n else []

    def raw(self, field: int) -> memoryview:
        start, n = self.vector(field)
        return self.buf[start:start + n]


# a tensor: shape, TensorType code, buffer index, shape signature (-1: dynamic); an operator: its index in
# the subgraph, kind (e.g. "CONV_2D"), input and output tensor indices (-1: an omitted optional input), options
_Tensor = namedtuple("_Tensor", "shape dtype buffer signature")
_Op = namedtuple("_Op", "index kind inputs outputs options")


class _Graph:
    """The main subgraph of a TFLite file: its tensors, operators and constant data."""

    def __init__(self, data: bytes, path: str) -> None:
        self.path = path
        buf = memoryview(data)
        model = _Table(buf, struct.unpack_from("<I", buf, 0)[0])
        codes = []
        for code in model.tables(1):  # OperatorCode: the real code is the larger of its two fields
            builtin = max(code.scalar(0, "b"), code.scalar(3, "i"))
            custom = bytes(code.raw(1)).decode("utf-8", "replace")
            codes.append(f"custom op {custom!r}" if custom else OPS.get(builtin, f"builtin op {builtin}"))
        subgraphs = model.tables(2)
        if not subgraphs:
            raise MobileNetsError(f"{path} holds no subgraph: not a TFLite model")
        graph = subgraphs[0]
        self.description = bytes(model.raw(3)).decode("utf-8", "replace")
        self.buffers = model.tables(4)
        self.data = buf
        self.tensors = [_Tensor(t.numbers(0, "i"), t.scalar(1, "b"), t.scalar(2, "I"), t.numbers(7, "i"))
                        for t in graph.tables(0)]
        self.inputs = graph.numbers(1, "i")
        self.ops = [_Op(i, codes[op.scalar(0, "I")], op.numbers(1, "i"), op.numbers(2, "i"), op.table(4))
                    for i, op in enumerate(graph.tables(3))]
        self.producer = {t: op for op in self.ops for t in op.outputs}

    def constant(self, index: int) -> np.ndarray | None:
        """The value of constant tensor ``index`` as float64 (float16 weights behind a DEQUANTIZE
        included), or None if it is computed at run time."""
        tensor = self.tensors[index]
        raw = self.buffer_bytes(tensor.buffer)
        if raw is None:
            op = self.producer.get(index)
            if op is not None and op.kind == "DEQUANTIZE" and self.tensors[op.inputs[0]].dtype == FLOAT16:
                return self.constant(op.inputs[0])
            return None
        if tensor.dtype not in DTYPES:
            raise MobileNetsError(f"{self.path}: constant tensor {index} has TFLite type {tensor.dtype}, which "
                                  f"from_tflite does not read")
        dtype = np.dtype(DTYPES[tensor.dtype])
        if len(raw) != dtype.itemsize * int(np.prod(tensor.shape)):
            raise MobileNetsError(f"{self.path} is a damaged TFLite file: tensor {index} of shape "
                                  f"{tuple(tensor.shape)} has {len(raw)} bytes")
        return np.frombuffer(raw, dtype=dtype).reshape(tensor.shape).astype(np.float64)

    def buffer_bytes(self, index: int) -> memoryview | None:
        if index <= 0 or index >= len(self.buffers):  # buffer 0 is the schema's empty sentinel
            return None
        buffer = self.buffers[index]
        raw = buffer.raw(0)
        if len(raw):
            return raw
        offset, size = buffer.scalar(1, "Q"), buffer.scalar(2, "Q")  # files > 2 GB keep data after the FlatBuffer
        return self.data[offset:offset + size] if offset > 1 and size else None

    def chain(self) -> list[_Op]:
        """The operators on the path from the (single) input, in order; a branch is refused. SHAPE
        ops read only a tensor's shape (Keras's reshapes compute their target from it): not a branch."""
        consumers: dict[int, list[_Op]] = {}
        for op in self.ops:
            if op.kind == "SHAPE":
                continue
            for t in op.inputs:
                if t >= 0:
                    consumers.setdefault(t, []).append(op)
        ops, x = [], self.inputs[0]
        while consumers.get(x):
            users = consumers[x]
            if len(users) > 1:
                where = f"op {ops[-1].index}" if ops else "the input"
                raise self.refuse(f"the network branches after {where} ({len(users)} ops read one tensor)")
            ops.append(users[0])
            x = users[0].outputs[0]
        return ops

    def refuse(self, why: str) -> MobileNetsError:
        found = ", ".join(f"{n} {kind}" for kind, n in Counter(op.kind for op in self.ops).most_common())
        return MobileNetsError(f"{self.path} is not a MobileNetV1: {why} (its ops: {found or 'none'})")


def _read_graph(path: str | os.PathLike) -> _Graph:
    file = Path(path)
    if not file.is_file():
        raise DataNotFoundError(f"TFLite file not found: {file}")
    data = file.read_bytes()
    if data[4:8] != TFLITE_IDENTIFIER:
        raise MobileNetsError(f"{file} is not a TFLite file (no {TFLITE_IDENTIFIER.decode()} identifier at bytes 4..8)")
    try:
        graph = _Graph(data, str(file))
    except (struct.error, IndexError, ValueError) as exc:
        raise MobileNetsError(f"{file} is a damaged TFLite file ({exc})") from None
    quantized = sorted({QUANTIZED[t.dtype] for t in graph.tensors if t.dtype in QUANTIZED})
    if quantized or any(op.kind == "QUANTIZE" for op in graph.ops):
        raise MobileNetsError(f"{file} is a quantized TFLite model ({', '.join(quantized) or 'QUANTIZE ops'}); "
                              f"from_tflite reads float models only: convert the float .tflite file")
    return graph


class _Walk:
    """Reads the chain of ops in MobileNetV1's order; anything else is refused, naming what was found."""

    def __init__(self, graph: _Graph, ops: list[_Op], size: int) -> None:
        self.graph, self.ops, self.i, self.size = graph, ops, 0, size
        self.pads: list[tuple[str, tuple[int, int], tuple[int, int], tuple[int, int]]] = []
        self.activations: set[str] = set()

    def peek(self) -> str | None:
        return self.ops[self.i].kind if self.i < len(self.ops) else None

    def take(self, kind: str, what: str) -> _Op:
        if self.peek() != kind:
            found = self.peek() or "the end of the network"
            at = f"op {self.ops[self.i].index}" if self.i < len(self.ops) else "the end"
            raise self.graph.refuse(f"expected {kind} for {what} at {at}, found {found}")
        self.i += 1
        return self.ops[self.i - 1]

    def weights(self, op: _Op, what: str) -> tuple[np.ndarray, np.ndarray | None]:
        kernel = self.graph.constant(op.inputs[1])
        if kernel is None:
            raise self.graph.refuse(f"the weights of {what} (op {op.index}) are not constant")
        has_bias = len(op.inputs) > 2 and op.inputs[2] >= 0
        return kernel, self.graph.constant(op.inputs[2]) if has_bias else None

    def explicit_pad(self) -> tuple[int, int]:
        """A PAD op before a conv: its (before, after) on the spatial axes (equal on both)."""
        if self.peek() not in ("PAD", "PADV2"):
            return 0, 0
        op = self.ops[self.i]
        self.i += 1
        pads = self.graph.constant(op.inputs[1])
        fill = self.graph.constant(op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
        if pads is None or pads.shape != (4, 2) or pads[0].any() or pads[3].any() or (pads[1] != pads[2]).any() \
                or (fill is not None and fill.any()):
            raise self.graph.refuse(f"op {op.index} pads other than zeros on both spatial axes alike")
        return int(pads[1, 0]), int(pads[1, 1])

    def conv(self, name: str, kind: str, stride: int, cin: int) -> dict[str, np.ndarray]:
        """One of our conv+BN units: its conv op (with padding and activation), as our arrays."""
        k = 1 if kind == "pw" else 3
        before, after = self.explicit_pad()
        op = self.take("DEPTHWISE_CONV_2D" if kind == "dw" else "CONV_2D", name)
        opts = op.options
        if opts is None:
            raise self.graph.refuse(f"{name} (op {op.index}) has no options")
        act_field, dil = (4, (5, 6)) if kind == "dw" else (3, (4, 5))
        strides = (opts.scalar(1, "i"), opts.scalar(2, "i"))
        dilation = (opts.scalar(dil[0], "i", 1), opts.scalar(dil[1], "i", 1))
        kernel, bias = self.weights(op, name)
        # kernels: CONV_2D is OHWI, DEPTHWISE_CONV_2D is 1HWC (depth multiplier 1)
        want = (1, k, k, cin) if kind == "dw" else (kernel.shape[0], k, k, cin)
        if kernel.shape != want or strides != (stride, stride) or dilation != (1, 1):
            raise self.graph.refuse(f"{name} (op {op.index}) has kernel {kernel.shape}, stride {strides}, dilation "
                                    f"{dilation}; MobileNetV1 has {want}, stride {stride}, dilation 1")
        padding = opts.scalar(0, "b")
        tf_same = same_padding(self.size, k, stride)
        implicit = tf_same if padding == SAME else (0, 0)
        pad = (before + implicit[0], after + implicit[1])
        self.pads.append((name, pad, tf_same, ((k - 1) // 2, (k - 1) // 2)))
        self.size = (self.size + pad[0] + pad[1] - k) // stride + 1
        act_code = opts.scalar(act_field, "b")
        if act_code not in ACTIVATIONS:
            raise self.graph.refuse(f"{name} (op {op.index}) has fused activation code {act_code}; MobileNetV1 "
                                    f"has ReLU6 or ReLU")
        act = ACTIVATIONS[act_code]
        if act is None and self.peek() in ("RELU6", "RELU"):
            act = self.ops[self.i].kind.lower()
            self.i += 1
        self.activations.add(str(act))
        out = kernel.shape[-1] if kind == "dw" else kernel.shape[0]
        conv = kernel.transpose(3, 0, 1, 2) if kind == "dw" else kernel.transpose(0, 3, 1, 2)  # to OIHW
        return {"conv": conv, "weight": np.ones(out), "bias": np.zeros(out) if bias is None else bias,
                "running_mean": np.zeros(out), "running_var": np.full(out, 1.0 - BN_EPS)}

    def pool(self) -> None:
        kind = self.peek()
        if kind == "AVERAGE_POOL_2D":
            op = self.ops[self.i]
            opts = op.options
            window = (opts.scalar(4, "i"), opts.scalar(3, "i")) if opts is not None else (0, 0)
            if window != (self.size, self.size) or self.graph.tensors[op.outputs[0]].shape[1:3] != [1, 1]:
                raise self.graph.refuse(f"op {op.index} averages {window} windows of the {self.size}x{self.size} "
                                        f"map; MobileNetV1 pools the whole map")
        elif kind == "MEAN":
            op = self.ops[self.i]
            axes = self.graph.constant(op.inputs[1])
            if axes is None or sorted(int(a) for a in axes.reshape(-1)) != [1, 2]:
                raise self.graph.refuse(f"op {op.index} averages over axes {axes}; MobileNetV1 pools over (1, 2)")
        else:
            self.take("AVERAGE_POOL_2D", "the global average pool")
        self.i += 1

    def head(self, cin: int) -> tuple[np.ndarray, np.ndarray] | None:
        while self.peek() in ("RESHAPE", "SQUEEZE"):
            self.i += 1
        kind = self.peek()
        if kind not in ("CONV_2D", "FULLY_CONNECTED"):
            return None
        op = self.take(kind, "the classifier")
        kernel, bias = self.weights(op, "the classifier")
        act = op.options.scalar(3 if kind == "CONV_2D" else 0, "b") if op.options is not None else 0
        weight = kernel.reshape(kernel.shape[0], -1)
        if kernel.shape[1:] not in ((1, 1, cin), (cin,)) or act:
            raise self.graph.refuse(f"the classifier (op {op.index}) has weights {kernel.shape} and activation "
                                    f"code {act}; MobileNetV1's is a 1x1 conv or dense layer on {cin} features")
        return weight, np.zeros(weight.shape[0]) if bias is None else bias

    def tail(self) -> bool:
        """The ops after the classifier (only reshapes and a softmax); whether there is a softmax."""
        softmax = False
        for op in self.ops[self.i:]:
            if op.kind not in ("RESHAPE", "SQUEEZE", "SOFTMAX"):
                raise self.graph.refuse(f"op {op.index} ({op.kind}) follows the classifier; only reshapes and a "
                                        f"softmax may")
            softmax = softmax or op.kind == "SOFTMAX"
        return softmax


def _padding(walk: _Walk) -> str:
    if all(pad == tf_same for _, pad, tf_same, _ in walk.pads):
        return "tf_same"
    if all(pad == symmetric for _, pad, _, symmetric in walk.pads):
        return "symmetric"
    name, pad, tf_same, _ = next(p for p in walk.pads if p[1] != p[2])
    raise walk.graph.refuse(f"{name} pads {pad} where TF SAME pads {tf_same} at this resolution, and the "
                            f"convolutions do not all pad symmetrically either")


def _config(widths: list[int], **fields: Any) -> MobileNetConfig:
    """The config whose channel rule gives ``widths`` (stem, then each block's pointwise conv)."""
    alpha = alpha_from_last(widths[-1])
    for min_channels, divisor in ((8, 1), (1, 1), (8, 8)):  # TF-slim's, Keras's, timm's rule
        cfg = MobileNetConfig(alpha=alpha, min_channels=min_channels, channel_divisor=divisor, **fields)
        if [s.out_channels for s in layer_plan(cfg) if s.name == "stem" or s.name.endswith(".pw")] == widths:
            return cfg
    raise MobileNetsError(f"channel widths {widths} follow none of the TF-slim, Keras or timm rules at alpha "
                          f"{alpha:g}: not a MobileNetV1 of one width multiplier")


def from_tflite(path: str | os.PathLike, keep_background: bool = False) -> MobileNet:
    """A MobileNet with the weights of a float TFLite MobileNetV1 file (any α, any resolution,
    1001 or 1000 classes or none), read without running the model. The resolution is the input
    tensor's; a 1001-way classifier's "background" (index 0) is dropped unless ``keep_background``.
    Outputs are the logits (a softmax at the end of the file is left out). Quantized files and
    files that are not a MobileNetV1 are refused with one line saying what was found."""
    graph = _read_graph(path)
    try:
        return _network(graph, path, keep_background)
    except (struct.error, IndexError) as exc:  # a table or vector that points outside the file
        raise MobileNetsError(f"{path} is a damaged TFLite file ({exc})") from None


def _network(graph: _Graph, path: str | os.PathLike, keep_background: bool) -> MobileNet:
    if len(graph.inputs) != 1:
        raise graph.refuse(f"it has {len(graph.inputs)} inputs; MobileNetV1 has one image")
    inp = graph.tensors[graph.inputs[0]]
    if inp.dtype != FLOAT32:
        raise graph.refuse(f"its input has TFLite type {inp.dtype}, not float32")
    if len(inp.shape) != 4 or inp.shape[3] != 3 or inp.shape[1] != inp.shape[2]:
        raise graph.refuse(f"its input has shape {tuple(inp.shape)}; expected (1, N, N, 3) images (NHWC, square)")
    dynamic = len(inp.signature) == 4 and -1 in inp.signature[1:3]
    resolution = 224 if dynamic else int(inp.shape[1])
    walk = _Walk(graph, graph.chain(), resolution)
    layers, cin = {}, 3
    for unit, block, kind in units():
        stride = STEM_STRIDE if kind == "conv" else (BLOCKS[block][0] if kind == "dw" else 1)
        what = "the stem conv" if kind == "conv" else f"block {block}'s {'depthwise' if kind == 'dw' else 'pointwise'} conv"
        layers[unit] = walk.conv(what, kind, stride, cin)
        cin = layers[unit]["conv"].shape[0]
    walk.pool()
    head = walk.head(cin)
    softmax = walk.tail()
    if len(walk.activations) != 1 or walk.activations == {"None"}:
        raise graph.refuse(f"the convs' activations are {sorted(walk.activations)}; MobileNetV1 has one "
                           f"(ReLU6 or ReLU) after every conv")
    background = head is not None and head[0].shape[0] == 1001
    if keep_background and not background:
        raise MobileNetsError(f"{path} has {'no classifier' if head is None else f'{head[0].shape[0]} classes'}, "
                              f"not 1001: there is no background class to keep")
    if background and not keep_background:
        head = (head[0][1:], head[1][1:])
    widths = [layers["stem"]["conv"].shape[0]] + [layers[f"blocks.{b}.pw"]["conv"].shape[0] for b in BLOCKS]
    cfg = _config(widths, resolution=resolution, num_classes=0 if head is None else head[0].shape[0],
                  dropout=0.001, activation=walk.activations.pop(), padding=_padding(walk), bn_eps=BN_EPS,
                  bn_momentum=0.0003)
    net = assemble(cfg, layers, head, "TFLite")
    weights = "float16" if any(op.kind == "DEQUANTIZE" for op in graph.ops) else "float32"
    source = {"framework": "tflite", "path": str(path), "converter": graph.description or None, "weights": weights,
              "background_class": ("index 0" if keep_background else "dropped") if background else None,
              "note": "outputs are the logits before the file's softmax" if softmax else None}
    return set_imagenet_info(net, source, tf_preprocessing(resolution))
