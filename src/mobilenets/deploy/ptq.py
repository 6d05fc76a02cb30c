"""Post-training remedies for int8 that act on the float weights before any quantizer sees them:
:data:`INT8_METHODS`, each made by :func:`prepare_int8`.

- ``plain``: the folded network as it is (the exporter's quantizer rounds to nearest);
- ``bias_correction``: :func:`bias_correction` below;
- ``learned_rounding``: AdaRound-style learned rounding with exact bias correction
  (:func:`mobilenets.deploy.rounding.learned_rounding`).

**Bias correction** (Nagel et al., "Data-Free Quantization", 2019, empirical variant): rounding
a layer's weights to int8 shifts the mean of its outputs, and in a folded MobileNet the shift is
large where BatchNorm put a big gain into a channel (a depthwise channel whose output barely
varies before BatchNorm). The shift per output channel, ``E[conv(x, W_q)] - E[conv(x, W)]``, is
measured on calibration images and subtracted from the bias, layer after layer, with the inputs
of each layer coming from the already corrected, weight-quantized layers before it. The rounding
simulated is the one every int8 format here applies to conv weights: symmetric, per output
channel, scale ``max|w| / qmax`` (127; 64 for the 7-bit weights of the ONNX form's non-depthwise convs). Biases stay float in every engine (int32 at run time), so the
corrected network is handed to any exporter as it is.

:func:`graph_bias_correction` is the same correction for a network that is a graph rather than a
sequence of folded layers (a detector: backbone, extra layers, heads): each conv's float inputs are
caught by a hook, and the shift of its BatchNorm-folded weights' rounding goes into the BatchNorm's
beta (or the conv's bias where no BatchNorm follows).

Written here because none of the exporters' own quantizers (PT2E, ONNX Runtime, the TFLite
converter) offers it; AIMET (``aimet-torch``) does for PyTorch, but is not worth a dependency for
these few lines.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from mobilenets.deploy.fold import InferenceNet
from mobilenets.deploy.rounding import layer_qmax

INT8_MAX = 127
INT8_METHODS = ("plain", "bias_correction", "learned_rounding")  # weakest first: export prefers the later on a tie


def quantize_weight(weight: torch.Tensor, qmax: int = INT8_MAX) -> torch.Tensor:
    """``weight`` rounded as the int8 exporters round conv weights (symmetric, per output channel,
    integers -qmax..qmax: 127 for int8, 64 for ONNX Runtime's 7-bit ``reduce_range``)."""
    from mobilenets.deploy.rounding import round_to_grid

    return round_to_grid(weight, qmax)


def bias_correction(net: InferenceNet, images: np.ndarray, batch_size: int = 64,
                    qmax: int | Callable[[nn.Conv2d], int] = INT8_MAX) -> InferenceNet:
    """A copy of ``net`` whose conv biases cancel the mean output shift of int8 weight rounding
    (on the ``qmax`` grid: one for every conv, or a function of the conv), measured on ``images`` (float32 NCHW, preprocessed; a few hundred
    suffice). ``net`` is not changed; the float weights are kept (the exporters round them)."""
    corrected = copy.deepcopy(net).eval()
    rounded = copy.deepcopy(net).eval()  # the weight-quantized chain whose biases are corrected too
    with torch.no_grad():
        for layer in rounded.features:
            if isinstance(layer, nn.Conv2d):
                layer.weight.copy_(quantize_weight(layer.weight, layer_qmax(qmax, layer)))
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


def prepare_int8(net: InferenceNet, method: str, images: np.ndarray,
                 qmax: int | Callable[[nn.Conv2d], int] = INT8_MAX, *,
                 progress: bool = False, iterations: int | None = None) -> tuple[InferenceNet, dict]:
    """``net`` made ready for the int8 exporters by ``method`` (one of :data:`INT8_METHODS`),
    measured on ``images``, for weights on the ``qmax`` grid; returns the network and a few
    figures for the export's report. ``progress``: a progress bar for learned rounding;
    ``iterations``: its optimisation steps per layer (default: :class:`~mobilenets.deploy.rounding.
    RoundingSettings`')."""
    if method not in INT8_METHODS:
        raise ValueError(f"unknown int8 method {method!r}; choose one of {', '.join(INT8_METHODS)}")
    if method == "plain":
        return net, {}
    if method == "bias_correction":
        return bias_correction(net, images, qmax=qmax), {"images": len(images)}
    from mobilenets.deploy.rounding import RoundingSettings, learned_rounding

    settings = RoundingSettings() if iterations is None else RoundingSettings(iterations=iterations)

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=sum(isinstance(m, nn.Conv2d) for m in net.features), desc="learned rounding",
                   unit="layer", leave=False)
    try:
        out, layers = learned_rounding(net, images, qmax, settings, progress=None if bar is None else lambda i, n: bar.update(1))
    finally:
        if bar is not None:
            bar.close()
    near = sum(r.error_nearest for r in layers)
    learned = sum(r.error_learned for r in layers)
    return out, {"images": len(images), "iterations": settings.iterations, "layers": len(layers), "layers_improved": sum(r.kept for r in layers),
                 "output_error_vs_nearest": round(learned / near, 4) if near > 0 else None}


def conv_bn_pairs(model: nn.Module) -> list[tuple[nn.Conv2d, nn.BatchNorm2d | None]]:
    """Every conv of ``model`` with the BatchNorm that directly follows it among its siblings
    (:class:`~mobilenets.models.layers.ConvBNAct`, torchvision's ``Conv2dNormActivation``), or None."""
    pairs: list[tuple[nn.Conv2d, nn.BatchNorm2d | None]] = []
    for parent in model.modules():
        children = list(parent.children())
        for i, child in enumerate(children):
            if isinstance(child, nn.Conv2d):
                after = children[i + 1] if i + 1 < len(children) else None
                pairs.append((child, after if isinstance(after, nn.BatchNorm2d) else None))
    return pairs


def graph_bias_correction(model: nn.Module, run: Callable[[nn.Module], None],
                          qmax_of: Callable[[torch.Size, int], int]) -> nn.Module:
    """A copy of ``model`` whose conv outputs (after their BatchNorm) cancel the mean shift that
    rounding their BatchNorm-folded weights to the int8 grid causes (``qmax_of(weight_shape,
    groups)``: the grid's largest integer, e.g. :func:`mobilenets.deploy.ort.weight_qmax`),
    measured while ``run(copy)`` feeds calibration images through the copy (the float network's
    inputs to each conv). ``model`` is not changed."""
    import torch.nn.functional as F

    from mobilenets.deploy.rounding import round_to_grid
    from mobilenets.models.layers import Conv2dSame, tf_same_pad

    out = copy.deepcopy(model).eval()
    pairs = conv_bn_pairs(out)
    deltas, shifts = {}, {}
    with torch.no_grad():
        for conv, bn in pairs:
            scale = torch.ones(conv.out_channels) if bn is None else bn.weight / torch.sqrt(bn.running_var + bn.eps)
            folded = conv.weight * scale.view(-1, 1, 1, 1)
            deltas[conv] = round_to_grid(folded, qmax_of(folded.shape, conv.groups)) - folded

        def catch(conv, inputs):
            x = inputs[0]
            if isinstance(conv, Conv2dSame):  # its padding is applied in its forward, from the input size
                x = tf_same_pad(x, conv.kernel_size[0], conv.stride[0])
            y = F.conv2d(x, deltas[conv], None, conv.stride, conv.padding, conv.dilation, conv.groups)
            total, n = shifts.get(conv, (0.0, 0))
            shifts[conv] = (total + y.mean(dim=(2, 3)).sum(0), n + y.shape[0])

        hooks = [conv.register_forward_pre_hook(catch) for conv, _ in pairs]
        try:
            run(out)
        finally:
            for h in hooks:
                h.remove()
        for conv, bn in pairs:
            if conv not in shifts:
                continue
            total, n = shifts[conv]
            if bn is not None:
                bn.bias -= total / n
            elif conv.bias is not None:
                conv.bias -= total / n
    return out
