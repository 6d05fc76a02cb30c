"""The numbers the paper prints (Howard et al., 2017, Tables 2-9 and 13), to compare ours against.

Mult-adds and parameters are in millions, as printed; accuracies are ImageNet top-1 in percent.
Table 13 (COCO detection) prints billions of mult-adds, millions of parameters and COCO mAP.
"""

from __future__ import annotations

import math

# Table 2 (1.0 MobileNet-224): share of mult-adds and of parameters, percent, by layer kind.
# The first conv's mult-add share is printed 1.19; a straight count gives 1.91, which also makes
# the column sum to 100.01 (99.29 with 1.19) - the printed figure is almost certainly a digit swap. We report 1.91.
TABLE2 = {
    "conv1x1": (94.86, 74.59),
    "dw3x3": (3.06, 1.06),
    "conv3x3": (1.19, 0.02),
    "fc": (0.18, 24.33),
}

# Table 3: one 14x14 layer, M = N = 512, 3x3 kernel: (mult-adds M, params M).
TABLE3 = {
    "Convolution": (462, 2.36),
    "Depthwise Separable Conv": (52.3, 0.27),
    "alpha = 0.75": (29.6, 0.15),
    "rho = 0.714": (15.1, 0.15),
}

# Tables 4-9: registry model or reference network -> (top-1 %, mult-adds M, params M).
TABLE4 = {  # depthwise separable vs full convolutions
    "mobilenet_v1_conv_1.0_224": (71.7, 4866, 29.3),
    "mobilenet_v1_1.0_224": (70.6, 569, 4.2),
}
TABLE5 = {  # thinner vs shallower
    "mobilenet_v1_0.75_224": (68.4, 325, 2.6),
    "mobilenet_v1_shallow_1.0_224": (65.3, 307, 2.9),
}
TABLE6 = {  # width multiplier
    "mobilenet_v1_1.0_224": (70.6, 569, 4.2),
    "mobilenet_v1_0.75_224": (68.4, 325, 2.6),
    "mobilenet_v1_0.5_224": (63.7, 149, 1.3),
    "mobilenet_v1_0.25_224": (50.6, 41, 0.5),
}
TABLE7 = {  # resolution multiplier
    "mobilenet_v1_1.0_224": (70.6, 569, 4.2),
    "mobilenet_v1_1.0_192": (69.1, 418, 4.2),
    "mobilenet_v1_1.0_160": (67.2, 290, 4.2),
    "mobilenet_v1_1.0_128": (64.4, 186, 4.2),
}
TABLE8 = {  # vs popular models
    "mobilenet_v1_1.0_224": (70.6, 569, 4.2),
    "torchvision:googlenet": (69.8, 1550, 6.8),
    "torchvision:vgg16": (71.5, 15300, 138),
}
TABLE9 = {  # small MobileNet vs popular small models
    "mobilenet_v1_0.5_160": (60.2, 76, 1.32),
    "torchvision:squeezenet1_0": (57.5, 1700, 1.25),
    "torchvision:alexnet": (57.2, 720, 60),
}

TABLES = {
    "Table 4: Depthwise Separable vs Full Convolution MobileNet": TABLE4,
    "Table 5: Narrow vs Shallow MobileNet": TABLE5,
    "Table 6: MobileNet Width Multiplier": TABLE6,
    "Table 7: MobileNet Resolution": TABLE7,
    "Table 8: MobileNet Comparison to Popular Models": TABLE8,
    "Table 9: Smaller MobileNet Comparison to Popular Models": TABLE9,
}


def _decimals(printed: float) -> int:
    text = repr(float(printed)).rstrip("0").rstrip(".")
    return len(text.split(".")[1]) if "." in text else 0


def printed_match(value: float, printed: float) -> str:
    """How ``value`` relates to a figure the paper prints with some number of decimals:
    ``"rounded"`` if rounding half up gives the printed figure, ``"truncated"`` if only
    cutting the extra digits does, ``""`` if neither does."""
    d = _decimals(printed)
    scale = 10**d
    if math.floor(value * scale + 0.5) == round(printed * scale):
        return "rounded"
    if math.floor(value * scale) == round(printed * scale):
        return "truncated"
    return ""


def figures(name: str) -> tuple[float, float, float] | None:
    """(top-1 %, mult-adds M, params M) the paper prints for a registry model or reference
    network, from the first of Tables 4-9 that lists it; None if none does."""
    for table in TABLES.values():
        if name in table:
            return table[name]
    return None


# Table 13: COCO object detection with a 1.0 MobileNet backbone, 90 COCO classes + background:
# (detector, input size) -> (mAP % on COCO test-dev, billion mult-adds, million parameters).
# The paper also lists deeplab-VGG / Inception V2 under SSD 300 (21.1 % 34.9 B 33.1 M; 22.0 % 3.8 B
# 13.7 M) and VGG / Inception V2 under Faster R-CNN 300 (22.9 % 64.3 B 138.5 M; 15.4 % 118.2 B
# 13.3 M) and 600 (25.7 % 149.6 B 138.5 M; 21.9 % 129.6 B 13.3 M).
TABLE13 = {
    ("ssd", 300): (19.3, 1.2, 6.8),
    ("faster_rcnn", 300): (16.4, 25.2, 6.1),
    ("faster_rcnn", 600): (19.8, 30.5, 6.1),
}
