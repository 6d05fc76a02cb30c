"""SSD / SSDLite to ONNX (and TFLite) with box decoding and NMS inside, fp32 and int8, checked against eager.

The ONNX graph takes ``input``: ``[1, 3, R, R]`` float RGB in [0, 1], already resized to the
detector's size (as :mod:`~mobilenets.tasks.detect.transforms` resizes: antialiased). Inside: the
[-1, 1] scaling, the network, box decoding against the TF anchors (torchvision's ``BoxCoder``,
the same call as eager), clipping, class scores (softmax without background, or sigmoid), then
ONNX's ``NonMaxSuppression`` per class (IoU, score floor and 100 per class, as eager) and a
``TopK`` of the 100 best overall. Outputs: ``boxes`` ``[D, 4]`` (``x1, y1, x2, y2`` normalised to
[0, 1]), ``scores`` ``[D]``, ``labels`` ``[D]`` (1..K; the sidecar ``model.onnx.json`` names them).

Int8: ONNX Runtime's static QDQ quantization (per-channel int8 weights, uint8 activations,
min/max calibration on the training images) of the network part; decoding and NMS stay float.
The check: fp32 boxes within 1e-3 (of the image size) of eager and the same kept detections on
held-out images; int8 scored with COCO's AP50 beside fp32 on the validation split.

Eager keeps the 400 best boxes per class before NMS; ONNX's NMS looks at all of them. The kept
detections can only differ when more than 400 boxes of one class pass the score floor and one
ranked below 400 would survive among the 100 best: the self-check reports any difference.
TFLite (``model.tflite``, ``model-int8.tflite``): :mod:`~mobilenets.tasks.detect.tflite`, with
TFLite's detection post-process op inside; the same checks. Faster R-CNN is not exported (its
proposals and crops have data-dependent shapes).
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torchvision.ops import boxes as box_ops

from mobilenets.deploy.formats import sidecar_path
from mobilenets.errors import MobileNetsError

OPSET = 20
BOX_TOLERANCE = 1e-3  # of the image size


class DenseSSD(nn.Module):
    """SSD up to decoded boxes and class scores, batch-first, no Python control flow."""

    def __init__(self, model, resolution: int) -> None:
        super().__init__()
        self.backbone, self.head, self.box_coder = model.backbone, model.head, model.box_coder
        self.sigmoid = getattr(model, "classification", "softmax") == "sigmoid"
        self.resolution = resolution
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
        boxes = box_ops.clip_boxes_to_image(boxes, (self.resolution, self.resolution)) / self.resolution
        logits = out["cls_logits"]
        scores = torch.sigmoid(logits) if self.sigmoid else torch.softmax(logits, -1)
        return boxes.reshape(n, -1, 4), scores[..., 1:]


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
        helper.make_node("Gather", ["boxes_a", "top_box"], ["boxes"], axis=0),
    ]
    g.node.extend(nodes)
    while len(g.output):
        g.output.pop()
    g.output.extend([helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["D", 4]),
                     helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["D"]),
                     helper.make_tensor_value_info("labels", TensorProto.INT64, ["D"])])
    onnx.checker.check_model(model)
    onnx.save(model, out)


class _Reader:
    """ONNX Runtime calibration reader: one image at a time (the graph has batch 1)."""

    def __init__(self, images: list[np.ndarray]) -> None:
        self.images, self.i = images, 0

    def get_next(self):
        if self.i >= len(self.images):
            return None
        self.i += 1
        return {"input": self.images[self.i - 1][None]}

    def rewind(self) -> None:
        self.i = 0


def quantize_dense(dense_path: str, out: str, images: list[np.ndarray]) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from mobilenets.deploy.formats.onnx import reduce_range
    from mobilenets.utils.scoped import quiet_output

    with tempfile.TemporaryDirectory(prefix="mobilenet-detect-") as tmp:
        pre = os.path.join(tmp, "pre.onnx")
        with quiet_output(True):
            quant_pre_process(dense_path, pre, skip_symbolic_shape=True)
            quantize_static(pre, out, _Reader(images), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, reduce_range=reduce_range(),
                            calibrate_method=CalibrationMethod.MinMax,
                            # decoding and scores stay float: only the network's convs are quantized,
                            # and its ReLU6s (Clip) are named so that ORT folds each into the range of
                            # the conv before it (with Conv alone, that range was the unclamped one:
                            # AP50 -2.23 points on the real-MobileNet SSD)
                            op_types_to_quantize=["Conv", "Clip", "Relu"],
                            extra_options={"WeightSymmetric": True, "ActivationSymmetric": False})


def session(path: str | os.PathLike, threads: int = 2):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def run_onnx(sess, image: np.ndarray) -> dict[str, np.ndarray]:
    """One image ``[3, R, R]`` float in [0, 1] -> ``boxes`` (normalised xyxy), ``scores``, ``labels``."""
    boxes, scores, labels = sess.run(None, {"input": np.ascontiguousarray(image[None], dtype=np.float32)})
    return {"boxes": boxes, "scores": scores, "labels": labels}


def compare_to_eager(model, run, images: list[np.ndarray], resolution: int) -> dict[str, Any]:
    """Largest box difference (fraction of the image size) over detections kept by both, and how
    many images keep exactly the same detections (labels, and order by score). ``run``: image
    ``[3, R, R]`` -> ``boxes`` (normalised xyxy), ``scores``, ``labels`` (:func:`run_onnx`'s)."""
    worst, same = 0.0, 0
    for image in images:
        with torch.no_grad():
            eager = model([torch.from_numpy(image)])[0]
        out = run(image)
        e_boxes = eager["boxes"].numpy() / resolution
        n = min(len(e_boxes), len(out["boxes"]))
        if n:
            worst = max(worst, float(np.abs(e_boxes[:n] - out["boxes"][:n]).max()))
        same += int(len(e_boxes) == len(out["boxes"]) and np.array_equal(eager["labels"].numpy(), out["labels"]))
    return {"max_box_difference": worst, "same_detections": same, "images": len(images)}


FORMATS = ("onnx", "tflite")


def export_detector(checkpoint: str, output: str | os.PathLike, *, int8: bool = False, calibration: int = 64,
                    check_images: int = 16, data: str | None = None,
                    formats: tuple[str, ...] = FORMATS) -> dict[str, Any]:
    """Write ``model.onnx`` / ``model.tflite`` (and with ``int8`` ``model-int8.*``) and their sidecar
    JSON to ``output``; check them as the module docstring says (TFLite: see
    :mod:`~mobilenets.tasks.detect.tflite`); returns the files and their checks."""
    from mobilenets.tasks.detect.config import DetectorConfig
    from mobilenets.tasks.detect.evaluate import coco_metrics, to_results
    from mobilenets.tasks.detect.run import load_data, load_detector
    from mobilenets.tasks.detect.task import DetectionTask

    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise MobileNetsError(f"unknown detector export format(s) {unknown or formats}; choose from {', '.join(FORMATS)}")
    if "tflite" in formats:
        import importlib.util

        if importlib.util.find_spec("tensorflow") is None:  # before any work: the ONNX files are not half-done
            raise MobileNetsError("TFLite export needs TensorFlow (pip install 'mobilenets[export]'), or pass "
                                  "--formats onnx")
    model, meta = load_detector(checkpoint)
    cfg = DetectorConfig.from_dict(meta["model"])
    if not cfg.is_ssd:
        raise MobileNetsError("only SSD and SSDLite export (Faster R-CNN's proposals have data-dependent shapes)")
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    splits = load_data(data if data is not None else meta.get("data"))
    task = DetectionTask(cfg, None, category_ids=meta["category_ids"], class_names=meta["classes"])
    val = splits.get("val") or splits["train"]
    val_set, train_set = task.eval_dataset(val), task.eval_dataset(splits.get("train") or val)

    def images(ds, n):
        return [ds[i][0].numpy() for i in range(min(n, len(ds)))]

    side = {"classes": meta["classes"], "category_ids": meta["category_ids"], "detector": cfg.to_dict()}
    layouts = {
        "onnx": {"input": {"name": "input", "shape": [1, 3, cfg.resolution, cfg.resolution], "range": [0, 1],
                           "layout": "RGB, resized to the input size (antialiased)"},
                 "outputs": {"boxes": "[D, 4] x1, y1, x2, y2 normalised", "scores": "[D]", "labels": "[D] 1..K"}},
        "tflite": {"input": {"name": "input", "shape": [1, cfg.resolution, cfg.resolution, 3], "range": [0, 1],
                             "layout": "RGB NHWC, resized to the input size (antialiased)"},
                   "outputs": {"boxes": "[1, D, 4] ymin, xmin, ymax, xmax normalised (not clipped)",
                               "classes": "[1, D] 0..K-1", "scores": "[1, D]", "count": "[1]"},
                   "postprocess": "TFLite_Detection_PostProcess (regular per-class NMS)"},
    }
    calib = images(train_set, calibration) if int8 else None
    held_out = images(val_set, check_images)
    files: list[dict[str, Any]] = []
    if "onnx" in formats:
        with tempfile.TemporaryDirectory(prefix="mobilenet-detect-") as tmp:
            dense_path = os.path.join(tmp, "dense.onnx")
            export_dense(DenseSSD(model, cfg.resolution).eval(), dense_path)
            targets = [("model.onnx", dense_path, False)]
            if int8:
                q = os.path.join(tmp, "dense-int8.onnx")
                quantize_dense(dense_path, q, calib)
                targets.append(("model-int8.onnx", q, True))
            for name, source, is_int8 in targets:
                append_nms(source, str(out / name), iou=cfg.nms_thresh, score=cfg.score_thresh, keep=cfg.detections)
                files.append({"path": str(out / name), "format": "onnx", "int8": is_int8})
    if "tflite" in formats:
        from mobilenets.tasks.detect.tflite import write_tflite

        for name, is_int8 in [("model.tflite", False)] + ([("model-int8.tflite", True)] if int8 else []):
            write_tflite(model, cfg, out / name, calib if is_int8 else None)
            files.append({"path": str(out / name), "format": "tflite", "int8": is_int8})
    runners = {}
    for f in files:
        sidecar_path(f["path"]).write_text(json.dumps({**side, **layouts[f["format"]], "int8": f["int8"]}, indent=2))
        if f["format"] == "onnx":
            sess = session(f["path"])
            runners[f["path"]] = lambda image, sess=sess: run_onnx(sess, image)
        else:
            from mobilenets.tasks.detect.tflite import TFLiteDetector

            runners[f["path"]] = TFLiteDetector(f["path"])
    for f in files:
        if f["int8"]:
            continue
        check = compare_to_eager(model, runners[f["path"]], held_out, cfg.resolution)
        ok = check["max_box_difference"] <= BOX_TOLERANCE and check["same_detections"] == check["images"]
        f["check"] = (f"fp32 vs eager on {check['images']} held-out images: max box difference "
                      f"{check['max_box_difference']:.2e} of the image size, same detections on "
                      f"{check['same_detections']}/{check['images']}" + ("" if ok else "  MISMATCH"))
        f["ok"], f["compare"] = ok, check
    if int8:
        for fmt in formats:
            pair = [f for f in files if f["format"] == fmt]
            for f in pair:
                results = []
                for i in range(len(val_set)):
                    image, target = val_set[i]
                    det = runners[f["path"]](image.numpy())
                    h, w = target["orig_size"]
                    det["boxes"] = det["boxes"] * np.array([w, h, w, h], dtype=np.float32)
                    results += to_results(det, target["image_id"], task.category_ids)
                f["stats"] = coco_metrics(val.coco, results)["stats"]
            fp32, q = pair[0]["stats"], pair[1]["stats"]
            drop = 100 * (fp32["AP50"] - q["AP50"])
            pair[1]["ok"] = drop <= 2.0
            pair[1]["check"] = (f"int8 AP50 {100 * q['AP50']:.2f} vs fp32 {100 * fp32['AP50']:.2f} on {len(val_set)} "
                                f"validation images ({-drop:+.2f} points)" + ("" if drop <= 2.0 else "  OVER 2 POINTS"))
    return {"checkpoint": str(checkpoint), "files": files}


__all__ = ["FORMATS", "DenseSSD", "append_nms", "compare_to_eager", "export_dense", "export_detector", "quantize_dense", "run_onnx",
           "session"]
