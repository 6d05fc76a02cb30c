"""Faster R-CNN on the MobileNet backbone, as the TF Object Detection API's ``faster_rcnn_mobilenet_v1``.

Everything is torchvision's ``FasterRCNN``, configured to TF's recipe:

* first stage: the pointwise output of block 11 (stride 16; 512 channels at alpha 1) from
  :func:`~mobilenets.models.features.feature_extractor`; an ``AnchorGenerator`` with scales
  0.25, 0.5, 1, 2 x 256 px and aspect ratios 0.5, 1, 2 (12 anchors per location, centred on the
  stride-16 grid as TF's ``grid_anchor_generator``); torchvision's ``RPNHead`` (a 3x3 conv, then
  1x1 objectness and box convs); 300 proposals after NMS at 0.7, in training and at test time;
* second stage: ``MultiScaleRoIAlign`` crops each proposal to 14 x 14, a 2 x 2 max-pool makes it
  7 x 7, then blocks 12-13 of the same MobileNet (its own modules: a classification checkpoint
  initialises them too), global average pooling, and a class-specific classifier + box regressor
  (``FastRCNNPredictor``);
* images resized so that the shorter side is 300 or 600 px (the paper's two settings), the longer
  at most ``max_size`` (TF's keep_aspect_ratio_resizer), inputs in [-1, 1].

Differences from TF, none of which changes the network's cost: torchvision's RPN conv keeps the
tap's depth (TF: 512, the same at alpha 1) and its RPN box coder has weights (1, 1, 1, 1); RoIAlign
takes one bilinear sample at each bin's centre (``sampling_ratio=1``), TF's ``crop_and_resize`` one
at each output pixel's grid point. One sample, not 2 x 2: torchvision's CPU RoIAlign backward runs
on one thread, and with 4 samples a bin it took 4.5 s of an 8.2 s training step (batch 8, 192 px,
alpha 1); with one, 2.0 s.
"""

from __future__ import annotations

from torch import nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FasterRCNN, FastRCNNPredictor
from torchvision.ops import MultiScaleRoIAlign

from mobilenets.models.features import feature_extractor
from mobilenets.models.mobilenet import MobileNet
from mobilenets.tasks.detect.config import IMAGE_MEAN, IMAGE_STD, DetectorConfig

RPN_TAP = 16  # the last block at stride 16: block 11 (block 6 in the shallow variant)
PRE_NMS_PROPOSALS = 6000  # RPN boxes scored before NMS (all of them up to ~600 px inputs)


def second_stage(model: MobileNet, tap: str, pool: bool = True) -> nn.Sequential:
    """2 x 2 max-pool (with ``pool``), then the blocks after ``tap`` (12 and 13), global average
    pool, flatten."""
    blocks = model.blocks_after(tap)
    return nn.Sequential(*([nn.MaxPool2d(2, 2)] if pool else []), *blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten(1))


def build_faster_rcnn(config: DetectorConfig, model: MobileNet) -> FasterRCNN:
    """Faster R-CNN as ``config`` says, on ``model``'s stride-16 tap and its last blocks."""
    backbone = feature_extractor(model, (RPN_TAP,))
    tap = backbone.taps[0]
    anchors = AnchorGenerator(sizes=(tuple(s * config.anchor_base for s in config.anchor_scales),),
                              aspect_ratios=(tuple(config.anchor_ratios),))
    roi_pool = MultiScaleRoIAlign(featmap_names=[tap], output_size=config.crop_size, sampling_ratio=1)
    head = second_stage(model, tap, config.crop_pool)
    return FasterRCNN(
        backbone, num_classes=None, min_size=config.resolution, max_size=config.max_size,
        image_mean=IMAGE_MEAN, image_std=IMAGE_STD, rpn_anchor_generator=anchors,
        rpn_pre_nms_top_n_train=PRE_NMS_PROPOSALS, rpn_pre_nms_top_n_test=PRE_NMS_PROPOSALS,
        rpn_post_nms_top_n_train=config.proposals, rpn_post_nms_top_n_test=config.proposals,
        rpn_nms_thresh=config.rpn_nms_thresh, box_roi_pool=roi_pool, box_head=head,
        box_predictor=FastRCNNPredictor(model.num_features, config.num_classes + 1),
        box_score_thresh=config.score_thresh, box_nms_thresh=config.nms_thresh,
        box_detections_per_img=config.detections, box_batch_size_per_image=config.roi_batch,
    )


__all__ = ["RPN_TAP", "build_faster_rcnn", "second_stage"]
