"""Post-training remedies for int8 that act on the float weights before any quantizer sees them.

**Bias correction** (Nagel et al., "Data-Free Quantization", 2019, empirical variant): rounding
a layer's weights to int8 shifts the mean of its outputs, and in a folded MobileNet the shift is
large where BatchNorm put a big gain into a channel (a depthwise channel whose output barely
varies before BatchNorm). The shift per output channel, ``E[conv(x, W_q)] - E[conv(x, W)]``, is
measured on calibration images and subtracted from the bias, layer after layer, with the inputs
of each layer coming from the already corrected, weight-quantized layers before it. The rounding
simulated is the one every int8 format here applies to conv weights: symmetric, per output
channel, scale ``max|w| / 127``. Biases stay float in every engine (int32 at run time), so the
corrected network is handed to any exporter as it is.

Written here because none of the exporters' own quantizers (PT2E, ONNX Runtime, the TFLite
converter) offers it; AIMET (``aimet-torch``) does for PyTorch, but is not worth a dependency for
these few lines.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from mobilenets.deploy.fold import InferenceNet

INT8_MAX = 127


def quantize_weight(weight: torch.Tensor) -> torch.Tensor:
    """``weight`` rounded as the int8 exporters round conv weights (symmetric, per output channel)."""
    dims = tuple(range(1, weight.dim()))
    scale = (weight.abs().amax(dim=dims, keepdim=True) / INT8_MAX).clamp(min=1e-12)
    return (weight / scale).round().clamp(-INT8_MAX, INT8_MAX) * scale


def bias_correction(net: InferenceNet, images: np.ndarray, batch_size: int = 64) -> InferenceNet:
    """A copy of ``net`` whose conv biases cancel the mean output shift of int8 weight rounding,
    measured on ``images`` (float32 NCHW, preprocessed; a few hundred suffice). ``net`` is not
    changed; the float weights are kept (the exporters round them)."""
    corrected = copy.deepcopy(net).eval()
    rounded = copy.deepcopy(net).eval()  # the weight-quantized chain whose biases are corrected too
    with torch.no_grad():
        for layer in rounded.features:
            if isinstance(layer, nn.Conv2d):
                layer.weight.copy_(quantize_weight(layer.weight))
        x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
        ref, rnd = x, x  # the float model's activations and the rounded chain's
        for orig, q, out in zip(net.features, rounded.features, corrected.features):
            if isinstance(q, nn.Conv2d):
                f_out = torch.cat([orig(ref[i:i + batch_size]) for i in range(0, len(ref), batch_size)])
                q_out = torch.cat([q(rnd[i:i + batch_size]) for i in range(0, len(rnd), batch_size)])
                shift = (q_out - f_out).mean(dim=(0, 2, 3))
                q.bias -= shift
                out.bias -= shift
                ref, rnd = f_out, q_out - shift.view(1, -1, 1, 1)
            else:
                ref, rnd = orig(ref), q(rnd)
    return corrected
