"""TF-slim ``mobilenet_v1`` checkpoints (the original Google release) in.

TF-slim pads like TF "SAME", uses ReLU6 and BN epsilon 1e-3, and sizes channels as
``max(int(c·α), 8)``. A checkpoint does not record the resolution (it comes from the file name
or the caller), and its 1001-way classifier has a "background" class at index 0. TensorFlow is
imported (via :func:`mobilenets.utils.tf.import_tf`) only when a checkpoint is read.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from mobilenets.errors import DataNotFoundError, MobileNetsError
from mobilenets.models.config import MobileNetConfig
from mobilenets.models.mobilenet import MobileNet
from mobilenets.utils.tf import import_tf
from mobilenets.weights.convert.common import alpha_from_last, assemble, set_info, tf_preprocessing, units


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
    stems = [n for n in shapes if n.endswith("MobilenetV1/Conv2d_0/weights")]
    if not stems:
        raise MobileNetsError(f"{path} is not a TF-slim mobilenet_v1 checkpoint (no MobilenetV1/Conv2d_0/weights)")
    scope = stems[0][: -len("Conv2d_0/weights")]  # "MobilenetV1/", possibly under an outer scope

    def get(name: str) -> np.ndarray:
        if scope + name not in shapes:
            raise MobileNetsError(f"{path}: variable {scope + name} is missing: not a complete mobilenet_v1 "
                                  f"checkpoint")
        return np.asarray(reader.get_tensor(scope + name), dtype=np.float64)

    layers = {}
    for unit, block, kind in units():
        name = _slim_name(block, kind)
        if kind == "dw":
            kernel = get(f"{name}/depthwise_weights").transpose(2, 3, 0, 1)
        else:
            kernel = get(f"{name}/weights").transpose(3, 2, 0, 1)
        mean = get(f"{name}/BatchNorm/moving_mean")
        has_gamma = scope + f"{name}/BatchNorm/gamma" in shapes  # slim's BN may be scale=False
        layers[unit] = {"conv": kernel, "weight": get(f"{name}/BatchNorm/gamma") if has_gamma else np.ones_like(mean),
                        "bias": get(f"{name}/BatchNorm/beta"), "running_mean": mean,
                        "running_var": get(f"{name}/BatchNorm/moving_variance")}
    head = None
    background = False
    if scope + "Logits/Conv2d_1c_1x1/weights" in shapes:
        weight = get("Logits/Conv2d_1c_1x1/weights")[0, 0].T
        bias = get("Logits/Conv2d_1c_1x1/biases")
        if weight.shape[0] == 1001 and not keep_background:
            weight, bias = weight[1:], bias[1:]
        background = weight.shape[0] == 1001
        head = (weight, bias)
    elif keep_background:
        raise MobileNetsError(f"{path} has no Logits layer: there is no background class to keep")
    if resolution is None:
        match = re.search(r"_(\d{2,4})(?:\.ckpt)?(?:-\d+)?$", Path(path).name)
        resolution = int(match.group(1)) if match and int(match.group(1)) >= 32 else 224
    alpha = alpha_from_last(layers["blocks.13.pw"]["conv"].shape[0])
    cfg = MobileNetConfig(alpha=alpha, resolution=resolution, num_classes=0 if head is None else head[0].shape[0],
                          dropout=0.001, activation="relu6", padding="tf_same", bn_eps=1e-3, bn_momentum=0.0003,
                          min_channels=8, channel_divisor=1)
    net = assemble(cfg, layers, head, "TF-slim")
    source = {"framework": "tf-slim", "path": str(path), "scope": scope.rstrip("/"),
              "background_class": "index 0" if background else ("dropped" if head is not None else None)}
    return set_info(net, source, tf_preprocessing(resolution))
