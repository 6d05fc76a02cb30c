"""SSD / SSDLite to ONNX (and TFLite) with box decoding and NMS inside, fp32 and int8, checked against eager.

The ONNX graph takes ``input``: ``[1, 3, R, R]`` float RGB in [0, 1], already resized to the
detector's size (as :mod:`~mobilenets.tasks.detect.transforms` resizes: antialiased). Inside: the
[-1, 1] scaling, the network, box decoding against the TF anchors (torchvision's ``BoxCoder``,
the same call as eager), clipping, class scores (softmax without background, or sigmoid), then
ONNX's ``NonMaxSuppression`` per class (IoU, score floor and 100 per class, as eager) and a
``TopK`` of the 100 best overall. Outputs: ``boxes`` ``[D, 4]`` (``x1, y1, x2, y2`` normalised to
[0, 1]), ``scores`` ``[D]``, ``labels`` ``[D]`` (1..K; the sidecar ``model.onnx.json`` names them).

Int8: the package's one ONNX int8 pipeline (:func:`mobilenets.deploy.ort.quantize_qdq`: static
QDQ, per-channel int8 weights, uint8 activations, min/max calibration on the training images or a
folder of images) of the network part, in its one form for every CPU (8-bit depthwise weights,
7-bit elsewhere: no CPU saturates it), after bias correction on those grids
(:func:`~mobilenets.tasks.detect.onnx_graph.bias_corrected`: each conv's BatchNorm-folded output
keeps its float mean); decoding and NMS stay float. The graph's pieces (the dense network, NMS as
ONNX ops, quantization, the session) are :mod:`~mobilenets.tasks.detect.onnx_graph`; this module
checks and writes the files.
The check: fp32 boxes within 1e-3 (of the image size) of eager and the same kept detections on
held-out images; int8 scored with COCO's AP50 beside fp32 on the validation split, at most 2
points lower. The failure policy is the classifier export's (:mod:`mobilenets.deploy.outputs`):
the files are staged, checked, and moved into the output folder only when every check passes; a
failed check raises :class:`~mobilenets.deploy.outputs.ExportCheckFailed` (one line, exit status 2
from the command line) and leaves nothing behind.

Eager keeps the 400 best boxes per class before NMS (the config's ``nms_candidates``); the ONNX
graph does the same (each class's scores below its 400th best set to 0, under the score floor), so
a trained detector with more than 400 boxes of a class above the floor keeps the same detections.
TFLite (``model.tflite``, ``model-int8.tflite``): :mod:`~mobilenets.tasks.detect.tflite`, with
TFLite's detection post-process op inside; the same checks. Faster R-CNN is not exported (its
proposals and crops have data-dependent shapes).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mobilenets.deploy.formats import sidecar_path
from mobilenets.errors import MobileNetsError
from mobilenets.tasks.detect.onnx_graph import (
    DenseSSD,
    append_nms,
    bias_corrected,
    export_dense,
    quantize_dense,
    run_onnx,
    session,
)

BOX_TOLERANCE = 1e-3  # of the image size


BIAS_CORRECTION_IMAGES = 64  # images the int8 export's bias correction measures on


def tied_order(scores: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Highest score first; scores equal to 1e-6 (float32 paths differ in the last bits) by box."""
    if len(scores) == 0:
        return np.arange(0)
    keys = [boxes[:, 3], boxes[:, 2], boxes[:, 1], boxes[:, 0], -np.round(scores.astype(np.float64), 6)]
    return np.lexsort(keys)


def compare_to_eager(model, run, images: list[np.ndarray], resolution: int, keep: int = 100) -> dict[str, Any]:
    """Largest box difference (fraction of the image size) over detections kept by both, and how
    many images keep exactly the same detections (labels, and order by score). ``run``: image
    ``[3, R, R]`` -> ``boxes`` (normalised xyxy), ``scores``, ``labels`` (:func:`run_onnx`'s)."""
    worst, same = 0.0, 0
    for image in images:
        with torch.no_grad():
            eager = model([torch.from_numpy(image)])[0]
        out = run(image)
        e_boxes, e_scores, e_labels = eager["boxes"].numpy() / resolution, eager["scores"].numpy(), eager["labels"].numpy()
        o_boxes, o_scores, o_labels = out["boxes"], out["scores"], out["labels"]
        # equal scores (e.g. boxes over a padded, uniform region) come in either order: by score, then box
        e_order, o_order = tied_order(e_scores, e_boxes), tied_order(o_scores, o_boxes)
        e_boxes, e_labels, o_boxes, o_labels = e_boxes[e_order], e_labels[e_order], o_boxes[o_order], o_labels[o_order]
        if len(e_scores) == len(o_scores) == keep:
            # cut at ``keep``: which of the boxes tied with the last kept score made it is arbitrary
            last = min(e_scores.min(), o_scores.min()) + 1e-6
            e_boxes, e_labels = e_boxes[e_scores[e_order] > last], e_labels[e_scores[e_order] > last]
            o_boxes, o_labels = o_boxes[o_scores[o_order] > last], o_labels[o_scores[o_order] > last]
        n = min(len(e_boxes), len(o_boxes))
        if n:
            worst = max(worst, float(np.abs(e_boxes[:n] - o_boxes[:n]).max()))
        same += int(len(e_boxes) == len(o_boxes) and np.array_equal(e_labels, o_labels))
    return {"max_box_difference": worst, "same_detections": same, "images": len(images)}


FORMATS = ("onnx", "tflite")
CALIBRATION_IMAGES = 64  # default number of int8 calibration images
INT8_AP50_DROP = 2.0  # points of AP50 an int8 file may lose against its fp32 file


def folder_images(folder: str | os.PathLike, resolution: int, limit: int) -> tuple[list[np.ndarray], int]:
    """The first ``limit`` readable images under ``folder`` (recursively, sorted, hidden files left
    out: :func:`mobilenets.deploy.calibration.image_files`) as the detector takes them
    (``[3, R, R]`` float in [0, 1], resized as :func:`~mobilenets.tasks.detect.transforms.
    eval_transforms` resizes), and how many unreadable files were skipped."""
    from PIL import Image

    from mobilenets.deploy.calibration import image_files
    from mobilenets.errors import DataNotFoundError
    from mobilenets.tasks.detect.transforms import eval_transforms

    root = Path(folder)
    if not root.exists():
        raise DataNotFoundError(f"calibration folder not found: {root}")
    if not root.is_dir():
        raise MobileNetsError(f"calibration must be a folder of images: {root}")
    transform = eval_transforms(resolution)
    images, skipped = [], 0
    for path in image_files(root):
        if len(images) >= limit:
            break
        try:
            with Image.open(path) as im:
                image = im.convert("RGB")
        except (OSError, ValueError, Image.DecompressionBombError):
            skipped += 1
            continue
        images.append(transform(image).numpy())
    if not images:
        raise MobileNetsError(f"calibration folder {root} holds no readable image"
                              + (f" ({skipped} unreadable skipped)" if skipped else ""))
    return images, skipped


def photo_inputs(cfg, limit: int) -> list[np.ndarray]:
    """Up to ``limit`` of the package's real photos (faces first) as the detector of ``cfg`` takes
    them (its own input handling, :func:`~mobilenets.tasks.detect.inputs.ssd_input`)."""
    from mobilenets.data.photos import FACE_PHOTOS, MORE_PHOTOS, PHOTOS, load_photo
    from mobilenets.tasks.detect.inputs import ssd_input

    names = list(dict.fromkeys([*FACE_PHOTOS, *MORE_PHOTOS, *PHOTOS]))[:limit]
    return [ssd_input(load_photo(n), cfg)[0].numpy() for n in names]


def _check_output(out: Path) -> None:
    """Before any slow work: ``out`` must be a folder we can write in (created with its parents
    only when every check has passed)."""
    from mobilenets.deploy.outputs import check_writable

    if out.exists() and not out.is_dir():
        raise MobileNetsError(f"--output {out} is a file; give a folder")
    if out.is_dir():
        check_writable(out)
    else:
        blocker = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            raise MobileNetsError(f"cannot write to {out}: {blocker} is a file, not a folder")
        check_writable(out.parent)


def export_detector(checkpoint: str, output: str | os.PathLike, *, int8: bool = False,
                    calibration: str | os.PathLike | None = None, calibration_images: int = CALIBRATION_IMAGES,
                    check_images: int = 16, data: str | None = None,
                    formats: tuple[str, ...] = FORMATS,
                    rewrite: Callable[[str, bool], dict[str, Any]] | None = None) -> dict[str, Any]:
    """Write ``model.onnx`` / ``model.tflite`` (and with ``int8`` ``model-int8.*``) and their sidecar
    JSON to the folder ``output``; check them as the module docstring says (TFLite: see
    :mod:`~mobilenets.tasks.detect.tflite`); returns the files and their checks.

    ``calibration``: for ``int8``, a folder of images (any images under it) of which the first
    ``calibration_images`` calibrate (default: the training images of ``data``, else of the data
    the run records). The export follows the classifier's failure policy
    (:mod:`mobilenets.deploy.outputs`): the files are written to a staging folder and checked,
    and moved into ``output`` (replacing files of the same names) only when every check passes;
    a failed check raises :class:`~mobilenets.deploy.outputs.ExportCheckFailed` with one line and
    leaves nothing behind. ``rewrite``: called with each ONNX network (before NMS is appended) and
    whether it is int8, to rewrite it in place before it is checked (the web export's kernel plan,
    :func:`mobilenets.deploy.web.kernels.plan_file`); what it returns goes into that file's entry
    and sidecar as ``kernel_plan``."""
    from mobilenets.deploy.outputs import ExportCheckFailed, Staging
    from mobilenets.tasks.detect.config import DetectorConfig
    from mobilenets.tasks.detect.evaluate import coco_metrics, to_results
    from mobilenets.tasks.detect.run import load_data, load_detector
    from mobilenets.tasks.detect.task import DetectionTask

    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise MobileNetsError(f"unknown detector export format(s) {', '.join(map(str, unknown)) or '(none given)'}; "
                              f"choose from {', '.join(FORMATS)}")
    if isinstance(calibration_images, bool) or not isinstance(calibration_images, int) or calibration_images < 1:
        raise MobileNetsError(f"calibration_images must be an integer >= 1, got {calibration_images!r}")
    if calibration is not None and not int8:
        raise MobileNetsError("calibration needs int8=True")
    if "tflite" in formats:
        import importlib.util

        if importlib.util.find_spec("tensorflow") is None:  # before any work
            raise MobileNetsError("TFLite export needs TensorFlow (pip install 'mobilenets[export]'), or pass "
                                  "--formats onnx")
    out = Path(output)
    _check_output(out)
    model, meta = load_detector(checkpoint)
    cfg = DetectorConfig.from_dict(meta["model"])
    if not cfg.is_ssd:
        raise MobileNetsError("only SSD and SSDLite export (Faster R-CNN's proposals have data-dependent shapes)")
    # a converted detector (detect convert) records no training data: its checks run on real photos
    converted = data is None and meta.get("data") is None and "source" in meta
    if converted and int8:
        raise MobileNetsError("--int8 of a converted detector needs --data: a labelled COCO/VOC folder of its classes "
                              "to calibrate on and to score the int8 file")
    if not converted:
        splits = load_data(data if data is not None else meta.get("data"))
        task = DetectionTask(cfg, None, category_ids=meta["category_ids"], class_names=meta["classes"])
        val = splits.get("val") or splits["train"]
        val_set, train_set = task.eval_dataset(val), task.eval_dataset(splits.get("train") or val)

    def images(ds, n):
        return [ds[i][0].numpy() for i in range(min(n, len(ds)))]

    side = {"classes": meta["classes"], "category_ids": meta["category_ids"], "detector": cfg.to_dict()}
    resize = ("resized to the input size (antialiased)" if cfg.input_resize == "antialias" else
              "resized to the input size with TF's legacy bilinear (no antialiasing, no half-pixel offset)")
    if cfg.input_pad == "bottom_right":
        resize = "zero-padded at the bottom/right to a square, then " + resize
    resize += "; see mobilenets.tasks.detect.inputs.ssd_input"
    layouts = {
        "onnx": {"input": {"name": "input", "shape": [1, 3, cfg.resolution, cfg.resolution], "range": [0, 1],
                           "layout": f"RGB, {resize}"},
                 "outputs": {"boxes": "[D, 4] x1, y1, x2, y2 normalised", "scores": "[D]", "labels": "[D] 1..K"}},
        "tflite": {"input": {"name": "input", "shape": [1, cfg.resolution, cfg.resolution, 3], "range": [0, 1],
                             "layout": f"RGB NHWC, {resize}"},
                   "outputs": {"boxes": "[1, D, 4] ymin, xmin, ymax, xmax normalised (not clipped)",
                               "classes": "[1, D] 0..K-1", "scores": "[1, D]", "count": "[1]"},
                   "postprocess": "TFLite_Detection_PostProcess (regular per-class NMS)"},
    }
    calib, calibrated_on = None, None
    if int8 and calibration is not None:
        calib, skipped = folder_images(calibration, cfg.resolution, calibration_images)
        calibrated_on = f"{calibration}" + (f" ({skipped} unreadable skipped)" if skipped else "")
    elif int8:
        calib, calibrated_on = images(train_set, calibration_images), "the training images of the run's data"
    held_out = photo_inputs(cfg, check_images) if converted else images(val_set, check_images)
    files: list[dict[str, Any]] = []
    with Staging(out) as staging:
        if "onnx" in formats:
            with tempfile.TemporaryDirectory(prefix="mobilenet-detect-") as tmp:
                dense_path = os.path.join(tmp, "dense.onnx")
                export_dense(DenseSSD(model, cfg.resolution).eval(), dense_path)
                targets = [("model.onnx", dense_path, None)]
                if int8:
                    from mobilenets.deploy.ort import weight_qmax

                    # the int8 file starts from the bias-corrected network (on the ONNX form's grids)
                    corrected_path = os.path.join(tmp, "dense-corrected.onnx")
                    export_dense(bias_corrected(model, calib[:BIAS_CORRECTION_IMAGES], weight_qmax, cfg.resolution),
                                 corrected_path)
                    q = os.path.join(tmp, "dense-int8.onnx")
                    settings = quantize_dense(corrected_path, q, calib)
                    settings["bias_correction"] = True
                    targets.append(("model-int8.onnx", q, settings))
                for name, source, settings in targets:
                    plan = rewrite(source, settings is not None) if rewrite is not None else None
                    append_nms(source, str(staging.path(name)), iou=cfg.nms_thresh, score=cfg.score_thresh,
                               keep=cfg.detections)
                    files.append({"name": name, "format": "onnx", "int8": settings is not None,
                                  **({"quantization": settings} if settings else {}),
                                  **({"kernel_plan": plan} if plan is not None else {})})
        if "tflite" in formats:
            from mobilenets.tasks.detect.tflite import write_tflite

            for name, is_int8 in [("model.tflite", False)] + ([("model-int8.tflite", True)] if int8 else []):
                write_tflite(model, cfg, staging.path(name), calib if is_int8 else None)
                files.append({"name": name, "format": "tflite", "int8": is_int8})
        runners = {}
        for f in files:
            staged = staging.path(f["name"])
            if f["format"] == "onnx":
                sess = session(staged)
                runners[f["name"]] = lambda image, sess=sess: run_onnx(sess, image)
            else:
                from mobilenets.tasks.detect.tflite import TFLiteDetector

                runners[f["name"]] = TFLiteDetector(staged)
        for f in files:
            if f["int8"]:
                continue
            check = compare_to_eager(model, runners[f["name"]], held_out, cfg.resolution, cfg.detections)
            f["ok"] = check["max_box_difference"] <= BOX_TOLERANCE and check["same_detections"] == check["images"]
            f["check"] = (f"fp32 vs eager on {check['images']} held-out images: max box difference "
                          f"{check['max_box_difference']:.2e} of the image size (tolerance {BOX_TOLERANCE:g}), "
                          f"same detections on {check['same_detections']}/{check['images']}")
            f["compare"] = check
        if int8:
            for fmt in formats:
                pair = [f for f in files if f["format"] == fmt]
                for f in pair:
                    results = []
                    for i in range(len(val_set)):
                        image, target = val_set[i]
                        det = runners[f["name"]](image.numpy())
                        h, w = target["orig_size"]
                        det["boxes"] = det["boxes"] * np.array([w, h, w, h], dtype=np.float32)
                        results += to_results(det, target["image_id"], task.category_ids)
                    f["stats"] = coco_metrics(val.coco, results)["stats"]
                fp32, q = pair[0]["stats"], pair[1]["stats"]
                drop = 100 * (fp32["AP50"] - q["AP50"])
                pair[1]["ok"] = drop <= INT8_AP50_DROP
                pair[1]["check"] = (f"int8 AP50 {100 * q['AP50']:.2f} vs fp32 {100 * fp32['AP50']:.2f} on "
                                    f"{len(val_set)} validation images ({-drop:+.2f} points; at most "
                                    f"-{INT8_AP50_DROP:g} allowed), calibrated on {len(calib)} images from "
                                    f"{calibrated_on}")
        failed = [f for f in files if not f["ok"]]
        if failed:
            raise ExportCheckFailed("detector export check failed: " + "; ".join(
                f"{f['name']}: {f['check']}" for f in failed) + "; nothing written")
        for f in files:
            report = {**side, **layouts[f["format"]], "int8": f["int8"], "check": f["check"],
                      **({"quantization": f["quantization"]} if "quantization" in f else {}),
                      **({"kernel_plan": f["kernel_plan"]} if "kernel_plan" in f else {})}
            staging.path(sidecar_path(f["name"]).name).write_text(json.dumps(report, indent=2))
        staging.commit()
    files = [{"path": str(out / f.pop("name")), **f} for f in files]
    return {"checkpoint": str(checkpoint), "output": str(out), "files": files}


__all__ = ["CALIBRATION_IMAGES", "FORMATS", "INT8_AP50_DROP", "DenseSSD", "append_nms", "compare_to_eager",
           "export_dense", "export_detector", "folder_images", "quantize_dense", "run_onnx", "session"]
