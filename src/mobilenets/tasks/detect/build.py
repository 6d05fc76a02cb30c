"""Build the detector a :class:`~mobilenets.tasks.detect.config.DetectorConfig` describes.

Apart from ``config.py`` so that the config stays data only: the builders (``ssd``,
``faster_rcnn``) import the config, and this module imports them.
"""

from __future__ import annotations

from torch import nn

from mobilenets.errors import MobileNetsError
from mobilenets.models.mobilenet import MobileNet
from mobilenets.tasks.detect.config import DetectorConfig
from mobilenets.tasks.detect.faster_rcnn import build_faster_rcnn
from mobilenets.tasks.detect.ssd import build_ssd


def build_detector(config: DetectorConfig, backbone=None):
    """The detector ``config`` describes, on ``backbone`` (a :class:`~mobilenets.models.mobilenet.
    MobileNet` whose weights to start from; its config must match ``config.backbone`` but for
    classes and resolution) or on a new MobileNet."""
    if backbone is None:
        backbone = MobileNet(config.backbone)
    else:
        ours = config.backbone.replace(num_classes=0)
        # BatchNorm momentum is a training setting, not architecture: the detector's wins
        theirs = backbone.config.replace(num_classes=0, resolution=ours.resolution, bn_momentum=ours.bn_momentum)
        if ours != theirs:
            raise MobileNetsError(f"the backbone's config {theirs} does not match the detector's {ours}")
        for m in backbone.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = ours.bn_momentum
        backbone.config = backbone.config.replace(bn_momentum=ours.bn_momentum)
    if config.is_ssd:
        return build_ssd(config, backbone)
    return build_faster_rcnn(config, backbone)


__all__ = ["build_detector"]
