"""Pretrained MobileNet weights from TensorFlow-slim, Keras, timm and Hugging Face, and back.

Each ``from_*`` function reads the source's weights (never executing code from a file), infers the
width multiplier α, the resolution and the class count where the source records them, and returns
a :class:`~mobilenets.models.mobilenet.MobileNet` in eval mode whose config reproduces the source's outputs:

=========== ========== ========== ======== ==========================================
source      padding    activation BN eps   channel rule
=========== ========== ========== ======== ==========================================
TF-slim     tf_same    relu6      1e-3     max(int(c·α), 8)
Keras       tf_same*   relu6      1e-3     int(c·α)
timm        symmetric  relu6      1e-5     round to a multiple of 8
HF          tf_same**  from cfg   from cfg max(int(c·α), min_depth)
=========== ========== ========== ======== ==========================================

\\* Keras pads (0, 1) before each stride-2 depthwise conv, which is TF "SAME" only while that
conv's input is even: true at every resolution divisible by 32, so a fixed Keras input shape must
be. \\** HF: ``tf_padding=False`` means symmetric padding.

The converted model carries ``pretrained_cfg`` (the source, its input preprocessing and class
names), which :func:`mobilenets.save_model` writes into the folder's ``config.json``.

``to_timm`` and ``to_keras`` go back where the architecture maps, and refuse (naming the option)
where it does not. A different BatchNorm epsilon is folded exactly into the running variance:
``var' = var + eps_ours - eps_theirs`` keeps ``var' + eps_theirs == var + eps_ours``.

TensorFlow, Keras and timm are imported inside the functions that need them.
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mobilenets.models.config import MobileNetConfig
from mobilenets.models.mobilenet import BLOCKS, MobileNet, layer_plan
from mobilenets.utils.tf import import_tf
from mobilenets.weights.checkpoint import (
    _read_safetensors,
    atomic_write,
    load_model,
    load_state,
    read_json_object,
    save_model,
)

__all__ = ["convert", "from_hf", "from_keras", "from_tf_slim", "from_timm", "timm_model_name", "to_keras",
           "to_timm"]

FORMATS = ("keras", "tf-slim", "timm", "hf", "mobilenets")
TARGETS = ("mobilenets", "timm", "keras")

# Input preprocessing of each source. mean/std apply to pixels scaled to [0, 1].
_TF_PRE = {"pixel_range": [0.0, 1.0], "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "input_range": [-1.0, 1.0],
           "crop_fraction": 0.875, "interpolation": "bilinear"}
_TIMM_NAMES = {1.0: "mobilenetv1_100", 1.25: "mobilenetv1_125"}
_TIMM_STAGES = (1, 2, 2, 6, 2)  # timm groups the 13 blocks into stages of these sizes


def _units() -> Iterator[tuple[str, int, str]]:
    """(our module path, paper block number, kind) for every conv+BN, in order."""
    yield "stem", 0, "conv"
    for block in BLOCKS:
        yield f"blocks.{block}.dw", block, "dw"
        yield f"blocks.{block}.pw", block, "pw"


def _timm_prefixes(block: int, kind: str) -> tuple[str, str]:
    """timm's key prefixes (conv, BN) for one of our units: the stem, or a block's dw / pw."""
    if kind == "conv":
        return "conv_stem.", "bn1."
    tb = _timm_block(block)
    return (f"{tb}.conv_dw.", f"{tb}.bn1.") if kind == "dw" else (f"{tb}.conv_pw.", f"{tb}.bn2.")


def _timm_block(block: int) -> str:
    stage, start = 0, 1
    while block >= start + _TIMM_STAGES[stage]:
        start += _TIMM_STAGES[stage]
        stage += 1
    return f"blocks.{stage}.{block - start}"


def _np(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def _bn_from_torch(state: dict[str, Any], prefix: str) -> dict[str, np.ndarray]:
    return {"weight": _np(state[prefix + "weight"]), "bias": _np(state[prefix + "bias"]),
            "running_mean": _np(state[prefix + "running_mean"]), "running_var": _np(state[prefix + "running_var"])}


def _assemble(cfg: MobileNetConfig, layers: dict[str, dict[str, np.ndarray]], head: tuple | None,
              source: str) -> MobileNet:
    """Build ``MobileNet(cfg)`` and fill it from ``layers`` (our unit path -> {"conv": OIHW weight,
    "weight", "bias", "running_mean", "running_var"}) and ``head`` ((K, C) weight, (K,) bias) or
    None. Any shape that does not fit gives a ValueError naming the layer."""
    model = MobileNet(cfg)
    state = model.state_dict()
    new: dict[str, torch.Tensor] = {}

    def put(key: str, value: np.ndarray) -> None:
        want = tuple(state[key].shape)
        if tuple(value.shape) != want:
            raise ValueError(f"{source}: layer {key} has shape {tuple(value.shape)}, but alpha {cfg.alpha:g} "
                             f"gives {want}: the channel widths do not follow the rule expected for {source}")
        new[key] = torch.as_tensor(np.ascontiguousarray(value), dtype=state[key].dtype)

    for path, _, _ in _units():
        unit = layers[path]
        put(f"{path}.conv.weight", unit["conv"])
        for name in ("weight", "bias", "running_mean", "running_var"):
            put(f"{path}.bn.{name}", unit[name])
        new[f"{path}.bn.num_batches_tracked"] = torch.zeros((), dtype=torch.long)
    if head is not None:
        put("classifier.weight", head[0])
        put("classifier.bias", head[1])
    model.load_state_dict(new)
    return model.eval()


def _alpha_from_last(channels: int) -> float:
    # The last pointwise conv has 1024·α channels under every rule (no minimum bites there).
    return channels / 1024


def _set_info(model: MobileNet, source: dict[str, Any], preprocessing: dict[str, Any],
              classes: list[str] | None = None) -> MobileNet:
    model.pretrained_cfg = {"source": source, "preprocessing": preprocessing, "classes": classes}
    return model


# --- Keras ---------------------------------------------------------------------------------------

def _keras_names(path: str, block: int, kind: str) -> tuple[str, str]:
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
        raise FileNotFoundError(f"Keras model not found: {path}")
    if path.suffix not in (".keras", ".h5", ".hdf5"):
        raise ValueError(f"unknown Keras model format {path.suffix!r} for {path}; expected .keras or .h5")
    if path.suffix == ".keras" and not zipfile.is_zipfile(path):
        raise ValueError(f"cannot read Keras model {path}: not a .keras (zip) file")
    keras = import_tf("keras")  # after the checks: a bad path is one line, without TF's start-up log
    try:
        # safe_mode (the default for .keras) refuses to deserialize lambdas: no code from the file runs.
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises many types for a bad file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"cannot read Keras model {path}: {first}") from None


def from_keras(source: Any) -> MobileNet:
    """A MobileNet with the weights of a ``keras.applications.MobileNet`` model (or a ``.keras`` /
    ``.h5`` file holding one). Refuses a depthwise multiplier other than 1, a non-square input, a
    fixed input size where Keras's padding is not TF SAME, and max pooling."""
    model = source if not isinstance(source, (str, os.PathLike)) else _load_keras_model(source)
    names = {layer.name for layer in model.layers}
    if "conv1" not in names or "conv_pw_13" not in names:
        raise ValueError("not a keras.applications.MobileNet model (no conv1 / conv_pw_13 layers)")
    if "conv_dw_1" in names and _keras_weights(model.get_layer("conv_dw_1"))["kernel"].shape[-1] != 1:
        raise ValueError("Keras depth_multiplier != 1 (depthwise convs with several outputs per channel) "
                         "does not map to MobileNet")
    relu = model.get_layer("conv1_relu") if "conv1_relu" in names else None
    if relu is None or getattr(relu, "max_value", None) is None or float(relu.max_value) != 6.0:
        raise ValueError("this Keras MobileNet does not use ReLU6 after conv1: not a keras.applications.MobileNet")
    if any(type(layer).__name__ == "GlobalMaxPooling2D" for layer in model.layers):
        raise ValueError("Keras pooling='max' does not map: MobileNet pools by average")
    shape = tuple(model.input_shape)
    h, w = shape[1], shape[2]
    if h != w:
        raise ValueError(f"Keras input shape {h}x{w} is not square; MobileNet's config has one resolution")
    if h is None:
        resolution = 224
    else:
        resolution = int(h)
        if not _keras_even_ok(resolution):
            raise ValueError(f"Keras pads (0, 1) before stride-2 convs, equal to TF SAME padding only when each "
                             f"stride-2 input is even; at {resolution} px it is not (use a multiple of 32)")
    layers: dict[str, dict[str, np.ndarray]] = {}
    for path, block, kind in _units():
        conv_name, bn_name = _keras_names(path, block, kind)
        conv = _keras_weights(model.get_layer(conv_name))
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
    alpha = _alpha_from_last(layers["blocks.13.pw"]["conv"].shape[0])
    dropout = next((float(layer.rate) for layer in model.layers if type(layer).__name__ == "Dropout"), 0.001)
    cfg = MobileNetConfig(alpha=alpha, resolution=resolution, num_classes=0 if head is None else head[0].shape[0],
                          dropout=dropout, activation="relu6", padding="tf_same", bn_eps=eps, bn_momentum=0.01, min_channels=1,
                          channel_divisor=1)
    net = _assemble(cfg, layers, head, "Keras")
    act = "predictions" in names and getattr(model.get_layer("predictions"), "activation", None)
    info = {"framework": "keras", "model": model.name,
            "classifier_activation": getattr(act, "__name__", None) if act else None,
            "note": "outputs are the logits before Keras's classifier activation"}
    if isinstance(source, (str, os.PathLike)):
        info["path"] = str(source)
    return _set_info(net, info, dict(_TF_PRE))


def to_keras(model: MobileNet, path: str | os.PathLike | None = None, classifier_activation: str | None = None) -> Any:
    """A ``keras.applications.MobileNet`` carrying ``model``'s weights (outputs are our logits unless
    ``classifier_activation`` is given), saved to ``path`` (.keras or .h5) if given."""
    cfg = model.config
    if cfg.variant != "separable":
        raise ValueError(f"variant {cfg.variant!r} does not map to Keras MobileNet (separable only)")
    if cfg.activation != "relu6":
        raise ValueError(f"activation {cfg.activation!r} does not map: Keras MobileNet always uses ReLU6")
    if cfg.padding != "tf_same":
        raise ValueError("padding 'symmetric' does not map: Keras MobileNet pads like TF SAME (padding='tf_same')")
    if not _keras_even_ok(cfg.resolution):
        raise ValueError(f"resolution {cfg.resolution} does not map: Keras pads (0, 1) before stride-2 convs, equal "
                         f"to TF SAME only when each stride-2 input is even (use a multiple of 32)")
    keras_rule = [int(32 * cfg.alpha)] + [int(c * cfg.alpha) for _, c in BLOCKS.values()]
    ours = [spec.out_channels for spec in layer_plan(cfg) if spec.name == "stem" or spec.name.endswith(".pw")]
    if ours != keras_rule:
        raise ValueError(f"channel widths {ours} (min_channels={cfg.min_channels}, channel_divisor="
                         f"{cfg.channel_divisor}) differ from Keras's int(c*alpha) rule {keras_rule}")
    if path is not None and Path(path).suffix not in (".keras", ".h5"):
        raise ValueError(f"Keras output must end in .keras or .h5, got {path}")
    keras = import_tf("keras")

    top = cfg.num_classes > 0
    kmodel = keras.applications.MobileNet(
        input_shape=(cfg.resolution, cfg.resolution, 3), alpha=cfg.alpha, depth_multiplier=1, dropout=cfg.dropout,
        include_top=top, weights=None, pooling=None if top else "avg", classes=max(cfg.num_classes, 1),
        classifier_activation=classifier_activation)
    state = {k: _np(v) for k, v in model.state_dict().items()}
    for path_, block, kind in _units():
        conv_name, bn_name = _keras_names(path_, block, kind)
        w = state[f"{path_}.conv.weight"]
        # depthwise (C, 1, H, W) -> (H, W, C, 1); full conv OIHW -> HWIO
        kernel = w.transpose(2, 3, 0, 1) if kind == "dw" else w.transpose(2, 3, 1, 0)
        _set_keras(kmodel.get_layer(conv_name), {"kernel": kernel})
        bn_layer = kmodel.get_layer(bn_name)
        var = state[f"{path_}.bn.running_var"] + cfg.bn_eps - float(bn_layer.epsilon)
        _set_keras(bn_layer, {"gamma": state[f"{path_}.bn.weight"], "beta": state[f"{path_}.bn.bias"],
                              "moving_mean": state[f"{path_}.bn.running_mean"], "moving_variance": var})
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
            raise ValueError(f"Keras layer {layer.name}/{name} has shape {tuple(w.shape)}, ours {values[name].shape}")
        w.assign(values[name].astype(np.float32))


def _save_keras(kmodel: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.") as tmp:
        tmp_file = Path(tmp) / path.name  # Keras picks the format from the file name
        kmodel.save(tmp_file)
        os.replace(tmp_file, path)


# --- TF-slim -------------------------------------------------------------------------------------

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
            raise FileNotFoundError(f"no TensorFlow checkpoint in folder {path}")
        path = found
    elif path.endswith(".index") or re.search(r"\.data-\d+-of-\d+$", path):
        path = re.sub(r"(\.index|\.data-\d+-of-\d+)$", "", path)
    if not Path(path + ".index").is_file():
        raise FileNotFoundError(f"TensorFlow checkpoint not found: {path} (expected {path}.index)")
    tf = import_tf("tensorflow")

    try:
        return tf.train.load_checkpoint(path), path
    except (tf.errors.OpError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"cannot read TensorFlow checkpoint {path}: {first}") from None


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
        raise ValueError(f"{path} is not a TF-slim mobilenet_v1 checkpoint (no MobilenetV1/Conv2d_0/weights)")
    scope = stems[0][: -len("Conv2d_0/weights")]  # "MobilenetV1/", possibly under an outer scope

    def get(name: str) -> np.ndarray:
        if scope + name not in shapes:
            raise ValueError(f"{path}: variable {scope + name} is missing: not a complete mobilenet_v1 checkpoint")
        return np.asarray(reader.get_tensor(scope + name), dtype=np.float64)

    layers = {}
    for unit, block, kind in _units():
        name = _slim_name(block, kind)
        if kind == "dw":
            kernel = get(f"{name}/depthwise_weights").transpose(2, 3, 0, 1)
        else:
            kernel = get(f"{name}/weights").transpose(3, 2, 0, 1)
        mean = get(f"{name}/BatchNorm/moving_mean")
        has_gamma = scope + f"{name}/BatchNorm/gamma" in shapes
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
        raise ValueError(f"{path} has no Logits layer: there is no background class to keep")
    if resolution is None:
        match = re.search(r"_(\d{2,4})(?:\.ckpt)?(?:-\d+)?$", Path(path).name)
        resolution = int(match.group(1)) if match and int(match.group(1)) >= 32 else 224
    alpha = _alpha_from_last(layers["blocks.13.pw"]["conv"].shape[0])
    cfg = MobileNetConfig(alpha=alpha, resolution=resolution, num_classes=0 if head is None else head[0].shape[0],
                          dropout=0.001, activation="relu6", padding="tf_same", bn_eps=1e-3, bn_momentum=0.0003,
                          min_channels=8, channel_divisor=1)
    net = _assemble(cfg, layers, head, "TF-slim")
    source = {"framework": "tf-slim", "path": str(path), "scope": scope.rstrip("/"),
              "background_class": "index 0" if background else ("dropped" if head is not None else None)}
    classes = None
    return _set_info(net, source, dict(_TF_PRE), classes)


# --- timm ----------------------------------------------------------------------------------------

def _unwrap_state(obj: Any, what: str) -> dict[str, torch.Tensor]:
    for key in ("state_dict_ema", "state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{what} is not a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _read_weights_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a .safetensors or .pt/.pth/.bin file (the latter only via weights_only loading)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        return _read_safetensors(path)[0]
    if path.suffix in (".pt", ".pth", ".bin"):
        return _unwrap_state(load_state(path), str(path))
    raise ValueError(f"unknown weights format {path.suffix or path.name!r} for {path}; expected .safetensors, .pt, "
                     f".pth or .bin")


def from_timm(source: Any) -> MobileNet:
    """A MobileNet with the weights of timm's ``mobilenetv1_100`` / ``mobilenetv1_125`` (or any
    width built by timm's MobileNetV1 generator): a timm model, its state dict, or a weights file.
    ``mobilenetv1_100h`` is refused: its extra head conv has no counterpart in MobileNet."""
    resolution, eps, act, padding = 224, 1e-5, "relu6", "symmetric"
    pre = {"pixel_range": [0.0, 1.0], "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "input_range": [-1.0, 1.0],
           "crop_fraction": 0.875, "interpolation": "bicubic"}
    info: dict[str, Any] = {"framework": "timm"}
    if isinstance(source, nn.Module):
        if hasattr(source, "conv_head") and not isinstance(source.conv_head, nn.Identity):
            raise ValueError(_TIMM_HEAD_REFUSAL)
        stem_conv, stem_bn = getattr(source, "conv_stem", None), getattr(source, "bn1", None)
        if stem_conv is None or stem_bn is None:
            raise ValueError(f"{type(source).__name__} is not a timm MobileNetV1 (no conv_stem / bn1)")
        eps = float(stem_bn.eps)
        act_mod = getattr(stem_bn, "act", None)
        act = {"ReLU6": "relu6", "ReLU": "relu"}.get(type(act_mod).__name__)
        if act is None:
            raise ValueError(f"timm activation {type(act_mod).__name__} does not map (MobileNet has relu or relu6)")
        if type(stem_conv).__name__ == "Conv2dSame":
            padding = "tf_same"
        elif type(stem_conv) is not nn.Conv2d or tuple(stem_conv.padding) != (1, 1):
            raise ValueError(f"timm stem conv {type(stem_conv).__name__} with padding {stem_conv.padding} does not map")
        cfg_t = dict(getattr(source, "pretrained_cfg", None) or {})
        if cfg_t.get("architecture"):
            info["model"] = cfg_t["architecture"]
        if cfg_t.get("input_size"):
            resolution = int(cfg_t["input_size"][-1])
        for ours, theirs in (("mean", "mean"), ("std", "std"), ("crop_fraction", "crop_pct"),
                             ("interpolation", "interpolation")):
            if cfg_t.get(theirs) is not None:
                pre[ours] = list(cfg_t[theirs]) if isinstance(cfg_t[theirs], tuple) else cfg_t[theirs]
        state = {k: v for k, v in source.state_dict().items()}
    elif isinstance(source, dict):
        state = _unwrap_state(source, "the timm state dict")
    elif isinstance(source, (str, os.PathLike)):
        state = _read_weights_file(source)
        info["path"] = str(source)
    else:
        raise ValueError(f"from_timm expects a timm model, a state dict or a weights file, got {type(source).__name__}")
    if "conv_head.weight" in state:
        raise ValueError(_TIMM_HEAD_REFUSAL)
    if any(k.endswith("conv_pwl.weight") for k in state):
        raise ValueError("these are timm MobileNetV2-style weights (conv_pwl): not MobileNetV1")
    used: set[str] = set()

    def take(key: str) -> torch.Tensor:
        if key not in state:
            raise ValueError(f"not timm MobileNetV1 weights: key {key!r} is missing")
        used.add(key)
        return state[key]

    layers = {}
    for unit, block, kind in _units():
        conv, bn = _timm_prefixes(block, kind)
        layers[unit] = {"conv": _np(take(conv + "weight"))}
        for ours in ("weight", "bias", "running_mean", "running_var"):
            layers[unit][ours] = _np(take(bn + ours))
        used.add(bn + "num_batches_tracked")
    head = None
    if "classifier.weight" in state:
        head = (_np(take("classifier.weight")), _np(take("classifier.bias")))
    extra = sorted(set(state) - used)
    if extra:
        raise ValueError(f"not plain timm MobileNetV1 weights: unexpected key {extra[0]!r} ({len(extra)} in all)")
    alpha = _alpha_from_last(layers["blocks.13.pw"]["conv"].shape[0])
    cfg = MobileNetConfig(alpha=alpha, resolution=resolution, num_classes=0 if head is None else head[0].shape[0],
                          dropout=0.0, activation=act, padding=padding, bn_eps=eps, min_channels=8, channel_divisor=8)
    net = _assemble(cfg, layers, head, "timm")
    return _set_info(net, info, pre)


_TIMM_HEAD_REFUSAL = ("timm's mobilenetv1_100h has an extra 1x1 head conv (conv_head + bn2) before the pool that "
                      "MobileNet has no layer for; only mobilenetv1_100 / mobilenetv1_125-style weights convert")


def timm_model_name(model: MobileNet) -> str:
    """timm's name for ``model``'s architecture, or ValueError saying what does not map."""
    cfg = model.config
    if cfg.variant != "separable":
        raise ValueError(f"variant {cfg.variant!r} does not map to timm (mobilenetv1 is the separable network)")
    if cfg.padding != "symmetric":
        raise ValueError("padding 'tf_same' does not map: timm's mobilenetv1 pads symmetrically "
                         "(the outputs would change)")
    if cfg.activation != "relu6":
        raise ValueError(f"activation {cfg.activation!r} does not map: timm's mobilenetv1 uses ReLU6")
    name = _TIMM_NAMES.get(float(cfg.alpha))
    if name is None:
        raise ValueError(f"alpha {cfg.alpha:g} has no timm model name (timm has mobilenetv1_100 for 1.0 and "
                         f"mobilenetv1_125 for 1.25)")
    timm_cfg = cfg.replace(min_channels=8, channel_divisor=8)
    if [s.out_channels for s in layer_plan(cfg)] != [s.out_channels for s in layer_plan(timm_cfg)]:
        raise ValueError("channel widths differ from timm's (rounded to multiples of 8)")
    return name


def to_timm(model: MobileNet, path: str | os.PathLike) -> Path:
    """Write ``model``'s weights as a ``.safetensors`` file that
    ``timm.create_model(timm_model_name(model), checkpoint_path=path, num_classes=model.num_classes)``
    loads (BN epsilon folded into the running variance for timm's 1e-5)."""
    name = timm_model_name(model)
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"timm output must be a .safetensors file, got {path}")
    from safetensors.torch import save_file

    timm_eps = 1e-5
    state = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    for unit, block, kind in _units():
        conv, bn = _timm_prefixes(block, kind)
        out[conv + "weight"] = state[f"{unit}.conv.weight"]
        for key in ("weight", "bias", "running_mean", "num_batches_tracked"):
            out[bn + key] = state[f"{unit}.bn.{key}"]
        var = state[f"{unit}.bn.running_var"].double() + model.config.bn_eps - timm_eps
        out[bn + "running_var"] = var.to(state[f"{unit}.bn.running_var"].dtype)
    if model.config.num_classes:
        out["classifier.weight"] = state["classifier.weight"]
        out["classifier.bias"] = state["classifier.bias"]
    out = {k: v.detach().contiguous().cpu() for k, v in out.items()}
    meta = {"timm_model": name, "num_classes": str(model.config.num_classes)}
    return atomic_write(path, lambda tmp: save_file(out, tmp, metadata=meta))


# --- Hugging Face transformers -------------------------------------------------------------------

def from_hf(source: Any) -> MobileNet:
    """A MobileNet with the weights of a Hugging Face ``MobileNetV1ForImageClassification`` (or
    ``MobileNetV1Model``): the model object, or a folder with its ``config.json`` and
    ``model.safetensors`` (or ``pytorch_model.bin``, read with weights_only). transformers is not
    needed to read a folder."""
    pre = dict(_TF_PRE)
    info: dict[str, Any] = {"framework": "hf"}
    if isinstance(source, nn.Module):
        hf_cfg = source.config.to_dict()
        state = dict(source.state_dict())
    elif isinstance(source, (str, os.PathLike)):
        folder = Path(source)
        if not folder.is_dir():
            raise FileNotFoundError(f"Hugging Face model folder not found: {folder}")
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"{folder} has no config.json: not a Hugging Face model folder")
        hf_cfg = read_json_object(folder / "config.json")
        for name in ("model.safetensors", "pytorch_model.bin"):
            if (folder / name).is_file():
                state = _read_weights_file(folder / name)
                break
        else:
            raise FileNotFoundError(f"{folder} has neither model.safetensors nor pytorch_model.bin")
        info["path"] = str(folder)
        if (folder / "preprocessor_config.json").is_file():
            pre.update(_hf_preprocessing(read_json_object(folder / "preprocessor_config.json")))
    else:
        raise ValueError(f"from_hf expects a transformers model or a model folder, got {type(source).__name__}")
    if hf_cfg.get("model_type") != "mobilenet_v1":
        raise ValueError(f"Hugging Face model_type {hf_cfg.get('model_type')!r} is not 'mobilenet_v1'")
    if hf_cfg.get("num_channels", 3) != 3:
        raise ValueError(f"num_channels {hf_cfg['num_channels']} does not map: MobileNet takes 3-channel images")
    act = hf_cfg.get("hidden_act", "relu6")
    if act not in ("relu", "relu6"):
        raise ValueError(f"hidden_act {act!r} does not map (MobileNet has relu or relu6)")
    state = {k.removeprefix("mobilenet_v1."): v for k, v in state.items()}
    used: set[str] = set()

    def take(key: str) -> np.ndarray:
        if key not in state:
            raise ValueError(f"not Hugging Face MobileNetV1 weights: key {key!r} is missing")
        used.add(key)
        return _np(state[key])

    layers = {}
    for i, (unit, _, _) in enumerate(_units()):
        prefix = "conv_stem." if i == 0 else f"layer.{i - 1}."
        layers[unit] = {"conv": take(prefix + "convolution.weight")}
        for ours in ("weight", "bias", "running_mean", "running_var"):
            layers[unit][ours] = take(prefix + "normalization." + ours)
        used.add(prefix + "normalization.num_batches_tracked")
    head = (take("classifier.weight"), take("classifier.bias")) if "classifier.weight" in state else None
    extra = sorted(set(state) - used)
    if extra:
        raise ValueError(f"not plain Hugging Face MobileNetV1 weights: unexpected key {extra[0]!r}")
    classes = None
    id2label = hf_cfg.get("id2label") or {}
    if head is not None and len(id2label) == head[0].shape[0]:
        classes = [str(id2label.get(str(i), id2label.get(i, i))) for i in range(head[0].shape[0])]
    cfg = MobileNetConfig(alpha=float(hf_cfg.get("depth_multiplier", 1.0)), resolution=int(hf_cfg.get("image_size", 224)),
                          num_classes=0 if head is None else head[0].shape[0], dropout=0.001, activation=act,
                          padding="tf_same" if hf_cfg.get("tf_padding", True) else "symmetric",
                          bn_eps=float(hf_cfg.get("layer_norm_eps", 1e-3)), bn_momentum=0.0003,
                          min_channels=int(hf_cfg.get("min_depth", 8)), channel_divisor=1)
    net = _assemble(cfg, layers, head, "Hugging Face")
    return _set_info(net, info, pre, classes)


def _hf_preprocessing(doc: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if doc.get("image_mean") is not None:
        out["mean"] = [float(x) for x in doc["image_mean"]]
    if doc.get("image_std") is not None:
        out["std"] = [float(x) for x in doc["image_std"]]
    size, crop = doc.get("size") or {}, doc.get("crop_size") or {}
    short = size.get("shortest_edge") if isinstance(size, dict) else None
    crop_h = crop.get("height") if isinstance(crop, dict) else None
    if short and crop_h and doc.get("do_center_crop", True):
        out["crop_fraction"] = crop_h / short
    resample = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic"}.get(doc.get("resample"))
    if resample:
        out["interpolation"] = resample
    if out.get("mean") is not None and out.get("std") is not None:
        lo = [(0 - m) / s for m, s in zip(out["mean"], out["std"])]
        hi = [(1 - m) / s for m, s in zip(out["mean"], out["std"])]
        out["input_range"] = [min(lo), max(hi)]
    return out


# --- one call and the CLI ------------------------------------------------------------------------

_READERS: dict[str, Callable[..., MobileNet]] = {
    "keras": lambda src, **_: from_keras(src),
    "tf-slim": lambda src, keep_background=False, resolution=None: from_tf_slim(src, keep_background, resolution),
    "timm": lambda src, **_: from_timm(src),
    "hf": lambda src, **_: from_hf(src),
    "mobilenets": lambda src, **_: load_model(src),
}


def convert(src: Any, source_format: str, output_dir: str | os.PathLike, to: str = "mobilenets",
            keep_background: bool = False, resolution: int | None = None) -> tuple[MobileNet, Path]:
    """Read ``src`` as ``source_format`` (keras, tf-slim, timm, hf, mobilenets) and write it to
    ``output_dir`` as ``to``: ``mobilenets`` (config.json + model.safetensors), ``timm``
    (``<timm name>.safetensors``) or ``keras`` (``model.keras``). Returns the model and the path
    written."""
    if source_format not in _READERS:
        raise ValueError(f"unknown source format {source_format!r}; choose one of {', '.join(FORMATS)}")
    if to not in TARGETS:
        raise ValueError(f"unknown target format {to!r}; choose one of {', '.join(TARGETS)}")
    if keep_background and source_format != "tf-slim":
        raise ValueError("--keep-background applies to TF-slim checkpoints only (--from tf-slim)")
    if resolution is not None and source_format != "tf-slim":
        raise ValueError("--resolution applies to TF-slim checkpoints only (the other formats record it)")
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--output {out} exists and is not a folder")
    model = _READERS[source_format](src, keep_background=keep_background, resolution=resolution)
    if to == "mobilenets":
        return model, save_model(model, out)
    if to == "timm":
        return model, to_timm(model, out / f"{timm_model_name(model)}.safetensors")
    to_keras(model, out / "model.keras")
    return model, out / "model.keras"


def add_cli(subparsers: Any) -> None:
    p = subparsers.add_parser("convert", help="pretrained weights from keras, tf-slim, timm or hf (and to timm/keras)")
    p.add_argument("src", metavar="SRC", help="the source: a .keras/.h5 file, a TF checkpoint prefix, a timm weights "
                                              "file, a Hugging Face model folder, or a mobilenets checkpoint")
    p.add_argument("--from", dest="source_format", required=True, choices=FORMATS, help="the source's format")
    p.add_argument("--output", required=True, metavar="DIR", help="output folder")
    p.add_argument("--to", default="mobilenets", choices=TARGETS,
                   help="mobilenets (default: config.json + model.safetensors), timm or keras")
    p.add_argument("--keep-background", action="store_true",
                   help="tf-slim: keep the 1001st (background, index 0) class")
    p.add_argument("--resolution", type=int, help="tf-slim: the input size (default: from the file name, else 224)")
    p.set_defaults(func=_cmd_convert)


def _cmd_convert(args: argparse.Namespace) -> None:
    model, written = convert(args.src, args.source_format, args.output, to=args.to,
                             keep_background=args.keep_background, resolution=args.resolution)
    cfg = model.config
    print(f"converted {args.source_format} -> {args.to}: alpha {cfg.alpha:g}, {cfg.resolution} px, "
          f"{cfg.num_classes} classes, padding {cfg.padding}, {cfg.activation}, bn_eps {cfg.bn_eps:g}")
    print(f"wrote {written}")
