"""What SSD, SSDLite and Faster R-CNN on a MobileNet cost, counted as the paper counts (Table 13).

The conventions are the classifier's (:mod:`mobilenets.cost.count`): mult-adds of convolutions and
fully connected layers; ``params`` are their weights, ``params_total`` adds biases and BatchNorm's
gamma/beta (and equals ``sum(p.numel())`` of the built detector). Counted per part:

* SSD / SSDLite: ``backbone`` (the stem and blocks 1-13 at the input size), ``extras`` (the four
  extra maps), ``heads`` (box and class predictors over the six maps, K + 1 class columns).
* Faster R-CNN: ``backbone`` (up to block 11, the RPN's tap, on a square input of the given size),
  ``rpn`` (3x3 conv, objectness and box 1x1 convs), ``second stage`` (blocks 12-13 on each
  proposal's crop and the classifier + class-specific box regressor, times ``proposals``: 300).

:func:`detector_cost` counts from the formulas; :func:`measure_detector_cost` counts a forward
pass of the real modules with :func:`~mobilenets.cost.count.measure_cost`; the tests hold the two
equal, layer for layer in total, and against the paper's printed figures.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from mobilenets.cost.count import (
    LayerCost,
    analytical_cost,
    depthwise_conv_cost,
    pointwise_conv_cost,
    standard_conv_cost,
)
from mobilenets.models.plan import layer_plan


@dataclass
class DetectorCost:
    """The cost of one detector, part by part (each a list of :class:`LayerCost`)."""

    detector: str
    resolution: int
    num_classes: int  # object classes (the heads have one more column: background)
    parts: dict[str, list[LayerCost]] = field(default_factory=dict)
    config: dict[str, Any] | None = None
    proposals: int | None = None

    def part(self, name: str) -> dict[str, int]:
        layers = self.parts[name]
        return {"mult_adds": sum(x.mult_adds for x in layers), "params": sum(x.params for x in layers),
                "params_total": sum(x.params + x.extra_params for x in layers)}

    @property
    def mult_adds(self) -> int:
        return sum(self.part(n)["mult_adds"] for n in self.parts)

    @property
    def params(self) -> int:
        return sum(self.part(n)["params"] for n in self.parts)

    @property
    def params_total(self) -> int:
        return sum(self.part(n)["params_total"] for n in self.parts)

    def to_dict(self) -> dict[str, Any]:
        return {"detector": self.detector, "resolution": self.resolution, "num_classes": self.num_classes,
                "proposals": self.proposals, "mult_adds": self.mult_adds, "params": self.params,
                "params_total": self.params_total, "parts": {n: self.part(n) for n in self.parts},
                "config": self.config}


def _conv(name: str, cin: int, cout: int, k: int, size_in: int, stride: int, *, depthwise: bool = False,
          extra: int = 0, times: int = 1) -> LayerCost:
    out = math.ceil(size_in / stride)
    if depthwise:
        ma, p = depthwise_conv_cost(k, cin, out)
    elif k == 1:
        ma, p = pointwise_conv_cost(cin, cout, out)
    else:
        ma, p = standard_conv_cost(k, cin, cout, out)
    kind = f"dw{k}x{k}" if depthwise else f"conv{k}x{k}"
    return LayerCost(name, kind, (cin, size_in, size_in), (cout, out, out), (k, k), stride, ma * times, p, extra)


def _fc(name: str, cin: int, cout: int, times: int = 1) -> LayerCost:
    return LayerCost(name, "fc", (cin,), (cout,), None, 1, cin * cout * times, cin * cout, cout)


def _ssd_parts(config) -> dict[str, list[LayerCost]]:
    from mobilenets.tasks.detect.anchor_specs import box_specs
    from mobilenets.tasks.detect.config import extra_depths

    backbone = [x for x in analytical_cost(config.backbone.replace(num_classes=0, resolution=config.resolution)).layers
                if x.kind != "pool"]
    taps = [x for x in backbone if x.out_shape[1] == math.ceil(config.resolution / 16)][-1:] + backbone[-1:]
    maps = [(t.out_shape[0], t.out_shape[1]) for t in taps]
    extras: list[LayerCost] = []
    lite = config.detector == "ssdlite"
    for i, (mid, out) in enumerate(extra_depths(config), start=1):
        c, s = maps[-1]
        extras.append(_conv(f"extras.{i}.1x1", c, mid, 1, s, 1, extra=2 * mid))
        if lite:
            extras.append(_conv(f"extras.{i}.dw", mid, mid, 3, s, 2, depthwise=True, extra=2 * mid))
            extras.append(_conv(f"extras.{i}.pw", mid, out, 1, math.ceil(s / 2), 1, extra=2 * out))
        else:
            extras.append(_conv(f"extras.{i}.3x3", mid, out, 3, s, 2, extra=2 * out))
        maps.append((out, math.ceil(s / 2)))
    heads: list[LayerCost] = []
    columns = config.num_classes + 1
    for i, ((c, s), boxes) in enumerate(zip(maps, box_specs())):
        for what, per_anchor in (("class", columns), ("box", 4)):
            n = len(boxes) * per_anchor
            if lite:  # torchvision's SSDLiteHead: 3x3 depthwise + BN + ReLU6, then a 1x1 with bias
                heads.append(_conv(f"heads.{i}.{what}.dw", c, c, 3, s, 1, depthwise=True, extra=2 * c))
                heads.append(_conv(f"heads.{i}.{what}.pw", c, n, 1, s, 1, extra=n))
            else:
                heads.append(_conv(f"heads.{i}.{what}", c, n, config.head_kernel, s, 1, extra=n))
    return {"backbone": backbone, "extras": extras, "heads": heads}


def _faster_rcnn_parts(config) -> dict[str, list[LayerCost]]:
    cfg = config.backbone.replace(num_classes=0, resolution=config.resolution)
    plan, stride, tap = layer_plan(cfg), 1, 0
    for spec in plan:  # the RPN's tap: the last block at stride 16 (block 11; block 6 when shallow)
        stride *= spec.stride
        if stride == 16:
            tap = spec.block
    layers = [x for x in analytical_cost(cfg).layers if x.kind != "pool"]
    first = [x for x, spec in zip(layers, plan) if spec.block <= tap]
    c, s = first[-1].out_shape[:2]
    a = len(config.anchor_scales) * len(config.anchor_ratios)
    rpn = [_conv("rpn.conv", c, c, 3, s, 1, extra=c), _conv("rpn.objectness", c, a, 1, s, 1, extra=a),
           _conv("rpn.boxes", c, 4 * a, 1, s, 1, extra=4 * a)]
    p = config.proposals
    size = config.crop_size // 2 if config.crop_pool else config.crop_size
    second: list[LayerCost] = []
    for spec in (spec for spec in plan if spec.block > tap):
        layer = _conv(f"second.{spec.name}", spec.in_channels, spec.out_channels, spec.kernel, size, spec.stride,
                      depthwise=spec.depthwise, extra=2 * spec.out_channels, times=p)
        second.append(layer)
        size = layer.out_shape[1]
    features, columns = second[-1].out_shape[0], config.num_classes + 1
    second += [_fc("second.class", features, columns, p), _fc("second.boxes", features, 4 * columns, p)]
    return {"backbone": first, "rpn": rpn, "second stage": second}


def detector_cost(config) -> DetectorCost:
    """The analytical cost of the detector a :class:`~mobilenets.tasks.detect.config.DetectorConfig`
    describes (Faster R-CNN: on a square input of ``config.resolution``, ``config.proposals``)."""
    parts = _ssd_parts(config) if config.is_ssd else _faster_rcnn_parts(config)
    return DetectorCost(config.detector, config.resolution, config.num_classes, parts, config.to_dict(),
                        None if config.is_ssd else config.proposals)


def measure_detector_cost(config) -> DetectorCost:
    """The same parts counted on a forward pass of the real modules (hooks on every conv/FC)."""
    import torch
    from torch import nn

    from mobilenets.cost.count import measure_cost
    from mobilenets.tasks.detect.build import build_detector

    model = build_detector(config).eval()
    r = config.resolution

    class Chain(nn.Module):  # owns its stages, so that measure_cost's hooks see every conv in them
        def __init__(self, *stages: nn.Module, lists: bool = False) -> None:
            super().__init__()
            self.stages, self.lists = nn.ModuleList(stages), lists

        def forward(self, x):
            for stage in self.stages:
                x = stage(list(x.values()) if isinstance(x, dict) else x)
            return x

    if config.is_ssd:
        backbone = measure_cost(model.backbone.features, (3, r, r)).layers
        extras = measure_cost(nn.Sequential(*model.backbone.extras), (model.backbone.out_channels[1],
                                                                      math.ceil(r / 32), math.ceil(r / 32))).layers
        whole = measure_cost(Chain(model.backbone, model.head), (3, r, r)).layers
        parts = {"backbone": backbone, "extras": extras, "heads": whole[len(backbone) + len(extras):]}
    else:
        first = measure_cost(Chain(model.backbone, model.rpn.head), (3, r, r)).layers
        n = len(measure_cost(model.backbone, (3, r, r)).layers)
        c, crop = model.backbone.out_channels, config.crop_size
        with torch.no_grad():
            per_crop = measure_cost(Chain(model.roi_heads.box_head, model.roi_heads.box_predictor),
                                    (c, crop, crop)).layers
        times = [dataclasses.replace(x, mult_adds=x.mult_adds * config.proposals) for x in per_crop]
        parts = {"backbone": first[:n], "rpn": first[n:], "second stage": times}
    parts = {k: [x for x in v if x.kind != "pool"] for k, v in parts.items()}
    return DetectorCost(config.detector, r, config.num_classes, parts, config.to_dict(),
                        None if config.is_ssd else config.proposals)


def detector_cost_text(cost: DetectorCost, printed: tuple[float, float, float] | None = None) -> str:
    """One row per part and the totals (millions), with the paper's figures when given."""
    from mobilenets.cost.report import format_table

    rows = [[name, f"{v['mult_adds'] / 1e6:,.1f}", f"{v['params'] / 1e6:.3f}", f"{v['params_total'] / 1e6:.3f}"]
            for name, v in ((n, cost.part(n)) for n in cost.parts)]
    rows.append(["total", f"{cost.mult_adds / 1e6:,.1f}", f"{cost.params / 1e6:.3f}", f"{cost.params_total / 1e6:.3f}"])
    alpha = (cost.config or {}).get("backbone", {}).get("alpha", 1.0)
    title = (f"{cost.detector} on MobileNet alpha={alpha:g} at {cost.resolution} px, {cost.num_classes} classes + "
             f"background" + (f", {cost.proposals} proposals" if cost.proposals else ""))
    out = [title, format_table(["part", "mult-adds (M)", "params (M)", "params incl. BN/bias (M)"], rows, "lrrr")]
    if printed is not None:
        out.append(f"paper Table 13: {printed[1]:g} billion mult-adds, {printed[2]:g} million parameters "
                   f"(ours {cost.mult_adds / 1e9:.2f} / {cost.params / 1e6:.2f})")
    return "\n".join(out)


__all__ = ["DetectorCost", "detector_cost", "detector_cost_text", "measure_detector_cost"]
