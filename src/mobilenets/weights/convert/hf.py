"""Hugging Face transformers ``MobileNetV1`` weights in (a live model, or a saved model folder).

HF's config says how the network was built: ``tf_padding`` (False means symmetric padding),
``hidden_act``, ``layer_norm_eps`` (the BN epsilon), ``depth_multiplier`` (α), ``min_depth``
(channels are ``max(int(c·α), min_depth)``), ``image_size``; class names come from ``id2label``
and the preprocessing from ``preprocessor_config.json``. transformers is not needed to read a
folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from mobilenets.data.preprocess import INTERPOLATIONS, Preprocessing
from mobilenets.errors import DataNotFoundError, MobileNetsError
from mobilenets.models.config import MobileNetConfig
from mobilenets.models.mobilenet import MobileNet
from mobilenets.weights.checkpoint import read_json_object, read_weights_file
from mobilenets.weights.convert.common import (
    BN_FIELDS,
    assemble,
    set_info,
    tf_preprocessing,
    to_numpy,
    units,
)
from mobilenets.weights.imagenet import imagenet_classes_for

HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# PIL's resampling codes, as HF's image processors record them
_PIL_RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}


def _read_hf_folder(folder: Path, info: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(HF config, state dict, preprocessing overrides) of a saved model folder."""
    if not folder.is_dir():
        raise DataNotFoundError(f"Hugging Face model folder not found: {folder}")
    if not (folder / "config.json").is_file():
        raise DataNotFoundError(f"{folder} has no config.json: not a Hugging Face model folder")
    hf_cfg = read_json_object(folder / "config.json")
    for name in HF_WEIGHT_FILES:
        if (folder / name).is_file():
            state = read_weights_file(folder / name)
            break
    else:
        raise DataNotFoundError(f"{folder} has neither model.safetensors nor pytorch_model.bin")
    info["path"] = str(folder)
    pre: dict[str, Any] = {}
    if (folder / "preprocessor_config.json").is_file():
        pre = _hf_preprocessing(read_json_object(folder / "preprocessor_config.json"))
    return hf_cfg, state, pre


def from_hf(source: Any) -> MobileNet:
    """A MobileNet with the weights of a Hugging Face ``MobileNetV1ForImageClassification`` (or
    ``MobileNetV1Model``): the model object, or a folder with its ``config.json`` and
    ``model.safetensors`` (or ``pytorch_model.bin``, read with weights_only). transformers is not
    needed to read a folder. The class names are the config's ``id2label``; a 1000- or 1001-class
    model without real names there carries ImageNet's."""
    info: dict[str, Any] = {"framework": "hf"}
    pre: dict[str, Any] = {}
    if isinstance(source, nn.Module):
        hf_cfg = source.config.to_dict()
        state = dict(source.state_dict())
    elif isinstance(source, (str, os.PathLike)):
        hf_cfg, state, pre = _read_hf_folder(Path(source), info)
    else:
        raise MobileNetsError(f"from_hf expects a transformers model or a model folder, got {type(source).__name__}")
    if hf_cfg.get("model_type") != "mobilenet_v1":
        raise MobileNetsError(f"Hugging Face model_type {hf_cfg.get('model_type')!r} is not 'mobilenet_v1'")
    if hf_cfg.get("num_channels", 3) != 3:
        raise MobileNetsError(f"num_channels {hf_cfg['num_channels']} does not map: MobileNet takes 3-channel images")
    act = hf_cfg.get("hidden_act", "relu6")
    if act not in ("relu", "relu6"):
        raise MobileNetsError(f"hidden_act {act!r} does not map (MobileNet has relu or relu6)")
    state = {k.removeprefix("mobilenet_v1."): v for k, v in state.items()}
    used: set[str] = set()

    def take(key: str) -> np.ndarray:
        if key not in state:
            raise MobileNetsError(f"not Hugging Face MobileNetV1 weights: key {key!r} is missing")
        used.add(key)
        return to_numpy(state[key])

    layers = {}
    for i, (unit, _, _) in enumerate(units()):
        prefix = "conv_stem." if i == 0 else f"layer.{i - 1}."
        layers[unit] = {"conv": take(prefix + "convolution.weight")}
        for ours in BN_FIELDS:
            layers[unit][ours] = take(prefix + "normalization." + ours)
        used.add(prefix + "normalization.num_batches_tracked")
    head = (take("classifier.weight"), take("classifier.bias")) if "classifier.weight" in state else None
    extra = sorted(set(state) - used)
    if extra:
        raise MobileNetsError(f"not plain Hugging Face MobileNetV1 weights: unexpected key {extra[0]!r}")
    classes = None
    id2label = hf_cfg.get("id2label") or {}
    if head is not None and len(id2label) == head[0].shape[0]:
        classes = [str(id2label.get(str(i), id2label.get(i, i))) for i in range(head[0].shape[0])]
    if head is not None and (classes is None or classes == [f"LABEL_{i}" for i in range(len(classes))]):
        # no names, or transformers' placeholders: HF's MobileNetV1 checkpoints are ImageNet's (1001 with background)
        classes = imagenet_classes_for(head[0].shape[0])
    cfg = MobileNetConfig(alpha=float(hf_cfg.get("depth_multiplier", 1.0)), resolution=int(hf_cfg.get("image_size", 224)),
                          num_classes=0 if head is None else head[0].shape[0], dropout=0.001, activation=act,
                          padding="tf_same" if hf_cfg.get("tf_padding", True) else "symmetric",
                          bn_eps=float(hf_cfg.get("layer_norm_eps", 1e-3)), bn_momentum=0.0003,
                          min_channels=int(hf_cfg.get("min_depth", 8)), channel_divisor=1)
    net = assemble(cfg, layers, head, "Hugging Face")
    preprocessing = Preprocessing.from_dict({**tf_preprocessing(cfg.resolution).to_dict(), **pre})
    return set_info(net, info, preprocessing, classes)


def _hf_preprocessing(doc: dict[str, Any]) -> dict[str, Any]:
    """Our preprocessing keys from an HF ``preprocessor_config.json`` (what it records; an
    interpolation we cannot name, or a crop larger than the resize, is left at the default)."""
    out: dict[str, Any] = {}
    if doc.get("image_mean") is not None:
        out["mean"] = [float(x) for x in doc["image_mean"]]
    if doc.get("image_std") is not None:
        out["std"] = [float(x) for x in doc["image_std"]]
    size, crop = doc.get("size") or {}, doc.get("crop_size") or {}
    short = size.get("shortest_edge") if isinstance(size, dict) else None
    crop_h = crop.get("height") if isinstance(crop, dict) else None
    if short and crop_h and doc.get("do_center_crop", True) and 0 < crop_h <= short:
        out["crop_pct"] = crop_h / short
    resample = _PIL_RESAMPLE.get(doc.get("resample"))
    if resample in INTERPOLATIONS:
        out["interpolation"] = resample
    return out
