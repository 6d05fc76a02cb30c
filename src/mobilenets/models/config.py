"""The one object that describes a MobileNet completely, and its validation.

A :class:`MobileNetConfig` is frozen, hashable and round-trips through JSON, so it can be saved
beside every checkpoint and export and rebuild the exact same network later.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from mobilenets.errors import MobileNetsError
from mobilenets.utils.serial import JsonDataclass
from mobilenets.utils.validate import is_real

VARIANTS = ("separable", "conv", "shallow")
ACTIVATIONS = ("relu", "relu6")
PADDINGS = ("symmetric", "tf_same")
MIN_RESOLUTION = 32  # five stride-2 layers: 32 px is the smallest input with a 1x1 final map


@dataclass(frozen=True)
class MobileNetConfig(JsonDataclass):
    # Width multiplier α (paper §3.3): scales the channels of the stem and of every pointwise conv.
    # Any α > 0; α > 1 widens the network.
    alpha: float = 1.0
    # Input resolution in pixels (square). The paper's resolution multiplier is ρ = resolution / 224.
    # The network itself accepts any input >= 32 px (the pool is global); this is the size the
    # model is meant for, and the one the cost model counts at.
    resolution: int = 224
    # "separable": the MobileNet. "conv": every dw+pw pair replaced by one full 3x3 conv with the
    # same stride and output channels (paper Table 4). "shallow": blocks 7-11, the five
    # 14x14x512 separable blocks, removed (paper Table 5).
    variant: str = "separable"
    # Classifier outputs. 0 builds the network without a classifier (forward returns pooled features).
    num_classes: int = 1000
    # Dropout before the classifier. 0.001 is TF-slim's / Keras's keep_prob 0.999 in PyTorch terms
    # (a trap: some ports used p = 0.999).
    dropout: float = 0.001
    # "relu" is what the paper says; "relu6" is what TF-slim, Keras, timm and HF use.
    activation: str = "relu"
    # "symmetric": PyTorch padding=1 on every 3x3 conv. "tf_same": TensorFlow "SAME" semantics
    # (stride 2 on an even input pads 0 before and 1 after); needed to reproduce TF/Keras weights.
    padding: str = "symmetric"
    # BatchNorm epsilon (TF-slim and Keras use 1e-3; PyTorch's default is 1e-5).
    bn_eps: float = 1e-3
    # BatchNorm momentum in PyTorch's sense (weight of the new batch statistic).
    # TF's decay d is PyTorch's momentum 1 - d: TF-slim's decay 0.9997 is momentum 0.0003.
    bn_momentum: float = 0.1
    # Channel rounding (see :func:`scale_channels`): the smallest channel count any layer may have,
    # and the multiple channel counts are rounded to (1 = no rounding, the TF-slim rule).
    min_channels: int = 8
    channel_divisor: int = 1

    def __post_init__(self) -> None:
        validate(self)

    @property
    def rho(self) -> float:
        """The paper's resolution multiplier ρ = resolution / 224."""
        return self.resolution / 224

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MobileNetConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise MobileNetsError(f"unknown MobileNetConfig field(s): {', '.join(unknown)}")
        return cls(**data)


def validate(cfg: MobileNetConfig) -> None:
    """Raise ``ValueError`` naming the bad value; called by the dataclass itself."""
    if not is_real(cfg.alpha) or cfg.alpha <= 0:
        raise MobileNetsError(f"alpha (width multiplier) must be a number > 0, got {cfg.alpha!r}")
    if not isinstance(cfg.resolution, int) or isinstance(cfg.resolution, bool):
        raise MobileNetsError(f"resolution must be an integer number of pixels, got {cfg.resolution!r}")
    if cfg.resolution < MIN_RESOLUTION:
        raise MobileNetsError(f"resolution must be >= {MIN_RESOLUTION} px, got {cfg.resolution}")
    if cfg.variant not in VARIANTS:
        raise MobileNetsError(f"unknown variant {cfg.variant!r}; choose one of {', '.join(VARIANTS)}")
    if cfg.activation not in ACTIVATIONS:
        raise MobileNetsError(
            f"unknown activation {cfg.activation!r}; choose one of {', '.join(ACTIVATIONS)}"
        )
    if cfg.padding not in PADDINGS:
        raise MobileNetsError(f"unknown padding {cfg.padding!r}; choose one of {', '.join(PADDINGS)}")
    if not isinstance(cfg.num_classes, int) or isinstance(cfg.num_classes, bool) or cfg.num_classes < 0:
        raise MobileNetsError(f"num_classes must be an integer >= 0, got {cfg.num_classes!r}")
    if not is_real(cfg.dropout) or not 0 <= cfg.dropout < 1:
        raise MobileNetsError(f"dropout must be in [0, 1), got {cfg.dropout!r}")
    if not is_real(cfg.bn_eps) or cfg.bn_eps <= 0:
        raise MobileNetsError(f"bn_eps must be > 0, got {cfg.bn_eps!r}")
    if not is_real(cfg.bn_momentum) or not 0 <= cfg.bn_momentum <= 1:
        raise MobileNetsError(f"bn_momentum must be in [0, 1] (PyTorch convention), got {cfg.bn_momentum!r}")
    for name in ("min_channels", "channel_divisor"):
        value = getattr(cfg, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise MobileNetsError(f"{name} must be an integer >= 1, got {value!r}")


def scale_channels(channels: int, alpha: float, min_channels: int = 8, divisor: int = 1) -> int:
    """Channels of a layer of width ``channels`` (at α = 1) under width multiplier ``alpha``.

    ``divisor == 1`` is TF-slim's rule, ``max(int(channels * alpha), min_channels)``; with
    ``min_channels <= 8`` it is also Keras's ``int(channels * alpha)`` for every α >= 0.25, so
    TF/Keras weights of any width load unchanged. ``divisor > 1`` is the rounding that timm and
    torchvision use: to the nearest multiple of ``divisor``, never below ``min_channels`` and never
    more than 10 % below ``channels * alpha``. All rules agree for the paper's α ∈ {1, .75, .5, .25}.
    """
    if divisor == 1:
        return max(int(channels * alpha), min_channels)
    value = channels * alpha
    rounded = max(min_channels, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded
