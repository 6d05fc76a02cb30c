"""SSD / SSDLite to TFLite, with TFLite's detection post-process op inside (as the TF OD API exports).

The network (backbone taps, extra layers, box predictors) is rebuilt from our weights as a
TensorFlow graph, NHWC, every BatchNorm folded into its conv, through the classifier's own path:
:func:`mobilenets.deploy.fold.fold_sequence` folds and makes padding explicit,
:func:`mobilenets.deploy.formats.tflite.conv_steps` lowers (one SAME-vs-pad rule) and
:func:`~mobilenets.deploy.formats.tflite.apply_steps` builds the graph. Its outputs are what the TF OD API's
``ssd_mobilenet_v1`` feeds TFLite's ``TFLite_Detection_PostProcess`` custom op (which TFLite's
interpreter ships): box codes in TF's ``(ty, tx, th, tw)`` order, class scores with the background
column first (softmax, or sigmoid per class) and the anchors as normalised ``[cy, cx, h, w]``
(:mod:`~mobilenets.tasks.detect.anchors`). The op decodes the boxes with the detector's ``box_scales`` (TF's 10, 10, 5, 5),
runs per-class NMS (``use_regular_nms``: the detector's IoU and score floor, 100 per class) and
keeps the best ``detections``. The graph marks a function with ``experimental_implements`` so that
the converter puts the op in its place: TensorFlow's documented way to emit a fused op.

Why by hand: no maintained converter takes a PyTorch detector to TFLite with that op
(``litert-torch`` pins its own torch; ONNX converters map NMS to TF ops, not to the fused op).

Input ``input``: ``[1, R, R, 3]`` float RGB in [0, 1], brought to the detector's size as its config
records (:func:`mobilenets.tasks.detect.inputs.ssd_input`; antialiased unless converted from TF).
Outputs: ``boxes`` ``[1, D, 4]`` as ``ymin, xmin, ymax, xmax`` normalised (TF's order; not clipped
to the image: the op does not clip), ``classes`` ``[1, D]`` (0-based, float), ``scores`` ``[1, D]``,
``count`` ``[1]``; :func:`run_tflite` turns them into the ONNX export's ``x1, y1, x2, y2`` boxes
(clipped), scores and 1-based labels. Int8: full-integer quantization of the network with a
representative dataset; the post-process op stays float.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from torch import nn

from mobilenets.deploy.fold import fold_sequence
from mobilenets.deploy.formats.tflite import apply_steps, conv_steps, tf_constants
from mobilenets.errors import MobileNetsError
from mobilenets.utils.tf import import_tf

BOX_SCALES = (10.0, 10.0, 5.0, 5.0)  # y, x, h, w: torchvision's BoxCoder weights (10, 10, 5, 5) in TF order


def postprocess_signature(num_classes: int, detections: int, iou: float, score: float, regular: bool = True,
                          scales: tuple[float, ...] = BOX_SCALES) -> str:
    """The ``experimental_implements`` string that makes the converter emit
    ``TFLite_Detection_PostProcess`` (a NameAttrList in text form)."""
    attrs = {"max_detections": ("i", detections), "max_classes_per_detection": ("i", 1),
             "detections_per_class": ("i", detections), "use_regular_nms": ("b", "true" if regular else "false"),
             "nms_score_threshold": ("f", score), "nms_iou_threshold": ("f", iou),
             "y_scale": ("f", scales[0]), "x_scale": ("f", scales[1]), "h_scale": ("f", scales[2]),
             "w_scale": ("f", scales[3]), "num_classes": ("i", num_classes)}
    return " ".join(['name: "TFLite_Detection_PostProcess"'] +
                    [f'attr {{ key: "{k}" value {{ {t}: {v} }} }}' for k, (t, v) in attrs.items()])


def write_tflite(model, config, path: str | os.PathLike, calibration: list[np.ndarray] | None = None,
                 postprocess_op: bool = True) -> None:
    """Convert ``model`` (a :class:`~mobilenets.tasks.detect.ssd.MobileNetSSD` of ``config``) to a
    TFLite file at ``path``; with ``calibration`` (images ``[3, R, R]`` in [0, 1]) full-integer int8.
    ``postprocess_op=False`` leaves the op out: outputs ``codes`` (TF order) and ``scores`` (with
    background) of every anchor, to check the network alone."""
    from mobilenets.tasks.detect.anchors import ssd_anchors

    tf = import_tf()
    r = config.resolution
    features, extras = model.backbone.features, model.backbone.extras

    def lowered(module: nn.Module, size: int) -> tuple[list[tuple[str, Any]], int]:
        # the package's one BatchNorm fold and PyTorch-to-TensorFlow lowering, as the classifier's
        try:
            layers, _ = fold_sequence(module, size)
        except ValueError as exc:
            raise MobileNetsError(f"cannot export the detector to TFLite: {exc}") from None
        steps, out = conv_steps(layers, size)
        return tf_constants(tf, steps), out

    size = r
    stem, size = lowered(features.stem, size)
    blocks, map_sizes = [], []
    for name, block in features.blocks.items():
        steps, size = lowered(block, size)
        blocks.append((name, steps))
        if name in features.channels:
            map_sizes.append(size)
    extra_steps, size = [], map_sizes[-1]
    for extra in extras:
        steps, size = lowered(extra, size)
        extra_steps.append(steps)
        map_sizes.append(size)
    heads = [(lowered(reg, s)[0], lowered(cls, s)[0]) for reg, cls, s in
             zip(model.head.regression_head.module_list, model.head.classification_head.module_list, map_sizes)]
    columns = config.num_classes + 1
    with torch.no_grad():
        probe = torch.zeros(1, 3, r, r)
        sizes = [tuple(int(s) for s in f.shape[-2:]) for f in model.backbone(probe).values()]
    if [(m, m) for m in map_sizes] != sizes:  # the lowering's size arithmetic against the network's own
        raise MobileNetsError(f"TFLite lowering sees feature maps of {map_sizes} px, the detector {sizes}")
    anchors = ssd_anchors(sizes, (r, r), model.anchor_generator.specs, torch.float64).float().numpy()
    sigmoid = getattr(model, "classification", "softmax") == "sigmoid"
    signature = postprocess_signature(config.num_classes, config.detections, config.nms_thresh, config.score_thresh,
                                      scales=tuple(config.box_scales))

    @tf.function(experimental_implements=signature)
    def postprocess(codes, scores, anchor_boxes):
        # stands in for the fused op: the converter replaces the whole function by it
        d = config.detections
        return (tf.zeros([1, d, 4]), tf.zeros([1, d]), tf.zeros([1, d]), tf.zeros([1]))

    def forward(x):
        x = (x - 0.5) / 0.5
        x = apply_steps(tf, x, stem)
        maps = []
        for name, steps in blocks:
            x = apply_steps(tf, x, steps)
            if name in features.channels:
                maps.append(x)
        for steps in extra_steps:
            maps.append(apply_steps(tf, maps[-1], steps))
        codes = tf.concat([tf.reshape(apply_steps(tf, m, reg), [1, -1, 4]) for m, (reg, _) in zip(maps, heads)], 1)
        logits = tf.concat([tf.reshape(apply_steps(tf, m, cls), [1, -1, columns]) for m, (_, cls) in zip(maps, heads)], 1)
        codes = tf.gather(codes, [1, 0, 3, 2], axis=2)  # torchvision's (dx, dy, dw, dh) -> TF's (ty, tx, th, tw)
        scores = tf.sigmoid(logits) if sigmoid else tf.nn.softmax(logits, axis=-1)
        if not postprocess_op:
            return {"codes": codes, "scores": scores}
        boxes, classes, kept, count = postprocess(codes, scores, tf.constant(anchors))
        return {"boxes": boxes, "classes": classes, "scores": kept, "count": count}

    module = tf.Module()
    module.forward = tf.function(forward, input_signature=[tf.TensorSpec([1, r, r, 3], tf.float32, name="input")])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([module.forward.get_concrete_function()], module)
    converter.allow_custom_ops = True
    if calibration is not None:
        nhwc = [np.ascontiguousarray(image.transpose(1, 2, 0)[None], dtype=np.float32) for image in calibration]

        def representative():
            for image in nhwc:
                yield [image]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        # the network int8; softmax/sigmoid and the post-process op float where int8 has no kernel
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
    data = converter.convert()
    if postprocess_op and b"TFLite_Detection_PostProcess" not in data:
        raise MobileNetsError("the TFLite converter did not emit TFLite_Detection_PostProcess")
    with open(path, "wb") as fh:
        fh.write(data)


# TFLite 2.21's TFLite_Detection_PostProcess with regular NMS returns wrong detections with 2
# interpreter threads (measured: one of 4 classes missing from the 100 kept, the same inputs giving
# the right ones with 1 or 4 threads and in a graph of the op alone); fast NMS is not affected. The
# checks here run on 1 thread; on a device, run the file with 1 thread or check it there.
CHECK_THREADS = 1


class TFLiteDetector:
    """A TFLite SSD file: ``__call__(image [3, R, R] in [0, 1])`` -> the ONNX export's outputs
    (``boxes`` normalised ``x1, y1, x2, y2`` clipped to the image, ``scores``, 1-based ``labels``)."""

    def __init__(self, path: str | os.PathLike, threads: int = CHECK_THREADS) -> None:
        tf = import_tf()
        self.interpreter = tf.lite.Interpreter(model_path=str(path), num_threads=threads)
        self.interpreter.allocate_tensors()
        self.runner = self.interpreter.get_signature_runner()

    def __call__(self, image: np.ndarray) -> dict[str, np.ndarray]:
        out = self.runner(input=np.ascontiguousarray(image.transpose(1, 2, 0)[None], dtype=np.float32))
        n = int(out["count"][0])
        y1, x1, y2, x2 = np.clip(out["boxes"][0, :n], 0.0, 1.0).T
        return {"boxes": np.stack([x1, y1, x2, y2], 1).astype(np.float32), "scores": out["scores"][0, :n],
                "labels": out["classes"][0, :n].astype(np.int64) + 1}


__all__ = ["CHECK_THREADS", "TFLiteDetector", "postprocess_signature", "write_tflite"]
