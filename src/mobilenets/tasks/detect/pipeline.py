"""A TF Object Detection API ``pipeline.config`` read into a :class:`DetectorConfig`.

The file is protobuf text format of the TF OD API's ``TrainEvalPipelineConfig``. protobuf's own
``text_format`` needs the message classes, which live in the TF OD API (``object_detection.protos``,
not on PyPI as a package we can depend on), so :func:`parse_text_proto` reads the text format
without a schema: ``name: value`` (repeated names become lists) and ``name { ... }`` blocks.
:func:`detector_config` then takes the SSD fields the importer can express and refuses the rest
with one line (a feature extractor other than ``ssd_mobilenet_v1``, FPN/PPN, non-square inputs, ...).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mobilenets.errors import MobileNetsError

_TOKEN = re.compile(r'\s*(?:(#[^\n]*)|([{}])|("(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\')|([^\s:{}#]+)|(:))')


def _tokens(text: str):
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            if text[pos:].strip():
                raise MobileNetsError(f"pipeline.config: cannot read text at {text[pos:pos + 30]!r}")
            return
        pos = m.end()
        if m.group(1):
            continue
        yield m.group(m.lastindex)


def _value(token: str) -> Any:
    if token[0] in "\"'":
        return token[1:-1]
    if token in ("true", "false"):
        return token == "true"
    try:
        return int(token)
    except ValueError:
        pass
    try:
        return float(token)
    except ValueError:
        return token  # an enum value such as SIGMOID


def parse_text_proto(text: str) -> dict[str, Any]:
    """Protobuf text format as nested dicts; a field given more than once becomes a list."""
    stack: list[dict[str, Any]] = [{}]
    tokens = list(_tokens(text))
    i = 0

    def add(d: dict, key: str, value: Any) -> None:
        if key in d:
            d[key] = d[key] + [value] if isinstance(d[key], list) else [d[key], value]
        else:
            d[key] = value

    while i < len(tokens):
        tok = tokens[i]
        if tok == "}":
            if len(stack) == 1:
                raise MobileNetsError("pipeline.config: unbalanced '}'")
            stack.pop()
            i += 1
            continue
        key = tok
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        if nxt == ":" and i + 2 < len(tokens) and tokens[i + 2] == "{":
            i += 1
            nxt = "{"
        if nxt == "{":
            child: dict[str, Any] = {}
            add(stack[-1], key, child)
            stack.append(child)
            i += 2
        elif nxt == ":" and i + 2 < len(tokens):
            add(stack[-1], key, _value(tokens[i + 2]))
            i += 3
        else:
            raise MobileNetsError(f"pipeline.config: expected ':' or '{{' after {key!r}")
    if len(stack) != 1:
        raise MobileNetsError("pipeline.config: a '{' is not closed")
    return stack[0]


def _one(d: dict, *path: str, default: Any = None) -> Any:
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return default
        d = d[key]
    return d


def _list(value: Any) -> list:
    return value if isinstance(value, list) else [] if value is None else [value]


def detector_config(path: str | Path):
    """The :class:`DetectorConfig` of the SSD in ``path`` (a pipeline.config), and its class count."""
    from mobilenets.models.config import MobileNetConfig
    from mobilenets.tasks.detect.config import make_config

    text = Path(path).read_text()
    doc = parse_text_proto(text)
    ssd = _one(doc, "model", "ssd")
    if not isinstance(ssd, dict):
        kind = next(iter(_one(doc, "model", default={}) or {"nothing": 0}))
        raise MobileNetsError(f"{path}: the model is {kind}, not an SSD; only SSD-MobileNetV1 converts")
    fe = _one(ssd, "feature_extractor", default={})
    kind = fe.get("type")
    if kind != "ssd_mobilenet_v1":
        raise MobileNetsError(f"{path}: feature extractor {kind!r} is not supported (only ssd_mobilenet_v1; "
                              "FPN, PPN and other backbones are refused)")
    anchors = _one(ssd, "anchor_generator", "ssd_anchor_generator")
    if not isinstance(anchors, dict):
        raise MobileNetsError(f"{path}: only ssd_anchor_generator anchors are supported")
    if anchors.get("num_layers", 6) != 6 or not anchors.get("reduce_boxes_in_lowest_layer", True) \
            or anchors.get("interpolated_scale_aspect_ratio", 1.0) != 1.0 or "scales" in anchors \
            or anchors.get("base_anchor_height", 1.0) != 1.0 or anchors.get("base_anchor_width", 1.0) != 1.0:
        raise MobileNetsError(f"{path}: ssd_anchor_generator settings other than 6 layers, reduced lowest layer, "
                              "interpolated ratio 1.0 and no explicit scales are not supported")
    resizer = _one(ssd, "image_resizer", "fixed_shape_resizer")
    if not isinstance(resizer, dict) or resizer.get("height") != resizer.get("width"):
        raise MobileNetsError(f"{path}: only a square fixed_shape_resizer is supported")
    coder = _one(ssd, "box_coder", "faster_rcnn_box_coder")
    if not isinstance(coder, dict) and coder is not None:
        raise MobileNetsError(f"{path}: only the faster_rcnn_box_coder is supported")
    coder = coder or {}
    predictor = _one(ssd, "box_predictor", "convolutional_box_predictor")
    if not isinstance(predictor, dict) or predictor.get("use_depthwise", False):
        raise MobileNetsError(f"{path}: only a convolutional_box_predictor (not depthwise) is supported")
    converter = _one(ssd, "post_processing", "score_converter", default="IDENTITY")
    if converter not in ("SIGMOID", "SOFTMAX"):
        raise MobileNetsError(f"{path}: score_converter {converter} is not supported (SIGMOID or SOFTMAX)")
    nms = _one(ssd, "post_processing", "batch_non_max_suppression", default={})
    eps = _one(fe, "conv_hyperparams", "batch_norm", "epsilon", default=0.001)
    backbone = MobileNetConfig(alpha=float(fe.get("depth_multiplier", 1.0)), activation="relu6", padding="tf_same",
                               bn_eps=float(eps))
    size = int(resizer["height"])
    classes = int(ssd["num_classes"])
    config = make_config(
        "ssd", resolution=size, num_classes=classes, backbone=backbone,
        classification="sigmoid" if converter == "SIGMOID" else "softmax",
        head_kernel=int(predictor.get("kernel_size", 1)), min_depth=int(fe.get("min_depth", 16)),
        ssd_min_scale=float(anchors.get("min_scale", 0.2)), ssd_max_scale=float(anchors.get("max_scale", 0.95)),
        ssd_aspect_ratios=tuple(float(a) for a in _list(anchors.get("aspect_ratios")) or (1.0, 2.0, 0.5, 3.0, 0.3333)),
        box_scales=tuple(float(coder.get(k, d)) for k, d in (("y_scale", 10.0), ("x_scale", 10.0),
                                                              ("height_scale", 5.0), ("width_scale", 5.0))),
        # TF's multiclass NMS clips the kept boxes to the window after NMS
        clip_before_nms=False, score_thresh=float(nms.get("score_threshold", 1e-8)),
        nms_thresh=float(nms.get("iou_threshold", 0.6)), detections=int(nms.get("max_total_detections", 100)),
        # fixed_shape_resizer: TF1's resize_images (bilinear, legacy: no half-pixel, no antialias), no padding
        input_resize="tf_legacy", input_pad="none")
    return config, classes


__all__ = ["detector_config", "parse_text_proto"]
