"""SSD anchors exactly as the TensorFlow Object Detection API's ``ssd_mobilenet_v1`` makes them.

TF's ``multiple_grid_anchor_generator.create_ssd_anchors`` (with the values of
``ssd_mobilenet_v1_coco.config``): 6 feature maps, scales ``s_k`` evenly spaced from 0.2 to 0.95
(then 1.0 appended), boxes ``(s_k, ar)`` for the aspect ratios 1, 2, 0.5, 3, 0.3333 plus one
``(sqrt(s_k * s_k+1), 1)``; the lowest map reduced to ``(0.1, 1), (0.2, 2), (0.2, 0.5)``. A box
``(s, ar)`` has height ``s / sqrt(ar) * base_h`` and width ``s * sqrt(ar) * base_w``, where
``base = (min(H, W) / H, min(H, W) / W)`` keeps anchors square in pixels on non-square inputs;
centres sit at ``(i + 0.5) / rows``, ``(j + 0.5) / cols``. The order is map -> row -> column ->
box, the order of TF's anchor tensor (and of the box predictor outputs). At 300 px the maps are
19, 10, 5, 3, 2, 1 and there are 1917 anchors.

torchvision's ``DefaultBoxGenerator`` cannot express this (it has no reduced lowest layer, a
different box order and it clips to the image), hence :class:`SSDAnchorGenerator`, which has the
interface torchvision's ``SSD`` calls (``forward(image_list, feature_maps)`` -> per-image anchors in
pixel ``xyxy``; ``num_anchors_per_location()``). Faster R-CNN's grid anchors are torchvision's
``AnchorGenerator`` as they are (see :mod:`mobilenets.tasks.detect.faster_rcnn`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from mobilenets.errors import MobileNetsError

# TF's box rule and its values live in the torch-free ``anchor_specs`` (the cost model counts the
# heads from it); they stay importable from here.
from mobilenets.tasks.detect.anchor_specs import (
    ASPECT_RATIOS,
    INTERPOLATED_RATIO,
    MAX_SCALE,
    MIN_SCALE,
    NUM_LAYERS,
    box_specs,
)


def ssd_feature_map_sizes(height: int, width: int | None = None, num_layers: int = NUM_LAYERS) -> list[tuple[int, int]]:
    """``(rows, cols)`` of SSD's maps for an input of ``height`` x ``width``: block 11 (stride 16),
    block 13 (stride 32), then each extra layer halves, rounding up (a 3x3 stride-2 conv with
    padding 1 or TF "SAME": 300 px -> 19, 10, 5, 3, 2, 1)."""
    width = height if width is None else width
    sizes = [(-(-height // 16), -(-width // 16)), (-(-height // 32), -(-width // 32))]
    while len(sizes) < num_layers:
        h, w = sizes[-1]
        sizes.append((-(-h // 2), -(-w // 2)))
    return sizes[:num_layers]


def ssd_anchors(feature_map_sizes: Sequence[tuple[int, int]], image_size: tuple[int, int] = (1, 1),
                specs: Sequence[Sequence[tuple[float, float]]] | None = None,
                dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Every anchor as normalised ``[cy, cx, h, w]``, in TF's order (map -> row -> column -> box).
    ``image_size`` ``(H, W)`` only matters through its aspect ratio (square anchors in pixels)."""
    specs = box_specs(len(feature_map_sizes)) if specs is None else specs
    if len(specs) != len(feature_map_sizes):
        raise MobileNetsError(f"{len(feature_map_sizes)} feature maps but box specs for {len(specs)}")
    im_h, im_w = image_size
    base_h, base_w = min(im_h, im_w) / im_h, min(im_h, im_w) / im_w
    out = []
    for (rows, cols), boxes in zip(feature_map_sizes, specs):
        scales = torch.tensor([s for s, _ in boxes], dtype=torch.float64)
        ratios = torch.tensor([a for _, a in boxes], dtype=torch.float64).sqrt()
        heights, widths = scales / ratios * base_h, scales * ratios * base_w
        cy = (torch.arange(rows, dtype=torch.float64) + 0.5) / rows
        cx = (torch.arange(cols, dtype=torch.float64) + 0.5) / cols
        n = len(boxes)
        grid = torch.stack([
            cy.view(rows, 1, 1).expand(rows, cols, n),
            cx.view(1, cols, 1).expand(rows, cols, n),
            heights.view(1, 1, n).expand(rows, cols, n),
            widths.view(1, 1, n).expand(rows, cols, n),
        ], dim=-1)
        out.append(grid.reshape(-1, 4))
    return torch.cat(out).to(dtype)


def to_pixel_xyxy(anchors: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Normalised ``[cy, cx, h, w]`` -> pixel ``[x1, y1, x2, y2]`` (torchvision's convention)."""
    cy, cx, h, w = anchors.unbind(-1)
    return torch.stack([(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height], -1)


def anchor_count(resolution: int | tuple[int, int] = 300) -> int:
    """How many SSD anchors an input of ``resolution`` gets (1917 at 300 px)."""
    h, w = (resolution, resolution) if isinstance(resolution, int) else resolution
    return sum(r * c * len(b) for (r, c), b in zip(ssd_feature_map_sizes(h, w), box_specs()))


class SSDAnchorGenerator(nn.Module):
    """TF ``ssd_mobilenet_v1`` anchors for torchvision's ``SSD``: ``forward(image_list,
    feature_maps)`` gives each image's anchors in pixel ``xyxy`` of the (resized) input batch,
    computed from the feature maps' actual sizes, so any input size works. Cached per size."""

    def __init__(self, specs: Sequence[Sequence[tuple[float, float]]] | None = None) -> None:
        super().__init__()
        self.specs = [list(b) for b in (box_specs() if specs is None else specs)]
        # SSD's constructor reads this when it builds its default head (one entry per map)
        self.aspect_ratios = [[a for _, a in b] for b in self.specs]
        self.cache: dict[tuple, torch.Tensor] = {}

    def num_anchors_per_location(self) -> list[int]:
        return [len(b) for b in self.specs]

    def forward(self, image_list, feature_maps: list[torch.Tensor]) -> list[torch.Tensor]:
        height, width = image_list.tensors.shape[-2:]
        sizes = tuple(tuple(int(s) for s in f.shape[-2:]) for f in feature_maps)
        # the images' dtype, not the maps': under bf16 autocast the maps are bf16, and anchors in
        # bf16 (8-bit mantissa) would move by up to half a pixel and break matching and encoding
        images = image_list.tensors
        key = (int(height), int(width), sizes, images.device, images.dtype)
        if key not in self.cache:
            normalised = ssd_anchors(sizes, (int(height), int(width)), self.specs, torch.float64)
            self.cache[key] = to_pixel_xyxy(normalised, int(height), int(width)).to(images.device, images.dtype)
        return [self.cache[key] for _ in range(image_list.tensors.shape[0])]


def grid_anchors(resolution: int, base: int = 256, scales: Sequence[float] = (0.25, 0.5, 1.0, 2.0),
                 ratios: Sequence[float] = (0.5, 1.0, 2.0), stride: int = 16) -> torch.Tensor:
    """Faster R-CNN's first-stage anchors as TF's ``grid_anchor_generator`` makes them for a
    ``resolution`` x ``resolution`` input, normalised ``[cy, cx, h, w]``: centres on the stride
    grid (offset 0), aspect ratio (w / h) outer, scale inner. torchvision's ``AnchorGenerator``
    makes the same set (its ratio is h / w, so within a location the order differs)."""
    rows = -(-resolution // stride)
    out = []
    for i in range(rows):
        for j in range(rows):
            for ratio in ratios:
                for scale in scales:
                    size = scale * base
                    out.append([i * stride, j * stride, size / math.sqrt(ratio), size * math.sqrt(ratio)])
    return torch.tensor(out, dtype=torch.float64) / resolution


def anchors_table(detector: str = "ssd", resolution: int = 300) -> dict:
    """The anchors of ``detector`` ("ssd", "ssdlite", "faster_rcnn") at ``resolution`` px: per map
    (size, boxes per location) and every anchor as normalised ``[cy, cx, h, w]`` in TF's order
    (map -> row -> column -> box): what ``mobilenet detect anchors --json`` prints."""
    if not isinstance(resolution, int) or resolution < 32:
        raise MobileNetsError(f"resolution must be an integer >= 32, got {resolution!r}")
    if detector == "faster_rcnn":
        anchors = grid_anchors(resolution)
        rows = -(-resolution // 16)
        maps = [{"rows": rows, "cols": rows, "per_location": anchors.shape[0] // rows ** 2}]
    elif detector in ("ssd", "ssdlite"):
        fm = ssd_feature_map_sizes(resolution)
        anchors = ssd_anchors(fm, (resolution, resolution), dtype=torch.float64)
        maps = [{"rows": r, "cols": c, "per_location": len(b), "boxes": [list(x) for x in b]}
                for (r, c), b in zip(fm, box_specs())]
    else:
        raise MobileNetsError(f"unknown detector {detector!r}; choose one of ssd, ssdlite, faster_rcnn")
    return {"detector": detector, "resolution": resolution, "count": int(anchors.shape[0]), "maps": maps,
            "format": "normalised [cy, cx, h, w]", "anchors": [[round(v, 7) for v in a] for a in anchors.tolist()]}


__all__ = ["ASPECT_RATIOS", "INTERPOLATED_RATIO", "MAX_SCALE", "MIN_SCALE", "NUM_LAYERS", "SSDAnchorGenerator",
           "anchor_count", "anchors_table", "box_specs", "grid_anchors", "ssd_anchors", "ssd_feature_map_sizes",
           "to_pixel_xyxy"]
