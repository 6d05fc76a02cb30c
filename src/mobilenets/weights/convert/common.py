"""What every converter shares: our conv+BN units in order, filling a MobileNet from per-unit
arrays (with a clear error when a shape does not fit), α from the weights, and the
``pretrained_cfg`` a converted model carries (with ImageNet's class names where the source is an
ImageNet classifier: :func:`set_imagenet_info`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from mobilenets.data.preprocess import Preprocessing
from mobilenets.errors import MobileNetsError
from mobilenets.models.config import MobileNetConfig
from mobilenets.models.mobilenet import BLOCKS, MobileNet
from mobilenets.weights.checkpoint import attach_pretrained_cfg
from mobilenets.weights.imagenet import imagenet_classes_for

BN_FIELDS = ("weight", "bias", "running_mean", "running_var")


def units() -> Iterator[tuple[str, int, str]]:
    """(our module path, paper block number, kind) for every conv+BN, in order; kind is "conv"
    for the stem, "dw" / "pw" for a block's depthwise / pointwise conv."""
    yield "stem", 0, "conv"
    for block in BLOCKS:
        yield f"blocks.{block}.dw", block, "dw"
        yield f"blocks.{block}.pw", block, "pw"


def to_numpy(x: Any) -> np.ndarray:
    """A tensor or array as float64 numpy (conversions are done in float64, stored in float32)."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def assemble(cfg: MobileNetConfig, layers: dict[str, dict[str, np.ndarray]], head: tuple | None,
             source: str) -> MobileNet:
    """Build ``MobileNet(cfg)`` and fill it from ``layers`` (our unit path -> {"conv": OIHW weight,
    "weight", "bias", "running_mean", "running_var"}) and ``head`` ((K, C) weight, (K,) bias) or
    None. Any shape that does not fit gives a MobileNetsError naming the layer."""
    model = MobileNet(cfg)
    state = model.state_dict()
    new: dict[str, torch.Tensor] = {}

    def put(key: str, value: np.ndarray) -> None:
        want = tuple(state[key].shape)
        if tuple(value.shape) != want:
            raise MobileNetsError(f"{source}: layer {key} has shape {tuple(value.shape)}, but alpha {cfg.alpha:g} "
                                  f"gives {want}: the channel widths do not follow the rule expected for {source}")
        new[key] = torch.as_tensor(np.ascontiguousarray(value), dtype=state[key].dtype)

    for path, _, _ in units():
        unit = layers[path]
        put(f"{path}.conv.weight", unit["conv"])
        for name in BN_FIELDS:
            put(f"{path}.bn.{name}", unit[name])
        new[f"{path}.bn.num_batches_tracked"] = torch.zeros((), dtype=torch.long)
    if head is not None:
        put("classifier.weight", head[0])
        put("classifier.bias", head[1])
    model.load_state_dict(new)
    return model.eval()


def alpha_from_last(channels: int) -> float:
    """α from the last pointwise conv's width: 1024·α channels under every rule (no minimum
    channel count bites there)."""
    return channels / 1024


def tf_preprocessing(resolution: int) -> Preprocessing:
    """TF-slim's and Keras's input preprocessing (Inception style: [0, 1] pixels to [-1, 1],
    bilinear resize, centre crop 0.875), which is also the library's default."""
    return Preprocessing(interpolation="bilinear").at(resolution)


def set_info(model: MobileNet, source: dict[str, Any], preprocessing: Preprocessing,
             classes: list[str] | None = None) -> MobileNet:
    """Attach the timm-style ``pretrained_cfg`` (source, preprocessing, class names); returns the model."""
    return attach_pretrained_cfg(model, preprocessing, classes, source)


def set_imagenet_info(model: MobileNet, source: dict[str, Any], preprocessing: Preprocessing) -> MobileNet:
    """:func:`set_info` for weights trained on ImageNet-1k: a 1000-way classifier carries the 1000
    class names, a 1001-way one (TF-slim's, background kept) "background" and the 1000; any other
    head (or none) carries no names. Returns the model."""
    return set_info(model, source, preprocessing, imagenet_classes_for(model.config.num_classes))
