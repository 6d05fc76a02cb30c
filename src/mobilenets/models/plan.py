"""Paper Table 1 as data: the plan every MobileNet is built from, importable without torch.

:data:`BLOCKS` declares the architecture once; :func:`layer_plan` turns it and a
:class:`~mobilenets.models.config.MobileNetConfig` into the list of convolutions. The network
(:class:`~mobilenets.models.mobilenet.MobileNet`) and the analytical cost model
(:mod:`mobilenets.cost.count`) are both built from that one list, so the two can never disagree
about the architecture; and because this module needs no torch, counting a model's cost does not
load it.
"""

from __future__ import annotations

from dataclasses import dataclass

from mobilenets.models.config import MobileNetConfig, scale_channels

# Paper Table 1. The stem is a full 3x3 conv, stride 2, 32 channels; then 13 depthwise separable
# blocks. The stride sits on the depthwise conv; the pointwise conv is always stride 1.
#   block: (stride of the depthwise 3x3, pointwise output channels at α = 1)
STEM_STRIDE, STEM_CHANNELS = 2, 32
BLOCKS: dict[int, tuple[int, int]] = {
    1: (1, 64),     # 112x112
    2: (2, 128),    # -> 56x56
    3: (1, 128),
    4: (2, 256),    # -> 28x28
    5: (1, 256),
    6: (2, 512),    # -> 14x14
    7: (1, 512),    # blocks 7-11: the "5x" row, 14x14x512 (removed in the shallow variant)
    8: (1, 512),
    9: (1, 512),
    10: (1, 512),
    11: (1, 512),   # SSD's first feature map (stride 16)
    12: (2, 1024),  # -> 7x7
    13: (1, 1024),  # the paper prints "s2" here, but input and output are both 7x7; every
                    # reference (TF-slim, Keras, timm, HF) uses stride 1: an erratum.
}
SHALLOW_REMOVED = frozenset(range(7, 12))  # paper Table 5: "the 5 layers ... 14x14x512" removed


@dataclass(frozen=True)
class ConvSpec:
    """One convolution of the network, as the builder and the cost model see it."""

    name: str  # module path in the network, e.g. "blocks.3.dw"
    block: int  # paper row: 0 for the stem, 1-13 for the blocks
    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    depthwise: bool


def layer_plan(cfg: MobileNetConfig) -> list[ConvSpec]:
    """Every convolution of the network described by ``cfg``, in order."""

    def width(c: int) -> int:
        return scale_channels(c, cfg.alpha, cfg.min_channels, cfg.channel_divisor)

    stem = width(STEM_CHANNELS)
    plan = [ConvSpec("stem", 0, 3, stem, 3, STEM_STRIDE, False)]
    cin = stem
    for block, (stride, channels) in BLOCKS.items():
        if cfg.variant == "shallow" and block in SHALLOW_REMOVED:
            continue
        cout = width(channels)
        if cfg.variant == "conv":
            plan.append(ConvSpec(f"blocks.{block}.conv", block, cin, cout, 3, stride, False))
        else:
            plan.append(ConvSpec(f"blocks.{block}.dw", block, cin, cin, 3, stride, True))
            plan.append(ConvSpec(f"blocks.{block}.pw", block, cin, cout, 1, 1, False))
        cin = cout
    return plan


__all__ = ["BLOCKS", "SHALLOW_REMOVED", "STEM_CHANNELS", "STEM_STRIDE", "ConvSpec", "layer_plan"]
