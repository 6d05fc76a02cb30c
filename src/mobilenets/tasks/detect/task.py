"""Detection as a :class:`~mobilenets.train.tasks.Task` of the one training loop, and its recipes.

torchvision's detectors compute their losses inside ``forward`` from the targets, so a batch's
inputs are ``(images, targets)`` (:func:`~mobilenets.tasks.detect.data.collate_detection`): in
training the model gets both and returns its loss parts, in evaluation the images alone and
returns detections, which :class:`~mobilenets.tasks.detect.evaluate.DetectionMetrics` scores
with COCO's numbers at the end of the validation pass. ``AP`` picks ``best.safetensors``. No
change to the loop was needed.

Recipes (:data:`DETECT_PRESETS`): ``tf_ssd`` is the TF Object Detection API's
``ssd_mobilenet_v1_coco.config``; ``modern`` is AdamW with warm-up and cosine decay, photometric
distortion, zoom-out, SSD crops and flips (torchvision's SSD augmentation), which trains from
scratch in far fewer steps.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mobilenets.errors import MobileNetsError
from mobilenets.tasks.detect.build import build_detector
from mobilenets.tasks.detect.config import DetectorConfig
from mobilenets.tasks.detect.data import DetectionDataset, DetectionSplit, collate_detection
from mobilenets.tasks.detect.evaluate import DetectionMetrics
from mobilenets.tasks.detect.transforms import DetectAugment, eval_transforms, train_transforms
from mobilenets.train.recipes import Recipe
from mobilenets.train.tasks import Metrics, Task, full_precision

DETECT_PRESETS: dict[str, Recipe] = {
    "tf_ssd": Recipe(
        name="tf_ssd",
        # ssd_mobilenet_v1_coco.config: 200k steps of batch 24 on COCO train2017 (118,287 images)
        epochs=40,
        batch_size=24,
        optimizer="rmsprop_tf",  # TF's rms_prop_optimizer: decay 0.9, momentum 0.9, epsilon 1.0
        lr=0.004,
        base_batch_size=24,
        momentum=0.9,
        rmsprop_decay=0.9,
        eps=1.0,
        weight_decay=4e-5,  # l2_regularizer 0.00004 on the conv weights
        # exponential_decay_learning_rate: x0.95 every 800,720 steps = 162.5 epochs of batch 24
        schedule="exponential",
        decay_rate=0.95,
        decay_epochs=162.5,
        warmup_epochs=0.0,
        min_lr_ratio=0.0,
        label_smoothing=0.0,
        ema_decay=None,
        crop_min_area=0.1,  # ssd_random_crop: area range 0.1-1.0
        hflip=True,  # random_horizontal_flip
        color_jitter=0.0,
        randaugment=None,
    ),
    "modern": Recipe(
        name="modern",
        epochs=60,
        batch_size=32,
        # AdamW needs no eps/lr tuning per backbone width and trains SSD from scratch reliably.
        optimizer="adamw",
        lr=2e-3,
        base_batch_size=32,
        momentum=0.9,
        rmsprop_decay=0.9,  # unused by AdamW
        eps=1e-8,
        weight_decay=0.01,  # decoupled; conv (not depthwise) and FC weights only
        schedule="cosine",
        decay_rate=1.0,
        decay_epochs=1.0,
        warmup_epochs=2.0,
        min_lr_ratio=0.01,
        label_smoothing=0.0,
        ema_decay=None,
        crop_min_area=0.1,
        hflip=True,
        color_jitter=0.5,  # > 0: RandomPhotometricDistort
        randaugment=None,
    ),
}


def detect_recipe(name: str | Recipe, **overrides: Any) -> Recipe:
    """A detection preset (``tf_ssd``, ``modern``) or a given Recipe, with ``overrides``."""
    if isinstance(name, Recipe):
        return name.replace(**overrides) if overrides else name
    if name not in DETECT_PRESETS:
        raise MobileNetsError(f"unknown detection recipe {name!r}; choose one of {', '.join(DETECT_PRESETS)}")
    return DETECT_PRESETS[name].replace(**overrides) if overrides else DETECT_PRESETS[name]


class DetectionTask(Task):
    """SSD, SSDLite or Faster R-CNN (``config``) trained on ``splits`` (``train`` and optionally
    ``val``). ``backbone``: a classification checkpoint the MobileNet starts from (its config must
    be ``config.backbone``'s; :func:`~mobilenets.tasks.detect.run.train` arranges that)."""

    name = "detection"
    monitor = "AP"
    monitor_mode = "max"

    def __init__(self, config: DetectorConfig, splits: dict[str, DetectionSplit] | None, *,
                 augment: DetectAugment = DetectAugment(), data: str | None = None, backbone: str | None = None,
                 category_ids: list[int] | None = None, class_names: list[str] | None = None) -> None:
        self.config, self.splits, self.augment, self.data, self.backbone = config, splits, augment, data, backbone
        train = (splits or {}).get("train")
        self.category_ids = category_ids or (train.category_ids if train else list(range(1, config.num_classes + 1)))
        self.class_names = class_names or (train.class_names if train else [str(i) for i in self.category_ids])
        if len(self.category_ids) != config.num_classes:
            raise MobileNetsError(f"the data has {len(self.category_ids)} categories but num_classes is "
                                  f"{config.num_classes}")

    @property
    def input_size(self) -> int | None:
        """The square size the data is resized to (SSD), or None (Faster R-CNN resizes itself)."""
        return self.config.resolution if self.config.is_ssd else None

    def build_model(self) -> nn.Module:
        start = None
        if self.backbone:
            from mobilenets.weights.checkpoint import load_model

            start = load_model(self.backbone).train()
        return build_detector(self.config, start)

    def datasets(self):
        if not self.splits or "train" not in self.splits:
            raise MobileNetsError("this DetectionTask was built without training data")
        train = DetectionDataset(self.splits["train"], train_transforms(self.augment, self.input_size),
                                 self.category_ids)
        val = self.splits.get("val")
        return train, (None if val is None else self.eval_dataset(val))

    def eval_dataset(self, split: DetectionSplit) -> DetectionDataset:
        return DetectionDataset(split, eval_transforms(self.input_size), self.category_ids)

    def collate(self, items):
        return collate_detection(items)

    def forward(self, model: nn.Module, inputs):
        images, targets = inputs
        return model(images, targets) if model.training else model(images)

    def batch_len(self, targets) -> int:
        return len(targets)

    def loss(self, outputs: dict[str, torch.Tensor], targets) -> dict[str, torch.Tensor]:
        parts = {k: full_precision(v) for k, v in outputs.items()}
        return {"loss": sum(parts.values()), **parts}

    def new_metrics(self) -> Metrics:
        return DetectionMetrics(self.class_names)

    def model_config(self, model: nn.Module) -> DetectorConfig:
        return self.config

    def run_meta(self) -> dict[str, Any]:
        return {"data": self.data, "classes": self.class_names, "category_ids": self.category_ids,
                "augment": self.augment.to_dict(), "backbone_init": self.backbone,
                "preprocessing": {"mean": [0.5] * 3, "std": [0.5] * 3, "input_size": [3, self.config.resolution,
                                                                                       self.config.resolution]}}

    def describe(self, metrics: dict[str, float]) -> str:
        if "AP" not in metrics:
            return "no validation images"
        return (f"val AP {metrics['AP']:.3f}  AP50 {metrics['AP50']:.3f}  AP75 {metrics['AP75']:.3f}  "
                f"AR100 {metrics['AR100']:.3f}")


__all__ = ["DETECT_PRESETS", "DetectionTask", "detect_recipe"]
