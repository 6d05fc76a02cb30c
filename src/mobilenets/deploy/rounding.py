"""Learned rounding of int8 conv weights (AdaRound-style), with the biases corrected as it goes.

Rounding each weight to the nearest point of the int8 grid is not what keeps a layer's *output*
closest to float: the rounding errors of the weights that meet the same input add up. AdaRound
(Nagel et al., "Up or Down? Adaptive Rounding for Post-Training Quantization", ICML 2020) learns,
per weight, whether to round down or up, to minimise the layer's output error on calibration
images. What is done here, layer after layer in the folded network (:class:`~mobilenets.deploy.
fold.InferenceNet`):

1. The layer's input ``x`` comes from the already rounded (and bias-corrected) layers before it,
   the target ``y`` is the float layer's output on the float network's own input (so each layer
   also compensates what the rounded layers before it got wrong, as in BRECQ's and AdaRound's
   asymmetric reconstruction).
2. The layer is linear in its weights, so the mean squared output error of any weights ``w`` over
   every output position of every calibration image is exactly a quadratic form
   ``w Cxx w - 2 w Cxy + Var(y)`` of the inputs' covariance (``Cxx``: per output channel, the
   covariance of the ``k*k*Cin`` inputs it reads, one matrix for a full conv and one 9x9 matrix
   per channel for a depthwise one) with the best bias for those weights chosen in closed form.
   The statistics are gathered once per layer; the optimisation then never touches the images,
   which is what makes it fast on a CPU.
3. Each weight ``w = s * (floor(w/s) + h)`` with ``h = clip(sigmoid(V) * 1.2 - 0.1, 0, 1)`` (the
   rectified sigmoid of the paper), ``V`` learned by Adam under a regulariser that pushes every
   ``h`` to 0 or 1 (its exponent annealed from 20 to 2), after a warm-up without it. The learned
   rounding is then made hard, and kept only where it lowers the layer's measured error below
   round-to-nearest's (so no layer gets worse on its own objective).
4. The bias becomes the best one for the rounded weights, ``mean(y) - w . mean(x)``: bias
   correction (:func:`mobilenets.deploy.ptq.bias_correction`) for the learned weights.

The grid is the exporters' own: symmetric, per output channel, scale ``max|w| / qmax`` (``qmax``
127 for int8; the caller passes the grid its format uses). The element(s) at ``max|w|`` are not
moved, so each channel's scale is unchanged and every exporter's quantizer recovers exactly the
learned integers; the returned network's weights lie on the grid (``w = s * q``).

Written here because none of the exporters' quantizers (PT2E, ONNX Runtime, the TFLite converter)
offers learned rounding, and torch.ao has none for these paths; AIMET does, but is a heavy
dependency with its own model-preparation rules for a few dozen lines of optimisation.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mobilenets.deploy.fold import InferenceNet

INT8_QMAX = 127  # symmetric int8 weights: integers -127..127, scale max|w| / 127
ZETA, GAMMA = 1.1, -0.1  # the rectified sigmoid's stretch (AdaRound's values)


@dataclass(frozen=True)
class RoundingSettings:
    """How hard to optimise each layer. ``iterations`` of Adam at learning rate ``lr``; the first
    ``warmup`` fraction without the regulariser, whose weight is ``reg_weight`` (relative to the
    layer's round-to-nearest error) and whose exponent goes from ``beta[0]`` to ``beta[1]``."""

    iterations: int = 100
    lr: float = 0.05
    warmup: float = 0.2
    reg_weight: float = 30.0
    beta: tuple[float, float] = (20.0, 2.0)
    batch_size: int = 16  # images per batch while the statistics are gathered


def layer_qmax(qmax: int | Callable[[nn.Conv2d], int], layer: nn.Conv2d) -> int:
    """``qmax`` of ``layer``'s grid: ``qmax`` itself, or ``qmax(layer)`` where the grid differs per
    conv (the default int8 ONNX form: 8-bit depthwise, 7-bit other convs;
    :func:`mobilenets.deploy.ort.weight_qmax`)."""
    return qmax(layer) if callable(qmax) else qmax


def grid_scale(weight: torch.Tensor, qmax: int = INT8_QMAX) -> torch.Tensor:
    """Per output channel scale of the symmetric grid: ``max|w| / qmax`` (shape ``[C, 1, ...]``)."""
    dims = tuple(range(1, weight.dim()))
    return (weight.abs().amax(dim=dims, keepdim=True) / qmax).clamp(min=1e-12)


def round_to_grid(weight: torch.Tensor, qmax: int = INT8_QMAX) -> torch.Tensor:
    """``weight`` rounded to the nearest point of its symmetric per-channel grid."""
    scale = grid_scale(weight, qmax)
    return (weight / scale).round().clamp(-qmax, qmax) * scale


# --------------------------------------------------------------------------- statistics


class _Stats:
    """Running sums for the quadratic form of one conv layer (float64). ``groups`` is 1 (a full
    conv: one ``D x D`` covariance, ``D = Cin*k*k``) or the channel count (depthwise: one
    ``k*k x k*k`` covariance per channel)."""

    def __init__(self, conv: nn.Conv2d) -> None:
        self.conv = conv
        self.depthwise = conv.groups > 1
        self.n = 0
        self.sx = self.sxx = self.sxy = self.sy = self.syy = None

    def patches(self, x: torch.Tensor) -> torch.Tensor:
        c = self.conv
        if c.kernel_size == (1, 1) and c.stride == (1, 1) and c.padding in ((0, 0), 0) and not self.depthwise:
            return x.flatten(2)  # [N, Cin, L]: a 1x1 conv reads one pixel
        return F.unfold(x, c.kernel_size, dilation=c.dilation, padding=c.padding, stride=c.stride)

    def add(self, x: torch.Tensor, y: torch.Tensor) -> None:
        p = self.patches(x)  # [N, D_all, L]
        y = y.flatten(2)  # [N, Cout, L]
        n, _, length = p.shape
        if self.depthwise:
            ch = y.shape[1]
            p = p.view(n, ch, -1, length)  # [N, C, k*k, L]
            sx = p.sum(dim=(0, 3)).double()
            sxx = torch.einsum("ncil,ncjl->cij", p, p).double()
            sxy = torch.einsum("ncil,ncl->ci", p, y).double()
        else:
            rows = p.transpose(1, 2).reshape(-1, p.shape[1])  # [N*L, D]
            out = y.transpose(1, 2).reshape(-1, y.shape[1])  # [N*L, Cout]
            sx = rows.sum(0).double()
            sxx = (rows.T @ rows).double()
            sxy = (rows.T @ out).double()  # [D, Cout]
        sy = y.sum(dim=(0, 2)).double()
        syy = (y * y).sum(dim=(0, 2)).double()
        if self.n == 0:
            self.sx, self.sxx, self.sxy, self.sy, self.syy = sx, sxx, sxy, sy, syy
        else:
            self.sx += sx
            self.sxx += sxx
            self.sxy += sxy
            self.sy += sy
            self.syy += syy
        self.n += n * length

    def quadratic(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(Cxx, Cxy, var_y, mean_x, mean_y)``, float32, laid out per output channel:
        ``Cxx`` [D, D] (shared) or [C, K, K]; ``Cxy`` [Cout, D] or [C, K]."""
        n = self.n
        mx, my = self.sx / n, self.sy / n
        if self.depthwise:
            cxx = self.sxx / n - mx[:, :, None] * mx[:, None, :]
            cxy = self.sxy / n - mx * my[:, None]
        else:
            cxx = self.sxx / n - torch.outer(mx, mx)
            cxy = (self.sxy / n - torch.outer(mx, my)).T
        var = self.syy / n - my * my
        return cxx.float(), cxy.float(), var.float(), mx.float(), my.float()

    def normalised(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
        """``(Cxx, Cxy, var_y, unit)`` divided by ``unit`` (the inputs' mean variance), with what is
        left below 1e-30 set to 0: float32 subnormals make every product ~100x slower on x86."""
        cxx, cxy, var, _, _ = self.quadratic()
        diag = cxx.diagonal(dim1=-2, dim2=-1)
        unit = float(diag.double().mean()) if float(diag.double().mean()) > 0 else 1.0

        def clean(t: torch.Tensor) -> torch.Tensor:
            t = t / unit
            return torch.where(t.abs() < 1e-30, torch.zeros_like(t), t)

        return clean(cxx), clean(cxy), clean(var), unit


# --------------------------------------------------------------------------- one layer


def _output_error(w: torch.Tensor, cxx: torch.Tensor, cxy: torch.Tensor, var: torch.Tensor,
                  depthwise: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean squared output error per output channel of weights ``w`` ([Cout, D]) with the best
    bias, and its gradient with respect to ``w`` (``Cxx`` is symmetric)."""
    prod = torch.einsum("ci,cij->cj", w, cxx) if depthwise else w @ cxx
    err = (w * prod).sum(1) - 2 * (w * cxy).sum(1) + var
    return err, 2 * (prod - cxy)


@dataclass
class LayerResult:
    name: str
    error_nearest: float  # the layer's mean squared output error, round-to-nearest (bias corrected)
    error_learned: float  # the same with the learned rounding (kept only where lower)
    kept: bool  # whether the learned rounding was kept


def learn_layer_rounding(weight: torch.Tensor, stats: _Stats, qmax: int = INT8_QMAX,
                         settings: RoundingSettings = RoundingSettings()) -> tuple[torch.Tensor, float, float]:
    """Learned rounding of one conv's ``weight`` on its ``qmax`` grid, for the statistics
    ``stats``; returns ``(weight on the grid, error with round-to-nearest, error learned)``."""
    cxx, cxy, var, unit = stats.normalised()
    shape = weight.shape
    w = weight.detach().reshape(shape[0], -1).float()
    scale = grid_scale(w, qmax)
    ratio = w / scale
    floor = ratio.floor()
    nearest = ratio.round().clamp(-qmax, qmax)
    # The channel's largest |w| stays where it is (its rounding fixes the scale every exporter derives).
    fixed = nearest.abs() >= qmax
    frac = (ratio - floor).clamp(1e-4, 1 - 1e-4)
    v = torch.logit((frac - GAMMA) / (ZETA - GAMMA))
    dw = stats.depthwise
    err_nearest = _output_error(nearest * scale, cxx, cxy, var, dw)[0].sum()
    norm = float(err_nearest.clamp(min=1e-20))
    free = ~fixed
    n_free = max(1, int(free.sum()))
    # The gradient is written out rather than taken by autograd: on a 1024x1024 layer autograd's
    # elementwise passes cost 3-4x the one matrix product an iteration needs.
    v.grad = torch.zeros_like(v)
    opt = torch.optim.Adam([v], lr=settings.lr)
    warm = int(settings.warmup * settings.iterations)
    for it in range(settings.iterations):
        sig = torch.sigmoid(v)
        stretched = sig * (ZETA - GAMMA) + GAMMA
        h = stretched.clamp(0, 1)
        wq = torch.where(fixed, nearest, floor + h).mul_(scale)
        _, grad = _output_error(wq, cxx, cxy, var, dw)
        dh = grad.mul_(scale / norm)  # d(error / norm) / dh
        if it >= warm:
            t = (it - warm) / max(1, settings.iterations - warm)
            beta = settings.beta[0] + t * (settings.beta[1] - settings.beta[0])
            # regulariser mean(1 - |2h - 1|^beta) over the free weights: pushes each h to 0 or 1
            centred = 2 * h - 1
            dh -= (settings.reg_weight * 2 * beta / n_free) * centred.abs().pow(beta - 1) * centred.sign()
        inside = (stretched > 0) & (stretched < 1) & free
        v.grad.copy_(dh * sig * (1 - sig) * (ZETA - GAMMA) * inside)
        opt.step()
    h = (torch.sigmoid(v) * (ZETA - GAMMA) + GAMMA).clamp(0, 1)
    learned = torch.where(fixed, nearest, floor + (h >= 0.5).float())
    err_learned = _output_error(learned * scale, cxx, cxy, var, dw)[0].sum()
    e_near, e_learned = float(err_nearest) * unit, float(err_learned) * unit
    if e_learned < e_near:
        return (learned * scale).reshape(shape), e_near, e_learned
    return (nearest * scale).reshape(shape), e_near, e_near


def _best_bias(weight: torch.Tensor, stats: _Stats) -> torch.Tensor:
    _, _, _, mx, my = stats.quadratic()
    w = weight.reshape(weight.shape[0], -1)
    return my - (w * mx).sum(1) if stats.depthwise else my - w @ mx


# --------------------------------------------------------------------------- the network


def learned_rounding(net: InferenceNet, images: np.ndarray, qmax: int | Callable[[nn.Conv2d], int] = INT8_QMAX,
                     settings: RoundingSettings = RoundingSettings(), *, learn: bool = True,
                     progress: Callable[[int, int], None] | None = None) -> tuple[InferenceNet, list[LayerResult]]:
    """A copy of ``net`` whose conv weights lie on the ``qmax`` grid with learned rounding and
    whose conv biases are the best for them (see the module docstring), measured on ``images``
    (float32 NCHW, preprocessed; ~128 suffice). ``learn=False``: round to nearest, biases
    corrected the same way (bias correction through the exact statistics). ``progress(i, n)``
    is called after each conv. Returns the network and, per conv, its errors."""
    out = copy.deepcopy(net).eval()
    convs = [i for i, m in enumerate(out.features) if isinstance(m, nn.Conv2d)]
    bs = settings.batch_size
    results: list[LayerResult] = []
    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
        ref, rnd = x, x  # the float network's activations and the rounded chain's
        for idx, (orig, layer) in enumerate(zip(net.features, out.features)):
            if not isinstance(layer, nn.Conv2d):
                ref, rnd = orig(ref), layer(rnd)
                continue
            if layer.groups not in (1, layer.in_channels) or layer.padding_mode != "zeros":
                raise ValueError(f"features.{idx}: only full and depthwise zero-padded convs are handled")
            target = torch.cat([orig(ref[i:i + bs]) for i in range(0, len(ref), bs)])
            stats = _Stats(layer)
            for i in range(0, len(rnd), bs):
                stats.add(rnd[i:i + bs], target[i:i + bs])
            if learn:
                w, e_near, e_learned = learn_layer_rounding(layer.weight, stats, layer_qmax(qmax, layer), settings)
            else:
                w = round_to_grid(layer.weight, layer_qmax(qmax, layer))
                e_near = e_learned = float("nan")
            layer.weight.copy_(w)
            layer.bias.copy_(_best_bias(w, stats))
            results.append(LayerResult(f"features.{idx}", e_near, e_learned, e_learned < e_near))
            ref = target
            rnd = torch.cat([layer(rnd[i:i + bs]) for i in range(0, len(rnd), bs)])
            if progress is not None:
                progress(len(results), len(convs))
    return out, results


__all__ = ["INT8_QMAX", "LayerResult", "RoundingSettings", "grid_scale", "learn_layer_rounding", "learned_rounding",
           "round_to_grid"]
