"""SSD and SSDLite on the MobileNet taps, as the TF Object Detection API's ``ssd_mobilenet_v1``.

The network is torchvision's ``SSD`` (matching with every ground-truth box forced to its best
anchor, box coder weights (10, 10, 5, 5), smooth-L1, softmax cross-entropy with 3:1 hard
negatives, per-class NMS) with our parts plugged in:

* :class:`SSDBackbone`: the pointwise outputs of block 11 (stride 16) and block 13 (stride 32)
  from :func:`~mobilenets.models.features.feature_extractor`, then four extra maps (TF's
  ``multi_resolution_feature_maps``): a 1x1 conv to half the depth and a 3x3 stride-2 conv, each
  with BatchNorm and ReLU6; SSDLite makes the 3x3 a depthwise + 1x1 pair.
* :class:`~mobilenets.tasks.detect.anchors.SSDAnchorGenerator`: TF's anchors (1917 at 300 px).
* Heads: TF's 1x1 box predictor (torchvision's ``SSDScoringHead`` over our convs, since
  ``SSDHead`` hard-codes 3x3), or torchvision's ``SSDLiteHead`` (3x3 depthwise + 1x1).
* :class:`MobileNetSSD` adds what ``SSD`` cannot express: TF's per-class sigmoid loss and scores
  (``classification="sigmoid"``); with ``"softmax"`` it is torchvision's SSD unchanged.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.ssd import SSD, SSDScoringHead
from torchvision.models.detection.ssdlite import SSDLiteHead
from torchvision.ops import boxes as box_ops

from mobilenets.models.features import feature_extractor
from mobilenets.models.layers import Float32ConvBNAct
from mobilenets.models.mobilenet import MobileNet
from mobilenets.tasks.detect.anchor_specs import config_box_specs
from mobilenets.tasks.detect.anchors import SSDAnchorGenerator
from mobilenets.tasks.detect.config import IMAGE_MEAN, IMAGE_STD, DetectorConfig, extra_depths

SSD_TAPS = (16, 32)  # block 11 and block 13 (block 6 and 13 in the shallow variant)
TOPK_CANDIDATES = 400  # per class, before NMS (torchvision's SSD default)
SIGMOID_PRIOR = 0.01  # initial object probability of the sigmoid head (see MobileNetSSD)


class SSDBackbone(nn.Module):
    """The six SSD feature maps, as an ``OrderedDict``; ``out_channels`` lists their depths."""

    def __init__(self, model: MobileNet, config: DetectorConfig) -> None:
        super().__init__()
        self.features = feature_extractor(model, SSD_TAPS)
        # TF uses ReLU6 (and the backbone's BN settings and padding) in the extra layers. They run
        # in float32 under CPU bf16 autocast: oneDNN's bf16 backward of these small convs (on 3x3 to
        # 1x1 maps) gave non-finite weight gradients within 3 steps (measured at 160 and 96 px), and
        # they hold ~5 % of SSD's mult-adds.
        cfg = model.config.replace(activation="relu6")
        channels = list(self.features.out_channels)
        self.extras = nn.ModuleList()
        for mid, out in extra_depths(config):
            layers = [Float32ConvBNAct(channels[-1], mid, 1, 1, False, cfg)]
            if config.detector == "ssdlite":
                layers += [Float32ConvBNAct(mid, mid, 3, 2, True, cfg), Float32ConvBNAct(mid, out, 1, 1, False, cfg)]
            else:
                layers.append(Float32ConvBNAct(mid, out, 3, 2, False, cfg))
            self.extras.append(nn.Sequential(*layers))
            channels.append(out)
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        maps = self.features(x)
        last = next(reversed(maps.values()))
        for i, extra in enumerate(self.extras, start=1):
            last = extra(last)
            maps[f"extra{i}"] = last
        return maps


class ConvSSDHead(nn.Module):
    """TF's convolutional box predictor: one conv per map for the box codes and one for the class
    logits (``kernel`` 1 in ssd_mobilenet_v1). Same outputs as torchvision's ``SSDHead``."""

    def __init__(self, in_channels: list[int], num_anchors: list[int], num_columns: int, kernel: int = 1) -> None:
        super().__init__()

        def convs(per_anchor: int) -> nn.ModuleList:
            return nn.ModuleList(nn.Conv2d(c, a * per_anchor, kernel, padding=kernel // 2)
                                 for c, a in zip(in_channels, num_anchors))

        self.classification_head = SSDScoringHead(convs(num_columns), num_columns)
        self.regression_head = SSDScoringHead(convs(4), 4)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"bbox_regression": self.regression_head(x), "cls_logits": self.classification_head(x)}


class MobileNetSSD(SSD):
    """torchvision's ``SSD`` plus TF's per-class sigmoid (``classification="sigmoid"``): logits
    for background + K classes, each a binary cross-entropy (background's target is 1 on
    negatives), hard negatives ranked by their summed loss, 3 per positive; scores are the
    sigmoids of the K object classes. ``"softmax"`` keeps torchvision's loss and scores."""

    def __init__(self, *args, classification: str = "softmax", box_scales=(10.0, 10.0, 5.0, 5.0),
                 clip_before_nms: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.classification = classification
        # TF's scales come in its code order (y, x, h, w); torchvision's BoxCoder takes (x, y, w, h)
        y, x, h, w = box_scales
        self.box_coder = det_utils.BoxCoder(weights=(x, y, w, h))
        self.clip_before_nms = clip_before_nms

    def compute_loss(self, targets, head_outputs, anchors, matched_idxs):
        if self.classification == "softmax":
            return super().compute_loss(targets, head_outputs, anchors, matched_idxs)
        # torchvision computes the softmax cross-entropy inline, so the sigmoid loss is written out;
        # the box part is the same smooth-L1 over positives.
        logits = head_outputs["cls_logits"]
        box_losses, cls_targets = [], []
        for target, regression, anchors_i, matched in zip(targets, head_outputs["bbox_regression"], anchors,
                                                          matched_idxs):
            fg = torch.where(matched >= 0)[0]
            encoded = self.box_coder.encode_single(target["boxes"][matched[fg]], anchors_i[fg])
            box_losses.append(F.smooth_l1_loss(regression[fg], encoded, reduction="sum"))
            labels = torch.zeros(logits.shape[1], dtype=torch.int64, device=logits.device)
            labels[fg] = target["labels"][matched[fg]]
            cls_targets.append(labels)
        labels = torch.stack(cls_targets)
        onehot = F.one_hot(labels, logits.shape[-1]).to(logits.dtype)
        per_anchor = F.binary_cross_entropy_with_logits(logits, onehot, reduction="none").sum(-1)
        positive = labels > 0
        negative_loss = per_anchor.detach().masked_fill(positive, -math.inf)
        rank = negative_loss.argsort(1, descending=True).argsort(1)
        hard = rank < self.neg_to_pos_ratio * positive.sum(1, keepdim=True)
        n = max(1, int(positive.sum()))
        return {"bbox_regression": torch.stack(box_losses).sum() / n,
                "classification": (per_anchor[positive].sum() + per_anchor[hard].sum()) / n}

    def postprocess_detections(self, head_outputs, image_anchors, image_shapes):
        if self.classification == "softmax":
            return super().postprocess_detections(head_outputs, image_anchors, image_shapes)
        scores = torch.sigmoid(head_outputs["cls_logits"])
        detections = []
        for codes, score, anchors, shape in zip(head_outputs["bbox_regression"], scores, image_anchors, image_shapes):
            boxes = self.box_coder.decode_single(codes, anchors)
            if self.clip_before_nms:
                boxes = box_ops.clip_boxes_to_image(boxes, shape)
            found = select_detections(boxes, score[:, 1:], self.score_thresh, self.nms_thresh,
                                      self.detections_per_img, self.topk_candidates)
            if not self.clip_before_nms:  # face-api: NMS on the decoded boxes, the kept ones clipped
                found["boxes"] = box_ops.clip_boxes_to_image(found["boxes"], shape)
            detections.append(found)
        return detections


def select_detections(boxes: torch.Tensor, scores: torch.Tensor, score_thresh: float, nms_thresh: float,
                      keep: int, topk: int = TOPK_CANDIDATES) -> dict[str, torch.Tensor]:
    """Per class: scores above ``score_thresh``, the ``topk`` best, NMS at ``nms_thresh``; then the
    ``keep`` best overall. ``scores`` is ``[anchors, K]`` without background; labels are 1-based."""
    all_boxes, all_scores, all_labels = [], [], []
    for k in range(scores.shape[1]):
        s = scores[:, k]
        idx = torch.where(s > score_thresh)[0]
        s, order = s[idx].topk(min(topk, idx.numel()))
        all_boxes.append(boxes[idx[order]])
        all_scores.append(s)
        all_labels.append(torch.full_like(s, k + 1, dtype=torch.int64))
    b, s, lab = torch.cat(all_boxes), torch.cat(all_scores), torch.cat(all_labels)
    kept = box_ops.batched_nms(b, s, lab, nms_thresh)[:keep]
    return {"boxes": b[kept], "scores": s[kept], "labels": lab[kept]}


def build_ssd(config: DetectorConfig, model: MobileNet) -> MobileNetSSD:
    """SSD or SSDLite as ``config`` says, on the taps of ``model`` (its own modules)."""
    backbone = SSDBackbone(model, config)
    anchors = SSDAnchorGenerator(config_box_specs(config))
    per_location = anchors.num_anchors_per_location()
    columns = config.num_classes + 1  # background is column 0 for softmax and sigmoid alike (TF's layout)
    if config.detector == "ssdlite":
        norm = partial(nn.BatchNorm2d, eps=config.backbone.bn_eps, momentum=config.backbone.bn_momentum)
        head = SSDLiteHead(backbone.out_channels, per_location, columns, norm)
    else:
        head = ConvSSDHead(backbone.out_channels, per_location, columns, config.head_kernel)
    if config.classification == "sigmoid":
        # the focal-loss prior: every class starts at probability 0.01, so the first steps are not
        # dominated by the log-loss of ~1917 x K confident mistakes
        # (and background at 0.99)
        prior = math.log((1 - SIGMOID_PRIOR) / SIGMOID_PRIOR)
        for per_map in head.classification_head.module_list:
            last = [m for m in per_map.modules() if isinstance(m, nn.Conv2d)][-1]  # the conv producing logits
            with torch.no_grad():
                last.bias.view(-1, columns).copy_(torch.full((columns,), -prior).index_fill_(0, torch.tensor(0), prior))
    size = (config.resolution, config.resolution)
    return MobileNetSSD(backbone, anchors, size, columns, image_mean=IMAGE_MEAN, image_std=IMAGE_STD, head=head,
                        score_thresh=config.score_thresh, nms_thresh=config.nms_thresh,
                        detections_per_img=config.detections, iou_thresh=config.match_iou,
                        topk_candidates=config.nms_candidates, classification=config.classification,
                        box_scales=config.box_scales, clip_before_nms=config.clip_before_nms)


__all__ = ["ConvSSDHead", "MobileNetSSD", "SSDBackbone", "build_ssd", "extra_depths", "select_detections"]
