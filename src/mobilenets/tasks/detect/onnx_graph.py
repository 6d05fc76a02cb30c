"""The detector's ONNX graph: the dense SSD network (:class:`DenseSSD`), its export, NMS appended as
ONNX ops, its int8 quantization and bias correction, and an ONNX Runtime session to run it.

Used by the export (:mod:`~mobilenets.tasks.detect.export`, which checks and writes the files, and
says what the graph takes and gives) and the latency benchmark (:mod:`~mobilenets.tasks.detect.latency`).
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn
from torchvision.ops import boxes as box_ops

OPSET = 20


class DenseSSD(nn.Module):
    """SSD up to decoded boxes and class scores, batch-first, no Python control flow."""

    def __init__(self, model, resolution: int) -> None:
        super().__init__()
        self.backbone, self.head, self.box_coder = model.backbone, model.head, model.box_coder
        self.sigmoid = getattr(model, "classification", "softmax") == "sigmoid"
        # TF OD API / face-api: NMS on the unclipped boxes (the kept ones are clipped after it, in append_nms)
        self.clip = not self.sigmoid or getattr(model, "clip_before_nms", True)
        self.resolution = resolution
        # eager's per-class candidates before NMS (torchvision SSD's topk_candidates, the config's nms_candidates)
        self.candidates = int(getattr(model, "topk_candidates", 0) or 0)
        self.register_buffer("mean", torch.tensor(model.transform.image_mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(model.transform.image_std).view(1, 3, 1, 1))
        with torch.no_grad():
            from torchvision.models.detection.image_list import ImageList

            probe = torch.zeros(1, 3, resolution, resolution)
            maps = list(self.backbone(probe).values())
            anchors = model.anchor_generator(ImageList(probe, [(resolution, resolution)]), maps)[0]
        self.register_buffer("anchors", anchors)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.head(list(self.backbone((x - self.mean) / self.std).values()))
        n = x.shape[0]
        codes = out["bbox_regression"].reshape(-1, 4)
        boxes = self.box_coder.decode_single(codes, self.anchors.repeat(n, 1))
        if self.clip:
            boxes = box_ops.clip_boxes_to_image(boxes, (self.resolution, self.resolution))
        boxes = boxes / self.resolution
        logits = out["cls_logits"]
        scores = (torch.sigmoid(logits) if self.sigmoid else torch.softmax(logits, -1))[..., 1:]
        k = self.candidates
        if 0 < k < scores.shape[1]:
            # as eager: only each class's k best boxes enter NMS; the others' scores go to 0, below the
            # score floor (ties at the k-th score may let a few more in)
            kth = scores.topk(k, dim=1).values[:, -1:, :]
            scores = torch.where(scores >= kth, scores, torch.zeros_like(scores))
        return boxes.reshape(n, -1, 4), scores


def bias_corrected(model: nn.Module, images: list[np.ndarray], qmax_of: Any, resolution: int) -> DenseSSD:
    """The detector as the ONNX graph runs it (:class:`DenseSSD`, a copy), bias-corrected for the
    int8 grid ``qmax_of(weight_shape, groups)`` (:func:`mobilenets.deploy.ptq.graph_bias_correction`),
    measured on ``images``. (The wrapper is built before the correction's hooks: its anchor probe
    must not count as a calibration image.)"""
    from mobilenets.deploy.ptq import graph_bias_correction

    batch = torch.from_numpy(np.ascontiguousarray(np.stack(images), dtype=np.float32))

    def run(dense: nn.Module) -> None:
        for i in range(0, len(batch), 16):
            dense(batch[i:i + 16])

    return graph_bias_correction(DenseSSD(model, resolution).eval(), run, qmax_of)


def export_dense(dense: DenseSSD, path: str) -> None:
    x = torch.rand(1, 3, dense.resolution, dense.resolution)
    with warnings.catch_warnings():  # the exporter's deprecation and "experimental" notices
        warnings.simplefilter("ignore")
        program = torch.onnx.export(dense, (x,), dynamo=True, input_names=["input"],
                                    output_names=["all_boxes", "all_scores"], optimize=True, verbose=False,
                                    opset_version=OPSET)
    program.save(path)


def append_nms(path: str, out: str, *, iou: float, score: float, keep: int) -> None:
    """``out``: the dense graph at ``path`` followed by NonMaxSuppression and TopK (batch 1)."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(path)
    g = model.graph

    def const(name: str, value, dtype) -> str:
        g.initializer.append(helper.make_tensor(name, dtype, [len(value)] if isinstance(value, list) else [],
                                                value if isinstance(value, list) else [value]))
        return name

    nodes = [
        helper.make_node("Transpose", ["all_scores"], ["scores_ka"], perm=[0, 2, 1]),
        helper.make_node("NonMaxSuppression", ["all_boxes", "scores_ka", const("nms_keep", keep, TensorProto.INT64),
                                               const("nms_iou", iou, TensorProto.FLOAT),
                                               const("nms_score", score, TensorProto.FLOAT)], ["selected"]),
        helper.make_node("GatherND", ["scores_ka", "selected"], ["selected_scores"]),
        helper.make_node("Gather", ["selected", const("col_class", 1, TensorProto.INT64)], ["selected_class"], axis=1),
        helper.make_node("Gather", ["selected", const("col_box", 2, TensorProto.INT64)], ["selected_box"], axis=1),
        helper.make_node("Shape", ["selected_scores"], ["found"]),
        helper.make_node("Min", ["found", const("keep_total", [keep], TensorProto.INT64)], ["k"]),
        helper.make_node("TopK", ["selected_scores", "k"], ["scores", "top"], axis=0, largest=1, sorted=1),
        helper.make_node("Gather", ["selected_class", "top"], ["top_class"]),
        helper.make_node("Add", ["top_class", const("one", 1, TensorProto.INT64)], ["labels"]),
        helper.make_node("Gather", ["selected_box", "top"], ["top_box"]),
        helper.make_node("Squeeze", ["all_boxes", const("batch_axis", [0], TensorProto.INT64)], ["boxes_a"]),
        helper.make_node("Gather", ["boxes_a", "top_box"], ["kept_boxes"], axis=0),
        # the kept boxes clipped to the image (a no-op when the dense graph clipped before NMS)
        helper.make_node("Clip", ["kept_boxes", const("clip_lo", 0.0, TensorProto.FLOAT),
                                  const("clip_hi", 1.0, TensorProto.FLOAT)], ["boxes"]),
    ]
    g.node.extend(nodes)
    while len(g.output):
        g.output.pop()
    g.output.extend([helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["D", 4]),
                     helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["D"]),
                     helper.make_tensor_value_info("labels", TensorProto.INT64, ["D"])])
    onnx.checker.check_model(model)
    onnx.save(model, out)


def quantize_dense(dense_path: str, out: str, images: list[np.ndarray]) -> dict:
    """The dense graph in int8 by the package's one ONNX int8 pipeline
    (:func:`mobilenets.deploy.ort.quantize_qdq`), one image per calibration step (the graph has
    batch 1). Only the network's convs and activations are quantized (``network_only``): decoding
    and scores stay float. Returns the settings used (the form: the same on every CPU)."""
    from mobilenets.deploy.ort import quantize_qdq
    from mobilenets.utils.scoped import quiet_output

    with quiet_output(True):
        return quantize_qdq(dense_path, out, images, batch_size=1, network_only=True)


def session(path: str | os.PathLike, threads: int = 2):
    """The package's ONNX Runtime session (:func:`mobilenets.deploy.ort.session`), logging errors
    only (the QDQ and NMS graphs' load warnings are expected)."""
    from mobilenets.deploy.ort import session as ort_session

    return ort_session(path, threads, quiet=True)


def run_onnx(sess, image: np.ndarray) -> dict[str, np.ndarray]:
    """One image ``[3, R, R]`` float in [0, 1] -> ``boxes`` (normalised xyxy), ``scores``, ``labels``."""
    boxes, scores, labels = sess.run(None, {"input": np.ascontiguousarray(image[None], dtype=np.float32)})
    return {"boxes": boxes, "scores": scores, "labels": labels}


__all__ = ["OPSET", "DenseSSD", "append_nms", "bias_corrected", "export_dense", "quantize_dense", "run_onnx", "session"]
