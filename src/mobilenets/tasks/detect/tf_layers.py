"""TF SSD-MobileNetV1 weights (by their TF names) as our SSD's state dict: the layer assembly the
TF.js and the TF OD API readers share (:mod:`.convert`, :mod:`.tf_od_api`).

BatchNorm is folded into a conv's bias on some layers (``convolution_bn_offset`` / ``biases``: our
BatchNorm becomes the identity plus that bias) and kept on others (``BatchNorm/gamma``, ``beta``,
``moving_mean``, ``moving_variance``: copied). TF's box codes per anchor are (ty, tx, th, tw) and
torchvision's (tx, ty, tw, th): the box predictor's output channels are permuted per anchor.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mobilenets.errors import MobileNetsError

TF_BN_EPS = 0.001  # TF-slim's batch_norm epsilon, in every TF OD API MobileNet


class Layers:
    """A source's weights by TF name, read as our layers (kernel in PyTorch layout, BatchNorm)."""

    def __init__(self, weights: dict[str, np.ndarray], source: str) -> None:
        self.weights, self.source, self.used = weights, source, set()

    def get(self, name: str) -> np.ndarray:
        if name not in self.weights:
            raise MobileNetsError(f"{self.source} has no weight {name}: not a TF OD API SSD-MobileNetV1 in the "
                                  "layout the converter reads")
        self.used.add(name)
        return np.asarray(self.weights[name], dtype=np.float32)

    def conv_bn(self, prefix: str, kernel_name: str = "weights") -> dict[str, np.ndarray]:
        """Conv (+ BatchNorm kept, or folded into a bias) under ``prefix``, as our ConvBNAct's state."""
        k = self.get(f"{prefix}/{kernel_name}")  # TF: [kh, kw, in, out] or depthwise [kh, kw, in, 1]
        kernel = k.transpose(2, 3, 0, 1) if kernel_name == "depthwise_weights" else k.transpose(3, 2, 0, 1)
        if f"{prefix}/BatchNorm/moving_mean" in self.weights:  # BatchNorm kept
            bn = {s: self.get(f"{prefix}/BatchNorm/{t}") for s, t in
                  (("bias", "beta"), ("running_mean", "moving_mean"), ("running_var", "moving_variance"))}
            # TF-slim's batch_norm(scale=False) has no gamma: 1
            gamma = f"{prefix}/BatchNorm/gamma"
            bn["weight"] = self.get(gamma) if gamma in self.weights else np.ones_like(bn["bias"])
        else:  # folded: the conv's bias alone; our BatchNorm is made the identity
            bias = next((n for n in (f"{prefix}/convolution_bn_offset", f"{prefix}/biases") if n in self.weights), None)
            if bias is None:
                raise MobileNetsError(f"{self.source}: layer {prefix} has neither BatchNorm nor a folded bias")
            b = self.get(bias)
            bn = {"weight": np.ones_like(b), "bias": b, "running_mean": np.zeros_like(b),
                  "running_var": np.full_like(b, 1 - TF_BN_EPS)}
        return {"conv.weight": kernel, **{f"bn.{s}": v for s, v in bn.items()}}

    def predictor(self, prefix: str) -> tuple[np.ndarray, np.ndarray]:
        return self.get(f"{prefix}/weights").transpose(3, 2, 0, 1), self.get(f"{prefix}/biases")


def assemble(layers: Layers, names: dict[str, str], total_columns: int, keep_columns: list[int]) -> dict[str, Any]:
    """Our SSD's state dict from a TF SSD-MobileNetV1's layers (``names``: where each part is;
    ``total_columns``: class columns per anchor in the source, background included; ``keep_columns``:
    those the detector keeps, background first)."""
    import torch

    state: dict[str, np.ndarray] = {}

    def put(prefix: str, parts: dict[str, np.ndarray]) -> None:
        for key, value in parts.items():
            state[f"{prefix}.{key}"] = value

    put("backbone.features.stem", layers.conv_bn(names["stem"]))
    for i in range(1, 14):
        put(f"backbone.features.blocks.block{i}.dw", layers.conv_bn(names["dw"].format(i=i), "depthwise_weights"))
        put(f"backbone.features.blocks.block{i}.pw", layers.conv_bn(names["pw"].format(i=i)))
    extras = names["extra"] if isinstance(names["extra"], list) else [names["extra"].format(i=i) for i in range(8)]
    for k in range(4):
        for j in range(2):
            put(f"backbone.extras.{k}.{j}", layers.conv_bn(extras[2 * k + j]))
    for i in range(6):
        w, b = layers.predictor(names["box"].format(i=i))
        # TF's codes per anchor are (ty, tx, th, tw); torchvision's BoxCoder reads (tx, ty, tw, th)
        perm = np.arange(w.shape[0]).reshape(-1, 4)[:, [1, 0, 3, 2]].reshape(-1)
        state[f"head.regression_head.module_list.{i}.weight"], state[f"head.regression_head.module_list.{i}.bias"] = \
            w[perm], b[perm]
        w, b = layers.predictor(names["cls"].format(i=i))
        state[f"head.classification_head.module_list.{i}.weight"], \
            state[f"head.classification_head.module_list.{i}.bias"] = _columns(w, b, total_columns, keep_columns, i,
                                                                              layers.source)
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}


def _columns(w: np.ndarray, b: np.ndarray, total: int, keep: list[int], index: int, source: str):
    """The class predictor's output channels for the kept class columns (per anchor)."""
    if w.shape[0] % total:
        raise MobileNetsError(f"{source}: class predictor {index} has {w.shape[0]} outputs, not a multiple of "
                              f"{total} class columns")
    anchors = w.shape[0] // total
    idx = (np.arange(anchors)[:, None] * total + np.asarray(keep)[None, :]).reshape(-1)
    return w[idx], b[idx]


__all__ = ["TF_BN_EPS", "Layers", "assemble"]
