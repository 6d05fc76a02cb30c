"""``mobilenet detect convert``: the TF Object Detection API's SSD-MobileNetV1 as our detector.

Sources (:func:`convert_detector`):

* TensorFlow.js weights: a ``*-weights_manifest.json`` with its ``.bin`` shards (read by
  :mod:`.tfjs`), in the layout of face-api's ``ssd_mobilenetv1_model`` (a TF OD API
  SSD-MobileNetV1 exported to TF.js, with its anchors stored as ``Output/extra_dim``);
* a TF OD API export folder: ``pipeline.config`` (read by :mod:`.pipeline`) with
  ``frozen_inference_graph.pb`` or a checkpoint (``model.ckpt*``), read by :mod:`.tf_od_api`.

What the conversion expresses (all of it recorded in the detector's config, nothing guessed):

* BatchNorm folded into a conv's bias on some layers (``convolution_bn_offset`` / ``biases``:
  our BatchNorm becomes the identity plus that bias) and kept on others (``BatchNorm/gamma``,
  ``beta``, ``moving_mean``, ``moving_variance``: copied, eps 0.001 as TF's);
* TF's box-code order (ty, tx, th, tw) against torchvision's (tx, ty, tw, th): the box
  predictor's output channels are permuted per anchor; the coder's scales are ``box_scales``;
* TF's anchors: the source's own anchors (when it stores them) are compared with the ones our
  config makes, for each ``anchor_order``; the one that matches is recorded, or the conversion is
  refused;
* the classes the source scores: face-api reads only class column 1 ("face"), so only that
  column is kept;
* the input handling (``input_resize``, ``input_pad``, ``pad_rounded_scale``) and post-processing
  (``clip_before_nms``, sigmoid scores, NMS IoU) of the source.

The result is a normal detector folder (``model.safetensors`` with the run metadata, and
``detector.json``) that ``detect predict``, ``export`` and ``bench`` take with its input handling,
and ``detect train --init`` fine-tunes. ``detect eval`` refuses a detector whose input handling its
pipeline cannot apply yet (TF's resize, face-api's padding).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from mobilenets.errors import DataNotFoundError, MobileNetsError
from mobilenets.tasks.detect.tf_layers import TF_BN_EPS, Layers, assemble

ANCHOR_TOLERANCE = 1e-5  # normalised units; float32 anchors made by TF match ours within ~1e-7

# face-api's TF.js names for the parts of TF's ssd_mobilenet_v1 (its tfjs export renamed them).
FACE_API_NAMES = {
    "stem": "MobilenetV1/Conv2d_0_pointwise",
    "dw": "MobilenetV1/Conv2d_{i}_depthwise",
    "pw": "MobilenetV1/Conv2d_{i}_pointwise",
    "extra": "Prediction/Conv2d_{i}_pointwise",
    "box": "Prediction/BoxPredictor_{i}/BoxEncodingPredictor",
    "cls": "Prediction/BoxPredictor_{i}/ClassPredictor",
    "anchors": "Output/extra_dim",
}


def _find_manifest(source: Path) -> Path | None:
    if source.is_file() and source.name.endswith("weights_manifest.json"):
        return source
    if source.is_dir():
        found = sorted(source.glob("*weights_manifest.json"))
        ssd = [p for p in found if p.name.startswith("ssd")]
        if len(found) > 1 and len(ssd) == 1:  # face-api's model folder: its one SSD among its other nets
            return ssd[0]
        if len(found) > 1:
            raise MobileNetsError(f"{source} holds {len(found)} TF.js weights manifests "
                                  f"({', '.join(p.name for p in found)}); name one of them")
        return found[0] if found else None
    return None


def check_anchors(stored: np.ndarray, config, source: str):
    """The config (with the ``anchor_order`` that reproduces ``stored``, TF's normalised
    ``[ymin, xmin, ymax, xmax]``), or a refusal naming the closest miss."""
    import torch

    from mobilenets.tasks.detect.anchor_specs import config_box_specs
    from mobilenets.tasks.detect.anchors import ssd_anchors, ssd_feature_map_sizes
    from mobilenets.tasks.detect.config import ANCHOR_ORDERS

    stored = stored.reshape(-1, 4).astype(np.float64)
    sizes = ssd_feature_map_sizes(config.resolution)
    misses = []
    for order in ANCHOR_ORDERS:
        cfg = config.replace(anchor_order=order)
        a = ssd_anchors(sizes, (config.resolution, config.resolution), config_box_specs(cfg), torch.float64).numpy()
        if a.shape != stored.shape:
            misses.append(f"{order}: {a.shape[0]} anchors, the source has {stored.shape[0]}")
            continue
        cy, cx, h, w = a.T
        diff = float(np.abs(np.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2], 1) - stored).max())
        if diff <= ANCHOR_TOLERANCE:
            return cfg, diff
        misses.append(f"{order}: off by up to {diff:.3g}")
    raise MobileNetsError(f"{source}: its stored anchors are not TF's ssd_anchor_generator at "
                          f"{config.resolution} px with the config's scales and ratios ({'; '.join(misses)})")


def face_api_config(resolution: int = 512):
    """face-api's SSD-MobileNetV1 (ssdMobilenetv1/*.ts) as a DetectorConfig: 512 px, ReLU6, TF
    "SAME" padding, sigmoid scores, NMS IoU 0.5 on the unclipped boxes, input zero-padded at the
    bottom/right to a square and resized with TF's legacy bilinear, boxes mapped back through the
    rounded resized size (locateFaces)."""
    from mobilenets.models.config import MobileNetConfig
    from mobilenets.tasks.detect.config import make_config

    backbone = MobileNetConfig(activation="relu6", padding="tf_same", bn_eps=TF_BN_EPS)
    # score floor 0.05, not our default 0.01: over the zero padding face-api's network gives many boxes the
    # very same score (~0.012), and NMS among exactly tied boxes keeps whichever comes first, so eager,
    # ONNX and TFLite could keep different ones there. face-api's own floor is minConfidence (default 0.5).
    return make_config("ssd", resolution=resolution, num_classes=1, backbone=backbone, classification="sigmoid",
                       nms_thresh=0.5, detections=100, score_thresh=0.05, clip_before_nms=False,
                       input_resize="tf_legacy", input_pad="bottom_right", pad_rounded_scale=True)


def from_tfjs(manifest: Path) -> tuple[dict[str, Any], Any, dict[str, Any]]:
    """State dict, config and source description of a face-api style TF.js SSD-MobileNetV1."""
    from mobilenets.tasks.detect.tfjs import read_manifest

    weights = read_manifest(manifest)
    layers = Layers(weights, manifest.name)
    cls0 = layers.get(FACE_API_NAMES["cls"].format(i=0) + "/weights")
    box0 = layers.get(FACE_API_NAMES["box"].format(i=0) + "/weights")
    anchors0 = box0.shape[-1] // 4
    total_columns = cls0.shape[-1] // anchors0
    stored = layers.get(FACE_API_NAMES["anchors"])
    # the input size: the stored anchors' count fixes it (TF's maps at stride 16, 32, then halving)
    from mobilenets.tasks.detect.anchors import anchor_count

    size = next((r for r in (300, 320, 512, 640, 256, 384, 448) if anchor_count(r) == stored.size // 4), None)
    if size is None:
        raise MobileNetsError(f"{manifest.name}: {stored.size // 4} stored anchors fit no SSD input size the "
                              "converter knows")
    config, diff = check_anchors(stored, face_api_config(size), manifest.name)
    config = config.replace(nms_candidates=stored.size // 4)  # face-api's NMS takes every box above the floor
    # face-api's outputLayer scores column 1 only (sigmoid), whatever the other columns hold
    state = assemble(layers, FACE_API_NAMES, total_columns, [0, 1])
    unused = sorted(n for n, v in weights.items() if n not in layers.used and v.dtype == np.float32 and v.size > 1)
    if unused:
        raise MobileNetsError(f"{manifest.name}: weights the converter does not place: {', '.join(unused[:5])}")
    source = {"format": "tfjs", "file": manifest.name, "layout": "face-api ssd_mobilenetv1",
              "class_columns": total_columns, "kept_columns": [0, 1], "anchor_order": config.anchor_order,
              "anchors_max_abs_diff": diff}
    return state, config, source


def convert_detector(source: str | os.PathLike, output: str | os.PathLike, *,
                     classes: list[str] | None = None, anchor_order: str | None = None) -> Path:
    """Convert the TF OD API SSD-MobileNetV1 at ``source`` (a TF.js ``*-weights_manifest.json`` or
    a folder holding one, or a TF OD API export folder with ``pipeline.config``) into a detector
    folder ``output`` (``model.safetensors`` + ``detector.json``); returns the folder. ``classes``:
    the class names (default: "face" for face-api's detector, else ``class<i>``). ``anchor_order``
    (``interpolated_last`` / ``interpolated_second``): for a TF OD API export, which stores no
    anchors (default: last, the current TF OD API's); a TF.js source's stored anchors decide it
    (given, it must agree)."""
    import torch

    from mobilenets.deploy.outputs import Staging, check_writable
    from mobilenets.tasks.detect.build import build_detector
    from mobilenets.weights.files import save_weights

    src = Path(source)
    if not src.exists():
        raise DataNotFoundError(f"detector source not found: {src}")
    manifest = _find_manifest(src)
    if manifest is not None:
        state, config, info = from_tfjs(manifest)
        if anchor_order is not None and anchor_order != config.anchor_order:
            raise MobileNetsError(f"--anchor-order {anchor_order}: the source's stored anchors are "
                                  f"{config.anchor_order}")
        names = classes or ["face"]
    elif (src if src.is_dir() else src.parent).joinpath("pipeline.config").is_file():
        from mobilenets.tasks.detect.tf_od_api import from_tf_od_api

        state, config, info, names = from_tf_od_api(src if src.is_dir() else src.parent, anchor_order)
        names = classes or names
    else:
        raise MobileNetsError(f"{src} is neither a TF.js weights manifest (or a folder with one) nor a TF OD API "
                              "export folder (pipeline.config with frozen_inference_graph.pb or model.ckpt)")
    if len(names) != config.num_classes:
        raise MobileNetsError(f"--classes names {len(names)} classes; the detector has {config.num_classes}")
    model = build_detector(config).eval()
    ours = model.state_dict()
    missing = sorted(k for k in ours if k not in state and not k.endswith("num_batches_tracked"))
    if missing:
        raise MobileNetsError(f"the converted weights miss {len(missing)} of the detector's tensors ({missing[0]}, ...)")
    for key, value in state.items():
        if tuple(ours[key].shape) != tuple(value.shape):
            raise MobileNetsError(f"{key}: the source gives shape {tuple(value.shape)}, the detector needs "
                                  f"{tuple(ours[key].shape)}")
    with torch.no_grad():
        model.load_state_dict({**ours, **state})
    out = Path(output)
    check_writable(out.parent if not out.exists() else out)
    meta = {"task": "detection", "model": config.to_dict(), "classes": list(names),
            "category_ids": list(range(1, len(names) + 1)), "source": {**info, "path": str(src)}}
    with Staging(out) as staging:
        save_weights(model, staging.path("model.safetensors"), config=None, extra={"run": json.dumps(meta)})
        staging.path("detector.json").write_text(json.dumps(meta, indent=2) + "\n")
        staging.commit()
    return out


__all__ = ["FACE_API_NAMES", "check_anchors", "convert_detector", "face_api_config"]
