"""One frozen description of a detector: which one, its backbone, its classes and its settings.

A :class:`DetectorConfig` is saved with every detection run and checkpoint (JSON), and
:func:`~mobilenets.tasks.detect.build.build_detector` rebuilds the same network from it. This
module is data only: it imports no network code. The defaults are the TensorFlow Object
Detection API's ``ssd_mobilenet_v1_coco`` and ``faster_rcnn_mobilenet_v1`` values; each field says
where its default comes from.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from mobilenets.errors import MobileNetsError
from mobilenets.models.config import MobileNetConfig
from mobilenets.utils.serial import JsonDataclass
from mobilenets.utils.validate import is_int, is_real

DETECTORS = ("ssd", "ssdlite", "faster_rcnn")
CLASSIFICATIONS = ("softmax", "sigmoid")
# Where each location's in-between-scale box (sqrt(s_k * s_k+1), ratio 1) goes among its anchors:
# last (the current TF OD API code) or second (older exports, e.g. face-api's detector).
ANCHOR_ORDERS = ("interpolated_last", "interpolated_second")
# How an image becomes the SSD's square input: "antialias" (torchvision's antialiased bilinear, our
# data pipeline's) or "tf_legacy" (TF's legacy bilinear: not antialiased, no half-pixel offset, as
# tf.image.resize_bilinear / tf.image.resizeBilinear with both flags false).
INPUT_RESIZES = ("antialias", "tf_legacy")
# Before the resize: "none" (stretch to the square) or "bottom_right" (zero-pad the short side at
# the bottom or right to a square first, as face-api's toNetInput).
INPUT_PADS = ("none", "bottom_right")
_TUPLES = ("extras", "anchor_scales", "anchor_ratios", "ssd_aspect_ratios", "box_scales")
# Input normalisation of every detector: [0, 1] -> [-1, 1], as TF's MobileNets.
IMAGE_MEAN, IMAGE_STD = [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]


@dataclass(frozen=True)
class DetectorConfig(JsonDataclass):
    # "ssd" (TF ssd_mobilenet_v1), "ssdlite" (depthwise-separable extras and heads) or
    # "faster_rcnn" (TF faster_rcnn_mobilenet_v1).
    detector: str = "ssd"
    # The MobileNet under it (its classifier is not built: num_classes 0). Its alpha, padding and
    # activation apply; its resolution is kept equal to ``resolution`` below (the cost model
    # counts the backbone there).
    backbone: MobileNetConfig = MobileNetConfig(num_classes=0, resolution=300)
    # Object classes, background not counted (COCO: 90 category ids, 80 used).
    num_classes: int = 90
    # SSD: the (square) input size every image is resized to (TF: 300). Faster R-CNN: the shorter
    # side images are resized to (the paper's 300 or 600), the longer one capped at ``max_size``.
    resolution: int = 300
    # Faster R-CNN: the longest side after resizing (TF keep_aspect_ratio_resizer: 1024).
    max_size: int = 1024
    # SSD classification loss and scores: "sigmoid" per class (TF's weighted_sigmoid + SIGMOID
    # score converter) or "softmax" over classes + background (torchvision's SSD).
    classification: str = "softmax"
    # SSD box predictor kernel: 1 (TF ssd_mobilenet_v1: 1x1 convs) or 3 (torchvision's SSDHead).
    # SSDLite always uses a 3x3 depthwise + 1x1 predictor.
    head_kernel: int = 1
    # Depths of SSD's four extra feature maps (TF: 512, 256, 256, 128), scaled by the backbone's
    # alpha with ``min_depth`` as floor (TF's depth_fn).
    extras: tuple[int, ...] = (512, 256, 256, 128)
    min_depth: int = 16
    # SSD anchors (TF's ssd_anchor_generator): scales from min to max over the maps, the aspect
    # ratios of every map but the (reduced) lowest, and where the in-between box goes (ANCHOR_ORDERS).
    ssd_min_scale: float = 0.2
    ssd_max_scale: float = 0.95
    ssd_aspect_ratios: tuple[float, ...] = (1.0, 2.0, 0.5, 3.0, 0.3333)
    anchor_order: str = "interpolated_last"
    # TF's box coder scales in TF's code order (ty, tx, th, tw): faster_rcnn_box_coder's y_scale,
    # x_scale, height_scale, width_scale (10, 10, 5, 5).
    box_scales: tuple[float, ...] = (10.0, 10.0, 5.0, 5.0)
    # SSD post-processing: clip the decoded boxes to the image before NMS (torchvision) or only after
    # it (face-api: NMS on the unclipped boxes, the kept ones clipped).
    clip_before_nms: bool = True
    # SSD input handling (INPUT_RESIZES, INPUT_PADS), used by detect predict and export. With
    # "bottom_right" and ``pad_rounded_scale``, boxes go back to the image through the rounded size
    # of the resized image, as face-api's locateFaces does (round(side * resolution / longest side)).
    input_resize: str = "antialias"
    input_pad: str = "none"
    pad_rounded_scale: bool = False
    # Post-processing: score floor, per-class NMS IoU and detections kept per image (TF SSD:
    # 1e-8, 0.6, 100; Faster R-CNN second stage: 0.0, 0.6, 100). 0.01 drops nothing that counts
    # for mAP and keeps the per-class NMS cheap.
    score_thresh: float = 0.01
    nms_thresh: float = 0.6
    detections: int = 100
    # SSD: boxes per class that enter NMS (the best by score; torchvision's SSD: 400). TF OD API and
    # face-api take every box above the score floor: a converted detector records its anchor count.
    nms_candidates: int = 400
    # SSD matching: IoU for a positive anchor (every ground-truth box also gets its best anchor).
    match_iou: float = 0.5
    # Faster R-CNN RPN anchors: scales x base size (TF: 0.25, 0.5, 1, 2 x 256 px) and aspect
    # ratios (0.5, 1, 2) on block 11 (stride 16).
    anchor_base: int = 256
    anchor_scales: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0)
    anchor_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    # Faster R-CNN proposals kept after the RPN's NMS (TF first_stage_max_proposals: 300, in
    # training and at test time) and that NMS's IoU (TF: 0.7).
    proposals: int = 300
    rpn_nms_thresh: float = 0.7
    # Faster R-CNN crops: each proposal cropped to crop_size x crop_size (TF initial_crop_size 14)
    # and, with crop_pool, 2x2 max-pooled to 7x7 before blocks 12-13 (TF's faster_rcnn_mobilenet_v1;
    # block 12's stride then leaves 4x4). crop_pool=False lets block 12 stride the 14x14 crop to
    # 7x7: the second stage whose cost is the paper's Table 13 (see mobilenets.cost.detection).
    crop_size: int = 14
    crop_pool: bool = True
    # Faster R-CNN second-stage proposals sampled per training image (TF second_stage_batch_size: 64).
    roi_batch: int = 64

    def __post_init__(self) -> None:
        validate(self)

    @property
    def is_ssd(self) -> bool:
        return self.detector in ("ssd", "ssdlite")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DetectorConfig:
        if not isinstance(data, dict):
            raise MobileNetsError(f"a DetectorConfig is built from a dict, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise MobileNetsError(f"unknown DetectorConfig field(s): {', '.join(unknown)}")
        values = dict(data)
        if isinstance(values.get("backbone"), dict):
            values["backbone"] = MobileNetConfig.from_dict(values["backbone"])
        for name in _TUPLES:
            if isinstance(values.get(name), list):
                values[name] = tuple(values[name])
        return cls(**values)


def make_config(detector: str = "ssd", *, alpha: float = 1.0, resolution: int | None = None,
                num_classes: int = 90, backbone: MobileNetConfig | None = None, **fields: Any) -> DetectorConfig:
    """A :class:`DetectorConfig` with the backbone's resolution tied to the detector's (default
    input: 300 px; ``backbone`` overrides ``alpha``)."""
    if detector not in DETECTORS:  # before anything else: the message names the choices
        raise MobileNetsError(f"unknown detector {detector!r}; choose one of {', '.join(DETECTORS)}")
    resolution = 300 if resolution is None else resolution
    base = backbone if backbone is not None else MobileNetConfig(alpha=alpha)
    return DetectorConfig(detector=detector, backbone=base.replace(num_classes=0, resolution=resolution),
                          num_classes=num_classes, resolution=resolution, **fields)


def extra_depths(config: DetectorConfig) -> list[tuple[int, int]]:
    """``(1x1 depth, output depth)`` of each extra layer: TF's ``depth_fn(d / 2), depth_fn(d)``
    with ``depth_fn(d) = max(int(d * alpha), min_depth)``."""
    alpha = config.backbone.alpha

    def depth(d: float) -> int:
        return max(int(d * alpha), config.min_depth)

    return [(depth(d / 2), depth(d)) for d in config.extras]


def validate(c: DetectorConfig) -> None:
    """One :class:`MobileNetsError` naming the bad field and echoing its value."""

    def need(ok: bool, name: str, rule: str) -> None:
        if not ok:
            raise MobileNetsError(f"{name} must be {rule}, got {getattr(c, name)!r}")

    if c.detector not in DETECTORS:
        raise MobileNetsError(f"unknown detector {c.detector!r}; choose one of {', '.join(DETECTORS)}")
    if c.classification not in CLASSIFICATIONS:
        raise MobileNetsError(f"unknown classification {c.classification!r}; choose one of {', '.join(CLASSIFICATIONS)}")
    need(isinstance(c.backbone, MobileNetConfig), "backbone", "a MobileNetConfig")
    need(is_int(c.num_classes) and c.num_classes >= 1, "num_classes", "an integer >= 1")
    need(is_int(c.resolution) and c.resolution >= 32, "resolution", "an integer >= 32 (pixels)")
    need(is_int(c.max_size) and c.max_size >= c.resolution, "max_size", f"an integer >= resolution ({c.resolution})")
    need(c.head_kernel in (1, 3), "head_kernel", "1 or 3")
    need(isinstance(c.extras, tuple) and len(c.extras) == 4 and all(is_int(d) and d >= 2 for d in c.extras),
         "extras", "four integer depths >= 2")
    need(is_int(c.min_depth) and c.min_depth >= 1, "min_depth", "an integer >= 1")
    need(is_real(c.score_thresh) and 0 <= c.score_thresh < 1, "score_thresh", "in [0, 1)")
    need(is_real(c.nms_thresh) and 0 < c.nms_thresh <= 1, "nms_thresh", "in (0, 1]")
    need(is_int(c.detections) and c.detections >= 1, "detections", "an integer >= 1")
    need(is_int(c.nms_candidates) and c.nms_candidates >= 1, "nms_candidates", "an integer >= 1")
    need(is_real(c.match_iou) and 0 < c.match_iou < 1, "match_iou", "in (0, 1)")
    need(is_int(c.anchor_base) and c.anchor_base >= 1, "anchor_base", "an integer >= 1 (pixels)")
    for name in ("anchor_scales", "anchor_ratios"):
        value = getattr(c, name)
        need(isinstance(value, tuple) and value and all(is_real(v) and v > 0 for v in value), name,
             "a non-empty tuple of numbers > 0")
    need(is_real(c.ssd_min_scale) and is_real(c.ssd_max_scale) and 0 < c.ssd_min_scale <= c.ssd_max_scale,
         "ssd_min_scale", f"in (0, ssd_max_scale ({c.ssd_max_scale!r})]")
    need(isinstance(c.ssd_aspect_ratios, tuple) and c.ssd_aspect_ratios and
         all(is_real(v) and v > 0 for v in c.ssd_aspect_ratios), "ssd_aspect_ratios", "a non-empty tuple of numbers > 0")
    need(isinstance(c.box_scales, tuple) and len(c.box_scales) == 4 and all(is_real(v) and v > 0 for v in c.box_scales),
         "box_scales", "four numbers > 0 (y, x, height, width)")
    for name, choices in (("anchor_order", ANCHOR_ORDERS), ("input_resize", INPUT_RESIZES), ("input_pad", INPUT_PADS)):
        need(getattr(c, name) in choices, name, f"one of {', '.join(choices)}")
    for name in ("clip_before_nms", "pad_rounded_scale"):
        need(isinstance(getattr(c, name), bool), name, "a bool")
    need(is_int(c.proposals) and c.proposals >= 1, "proposals", "an integer >= 1")
    need(is_real(c.rpn_nms_thresh) and 0 < c.rpn_nms_thresh <= 1, "rpn_nms_thresh", "in (0, 1]")
    need(is_int(c.crop_size) and c.crop_size >= 2 and c.crop_size % 2 == 0, "crop_size", "an even integer >= 2")
    need(is_int(c.roi_batch) and c.roi_batch >= 1, "roi_batch", "an integer >= 1")
    need(isinstance(c.crop_pool, bool), "crop_pool", "a bool")


__all__ = ["ANCHOR_ORDERS", "CLASSIFICATIONS", "INPUT_PADS", "INPUT_RESIZES", "DETECTORS", "DetectorConfig", "IMAGE_MEAN", "IMAGE_STD", "extra_depths", "make_config",
           "validate"]
