"""The reference the TF-slim conversions are checked against: TensorFlow itself running a TF-slim
MobileNetV1 frozen graph (the ``nudity`` package's real one, or one built from a checkpoint).
Shared by the conversion tests and benchmarks/pretrained_loopback.py."""

from __future__ import annotations

import numpy as np


def slim_logits(pb: str, x: np.ndarray) -> np.ndarray:
    """The graph's ``MobilenetV1/Predictions/Reshape`` (1001 values, background first) for each
    NHWC image of ``x``, one image per run: the graph's batch is static (1)."""
    from mobilenets.utils.tf import import_tf

    tf = import_tf()
    graph_def = tf.compat.v1.GraphDef()
    with open(pb, "rb") as f:
        graph_def.ParseFromString(f.read())
    with tf.Graph().as_default() as graph:
        tf.import_graph_def(graph_def, name="")
        with tf.compat.v1.Session(graph=graph) as sess:
            return np.concatenate([sess.run("MobilenetV1/Predictions/Reshape:0", {"input:0": x[i:i + 1]})
                                   for i in range(len(x))])
