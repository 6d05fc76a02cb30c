"""The network's building blocks: conv -> BatchNorm -> ReLU/ReLU6, and TensorFlow "SAME" padding.

:func:`same_padding` is the one TF-SAME rule in the package: the network (:class:`Conv2dSame`),
the BN-folded export network and the TensorFlow/TFLite graph builders all call it.
"""

from __future__ import annotations

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from mobilenets.models.config import MobileNetConfig


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "SAME" padding ``(before, after)`` of one spatial axis of length ``size``: the
    output is ``ceil(size / stride)`` and any odd padding goes after. On an even input a stride-2
    3x3 conv pads (0, 1), not PyTorch's (1, 1)."""
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def tf_same_pad(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """``x`` zero-padded like TensorFlow's "SAME" for a ``kernel`` x ``kernel`` conv of ``stride``."""
    top, bottom = same_padding(x.shape[-2], kernel, stride)
    left, right = same_padding(x.shape[-1], kernel, stride)
    return F.pad(x, [left, right, top, bottom])


# The padding depends on the input size, which torch.fx only knows at run time: one opaque call
# in a traced graph (torchvision's create_feature_extractor traces through here).
torch.fx.wrap("tf_same_pad")


class Conv2dSame(nn.Conv2d):
    """A Conv2d with TensorFlow "SAME" padding, computed from the input size at run time.

    The padding lives inside the conv so that the conv still sees (and a cost counter still
    records) the unpadded input, as with ``padding=1``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(tf_same_pad(x, self.kernel_size[0], self.stride[0]))


class ConvBNAct(nn.Module):
    """Conv (no bias: BN follows) -> BatchNorm -> ReLU/ReLU6, with symmetric or TF-SAME padding.

    ``forward`` has no branches, so the network traces with ``torch.fx``. Speed workarounds that
    depend on the run (see :func:`strided_depthwise_in_float32`) are applied by swapping a block's
    class, never by a branch here."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, depthwise: bool,
                 cfg: MobileNetConfig) -> None:
        super().__init__()
        tf_same = cfg.padding == "tf_same"
        self.conv = (Conv2dSame if tf_same else nn.Conv2d)(
            in_channels, out_channels, kernel, stride,
            padding=0 if tf_same else kernel // 2,
            groups=in_channels if depthwise else 1,
            bias=False,
        )
        self.bn = nn.BatchNorm2d(out_channels, eps=cfg.bn_eps, momentum=cfg.bn_momentum)
        self.act = nn.ReLU6(inplace=True) if cfg.activation == "relu6" else nn.ReLU(inplace=True)

    @property
    def strided_depthwise(self) -> bool:
        return self.conv.groups > 1 and self.conv.groups == self.conv.in_channels and self.conv.stride[0] > 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class Float32ConvBNAct(ConvBNAct):
    """A :class:`ConvBNAct` that runs in float32 even under CPU autocast (see
    :func:`strided_depthwise_in_float32`). Same parameters and state-dict keys as its base."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            with torch.autocast("cpu", enabled=False):
                return self.act(self.bn(self.conv(x.float())))
        return self.act(self.bn(self.conv(x)))


def strided_depthwise_in_float32(model: nn.Module) -> int:
    """Make every stride-2 depthwise block of ``model`` run in float32 under CPU autocast, in
    place; returns how many blocks were changed. The training step applies it for bf16 on CPU.

    Why: oneDNN's bfloat16 backward of a stride-2 depthwise conv is 3-14x slower than its float32
    one (batch 32, 1.0-224: 169 vs 68 ms at 64x112x112, 49 vs 3.5 ms at 512x14x14), while the
    stride-1 ones are faster in bfloat16. These four layers hold ~1 % of the mult-adds, so float32
    costs little; bf16 training at 1.0-224 is ~1.3x faster with it. Only the class changes (no
    new parameters, same state dict), so checkpoints are unaffected."""
    changed = 0
    for module in model.modules():
        if type(module) is ConvBNAct and module.strided_depthwise:
            module.__class__ = Float32ConvBNAct
            changed += 1
    return changed
