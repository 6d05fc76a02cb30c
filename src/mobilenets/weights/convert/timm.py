"""timm ``mobilenetv1_100`` / ``mobilenetv1_125`` weights in and out (models, state dicts, files).

timm pads symmetrically, uses ReLU6 and BN epsilon 1e-5, and rounds channels to multiples of 8.
It groups our 13 blocks into 5 stages. ``mobilenetv1_100h`` is refused: its extra 1x1 head conv
has no counterpart in MobileNet. timm itself is not needed to read or write the weights.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mobilenets.data.preprocess import INTERPOLATIONS, Preprocessing
from mobilenets.errors import MobileNetsError
from mobilenets.models.config import MobileNetConfig
from mobilenets.models.mobilenet import MobileNet, layer_plan
from mobilenets.weights.checkpoint import atomic_write, read_weights_file, unwrap_state
from mobilenets.weights.convert.common import BN_FIELDS, alpha_from_last, assemble, set_imagenet_info, to_numpy, units

TIMM_NAMES = {1.0: "mobilenetv1_100", 1.25: "mobilenetv1_125"}
TIMM_BN_EPS = 1e-5
_TIMM_STAGES = (1, 2, 2, 6, 2)  # timm groups the 13 blocks into stages of these sizes
_TIMM_HEAD_REFUSAL = ("timm's mobilenetv1_100h has an extra 1x1 head conv (conv_head + bn2) before the pool that "
                      "MobileNet has no layer for; only mobilenetv1_100 / mobilenetv1_125-style weights convert")
# timm's mobilenetv1 preprocessing, for weights that come without a pretrained_cfg
_TIMM_PRE = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "crop_pct": 0.875, "interpolation": "bicubic"}


def _timm_block(block: int) -> str:
    stage, start = 0, 1
    while block >= start + _TIMM_STAGES[stage]:
        start += _TIMM_STAGES[stage]
        stage += 1
    return f"blocks.{stage}.{block - start}"


def _timm_prefixes(block: int, kind: str) -> tuple[str, str]:
    """timm's key prefixes (conv, BN) for one of our units: the stem, or a block's dw / pw."""
    if kind == "conv":
        return "conv_stem.", "bn1."
    tb = _timm_block(block)
    return (f"{tb}.conv_dw.", f"{tb}.bn1.") if kind == "dw" else (f"{tb}.conv_pw.", f"{tb}.bn2.")


def _read_timm_module(source: nn.Module, info: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A live timm model's state dict and its architecture (eps, activation, padding,
    preprocessing, resolution); refuses what does not map."""
    if hasattr(source, "conv_head") and not isinstance(source.conv_head, nn.Identity):
        raise MobileNetsError(_TIMM_HEAD_REFUSAL)
    stem_conv, stem_bn = getattr(source, "conv_stem", None), getattr(source, "bn1", None)
    if stem_conv is None or stem_bn is None:
        raise MobileNetsError(f"{type(source).__name__} is not a timm MobileNetV1 (no conv_stem / bn1)")
    arch: dict[str, Any] = {"eps": float(stem_bn.eps)}
    act_mod = getattr(stem_bn, "act", None)
    arch["act"] = {"ReLU6": "relu6", "ReLU": "relu"}.get(type(act_mod).__name__)
    if arch["act"] is None:
        raise MobileNetsError(f"timm activation {type(act_mod).__name__} does not map (MobileNet has relu or relu6)")
    if type(stem_conv).__name__ == "Conv2dSame":
        arch["padding"] = "tf_same"
    elif type(stem_conv) is not nn.Conv2d or tuple(stem_conv.padding) != (1, 1):
        raise MobileNetsError(f"timm stem conv {type(stem_conv).__name__} with padding {stem_conv.padding} "
                              f"does not map")
    cfg_t = dict(getattr(source, "pretrained_cfg", None) or {})
    if cfg_t.get("architecture"):
        info["model"] = cfg_t["architecture"]
    if cfg_t.get("input_size"):
        arch["resolution"] = int(cfg_t["input_size"][-1])
    pre = dict(_TIMM_PRE)
    for key in ("mean", "std", "crop_pct", "interpolation"):
        if cfg_t.get(key) is not None:
            pre[key] = cfg_t[key]
    if pre["interpolation"] not in INTERPOLATIONS:  # e.g. "lanczos": keep timm's default for this family
        pre["interpolation"] = _TIMM_PRE["interpolation"]
    arch["pre"] = pre
    return dict(source.state_dict()), arch


def from_timm(source: Any) -> MobileNet:
    """A MobileNet with the weights of timm's ``mobilenetv1_100`` / ``mobilenetv1_125`` (or any
    width built by timm's MobileNetV1 generator): a timm model, its state dict, or a weights file.
    ``mobilenetv1_100h`` is refused: its extra head conv has no counterpart in MobileNet. A
    1000-class model carries ImageNet's class names."""
    arch: dict[str, Any] = {"resolution": 224, "eps": TIMM_BN_EPS, "act": "relu6", "padding": "symmetric",
                            "pre": dict(_TIMM_PRE)}
    info: dict[str, Any] = {"framework": "timm"}
    if isinstance(source, nn.Module):
        state, found = _read_timm_module(source, info)
        arch.update(found)
    elif isinstance(source, dict):
        state = unwrap_state(source, "the timm state dict")
    elif isinstance(source, (str, os.PathLike)):
        state = read_weights_file(source)
        info["path"] = str(source)
    else:
        raise MobileNetsError(f"from_timm expects a timm model, a state dict or a weights file, "
                              f"got {type(source).__name__}")
    if "conv_head.weight" in state:
        raise MobileNetsError(_TIMM_HEAD_REFUSAL)
    if any(k.endswith("conv_pwl.weight") for k in state):
        raise MobileNetsError("these are timm MobileNetV2-style weights (conv_pwl): not MobileNetV1")
    used: set[str] = set()

    def take(key: str) -> torch.Tensor:
        if key not in state:
            raise MobileNetsError(f"not timm MobileNetV1 weights: key {key!r} is missing")
        used.add(key)
        return state[key]

    layers = {}
    for unit, block, kind in units():
        conv, bn = _timm_prefixes(block, kind)
        layers[unit] = {"conv": to_numpy(take(conv + "weight"))}
        for ours in BN_FIELDS:
            layers[unit][ours] = to_numpy(take(bn + ours))
        used.add(bn + "num_batches_tracked")
    head = None
    if "classifier.weight" in state:
        head = (to_numpy(take("classifier.weight")), to_numpy(take("classifier.bias")))
    extra = sorted(set(state) - used)
    if extra:
        raise MobileNetsError(f"not plain timm MobileNetV1 weights: unexpected key {extra[0]!r} ({len(extra)} in all)")
    alpha = alpha_from_last(layers["blocks.13.pw"]["conv"].shape[0])
    cfg = MobileNetConfig(alpha=alpha, resolution=arch["resolution"],
                          num_classes=0 if head is None else head[0].shape[0], dropout=0.0, activation=arch["act"],
                          padding=arch["padding"], bn_eps=arch["eps"], min_channels=8, channel_divisor=8)
    net = assemble(cfg, layers, head, "timm")
    return set_imagenet_info(net, info, Preprocessing.from_dict(arch["pre"], resolution=cfg.resolution))


def timm_model_name(model: MobileNet) -> str:
    """timm's name for ``model``'s architecture, or MobileNetsError saying what does not map."""
    cfg = model.config
    if cfg.variant != "separable":
        raise MobileNetsError(f"variant {cfg.variant!r} does not map to timm (mobilenetv1 is the separable network)")
    if cfg.padding != "symmetric":
        raise MobileNetsError("padding 'tf_same' does not map: timm's mobilenetv1 pads symmetrically "
                              "(the outputs would change)")
    if cfg.activation != "relu6":
        raise MobileNetsError(f"activation {cfg.activation!r} does not map: timm's mobilenetv1 uses ReLU6")
    name = TIMM_NAMES.get(float(cfg.alpha))
    if name is None:
        raise MobileNetsError(f"alpha {cfg.alpha:g} has no timm model name (timm has mobilenetv1_100 for 1.0 and "
                              f"mobilenetv1_125 for 1.25)")
    timm_cfg = cfg.replace(min_channels=8, channel_divisor=8)
    if [s.out_channels for s in layer_plan(cfg)] != [s.out_channels for s in layer_plan(timm_cfg)]:
        raise MobileNetsError("channel widths differ from timm's (rounded to multiples of 8)")
    return name


def to_timm(model: MobileNet, path: str | os.PathLike) -> Path:
    """Write ``model``'s weights as a ``.safetensors`` file that
    ``timm.create_model(timm_model_name(model), checkpoint_path=path, num_classes=model.num_classes)``
    loads (BN epsilon folded into the running variance for timm's 1e-5:
    ``var' + 1e-5 == var + eps_ours``)."""
    name = timm_model_name(model)
    path = Path(path)
    if path.suffix != ".safetensors":
        raise MobileNetsError(f"path must be a .safetensors file for timm, got {path}")
    from safetensors.torch import save_file

    state = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    for unit, block, kind in units():
        conv, bn = _timm_prefixes(block, kind)
        out[conv + "weight"] = state[f"{unit}.conv.weight"]
        for key in ("weight", "bias", "running_mean", "num_batches_tracked"):
            out[bn + key] = state[f"{unit}.bn.{key}"]
        var = state[f"{unit}.bn.running_var"].double() + model.config.bn_eps - TIMM_BN_EPS
        out[bn + "running_var"] = var.to(state[f"{unit}.bn.running_var"].dtype)
    if model.config.num_classes:
        out["classifier.weight"] = state["classifier.weight"]
        out["classifier.bias"] = state["classifier.bias"]
    out = {k: v.detach().contiguous().cpu() for k, v in out.items()}
    meta = {"timm_model": name, "num_classes": str(model.config.num_classes)}
    return atomic_write(path, lambda tmp: save_file(out, tmp, metadata=meta))
