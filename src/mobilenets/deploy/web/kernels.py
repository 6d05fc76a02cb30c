"""The web export's kernel plan: the ONNX export rewritten so that ONNX Runtime Web runs each conv
with its fastest WebAssembly kernel, computing what the export computes.

ONNX Runtime picks kernels by the graph's form, and its WebAssembly (SIMD) build has other fast
paths than the x86 one. Measured with its profiler in headless Chromium (ONNX Runtime Web 1.31.1;
docs/results/2026-12-05-web.md):

- **Depthwise convs run faster in float than in int8**: its uint8 depthwise kernel has no SIMD
  version in the WebAssembly build (3.7 ms against 1.0 ms float for the 112x112x32 layer of
  MobileNet 1.0-224).
- **Int8 pointwise convs pay off only when they are large**: 2.0 ms against 2.95 ms float for
  512x512 channels at 14x14 (51 M multiply-adds), but slower than float for every pointwise conv
  of 0.25-128 (at most 1 M) and no faster at 0.5-160 (6.5 M); :data:`INT8_MIN_MACS` splits them.
- **A float pointwise conv on a small feature map runs faster as a matrix product over positions**
  (NHWC: positions x input channels times a constant weight matrix, which ORT packs once) than as a
  1x1 Conv (weights x positions, whose right-hand matrix it packs every run): 2.9 ms against 3.8
  ms for 1024x1024 channels at 7x7. :data:`GEMM_MAX_POSITIONS` and :data:`GEMM_MIN_MACS` bound it.

The rewrites keep what the model computes:

- **int8** (:func:`plan_int8`): a conv that should run in float computes, in float32, the integer
  sum that ORT's int8 kernel computes: its input through a ``DequantizeLinear`` with scale 1 and
  the input's zero point (``q - zero_point``, small integers), its weights and bias as the integers
  of the int8 file (``bias`` is on the input x weight scale), so every partial sum is an integer
  below 2^24 and exact in float32 whatever order a kernel adds in; its ``QuantizeLinear`` then
  takes the scale ``output_scale / (input_scale x weight_scale)`` per channel, which is ORT's
  int8 requantization up to the rounding of that one scale. So the page computes what native ORT
  computes for the int8 file (0.25-128: bit for bit; 1.0-224: a few ties of rounding, 0.006 in
  the logits of a random model), on every CPU, where a float conv on dequantized values would
  round differently on each. The input's ``DequantizeLinear`` is written per channel (every
  channel the same): behind a per-tensor one, ORT's ``WeightBiasQuantization`` quantizes float
  weights again (per tensor) and the conv runs as ``QLinearConv`` after all. A conv whose
  sums could leave float32's exact integers keeps its int8 kernel. :func:`plan_file` compares
  the planned file with the original (both run by ORT on this CPU) and refuses a change beyond
  :data:`INT8_PLAN_TOLERANCE`.
- **fp32** (:func:`plan_fp32`): ``Conv(1x1) [-> Clip|Relu]`` becomes ``Transpose (NHWC) -> Reshape
  -> Gemm -> [Clip|Relu ->] Reshape -> Transpose (NCHW)``; the export's own check (1e-4 against eager)
  runs on the rewritten file.

Written by hand: no ONNX tool plans kernels for ONNX Runtime Web. Only ``onnx``/``numpy`` here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from mobilenets.errors import MobileNetsError

INT8_MIN_MACS = 16_000_000  # an int8 pointwise conv keeps its int8 kernel from this many multiply-adds
GEMM_MAX_POSITIONS = 196  # a float pointwise conv becomes a Gemm up to 14x14 output positions ...
GEMM_MIN_MACS = 4_000_000  # ... and from this many multiply-adds (below, the extra nodes cost more)
PLAN_SEED = 20261205
INT8_PLAN_TOLERANCE = 0.05  # of the largest logit: far above rounding ties, far below a wrong scale


def _attr(node: Any, name: str, default: Any) -> Any:
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


class _Graph:
    """A copy of the model's graph (the caller's model is left as it was) with its initializers,
    producers, consumers and inferred shapes."""

    def __init__(self, model: Any) -> None:
        from onnx import ModelProto, numpy_helper, shape_inference

        copy = ModelProto()
        copy.CopyFrom(model)
        model = copy
        self.model, self.graph = model, model.graph
        self.arrays = {i.name: numpy_helper.to_array(i) for i in self.graph.initializer}
        self.producer = {o: n for n in self.graph.node for o in n.output}
        self.consumers: dict[str, list[Any]] = {}
        for n in self.graph.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        inferred = shape_inference.infer_shapes(model).graph
        self.shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
                       for v in [*inferred.value_info, *inferred.input, *inferred.output]}
        self.added = 0

    def add(self, name: str, array: np.ndarray) -> str:
        from onnx import numpy_helper

        name = f"{name}_web{self.added}"
        self.added += 1
        self.graph.initializer.append(numpy_helper.from_array(array, name))
        self.arrays[name] = array
        return name

    def macs(self, conv: Any) -> int:
        """Multiply-adds of ``conv`` for one image (its weight is an initializer or a DQ of one)."""
        out = self.shapes.get(conv.output[0])
        if not out or len(out) != 4 or not all(out[1:]):
            raise MobileNetsError(f"cannot plan kernels: the shape of {conv.output[0]} is not known")
        _, cin, kh, kw = self.weight_shape(conv)
        return out[1] * out[2] * out[3] * cin * kh * kw

    def weight_shape(self, conv: Any) -> tuple[int, ...]:
        w = conv.input[1]
        if w in self.arrays:
            return self.arrays[w].shape
        return self.arrays[self.producer[w].input[0]].shape

    def finish(self) -> Any:
        """Drop what no node reads any more; the model, checked."""
        import onnx

        while True:
            used = {i for n in self.graph.node for i in n.input} | {o.name for o in self.graph.output}
            dead = [n for n in self.graph.node if not any(o in used for o in n.output)]
            if not dead:
                break
            for n in dead:
                self.graph.node.remove(n)
        used = {i for n in self.graph.node for i in n.input}
        for init in list(self.graph.initializer):
            if init.name not in used:
                self.graph.initializer.remove(init)
        del self.graph.value_info[:]
        onnx.checker.check_model(self.model)
        return self.model


def _is_dq(node: Any) -> bool:
    return node is not None and node.op_type == "DequantizeLinear"


def _pointwise(g: _Graph, conv: Any) -> bool:
    _, _, kh, kw = g.weight_shape(conv)
    return kh == kw == 1 and _attr(conv, "group", 1) == 1 and not any(_attr(conv, "pads", [0]))


ACCUMULATOR_LIMIT = 2 ** 24  # float32 holds every integer below this exactly


def _float_conv(g: _Graph, conv: Any, x_dq: Any, w_dq: Any) -> str | None:
    """Rewrite one QDQ conv to run in float with integer-exact sums (see the module's text); the
    reason when it cannot be (the conv then keeps its int8 kernel)."""
    from onnx import helper

    after = g.consumers.get(conv.output[0], [])
    q = after[0] if len(after) == 1 and after[0].op_type == "QuantizeLinear" else None
    if q is None or g.arrays.get(q.input[1]) is None or g.arrays[q.input[1]].size != 1:
        return "its output is not quantized per tensor right after it"
    s_x = g.arrays[x_dq.input[1]].astype(np.float32)
    z_x = g.arrays[x_dq.input[2]] if len(x_dq.input) > 2 and x_dq.input[2] else np.zeros((), np.uint8)
    if s_x.size != 1:
        return "its input is quantized per channel"
    w_q = g.arrays[w_dq.input[0]].astype(np.int64)
    s_w = np.broadcast_to(g.arrays[w_dq.input[1]].astype(np.float32).reshape(-1), (w_q.shape[0],))
    if len(w_dq.input) > 2 and w_dq.input[2]:
        w_q = w_q - g.arrays[w_dq.input[2]].astype(np.int64).reshape(-1, *[1] * (w_q.ndim - 1))
    s_acc = (s_x.reshape(()) * s_w).astype(np.float32)  # the scale of one unit of the integer sum
    bias = np.zeros(w_q.shape[0], np.int64)
    if len(conv.input) > 2 and conv.input[2]:
        b_dq = g.producer.get(conv.input[2])
        if not (_is_dq(b_dq) and b_dq.input[0] in g.arrays
                and np.array_equal(np.broadcast_to(g.arrays[b_dq.input[1]].astype(np.float32).reshape(-1), s_acc.shape),
                                   s_acc)):
            return "its bias is not int32 on the input x weight scale"
        bias = g.arrays[b_dq.input[0]].astype(np.int64)
    span = int(np.abs(w_q).reshape(w_q.shape[0], -1).sum(1).max()) * 255 + int(np.abs(bias).max())
    if span >= ACCUMULATOR_LIMIT:
        return f"its sums could reach {span}, beyond float32's exact integers"
    channels = g.shapes[conv.input[0]][1]
    centred = helper.make_node(
        "DequantizeLinear", [x_dq.input[0], g.add("ones", np.ones(channels, np.float32)),
                             g.add("zero", np.full(channels, np.asarray(z_x).item(), np.asarray(z_x).dtype))],
        [f"{conv.name}_centred{g.added}"], axis=1, name=f"{conv.name}_input_dq")
    g.graph.node.insert(list(g.graph.node).index(conv), centred)
    del conv.input[:]
    conv.input.extend([centred.output[0], g.add("weight", w_q.astype(np.float32)),
                       g.add("bias", bias.astype(np.float32))])
    s_y = g.arrays[q.input[1]].astype(np.float32).reshape(())
    z_y = g.arrays[q.input[2]] if len(q.input) > 2 and q.input[2] else np.zeros((), np.uint8)
    q.input[1] = g.add("out_scale", (s_y / s_acc).astype(np.float32))
    zp = g.add("out_zero", np.full(s_acc.shape, np.asarray(z_y).item(), np.asarray(z_y).dtype))
    if len(q.input) > 2:
        q.input[2] = zp
    else:
        q.input.append(zp)
    del q.attribute[:]
    q.attribute.append(helper.make_attribute("axis", 1))
    return None


def plan_int8(model: Any, min_macs: int = INT8_MIN_MACS) -> tuple[Any, dict[str, Any]]:
    """``model`` (a QDQ ``ModelProto``) with every conv that ORT Web runs faster in float made
    float with integer-exact sums (see the module's text); the plan: counts and each conv's kernel."""
    g = _Graph(model)
    plan: dict[str, list[dict[str, Any]]] = {"int8": [], "float": []}
    for conv in list(g.graph.node):
        if conv.op_type != "Conv":
            continue
        x_dq, w_dq = g.producer.get(conv.input[0]), g.producer.get(conv.input[1])
        if not (_is_dq(x_dq) and _is_dq(w_dq) and w_dq.input[0] in g.arrays and x_dq.input[1] in g.arrays):
            continue  # not a quantized conv
        macs = g.macs(conv)
        entry = {"conv": conv.name, "macs": macs, "depthwise": _attr(conv, "group", 1) > 1}
        if _pointwise(g, conv) and macs >= min_macs:
            plan["int8"].append(entry)
            continue
        reason = _float_conv(g, conv, x_dq, w_dq)
        if reason:
            plan["int8"].append({**entry, "kept_int8_because": reason})
        else:
            plan["float"].append(entry)
    summary = {"int8_convs": len(plan["int8"]), "float_convs": len(plan["float"]),
               "rule": f"int8 kernel for pointwise convs of >= {min_macs / 1e6:g} M multiply-adds; float kernels with "
                       "integer-exact sums for the others (depthwise, first conv, small pointwise)",
               "convs": plan}
    return g.finish(), summary


def plan_fp32(model: Any, max_positions: int = GEMM_MAX_POSITIONS,
              min_macs: int = GEMM_MIN_MACS) -> tuple[Any, dict[str, Any]]:
    """``model`` (a float ``ModelProto``) with each pointwise conv on at most ``max_positions`` output
    positions and of at least ``min_macs`` multiply-adds (and its activation, ``Clip`` for ReLU6 or
    ``Relu``) rewritten as a Gemm over NHWC positions; the plan."""
    from onnx import helper

    g = _Graph(model)
    nodes, rewritten, skip = [], [], set()
    for node in list(g.graph.node):
        if id(node) in skip:
            continue
        if not (node.op_type == "Conv" and node.input[1] in g.arrays and _pointwise(g, node)
                and _attr(node, "strides", [1, 1]) == [1, 1]):
            nodes.append(node)
            continue
        out = g.shapes[node.output[0]]
        macs = g.macs(node)
        if out[2] * out[3] > max_positions or macs < min_macs:
            nodes.append(node)
            continue
        after = g.consumers.get(node.output[0], [])
        clip = after[0] if len(after) == 1 and after[0].op_type in ("Clip", "Relu") else None  # its activation
        result = clip.output[0] if clip is not None else node.output[0]
        w = g.arrays[node.input[1]]
        cout, cin = w.shape[:2]
        p = f"{node.name or 'conv'}_gemm"
        weight = g.add(node.input[1], np.ascontiguousarray(w.reshape(cout, cin).T))
        rows = g.add(p + "_rows", np.array([-1, cin], np.int64))
        nhwc = g.add(p + "_nhwc", np.array([-1, out[2], out[3], cout], np.int64))
        bias = [node.input[2]] if len(node.input) > 2 and node.input[2] else []
        nodes += [helper.make_node("Transpose", [node.input[0]], [p + "_t"], perm=[0, 2, 3, 1], name=p + "_to_nhwc"),
                  helper.make_node("Reshape", [p + "_t", rows], [p + "_r"], name=p + "_rows"),
                  helper.make_node("Gemm", [p + "_r", weight, *bias], [p + "_y"], name=p)]
        last = p + "_y"
        if clip is not None:
            nodes.append(helper.make_node(clip.op_type, [last, *clip.input[1:]], [p + "_c"], name=p + "_act"))
            last = p + "_c"
            skip.add(id(clip))
        nodes += [helper.make_node("Reshape", [last, nhwc], [p + "_n"], name=p + "_unrows"),
                  helper.make_node("Transpose", [p + "_n"], [result], perm=[0, 3, 1, 2], name=p + "_to_nchw")]
        rewritten.append({"conv": node.name, "macs": macs, "positions": out[2] * out[3]})
    del g.graph.node[:]
    g.graph.node.extend(nodes)
    summary = {"gemm_convs": len(rewritten),
               "rule": f"pointwise convs on <= {max_positions} positions of >= {min_macs / 1e6:g} M multiply-adds "
                       "run as a Gemm over NHWC positions", "convs": rewritten}
    return g.finish(), summary


def compare(original: str | os.PathLike, rewritten: str | os.PathLike, probes: int = 2) -> tuple[float, float]:
    """Largest absolute difference between two ONNX files' outputs (all of them) on seeded random
    inputs in [0, 1), as ONNX Runtime (CPU) runs them, and the largest absolute output of ``original``."""
    import onnxruntime as ort

    def run(path: str | os.PathLike, x: np.ndarray) -> list[np.ndarray]:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.log_severity_level = 3
        sess = ort.InferenceSession(os.fspath(path), options, providers=["CPUExecutionProvider"])
        inp = sess.get_inputs()[0]
        return sess.run(None, {inp.name: x})

    import onnx

    dims = [d.dim_value for d in onnx.load(os.fspath(original), load_external_data=False).graph.input[0].type.tensor_type.shape.dim]
    batch = dims[0] or probes  # a fixed batch (a detector's 1) or the probes
    x = np.random.default_rng(PLAN_SEED).random((batch, *dims[1:])).astype(np.float32)
    ref, new = run(original, x), run(rewritten, x)
    diff = max(float(np.abs(a - b).max()) for a, b in zip(ref, new))
    return diff, max(float(np.abs(a).max()) for a in ref)


def plan_file(path: str | os.PathLike, int8: bool) -> dict[str, Any]:
    """Rewrite the ONNX export ``path`` in place with its kernel plan (:func:`plan_int8` or
    :func:`plan_fp32`); the plan. An int8 plan is compared with the file as written, both run by
    ONNX Runtime on this CPU: only ties of the requantization's rounding may differ, so a change
    beyond :data:`INT8_PLAN_TOLERANCE` of the largest logit is refused (a bug, never a file)."""
    import onnx

    path = Path(path)
    model = onnx.load(os.fspath(path))
    planned, summary = plan_int8(model) if int8 else plan_fp32(model)
    staged = path.with_name(path.name + ".plan")
    try:
        onnx.save(planned, os.fspath(staged))
        if int8:
            diff, scale = compare(path, staged)
            if not diff <= INT8_PLAN_TOLERANCE * scale:
                raise MobileNetsError(f"the web kernel plan changed the int8 model's logits by {diff:.3g} (more than "
                                      f"{INT8_PLAN_TOLERANCE:.0%} of the largest, {scale:.3g}); nothing written")
            summary["max_abs_change_native"] = diff
        os.replace(staged, path)
    finally:
        staged.unlink(missing_ok=True)
    summary["runtime"] = "onnxruntime-web (WebAssembly SIMD)"
    return summary


__all__ = ["GEMM_MAX_POSITIONS", "GEMM_MIN_MACS", "INT8_MIN_MACS", "INT8_PLAN_TOLERANCE", "compare", "plan_file", "plan_fp32", "plan_int8"]
