"""TF1 frozen graphs (``.pb`` GraphDef) of TF-slim ``mobilenet_v1`` in.

This is the format TensorFlow's ``retrain.py``, the TF-for-Poets tutorials and the classic model
zoo's ``mobilenet_v1_*_frozen.pb`` files use: the variables became ``Const`` nodes that keep their
names (``MobilenetV1/Conv2d_0/weights``, ``.../BatchNorm/moving_mean``, ...), so the TF-slim name
mapping (:func:`mobilenets.weights.convert.tf_slim.slim_network`) applies unchanged. The graph is
parsed, never executed: only ``Const`` values are read. Layers a retraining script put on top
(``final_training_ops/...``) are ignored; the 1001-class ImageNet logits are kept (background
dropped unless asked).

Read from the graph as well: the input resolution (the ``Placeholder``'s static shape) and the
BatchNorm epsilon (the ``batchnorm/add/y`` constant of TF-slim's unfused BatchNorm, or the
``epsilon`` attribute of ``FusedBatchNorm*`` nodes).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from mobilenets.errors import DataNotFoundError, MobileNetsError, arg
from mobilenets.models.mobilenet import MobileNet
from mobilenets.utils.tf import import_tf
from mobilenets.weights.convert.tf_slim import slim_network

DEFAULT_EPS = 1e-3  # tf-slim's batch_norm default


def read_graph(path: str | os.PathLike) -> Any:
    """The ``GraphDef`` in ``path``, parsed (a clear error for a missing or non-GraphDef file)."""
    file = Path(path)
    if not file.is_file():
        raise DataNotFoundError(f"frozen graph not found: {file}")
    tf = import_tf("tensorflow")
    graph = tf.compat.v1.GraphDef()
    try:
        graph.ParseFromString(file.read_bytes())
    except Exception as exc:  # protobuf's DecodeError has no stable import path across versions
        raise MobileNetsError(f"{file} is not a TensorFlow GraphDef (.pb): {type(exc).__name__}") from None
    if not len(graph.node):
        raise MobileNetsError(f"{file} is not a TensorFlow GraphDef (.pb): it holds no nodes")
    return graph


def _resolution(graph: Any) -> int | None:
    """The square input size of the graph's image placeholder (NHWC), if static."""
    for node in graph.node:
        if node.op != "Placeholder" or "shape" not in node.attr:
            continue
        dims = [d.size for d in node.attr["shape"].shape.dim]
        if len(dims) == 4 and dims[1] == dims[2] and dims[1] > 0 and dims[3] == 3:
            return int(dims[1])
    return None


def _float32_value(x: Any) -> float:
    # Graph constants are float32: 1e-3 is stored as 0.0010000000475; keep the decimal the model was built with.
    return float(f"{float(x):.7g}")


def _epsilon(graph: Any, consts: dict[str, Any], tf: Any) -> float:
    """The BatchNorm epsilon the graph applies (one value for every layer, as TF-slim builds it)."""
    found = set()
    for node in graph.node:
        if node.op.startswith("FusedBatchNorm") and "epsilon" in node.attr:
            found.add(_float32_value(node.attr["epsilon"].f))
    for name, tensor in consts.items():
        if name.endswith("BatchNorm/batchnorm/add/y"):
            found.add(_float32_value(tf.make_ndarray(tensor).reshape(-1)[0]))
    if len(found) > 1:
        raise MobileNetsError(f"the graph's BatchNorm layers use different epsilons {sorted(found)}; "
                              f"a MobileNet has one")
    return found.pop() if found else DEFAULT_EPS


def from_tf_frozen(path: str | os.PathLike, keep_background: bool = False,
                   resolution: int | None = None) -> MobileNet:
    """A MobileNet with the weights of a TF1 frozen graph of TF-slim ``mobilenet_v1`` (any α,
    any resolution, 1001 or 1000 classes, with or without layers on top).

    ``resolution``: the input size; default the graph's placeholder shape, else 224.
    ``keep_background``: keep the 1001st (index 0, "background") logit of ImageNet heads."""
    tf = import_tf("tensorflow")
    graph = read_graph(path)
    consts = {n.name: n.attr["value"].tensor for n in graph.node if n.op == "Const"}
    if not any(name.endswith("MobilenetV1/Conv2d_0/weights") for name in consts):
        ops = sorted({n.op for n in graph.node})
        raise MobileNetsError(f"{path} is not a frozen TF-slim mobilenet_v1 graph: no constant "
                              f"MobilenetV1/Conv2d_0/weights (its ops: {', '.join(ops[:12])}"
                              f"{', ...' if len(ops) > 12 else ''})")
    if not any(name.endswith("BatchNorm/moving_mean") for name in consts):
        raise MobileNetsError(f"{path} has its BatchNorm folded into the convolutions (an optimised graph); "
                              f"convert the graph it was made from, or its TFLite file "
                              f"({arg('source_format', 'tflite', flag='--from')})")
    eps = _epsilon(graph, consts, tf)
    res = resolution if resolution is not None else (_resolution(graph) or 224)

    def get(name: str) -> np.ndarray:
        return tf.make_ndarray(consts[name])

    extra = {"format": "frozen graph", "graph_nodes": len(graph.node),
             "ignored_top_layers": sorted({n.name.split("/")[0] for n in graph.node
                                           if n.op == "Const" and "MobilenetV1" not in n.name}) or None}
    return slim_network(consts.keys(), get, str(path), keep_background, res, bn_eps=eps, extra_source=extra)
