"""The detection training presets (:data:`DETECT_PRESETS`); imports no torch, so the command line
reads them before anything heavy loads.

``tf_ssd`` is the TF Object Detection API's ``ssd_mobilenet_v1_coco.config``; ``modern`` is AdamW
with warm-up and cosine decay, photometric distortion, zoom-out, SSD crops and flips
(torchvision's SSD augmentation), which trains from scratch in far fewer steps.
"""

from __future__ import annotations

from typing import Any

from mobilenets.errors import MobileNetsError
from mobilenets.train.recipes import Recipe

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


__all__ = ["DETECT_PRESETS", "detect_recipe"]
