"""The deployable form of a MobileNet: BatchNorm folded into the convolutions, padding explicit.

:func:`inference_network` is what every export format and the fast PyTorch paths start from;
:func:`fold_sequence` is the one BatchNorm fold and padding rule under it, which the detector's
TFLite export uses too.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from mobilenets.models.layers import Conv2dSame, ConvBNAct, same_padding
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


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``conv``'s weight and bias with ``bn`` (running statistics; None: no BatchNorm) folded in.
    torch's ``fuse_conv_bn_weights`` does the arithmetic, here in float64 so the folded float32
    weights are the correctly rounded ones."""
    weight = conv.weight.detach().double()
    bias = None if conv.bias is None else conv.bias.detach().double()
    if bn is None:
        return weight.float(), (torch.zeros(weight.shape[0], dtype=torch.float64) if bias is None else bias).float()
    weight, bias = fuse_conv_bn_weights(
        weight, bias, bn.running_mean.detach().double(), bn.running_var.detach().double(), bn.eps,
        bn.weight.detach().double(), bn.bias.detach().double())
    return weight.detach().float(), bias.detach().float()


def fold_batchnorm(block: ConvBNAct) -> tuple[torch.Tensor, torch.Tensor]:
    """Conv weight and bias of a :class:`~mobilenets.models.layers.ConvBNAct` with its BatchNorm
    folded in (:func:`fold_conv_bn`)."""
    return fold_conv_bn(block.conv, block.bn)


def _leaves(module: nn.Module) -> list[nn.Module]:
    """The convs, BatchNorms and activations of ``module`` in the order its forward applies them
    (only modules whose forward is their children in order are walked)."""
    if isinstance(module, (nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.Identity)):
        return [module]
    if isinstance(module, (ConvBNAct, nn.Sequential)):  # torchvision's Conv2dNormActivation is a Sequential
        return [leaf for child in module.children() for leaf in _leaves(child)]
    raise ValueError(f"cannot fold {type(module).__name__}: only convs, BatchNorms and ReLU/ReLU6 in sequence")


def fold_sequence(module: nn.Module, size: int) -> tuple[list[nn.Module], int]:
    """``module`` (convs, each optionally followed by a BatchNorm, and ReLU/ReLU6, in sequence:
    :class:`~mobilenets.models.layers.ConvBNAct`, ``nn.Sequential``, torchvision's
    ``Conv2dNormActivation``) as deployable layers for a ``size`` px input: ``ZeroPad2d`` where a
    conv's padding is asymmetric, ``Conv2d`` with bias and every BatchNorm folded in
    (:func:`fold_conv_bn`), ``ReLU``/``ReLU6``. TF-SAME convs (:class:`~mobilenets.models.layers.
    Conv2dSame`) get their padding for this size (:func:`~mobilenets.models.layers.same_padding`).
    Also returns the output size. Every exporter (this module's :func:`inference_network`, the
    TensorFlow lowering, the detector's TFLite export) folds through here."""
    items = _leaves(module)
    layers: list[nn.Module] = []
    i = 0
    while i < len(items):
        m = items[i]
        if isinstance(m, nn.Conv2d):
            bn = items[i + 1] if i + 1 < len(items) and isinstance(items[i + 1], nn.BatchNorm2d) else None
            i += 2 if bn is not None else 1
            k, s = m.kernel_size[0], m.stride[0]
            if m.kernel_size[0] != m.kernel_size[1] or m.stride[0] != m.stride[1] or isinstance(m.padding, str):
                raise ValueError("only square kernels and strides with numeric padding are folded")
            if isinstance(m, Conv2dSame):
                before, after = same_padding(size, k, s)
            else:
                if m.padding[0] != m.padding[1]:
                    raise ValueError("only square padding is folded")
                before = after = m.padding[0]
            conv_pad = before
            if before != after:
                layers.append(nn.ZeroPad2d((before, after, before, after)))
                conv_pad = 0
            conv = nn.Conv2d(m.in_channels, m.out_channels, k, s, padding=conv_pad, groups=m.groups, bias=True)
            weight, bias = fold_conv_bn(m, bn)
            with torch.no_grad():
                conv.weight.copy_(weight)
                conv.bias.copy_(bias)
            layers.append(conv)
            size = (size + before + after - k) // s + 1
            continue
        if isinstance(m, nn.BatchNorm2d):
            raise ValueError("a BatchNorm without a conv before it is not folded")
        if isinstance(m, (nn.ReLU, nn.ReLU6)):
            layers.append(nn.ReLU6() if isinstance(m, nn.ReLU6) else nn.ReLU())
        i += 1  # nn.Identity: nothing
    return layers, size


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
    layers, _ = fold_sequence(nn.Sequential(*blocks), size)
    classifier = copy.deepcopy(model.classifier) if isinstance(model.classifier, nn.Linear) else nn.Identity()
    return InferenceNet(nn.Sequential(*layers), classifier).eval()
