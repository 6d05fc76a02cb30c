"""Detection augmentation with torchvision ``transforms.v2``: boxes move with the image.

:class:`DetectAugment` is what a detection run augments with, read from its
:class:`~mobilenets.train.recipes.Recipe`: ``crop_min_area`` < 1 turns on SSD's random crop
(torchvision's ``RandomIoUCrop``: crops whose IoU with some box reaches 0, 0.1, 0.3, 0.5, 0.7 or
0.9, or no crop, like TF's ``ssd_random_crop``; TF's area range 0.1-1 is a side of
``sqrt(0.1) ~ 0.32``), ``hflip`` the flips, ``color_jitter`` > 0 torchvision's
``RandomPhotometricDistort``; ``zoom_out`` (the modern preset) torchvision's ``RandomZoomOut``
(the image placed on a canvas up to 4x its size), as in torchvision's SSD recipe.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2 as T

from mobilenets.errors import MobileNetsError, arg
from mobilenets.utils.serial import JsonDataclass

ZOOM_FILL = 127  # canvas grey around a zoomed-out image (0 after the [-1, 1] scaling)


@dataclass(frozen=True)
class DetectAugment(JsonDataclass):
    # SSD random crop (RandomIoUCrop), with the smallest crop side as a fraction of the image.
    crop: bool = True
    crop_min_scale: float = 0.3
    # Random horizontal flips.
    hflip: bool = True
    # Random brightness/contrast/saturation/hue and channel order (RandomPhotometricDistort).
    photometric: bool = False
    # Random zoom-out onto a canvas up to 4x the image (RandomZoomOut).
    zoom_out: bool = False

    @classmethod
    def from_recipe(cls, recipe, zoom_out: bool | None = None) -> DetectAugment:
        if recipe.randaugment:
            raise MobileNetsError(f"randaugment is not used for detection, got {arg('randaugment', recipe.randaugment)}")
        return cls(crop=recipe.crop_min_area < 1, crop_min_scale=math.sqrt(recipe.crop_min_area), hflip=recipe.hflip,
                   photometric=recipe.color_jitter > 0,
                   zoom_out=recipe.name == "modern" if zoom_out is None else bool(zoom_out))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DetectAugment:
        return cls(**data)


class WhenBoxes(T.Transform):
    """Apply ``transform`` only to samples that have boxes (``RandomIoUCrop`` loops forever
    looking for a crop around a box when there is none)."""

    def __init__(self, transform: T.Transform) -> None:
        super().__init__()
        self.inner = transform

    def forward(self, *inputs: Any) -> Any:
        sample = inputs if len(inputs) > 1 else inputs[0]
        boxes = [v for v in (sample[1].values() if isinstance(sample[1], dict) else []) if
                 isinstance(v, tv_tensors.BoundingBoxes)]
        if boxes and boxes[0].shape[0] > 0:
            return self.inner(*inputs)
        return sample


def train_transforms(aug: DetectAugment, size: int | None) -> T.Compose:
    """PIL image + target -> augmented float image in [0, 1] + target; resized to ``size`` x
    ``size`` when given (SSD), else left for the model to resize (Faster R-CNN)."""
    steps: list[Any] = [T.ToImage()]
    if aug.zoom_out:
        steps.append(T.RandomZoomOut(fill={tv_tensors.Image: ZOOM_FILL, "others": 0}, side_range=(1.0, 4.0), p=0.5))
    if aug.crop:
        steps.append(WhenBoxes(T.RandomIoUCrop(min_scale=aug.crop_min_scale)))
    if aug.hflip:
        steps.append(T.RandomHorizontalFlip())
    if size is not None:
        steps.append(T.Resize((size, size), antialias=True))
    if aug.photometric:  # after the resize: per-pixel colour work on the (usually smaller) input
        steps.append(T.RandomPhotometricDistort(p=0.5))
    steps += [T.SanitizeBoundingBoxes(min_size=1.0), T.ToDtype(torch.float32, scale=True)]
    return T.Compose(steps)


def eval_transforms(size: int | None) -> T.Compose:
    """PIL image + target -> float image in [0, 1] (resized to ``size`` x ``size`` for SSD)."""
    steps: list[Any] = [T.ToImage()]
    if size is not None:
        steps.append(T.Resize((size, size), antialias=True))
    steps.append(T.ToDtype(torch.float32, scale=True))
    return T.Compose(steps)


__all__ = ["DetectAugment", "WhenBoxes", "eval_transforms", "train_transforms"]
