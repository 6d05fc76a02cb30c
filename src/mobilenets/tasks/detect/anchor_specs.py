"""TF's SSD anchor boxes as numbers: which ``(scale, aspect ratio)`` boxes each feature map gets
(``multiple_grid_anchor_generator.create_ssd_anchors`` with ``ssd_mobilenet_v1_coco.config``'s
values). Torch-free, so the cost model (``mobilenet cost --detector``) counts SSD's heads without
loading torch; :mod:`.anchors` turns these boxes into anchor tensors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from mobilenets.errors import MobileNetsError

# ssd_mobilenet_v1_coco.config's ssd_anchor_generator. The config spells 1/3 as 0.3333, which
# is what a TF model's anchors are made of (a 1e-4 difference in box shape otherwise).
NUM_LAYERS = 6
MIN_SCALE, MAX_SCALE = 0.2, 0.95
ASPECT_RATIOS = (1.0, 2.0, 0.5, 3.0, 0.3333)
INTERPOLATED_RATIO = 1.0


def box_specs(num_layers: int = NUM_LAYERS, min_scale: float = MIN_SCALE, max_scale: float = MAX_SCALE,
              aspect_ratios: Sequence[float] = ASPECT_RATIOS, interpolated_ratio: float = INTERPOLATED_RATIO,
              reduce_lowest: bool = True, interpolated_second: bool = False) -> list[list[tuple[float, float]]]:
    """The ``(scale, aspect ratio)`` boxes of each feature map, TF's ``create_ssd_anchors`` rule.
    The in-between box ``(sqrt(s_k * s_k+1), interpolated_ratio)`` comes last (the current TF OD API)
    or, with ``interpolated_second``, right after the first aspect ratio (older exports: it was
    inserted after the ratio-1.0 box, e.g. face-api's SSD-MobileNetV1, whose stored anchors are these)."""
    if num_layers < 2:
        raise MobileNetsError(f"num_layers must be >= 2, got {num_layers!r}")
    scales = [min_scale + (max_scale - min_scale) * i / (num_layers - 1) for i in range(num_layers)] + [1.0]
    specs = []
    for layer in range(num_layers):
        scale, following = scales[layer], scales[layer + 1]
        if layer == 0 and reduce_lowest:
            specs.append([(0.1, 1.0), (scale, 2.0), (scale, 0.5)])
            continue
        boxes = [(scale, ar) for ar in aspect_ratios]
        if interpolated_ratio > 0:
            boxes.insert(1 if interpolated_second else len(boxes), (math.sqrt(scale * following), interpolated_ratio))
        specs.append(boxes)
    return specs


def config_box_specs(config) -> list[list[tuple[float, float]]]:
    """The boxes a :class:`~mobilenets.tasks.detect.config.DetectorConfig` asks for (its
    ``ssd_min_scale``, ``ssd_max_scale``, ``ssd_aspect_ratios`` and ``anchor_order``)."""
    return box_specs(NUM_LAYERS, config.ssd_min_scale, config.ssd_max_scale, config.ssd_aspect_ratios,
                     interpolated_second=config.anchor_order == "interpolated_second")


__all__ = ["ASPECT_RATIOS", "config_box_specs", "INTERPOLATED_RATIO", "MAX_SCALE", "MIN_SCALE", "NUM_LAYERS", "box_specs"]
