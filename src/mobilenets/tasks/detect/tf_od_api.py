"""TF Object Detection API exports of SSD-MobileNetV1: ``pipeline.config`` with a TF checkpoint
(``model.ckpt.index`` + data) or ``frozen_inference_graph.pb``, as tensors by their TF names.

A checkpoint's variables and a frozen graph's ``Const`` nodes carry the same names
(``FeatureExtractor/MobilenetV1/Conv2d_1_depthwise/depthwise_weights``, ``.../BatchNorm/gamma``,
``BoxPredictor_0/BoxEncodingPredictor/weights``, ...): :func:`from_tf_od_api` reads either with
TensorFlow and hands them to the converter's layer assembly. A frozen graph stores no anchors
(TF computes them in the graph), so they come from the pipeline.config's ``ssd_anchor_generator``
and the ``anchor_order`` given (default: the current TF OD API's, in-between box last).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mobilenets.errors import MobileNetsError

FE = "FeatureExtractor/MobilenetV1"


def tf_od_api_names(config) -> dict[str, Any]:
    """Where each part of TF's ssd_mobilenet_v1 lives in its checkpoints (the extras' names carry
    their depths: ``Conv2d_13_pointwise_1_Conv2d_2_1x1_256``, ``..._2_Conv2d_2_3x3_s2_512``, ...)."""
    from mobilenets.tasks.detect.config import extra_depths

    extras = []
    for k, (mid, out) in enumerate(extra_depths(config)):
        extras += [f"{FE}/Conv2d_13_pointwise_1_Conv2d_{k + 2}_1x1_{mid}",
                   f"{FE}/Conv2d_13_pointwise_2_Conv2d_{k + 2}_3x3_s2_{out}"]
    return {"stem": f"{FE}/Conv2d_0", "dw": f"{FE}/Conv2d_{{i}}_depthwise", "pw": f"{FE}/Conv2d_{{i}}_pointwise",
            "extra": extras, "box": "BoxPredictor_{i}/BoxEncodingPredictor", "cls": "BoxPredictor_{i}/ClassPredictor"}


def read_checkpoint(prefix: Path) -> dict[str, np.ndarray]:
    from mobilenets.utils.tf import import_tf

    tf = import_tf()

    try:
        reader = tf.train.load_checkpoint(str(prefix))
    except (tf.errors.OpError, ValueError) as exc:
        raise MobileNetsError(f"cannot read TF checkpoint {prefix}: {str(exc).splitlines()[0]}") from None
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def read_frozen_graph(path: Path) -> dict[str, np.ndarray]:
    from mobilenets.utils.tf import import_tf

    tf = import_tf()

    graph = tf.compat.v1.GraphDef()
    try:
        graph.ParseFromString(path.read_bytes())
    except Exception as exc:  # protobuf's DecodeError and friends
        raise MobileNetsError(f"{path} is not a TensorFlow GraphDef ({type(exc).__name__})") from None
    return {node.name: tf.make_ndarray(node.attr["value"].tensor) for node in graph.node if node.op == "Const"}


def from_tf_od_api(folder: Path, anchor_order: str | None = None):
    """State dict, config, source description and class names of the TF OD API export in ``folder``."""
    from mobilenets.tasks.detect.pipeline import detector_config
    from mobilenets.tasks.detect.tf_layers import Layers, assemble

    config, classes = detector_config(folder / "pipeline.config")
    if anchor_order is not None:
        config = config.replace(anchor_order=anchor_order)
    from mobilenets.tasks.detect.anchors import anchor_count

    # TF's multiclass NMS takes every box above the score floor
    config = config.replace(nms_candidates=anchor_count(config.resolution))
    frozen = folder / "frozen_inference_graph.pb"
    ckpt = folder / "model.ckpt"
    if Path(f"{ckpt}.index").is_file():
        weights, kind = read_checkpoint(ckpt), "checkpoint"
    elif frozen.is_file():
        weights, kind = read_frozen_graph(frozen), "frozen_inference_graph.pb"
    else:
        raise MobileNetsError(f"{folder} has pipeline.config but neither model.ckpt.index nor "
                              "frozen_inference_graph.pb")
    layers = Layers(weights, f"{folder.name}/{kind}")
    names = tf_od_api_names(config)
    state = assemble(layers, names, classes + 1, list(range(classes + 1)))
    source = {"format": "tf_od_api", "file": kind, "anchor_order": config.anchor_order}
    from mobilenets.tasks.detect.labels import class_names

    return state, config, source, class_names(folder, classes)


__all__ = ["from_tf_od_api", "read_checkpoint", "read_frozen_graph", "tf_od_api_names"]
