"""SSD anchors against a hand computation of the TF Object Detection API's rule."""

from __future__ import annotations

import math

import pytest
import torch

from mobilenets.errors import MobileNetsError
from mobilenets.tasks.detect.anchors import (
    SSDAnchorGenerator,
    anchor_count,
    box_specs,
    ssd_anchors,
    ssd_feature_map_sizes,
    to_pixel_xyxy,
)


def tf_rule(sizes, image_hw=(1, 1)):
    """create_ssd_anchors + tile_anchors written out as loops (ssd_mobilenet_v1_coco.config)."""
    num_layers, min_scale, max_scale = 6, 0.2, 0.95
    ratios = [1.0, 2.0, 0.5, 3.0, 0.3333]
    scales = [min_scale + (max_scale - min_scale) * i / (num_layers - 1) for i in range(num_layers)] + [1.0]
    h_im, w_im = image_hw
    base_h, base_w = min(h_im, w_im) / h_im, min(h_im, w_im) / w_im
    out = []
    for layer, (rows, cols) in enumerate(sizes):
        if layer == 0:
            specs = [(0.1, 1.0), (scales[0], 2.0), (scales[0], 0.5)]
        else:
            specs = [(scales[layer], r) for r in ratios] + [(math.sqrt(scales[layer] * scales[layer + 1]), 1.0)]
        for i in range(rows):
            for j in range(cols):
                for s, r in specs:
                    out.append([(i + 0.5) / rows, (j + 0.5) / cols, s / math.sqrt(r) * base_h,
                                s * math.sqrt(r) * base_w])
    return torch.tensor(out, dtype=torch.float64)


def test_1917_anchors_at_300_equal_the_tf_rule():
    sizes = ssd_feature_map_sizes(300)
    assert sizes == [(19, 19), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)]
    ours = ssd_anchors(sizes)
    assert ours.shape == (1917, 4) and anchor_count(300) == 1917
    assert torch.allclose(ours.double(), tf_rule(sizes), atol=1e-6, rtol=0)
    # spot values: the first box of the lowest map is (0.1, 1) at the first cell; the last is
    # the interpolated box sqrt(0.95 * 1.0) of the 1x1 map, centred
    assert ours[0].tolist() == pytest.approx([0.5 / 19, 0.5 / 19, 0.1, 0.1], abs=1e-7)
    assert ours[1].tolist() == pytest.approx([0.5 / 19, 0.5 / 19, 0.2 / math.sqrt(2), 0.2 * math.sqrt(2)], abs=1e-7)
    assert ours[3].tolist() == pytest.approx([0.5 / 19, 1.5 / 19, 0.1, 0.1], abs=1e-7)  # next column
    assert ours[-1].tolist() == pytest.approx([0.5, 0.5, math.sqrt(0.95), math.sqrt(0.95)], abs=1e-7)


@pytest.mark.parametrize("hw", [(224, 224), (320, 480), (97, 61)])
def test_other_sizes_and_non_square_inputs(hw):
    sizes = ssd_feature_map_sizes(*hw)
    assert torch.allclose(ssd_anchors(sizes, hw).double(), tf_rule(sizes, hw), atol=1e-6, rtol=0)
    if hw[0] != hw[1]:  # square in pixels: h * H == w * W for the aspect-ratio-1 boxes
        a = to_pixel_xyxy(ssd_anchors(sizes, hw, dtype=torch.float64), *hw)[0]
        assert (a[2] - a[0]).item() == pytest.approx((a[3] - a[1]).item())


def test_generator_follows_the_real_feature_maps():
    class Images:
        tensors = torch.zeros(2, 3, 300, 300)

    maps = [torch.zeros(2, 8, s, s) for s in (19, 10, 5, 3, 2, 1)]
    per_image = SSDAnchorGenerator()(Images(), maps)
    assert len(per_image) == 2 and per_image[0].shape == (1917, 4)
    cy, cx, h, w = ssd_anchors(ssd_feature_map_sizes(300)).unbind(-1)
    assert torch.allclose(per_image[0][:, 0], (cx - w / 2) * 300, atol=1e-4)
    assert torch.allclose(per_image[0][:, 3], (cy + h / 2) * 300, atol=1e-4)
    assert SSDAnchorGenerator().num_anchors_per_location() == [3, 6, 6, 6, 6, 6]


def test_mismatched_specs_are_refused():
    with pytest.raises(MobileNetsError, match="1 feature maps but box specs for 6"):
        ssd_anchors([(3, 3)], specs=box_specs())
    with pytest.raises(MobileNetsError, match="num_layers"):
        box_specs(1)
