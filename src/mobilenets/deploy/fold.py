"""The deployable form of a MobileNet: BatchNorm folded into the convolutions, padding explicit.

:func:`inference_network` is what every export format and the fast PyTorch paths start from.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from mobilenets.models.layers import ConvBNAct, same_padding
from mobilenets.models.mobilenet import MobileNet, layer_plan


class InferenceNet(nn.Module):
    """The deployable form of a MobileNet: ``features`` (pad/conv-with-bias/activation only),
    global average pool, flatten, classifier (or none). Same logits as the eager model."""

    def __init__(self, features: nn.Sequential, classifier: nn.Module) -> None:
        super().__init__()
        self.features = features
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def fold_batchnorm(block: ConvBNAct) -> tuple[torch.Tensor, torch.Tensor]:
    """Conv weight and bias with the BatchNorm (running statistics) folded in. torch's
    ``fuse_conv_bn_weights`` does the arithmetic, here in float64 so the folded float32 weights
    are the correctly rounded ones."""
    conv, bn = block.conv, block.bn
    weight, bias = fuse_conv_bn_weights(
        conv.weight.detach().double(), None if conv.bias is None else conv.bias.detach().double(),
        bn.running_mean.detach().double(), bn.running_var.detach().double(), bn.eps,
        bn.weight.detach().double(), bn.bias.detach().double())
    return weight.detach().float(), bias.detach().float()


def inference_network(model: MobileNet, resolution: int | None = None) -> InferenceNet:
    """``model`` with BatchNorm folded and padding explicit for a ``resolution`` px input
    (default: the model's own). The result is a new module; ``model`` is not changed."""
    if not isinstance(model, MobileNet):
        raise TypeError(f"expected a MobileNet, got {type(model).__name__}")
    cfg = model.config
    size = int(resolution or cfg.resolution)
    blocks = [m for m in model.modules() if isinstance(m, ConvBNAct)]
    plan = layer_plan(cfg)
    if len(blocks) != len(plan):
        raise ValueError(f"the model has {len(blocks)} conv blocks but its config describes {len(plan)}")
    layers: list[nn.Module] = []
    for block in blocks:
        src = block.conv
        k, s = src.kernel_size[0], src.stride[0]
        if cfg.padding == "tf_same":
            before, after = same_padding(size, k, s)
        else:
            before = after = src.padding[0]
        conv_pad = before
        if before != after:
            layers.append(nn.ZeroPad2d((before, after, before, after)))
            conv_pad = 0
        conv = nn.Conv2d(src.in_channels, src.out_channels, k, s, padding=conv_pad, groups=src.groups, bias=True)
        weight, bias = fold_batchnorm(block)
        with torch.no_grad():
            conv.weight.copy_(weight)
            conv.bias.copy_(bias)
        layers.append(conv)
        layers.append(nn.ReLU6() if cfg.activation == "relu6" else nn.ReLU())
        size = (size + before + after - k) // s + 1
    classifier = copy.deepcopy(model.classifier) if isinstance(model.classifier, nn.Linear) else nn.Identity()
    return InferenceNet(nn.Sequential(*layers), classifier).eval()
