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
from mobilenets.tasks.detect.recipes import DETECT_PRESETS, detect_recipe
from mobilenets.tasks.detect.transforms import DetectAugment, eval_transforms, train_transforms
from mobilenets.train.recipes import NON_CLASSIFICATION_FIELDS
from mobilenets.train.tasks import Metrics, Task, full_precision


class DetectionTask(Task):
    """SSD, SSDLite or Faster R-CNN (``config``) trained on ``splits`` (``train`` and optionally
    ``val``). ``backbone``: a classification checkpoint the MobileNet starts from (its config must
    be ``config.backbone``'s; :func:`~mobilenets.tasks.detect.run.train` arranges that)."""

    name = "detection"
    monitor = "AP"
    monitor_mode = "max"
    eval_batch_size = 16
    # RandAugment and label smoothing are classification's: a detection run does not use them
    recipe_fields = NON_CLASSIFICATION_FIELDS

    def __init__(self, config: DetectorConfig, splits: dict[str, DetectionSplit] | None, *,
                 augment: DetectAugment = DetectAugment(), data: str | None = None, backbone: str | None = None,
                 category_ids: list[int] | None = None, class_names: list[str] | None = None,
                 backbone_model: nn.Module | None = None, log: Any = None) -> None:
        """``backbone``: the path of the classification weights the MobileNet starts from (as the
        run records it; or a detector's, fine-tuned whole); ``backbone_model``: those weights already loaded
        (a MobileNet, or a ``(detector, metadata)`` pair; else read from the
        path); ``log``: where the one line about skipped annotations goes (None: nowhere)."""
        self.config, self.splits, self.augment, self.data, self.backbone = config, splits, augment, data, backbone
        self.backbone_model, self.log = backbone_model, log
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
        start = self.backbone_model
        if start is None and self.backbone:
            from mobilenets.tasks.detect.checkpoint import detector_init

            start = detector_init(self.backbone)
            if start is None:
                from mobilenets.weights.checkpoint import load_model

                start = load_model(self.backbone)
        if isinstance(start, tuple):  # a detector (run or converted folder) and its metadata: fine-tuning
            return self.from_detector(*start)
        return build_detector(self.config, None if start is None else start.train())

    def from_detector(self, detector: nn.Module, meta: dict[str, Any]) -> nn.Module:
        """This task's detector starting from every tensor of ``detector`` whose name and shape fit;
        its class head only when its classes are this data's (same names, same order)."""
        model = build_detector(self.config)
        ours = model.state_dict()
        same_classes = list(meta.get("classes") or []) == list(self.class_names)
        fits = {k: v for k, v in detector.state_dict().items() if k in ours and ours[k].shape == v.shape
                and (same_classes or not k.startswith("head.classification_head"))}
        if not any(k.startswith("backbone.features") for k in fits):
            raise MobileNetsError("the init detector's backbone does not fit this detector's config")
        model.load_state_dict({**ours, **fits})
        return model.train()

    def write_files(self, out) -> None:
        """``bad_annotations.txt``: what the data checks skipped (one line says so)."""
        from mobilenets.tasks.detect.data import summary_line, write_bad_list

        splits = list((self.splits or {}).values())
        line = summary_line(splits, write_bad_list(splits, out / BAD_ANNOTATIONS))
        if line and self.log is not None:
            self.log(line)

    def finish(self, out, summary: dict[str, Any]) -> dict[str, Any]:
        """``curves.png``: training loss and validation AP per epoch."""
        if not (out / "metrics.jsonl").is_file():
            return {}
        from mobilenets.tasks.detect.curves import plot_curves

        return {"curves": str(plot_curves(out))}

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


BAD_ANNOTATIONS = "bad_annotations.txt"

__all__ = ["BAD_ANNOTATIONS", "DETECT_PRESETS", "DetectionTask", "detect_recipe"]
