"""TF-slim ``mobilenet_v1`` checkpoints (the original Google release) in.

TF-slim pads like TF "SAME", uses ReLU6 and BN epsilon 1e-3, and sizes channels as
``max(int(c·α), 8)``. A checkpoint does not record the resolution (it comes from the file name
or the caller), and its 1001-way classifier has a "background" class at index 0. TensorFlow is
imported (via :func:`mobilenets.utils.tf.import_tf`) only when a checkpoint is read.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mobilenets.errors import DataNotFoundError, MobileNetsError
from mobilenets.models.config import MobileNetConfig
from mobilenets.models.mobilenet import MobileNet
from mobilenets.utils.tf import import_tf
from mobilenets.weights.convert.common import alpha_from_last, assemble, set_imagenet_info, tf_preprocessing, units


def _slim_name(block: int, kind: str) -> str:
    if kind == "conv":
        return "Conv2d_0"
    return f"Conv2d_{block}_{'depthwise' if kind == 'dw' else 'pointwise'}"


def _open_tf_checkpoint(checkpoint_path: str | os.PathLike) -> tuple[Any, str]:
    path = str(checkpoint_path)
    if Path(path).is_dir():
        tf = import_tf("tensorflow")
        found = tf.train.latest_checkpoint(path)
        if found is None:
            raise DataNotFoundError(f"no TensorFlow checkpoint in folder {path}")
        path = found
    elif path.endswith(".index") or re.search(r"\.data-\d+-of-\d+$", path):
        path = re.sub(r"(\.index|\.data-\d+-of-\d+)$", "", path)
    if not Path(path + ".index").is_file():
        raise DataNotFoundError(f"TensorFlow checkpoint not found: {path} (expected {path}.index)")
    tf = import_tf("tensorflow")
    try:
        return tf.train.load_checkpoint(path), path
    except (tf.errors.OpError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MobileNetsError(f"cannot read TensorFlow checkpoint {path}: {first}") from None


def slim_network(names: Any, get: Callable[[str], np.ndarray], path: str, keep_background: bool,
                 resolution: int | None, bn_eps: float = 1e-3, extra_source: dict[str, Any] | None = None) -> MobileNet:
    """A MobileNet from TF-slim ``mobilenet_v1`` variables, however they are stored: ``names`` is
    the collection of variable names, ``get(name)`` returns one as an array. Shared by checkpoints
    (:func:`from_tf_slim`) and frozen graphs (:func:`mobilenets.weights.convert.tf_frozen.from_tf_frozen`),
    whose constants keep the variables' names. ``resolution=None``: 224."""
    stems = [n for n in names if n.endswith("MobilenetV1/Conv2d_0/weights")]
    if not stems:
        raise MobileNetsError(f"{path} is not a TF-slim mobilenet_v1 checkpoint or graph (no MobilenetV1/Conv2d_0/weights)")
    scope = stems[0][: -len("Conv2d_0/weights")]  # "MobilenetV1/", possibly under an outer scope

    def var(name: str) -> np.ndarray:
        if scope + name not in names:
            raise MobileNetsError(f"{path}: variable {scope + name} is missing: not a complete mobilenet_v1 model")
        return np.asarray(get(scope + name), dtype=np.float64)

    layers = {}
    for unit, block, kind in units():
        name = _slim_name(block, kind)
        if kind == "dw":
            kernel = var(f"{name}/depthwise_weights").transpose(2, 3, 0, 1)
        else:
            kernel = var(f"{name}/weights").transpose(3, 2, 0, 1)
        mean = var(f"{name}/BatchNorm/moving_mean")
        has_gamma = scope + f"{name}/BatchNorm/gamma" in names  # slim's BN may be scale=False
        layers[unit] = {"conv": kernel, "weight": var(f"{name}/BatchNorm/gamma") if has_gamma else np.ones_like(mean),
                        "bias": var(f"{name}/BatchNorm/beta"), "running_mean": mean,
                        "running_var": var(f"{name}/BatchNorm/moving_variance")}
    head = None
    background = False
    if scope + "Logits/Conv2d_1c_1x1/weights" in names:
        weight = var("Logits/Conv2d_1c_1x1/weights")[0, 0].T
        bias = var("Logits/Conv2d_1c_1x1/biases")
        if weight.shape[0] == 1001 and not keep_background:
            weight, bias = weight[1:], bias[1:]
        background = weight.shape[0] == 1001
        head = (weight, bias)
    elif keep_background:
        raise MobileNetsError(f"{path} has no Logits layer: there is no background class to keep")
    alpha = alpha_from_last(layers["blocks.13.pw"]["conv"].shape[0])
    res = 224 if resolution is None else resolution
    cfg = MobileNetConfig(alpha=alpha, resolution=res, num_classes=0 if head is None else head[0].shape[0],
                          dropout=0.001, activation="relu6", padding="tf_same", bn_eps=bn_eps, bn_momentum=0.0003,
                          min_channels=8, channel_divisor=1)
    net = assemble(cfg, layers, head, "TF-slim")
    source = {"framework": "tf-slim", "path": str(path), "scope": scope.rstrip("/"),
              "background_class": "index 0" if background else ("dropped" if head is not None else None),
              **(extra_source or {})}
    return set_imagenet_info(net, source, tf_preprocessing(res))  # ImageNet's names (background first if kept)


def from_tf_slim(checkpoint_path: str | os.PathLike, keep_background: bool = False,
                 resolution: int | None = None) -> MobileNet:
    """A MobileNet with the weights of a TF-slim ``mobilenet_v1`` checkpoint (variables
    ``MobilenetV1/Conv2d_0/weights``, ``.../Conv2d_<i>_depthwise/depthwise_weights``,
    ``.../Conv2d_<i>_pointwise/weights``, each with ``BatchNorm/{gamma,beta,moving_mean,moving_variance}``,
    and ``MobilenetV1/Logits/Conv2d_1c_1x1/{weights,biases}``).

    TF-slim's ImageNet classifier has 1001 outputs, index 0 being "background": it is dropped
    (1000 classes, ImageNet's order) unless ``keep_background``. The resolution is not stored in
    a checkpoint: ``resolution``, else the ``_<size>`` in the file name (``mobilenet_v1_1.0_224.ckpt``),
    else 224."""
    reader, path = _open_tf_checkpoint(checkpoint_path)
    shapes = reader.get_variable_to_shape_map()
    if resolution is None:
        match = re.search(r"_(\d{2,4})(?:\.ckpt)?(?:-\d+)?$", Path(path).name)
        resolution = int(match.group(1)) if match and int(match.group(1)) >= 32 else 224
    return slim_network(shapes, reader.get_tensor, path, keep_background, resolution)
