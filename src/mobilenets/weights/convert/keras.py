"""Keras ``keras.applications.MobileNet`` weights in and out (live models, ``.keras`` and ``.h5``).

Keras pads (0, 1) before each stride-2 depthwise conv, which is TF "SAME" only while that conv's
input is even: true at every resolution divisible by 32, so a fixed Keras input shape must be.
Keras's channel rule is ``int(c·α)`` (no minimum), its BN epsilon 1e-3. Keras is imported (via
:func:`mobilenets.utils.tf.import_tf`) only inside the functions that need it.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from mobilenets.errors import DataNotFoundError, MobileNetsError
from mobilenets.models.config import MobileNetConfig
from mobilenets.models.mobilenet import BLOCKS, MobileNet, layer_plan
from mobilenets.utils.tf import import_tf
from mobilenets.weights.convert.common import (
    alpha_from_last,
    assemble,
    set_imagenet_info,
    tf_preprocessing,
    to_numpy,
    units,
)

KERAS_SUFFIXES = (".keras", ".h5")


def _keras_names(block: int, kind: str) -> tuple[str, str]:
    """Keras's (conv, BN) layer names for one of our units."""
    if kind == "conv":
        return "conv1", "conv1_bn"
    return f"conv_{kind}_{block}", f"conv_{kind}_{block}_bn"


def _keras_even_ok(resolution: int) -> bool:
    """Whether Keras's (0, 1) zero-padding before each stride-2 depthwise conv equals TF SAME at
    this input size: the input of each of those convs must be even."""
    size = -(-resolution // 2)  # the stem is a real "same" conv
    for stride, _ in BLOCKS.values():
        if stride == 2:
            if size % 2:
                return False
            size //= 2
    return True


def _keras_weights(layer: Any) -> dict[str, np.ndarray]:
    keras = import_tf("keras")
    return {_keras_weight_name(w): np.asarray(keras.ops.convert_to_numpy(w), dtype=np.float64) for w in layer.weights}


def _keras_weight_name(w: Any) -> str:
    # Keras 3 calls a depthwise conv's weight "kernel"; tf.keras 2 called it "depthwise_kernel"
    name = w.name.split("/")[-1].split(":")[0]
    return "kernel" if name == "depthwise_kernel" else name


def _load_keras_model(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"Keras model not found: {path}")
    if path.suffix not in (".keras", ".h5", ".hdf5"):
        raise MobileNetsError(f"unknown Keras model format {path.suffix!r} for {path}; expected .keras or .h5")
    if path.suffix == ".keras" and not zipfile.is_zipfile(path):
        raise MobileNetsError(f"cannot read Keras model {path}: not a .keras (zip) file")
    keras = import_tf("keras")  # after the checks: a bad path is one line, without TF's start-up log
    try:
        # safe_mode (the default for .keras) refuses to deserialize lambdas: no code from the file runs.
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises many types for a bad file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MobileNetsError(f"cannot read Keras model {path}: {first}") from None


def _check_keras_model(model: Any, names: set[str]) -> int:
    """Refuse what does not map to MobileNet; the resolution the model is for."""
    if "conv1" not in names or "conv_pw_13" not in names:
        raise MobileNetsError("not a keras.applications.MobileNet model (no conv1 / conv_pw_13 layers)")
    if "conv_dw_1" in names and _keras_weights(model.get_layer("conv_dw_1"))["kernel"].shape[-1] != 1:
        raise MobileNetsError("Keras depth_multiplier != 1 (depthwise convs with several outputs per channel) "
                              "does not map to MobileNet")
    relu = model.get_layer("conv1_relu") if "conv1_relu" in names else None
    if relu is None or getattr(relu, "max_value", None) is None or float(relu.max_value) != 6.0:
        raise MobileNetsError("this Keras MobileNet does not use ReLU6 after conv1: not a keras.applications.MobileNet")
    if any(type(layer).__name__ == "GlobalMaxPooling2D" for layer in model.layers):
        raise MobileNetsError("Keras pooling='max' does not map: MobileNet pools by average")
    shape = tuple(model.input_shape)
    h, w = shape[1], shape[2]
    if h != w:
        raise MobileNetsError(f"Keras input shape {h}x{w} is not square; MobileNet's config has one resolution")
    if h is None:
        return 224
    if not _keras_even_ok(int(h)):
        raise MobileNetsError(f"Keras pads (0, 1) before stride-2 convs, equal to TF SAME padding only when each "
                              f"stride-2 input is even; at {int(h)} px it is not (use a multiple of 32)")
    return int(h)


def from_keras(source: Any) -> MobileNet:
    """A MobileNet with the weights of a ``keras.applications.MobileNet`` model (or a ``.keras`` /
    ``.h5`` file holding one). Refuses a depthwise multiplier other than 1, a non-square input, a
    fixed input size where Keras's padding is not TF SAME, and max pooling. A 1000-class model
    carries ImageNet's class names (``keras.applications`` trains on ImageNet)."""
    model = source if not isinstance(source, (str, os.PathLike)) else _load_keras_model(source)
    names = {layer.name for layer in model.layers}
    resolution = _check_keras_model(model, names)
    layers: dict[str, dict[str, np.ndarray]] = {}
    for path, block, kind in units():
        conv_name, bn_name = _keras_names(block, kind)
        conv = _keras_weights(model.get_layer(conv_name))
        # depthwise (H, W, C, 1) -> (C, 1, H, W); full conv HWIO -> OIHW
        kernel = conv["kernel"].transpose(2, 3, 0, 1) if kind == "dw" else conv["kernel"].transpose(3, 2, 0, 1)
        bn_layer = model.get_layer(bn_name)
        bn = _keras_weights(bn_layer)
        ones = np.ones_like(bn["moving_mean"])
        layers[path] = {"conv": kernel, "weight": bn.get("gamma", ones), "bias": bn.get("beta", 0 * ones),
                        "running_mean": bn["moving_mean"], "running_var": bn["moving_variance"]}
        eps = float(bn_layer.epsilon)
    head = None
    if "conv_preds" in names:
        preds = _keras_weights(model.get_layer("conv_preds"))
        head = (preds["kernel"][0, 0].T, preds["bias"])
    alpha = alpha_from_last(layers["blocks.13.pw"]["conv"].shape[0])
    dropout = next((float(layer.rate) for layer in model.layers if type(layer).__name__ == "Dropout"), 0.001)
    cfg = MobileNetConfig(alpha=alpha, resolution=resolution, num_classes=0 if head is None else head[0].shape[0],
                          dropout=dropout, activation="relu6", padding="tf_same", bn_eps=eps, bn_momentum=0.01,
                          min_channels=1, channel_divisor=1)
    net = assemble(cfg, layers, head, "Keras")
    act = "predictions" in names and getattr(model.get_layer("predictions"), "activation", None)
    info = {"framework": "keras", "model": model.name,
            "classifier_activation": getattr(act, "__name__", None) if act else None,
            "note": "outputs are the logits before Keras's classifier activation"}
    if isinstance(source, (str, os.PathLike)):
        info["path"] = str(source)
    return set_imagenet_info(net, info, tf_preprocessing(resolution))


def keras_refusal(model: MobileNet) -> str | None:
    """Why ``model`` does not map to ``keras.applications.MobileNet``, or None if it does."""
    cfg = model.config
    if cfg.variant != "separable":
        return f"variant {cfg.variant!r} does not map to Keras MobileNet (separable only)"
    if cfg.activation != "relu6":
        return f"activation {cfg.activation!r} does not map: Keras MobileNet always uses ReLU6"
    if cfg.padding != "tf_same":
        return "padding 'symmetric' does not map: Keras MobileNet pads like TF SAME (padding='tf_same')"
    if not _keras_even_ok(cfg.resolution):
        return (f"resolution {cfg.resolution} does not map: Keras pads (0, 1) before stride-2 convs, equal "
                f"to TF SAME only when each stride-2 input is even (use a multiple of 32)")
    keras_rule = [int(32 * cfg.alpha)] + [int(c * cfg.alpha) for _, c in BLOCKS.values()]
    ours = [spec.out_channels for spec in layer_plan(cfg) if spec.name == "stem" or spec.name.endswith(".pw")]
    if ours != keras_rule:
        return (f"channel widths {ours} (min channels {cfg.min_channels}, channel divisor "
                f"{cfg.channel_divisor}) differ from Keras's int(c*alpha) rule {keras_rule}")
    return None


def to_keras(model: MobileNet, path: str | os.PathLike | None = None, classifier_activation: str | None = None) -> Any:
    """A ``keras.applications.MobileNet`` carrying ``model``'s weights (outputs are our logits unless
    ``classifier_activation`` is given), saved to ``path`` (.keras or .h5) if given. BN epsilon
    differences are folded into the running variance: ``var' + eps_keras == var + eps_ours``."""
    refusal = keras_refusal(model)
    if refusal:
        raise MobileNetsError(refusal)
    if path is not None and Path(path).suffix not in KERAS_SUFFIXES:
        raise MobileNetsError(f"path must end in .keras or .h5, got {path}")
    keras = import_tf("keras")
    cfg = model.config
    top = cfg.num_classes > 0
    kmodel = keras.applications.MobileNet(
        input_shape=(cfg.resolution, cfg.resolution, 3), alpha=cfg.alpha, depth_multiplier=1, dropout=cfg.dropout,
        include_top=top, weights=None, pooling=None if top else "avg", classes=max(cfg.num_classes, 1),
        classifier_activation=classifier_activation)
    state = {k: to_numpy(v) for k, v in model.state_dict().items()}
    for unit, block, kind in units():
        conv_name, bn_name = _keras_names(block, kind)
        w = state[f"{unit}.conv.weight"]
        # depthwise (C, 1, H, W) -> (H, W, C, 1); full conv OIHW -> HWIO
        kernel = w.transpose(2, 3, 0, 1) if kind == "dw" else w.transpose(2, 3, 1, 0)
        _set_keras(kmodel.get_layer(conv_name), {"kernel": kernel})
        bn_layer = kmodel.get_layer(bn_name)
        var = state[f"{unit}.bn.running_var"] + cfg.bn_eps - float(bn_layer.epsilon)
        _set_keras(bn_layer, {"gamma": state[f"{unit}.bn.weight"], "beta": state[f"{unit}.bn.bias"],
                              "moving_mean": state[f"{unit}.bn.running_mean"], "moving_variance": var})
    if top:
        _set_keras(kmodel.get_layer("conv_preds"), {"kernel": state["classifier.weight"].T[None, None],
                                                    "bias": state["classifier.bias"]})
    if path is not None:
        _save_keras(kmodel, Path(path))
    return kmodel


def _set_keras(layer: Any, values: dict[str, np.ndarray]) -> None:
    for w in layer.weights:
        name = _keras_weight_name(w)
        if tuple(w.shape) != values[name].shape:
            raise MobileNetsError(f"Keras layer {layer.name}/{name} has shape {tuple(w.shape)}, "
                                  f"ours {values[name].shape}")
        w.assign(values[name].astype(np.float32))


def _save_keras(kmodel: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.") as tmp:
        tmp_file = Path(tmp) / path.name  # Keras picks the format from the file name
        kmodel.save(tmp_file)
        os.replace(tmp_file, path)
