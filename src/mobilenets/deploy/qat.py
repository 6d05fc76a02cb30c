"""Quantization-aware fine-tuning of a folded network before int8 export.

The fake quantization mirrors what the int8 exporters do: weights per output channel, symmetric
int8 (ONNX Runtime and TFLite both quantize conv weights so), activations per tensor, asymmetric
8-bit with min/max ranges. Gradients pass straight through the rounding (torch's fake-quantize
ops). The result is a float network again: the exporter quantizes its fine-tuned weights.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from mobilenets.deploy.fold import InferenceNet


class _FakeQuant(nn.Module):
    """Per-tensor asymmetric 8-bit fake quantization of activations with an EMA of min/max."""

    def __init__(self, momentum: float = 0.01) -> None:
        super().__init__()
        self.momentum = momentum
        self.register_buffer("lo", torch.tensor(float("nan")))
        self.register_buffer("hi", torch.tensor(float("nan")))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            lo, hi = x.detach().min().clamp(max=0), x.detach().max().clamp(min=0)
            if torch.isnan(self.lo):
                self.lo.copy_(lo), self.hi.copy_(hi)
            else:
                self.lo.lerp_(lo, self.momentum), self.hi.lerp_(hi, self.momentum)
        scale = float(max((self.hi - self.lo).item(), 1e-8) / 255.0)
        zero = int(min(max(round(-self.lo.item() / scale), 0), 255))
        return torch.fake_quantize_per_tensor_affine(x, scale, zero, 0, 255)


class _QConv(nn.Module):
    """A conv whose weights are fake-quantized per output channel, symmetric int8 (as ORT/TFLite)."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.conv.weight
        scale = (w.detach().abs().amax(dim=(1, 2, 3)) / 127.0).clamp(min=1e-12)
        zero = torch.zeros_like(scale, dtype=torch.int32)
        wq = torch.fake_quantize_per_channel_affine(w, scale, zero, 0, -127, 127)
        return nn.functional.conv2d(x, wq, self.conv.bias, self.conv.stride, self.conv.padding,
                                    self.conv.dilation, self.conv.groups)


def qat_finetune(net: InferenceNet, images: np.ndarray, labels: np.ndarray, epochs: int,
                 lr: float = 1e-4, batch_size: int = 64, seed: int = 0) -> InferenceNet:
    """Quantization-aware fine-tuning of a folded network: weights fake-quantized per channel,
    every activation (input, each ReLU, pool) fake-quantized per tensor, trained with the
    straight-through estimator (cross-entropy, Adam) on ``images``/``labels``. Returns a new
    float network with the fine-tuned weights, to be quantized by the exporter; ``net`` is not
    changed."""
    net = copy.deepcopy(net)
    layers: list[nn.Module] = [_FakeQuant()]
    for layer in net.features:
        if isinstance(layer, nn.Conv2d):
            layers.append(_QConv(layer))
        else:
            layers.append(layer)
            if isinstance(layer, (nn.ReLU, nn.ReLU6)):
                layers.append(_FakeQuant())
    qnet = InferenceNet(nn.Sequential(*layers), net.classifier)
    gen = torch.Generator().manual_seed(seed)
    x_all, y_all = torch.from_numpy(images), torch.from_numpy(labels).long()
    opt = torch.optim.Adam([p for p in qnet.parameters() if p.requires_grad], lr=lr)
    qnet.train()
    with torch.no_grad():  # observe the activation ranges before any weight moves
        for i in range(0, len(x_all), batch_size):
            qnet(x_all[i:i + batch_size])
    for _ in range(epochs):
        order = torch.randperm(len(x_all), generator=gen)
        for i in range(0, len(order), batch_size):
            b = order[i:i + batch_size]
            loss = nn.functional.cross_entropy(qnet(x_all[b]), y_all[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return net.eval()  # the same conv/linear modules, now fine-tuned
