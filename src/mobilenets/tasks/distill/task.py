"""Distillation as a :class:`~mobilenets.train.tasks.Task`: a MobileNet student learns a teacher's
outputs on unlabelled images, trained by :func:`mobilenets.train.loop.fit`.

Three losses (``mode``):

``classify``
    Hinton et al.'s knowledge distillation: the soft cross-entropy between the teacher's and the
    student's softmax at temperature T, times T^2 (so gradients keep their size as T changes).
    When the images sit in class folders (``data/<class>/...``) and ``label_weight`` w > 0, the
    loss is ``(1 - w) * KD + w * cross-entropy(student, folder label)`` (Hinton's mix with labels;
    the folder names are matched to the teacher's class names, else taken in sorted order).
``multilabel``
    Per-attribute binary cross-entropy to the teacher's probabilities, averaged over attributes
    (the paper's face-attribute loss, Section 4.4); the student has N sigmoid outputs.
``embedding``
    The squared L2 distance between the student's and the teacher's embedding (FaceNet
    distillation, the paper's Section 4.5), optionally after L2-normalising both, with an optional
    linear projection when the student's dimension differs from the teacher's.

The teacher runs in the task's :meth:`~mobilenets.train.tasks.Task.on_device` hook, on the
training device and under the run's autocast, on the same augmented crop as the student
(:mod:`~mobilenets.tasks.distill.data`); a precomputed teacher's outputs do not follow
augmentation, so its training crops are the deterministic ones.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mobilenets.data.augment import Augment
from mobilenets.data.preprocess import Preprocessing
from mobilenets.errors import MobileNetsError, arg
from mobilenets.models.config import MobileNetConfig
from mobilenets.tasks.distill.data import ImageCrops, first_readable, list_images, load_crops, split_every, stack_crops
from mobilenets.tasks.distill.teachers import PrecomputedTeacher, Teacher, normalize_crops
from mobilenets.train.recipes import NON_CLASSIFICATION_FIELDS
from mobilenets.train.tasks import Metrics, Task, full_precision

MODES = ("classify", "multilabel", "embedding")


def teacher_targets(raw: torch.Tensor, kind: str, mode: str, spec: str) -> torch.Tensor:
    """The teacher's outputs as the loss wants them: log-probabilities (classify), probabilities
    (multilabel) or the embedding; a teacher whose outputs do not fit ``mode`` is refused."""
    if mode == "classify":
        if kind == "embedding":
            raise MobileNetsError(f"teacher {spec} gives an embedding, not class scores: use {arg('task', 'embedding')}")
        if raw.shape[1] < 2:
            raise MobileNetsError(f"teacher {spec} gives {raw.shape[1]} output(s); classify needs >= 2 classes")
        probs = kind == "probabilities" or (kind == "unknown" and bool((raw >= 0).all())
                                            and torch.allclose(raw.sum(1), torch.ones(len(raw)), atol=1e-3))
        return raw.clamp_min(1e-12).log() if probs else F.log_softmax(raw, dim=1)
    if mode == "multilabel":
        if kind == "embedding":
            raise MobileNetsError(f"teacher {spec} gives an embedding, not attribute probabilities: "
                                  f"use {arg('task', 'embedding')}")
        if kind == "logits":
            return torch.sigmoid(raw)
        if not bool(((raw >= 0) & (raw <= 1)).all()):
            raise MobileNetsError(f"teacher {spec} gives outputs outside [0, 1]; multilabel needs attribute "
                                  f"probabilities")
        return raw
    if mode == "embedding":
        if kind == "probabilities":
            raise MobileNetsError(f"teacher {spec} gives probabilities, not an embedding: use "
                                  f"{arg('task', 'classify')} or {arg('task', 'multilabel')}")
        return raw
    raise MobileNetsError(f"unknown distillation task {mode!r}; choose one of {', '.join(MODES)}")


def folder_classes(paths: list[str], teacher_names: list[str] | None, teacher_dim: int, data: str) -> list[str]:
    """The teacher's class of each output index as folder names: the teacher's own class names
    when every folder is one of them, else the sorted folder names when there are as many as the
    teacher has outputs (torchvision ImageFolder's order)."""
    folders = sorted({p.split("/", 1)[0] for p in paths if "/" in p})
    if not folders:
        raise MobileNetsError(f"{arg('label_weight')} needs the images of {data} in class folders (DIR/<class>/image); "
                              f"there are none")
    if teacher_names and set(folders) <= set(teacher_names):
        return list(teacher_names)
    if len(folders) == teacher_dim:
        return folders
    raise MobileNetsError(f"{data} has {len(folders)} class folders, the teacher {teacher_dim} outputs"
                          + (" and not all folder names are its class names" if teacher_names else "")
                          + ": label_weight cannot tell which folder is which class")


class ProjectedStudent(nn.Module):
    """A student whose embedding (``student``'s output) is mapped linearly to the teacher's size for
    the loss; the embedding itself is ``student(x)``."""

    def __init__(self, student: nn.Module, teacher_dim: int) -> None:
        super().__init__()
        self.student = student
        self.projection = nn.Linear(student.config.num_classes, teacher_dim)
        self.config = student.config

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection(self.student(x))


def split_targets(targets: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(teacher targets, folder labels or None)`` of a batch's targets (a tensor, or a dict when
    the run mixes in labels)."""
    if isinstance(targets, dict):
        return targets["teacher"], targets["labels"]
    return targets, None


def distill_loss(outputs: torch.Tensor, targets: Any, mode: str, temperature: float = 4.0,
                 normalize: bool = False, label_weight: float = 0.0) -> torch.Tensor:
    """The mean per-image loss of ``mode`` (see the module docstring); ``targets`` may carry folder
    labels (:func:`split_targets`), mixed in with weight ``label_weight`` (classify)."""
    targets, labels = split_targets(targets)
    s = full_precision(outputs)
    t = targets.to(s.dtype)
    if mode == "classify":
        soft = F.softmax(t / temperature, dim=1)
        kd = -(soft * F.log_softmax(s / temperature, dim=1)).sum(1).mean() * temperature**2
        if labels is None or not label_weight:
            return kd
        return (1.0 - label_weight) * kd + label_weight * F.cross_entropy(s, labels)
    if mode == "multilabel":
        return F.binary_cross_entropy_with_logits(s, t)
    if normalize:
        s, t = F.normalize(s, dim=1), F.normalize(t, dim=1)
    return (s - t).pow(2).sum(1).mean()


class DistillMetrics(Metrics):
    """Validation: the loss, and top-1 agreement (classify), mean AP against the teacher's
    thresholded outputs (multilabel) or the mean cosine to the teacher's embedding."""

    def __init__(self, mode: str, temperature: float, normalize: bool, label_weight: float = 0.0) -> None:
        self.mode, self.temperature, self.normalize, self.label_weight = mode, temperature, normalize, label_weight
        self.n, self.loss_sum, self.agree, self.cos, self.correct = 0, 0.0, 0, 0.0, 0
        self.labelled = False
        self.scores: list[np.ndarray] = []
        self.truth: list[np.ndarray] = []

    def update(self, outputs: torch.Tensor, targets: Any) -> None:
        teacher, labels = split_targets(targets)
        n = len(teacher)
        if not n:
            return
        out = full_precision(outputs)
        self.loss_sum += float(distill_loss(out, targets, self.mode, self.temperature, self.normalize,
                                            self.label_weight)) * n
        self.n += n
        targets = teacher
        if self.mode == "classify":
            self.agree += int((out.argmax(1) == targets.argmax(1)).sum())
            if labels is not None:
                self.labelled = True
                self.correct += int((out.argmax(1) == labels).sum())
        elif self.mode == "multilabel":
            self.scores.append(out.detach().cpu().numpy())
            self.truth.append((targets >= 0.5).cpu().numpy().astype(np.int64))
        else:
            self.cos += float(F.cosine_similarity(out, targets.to(out.dtype), dim=1).sum())

    def compute(self) -> dict[str, float]:
        n = max(self.n, 1)
        result = {"loss": self.loss_sum / n, "images": self.n}
        if self.mode == "classify":
            result["top1_agreement"] = self.agree / n
            if self.labelled:
                result["top1_accuracy"] = self.correct / n
        elif self.mode == "multilabel" and self.scores:
            from mobilenets.tasks.distill.metrics import mean_average_precision

            result["mean_ap"] = mean_average_precision(np.concatenate(self.truth), np.concatenate(self.scores))["mean_ap"]
        elif self.mode == "embedding":
            result["cosine"] = self.cos / n
        return result


@dataclasses.dataclass(frozen=True)
class DistillSettings:
    """What the student learns and from what; recorded in the run's ``config.json``."""

    mode: str = "classify"
    temperature: float = 4.0  # classify: Hinton's T
    normalize: bool = False  # embedding: L2-normalise both embeddings before the loss
    embedding_dim: int | None = None  # embedding: the student's size (None: the teacher's)
    val_every: int = 10  # without val_data, every val_every-th image is held out
    label_weight: float = 0.0  # classify: weight of the folder labels' cross-entropy (0: KD only)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise MobileNetsError(f"unknown distillation task {self.mode!r}; choose one of {', '.join(MODES)}")
        if not self.temperature > 0:
            raise MobileNetsError(f"{arg('temperature')} must be > 0, got {self.temperature!r}")
        if self.normalize and self.mode != "embedding":
            raise MobileNetsError(f"{arg('normalize')} is for {arg('task', 'embedding')}, not {arg('task', self.mode)}")
        if self.embedding_dim is not None and (self.mode != "embedding" or self.embedding_dim < 1):
            raise MobileNetsError(f"{arg('embedding_dim')} is for {arg('task', 'embedding')} and must be >= 1, got "
                                  f"{self.embedding_dim!r}")
        if not 0 <= self.label_weight <= 1 or (self.label_weight and self.mode != "classify"):
            raise MobileNetsError(f"{arg('label_weight')} is for {arg('task', 'classify')} and must be in [0, 1], got "
                                  f"{self.label_weight!r}")


class DistillTask(Task):
    """A MobileNet student distilled from ``teacher`` on the images of ``data`` (no labels)."""

    name = "distill"
    monitor = "loss"
    monitor_mode = "min"
    # the crops are augmented by data.crop_transform (no RandAugment); the teacher's soft targets
    # replace labels (no label smoothing)
    recipe_fields = NON_CLASSIFICATION_FIELDS

    def __init__(self, teacher: Teacher, config: MobileNetConfig, data: str, settings: DistillSettings,
                 augment: Augment, val_data: str | None = None, init: nn.Module | None = None,
                 init_spec: str | None = None) -> None:
        self.teacher, self.settings, self.augment = teacher, settings, augment
        self.init, self.init_spec = init, init_spec  # a (wider) MobileNet the student starts from
        self.data, self.val_data = str(data), val_data
        paths = list_images(data)
        if val_data is not None:
            self.train_paths, self.val_paths = paths, list_images(val_data)
        else:
            self.train_paths, self.val_paths = split_every(paths, settings.val_every)
        if isinstance(teacher, PrecomputedTeacher):
            # val_data's images are keyed by their path relative to val_data
            for folder, listed in ((data, self.train_paths), (val_data or data, self.val_paths)):
                lost = teacher.missing(listed)
                if lost:
                    raise MobileNetsError(f"{teacher.spec} has no outputs for {len(lost)} of the images in {folder} "
                                          f"(first: {lost[0]})")
        self.crop_size = max(config.resolution, teacher.preprocessing.resolution)
        probe = first_readable(data, self.train_paths)
        raw = teacher(load_crops(data, [probe], self.crop_size), [probe])
        teacher_targets(raw, teacher.kind, settings.mode, teacher.spec)  # refuses a mismatched teacher up front
        self.teacher_dim = int(raw.shape[1])
        self.labels: dict[str, int] | None = None
        if settings.label_weight:
            self.classes = folder_classes(self.train_paths, teacher.names, self.teacher_dim, data)
            index = {c: i for i, c in enumerate(self.classes)}
            for folder, listed in ((data, self.train_paths), (val_data or data, self.val_paths)):
                unknown = [p for p in listed if "/" not in p or p.split("/", 1)[0] not in index]
                if unknown:
                    raise MobileNetsError(f"{arg('label_weight')} needs every image of {folder} in a class folder of the "
                                          f"training data; {len(unknown)} are not (first: {unknown[0]})")
            self.labels = {p: index[p.split("/", 1)[0]] for p in [*self.train_paths, *self.val_paths]}
        dim = settings.embedding_dim or self.teacher_dim
        self.config = config.replace(num_classes=dim)
        self.student_pre = Preprocessing(mean=augment.mean, std=augment.std, crop_pct=1.0,
                                         input_size=(3, config.resolution, config.resolution))

    def build_model(self) -> nn.Module:
        from mobilenets.models.mobilenet import MobileNet

        if self.init is not None:
            from mobilenets.weights.narrow import narrow

            model = narrow(self.init, self.config).train()
        else:
            model = MobileNet(self.config)
        if self.config.num_classes != self.teacher_dim:
            return ProjectedStudent(model, self.teacher_dim)
        return model

    def datasets(self):
        # a precomputed teacher saw each file as it is: no augmentation of the training crops
        train_aug = None if self.teacher.uses_paths else self.augment
        train = ImageCrops(self.data, self.train_paths, self.crop_size, train_aug)
        val = ImageCrops(self.val_data or self.data, self.val_paths, self.crop_size, None)
        return train, val

    def collate(self, items):
        """``(uint8 crops, {"paths": [...], "labels": tensor or None}, bad)``: the teacher's targets
        and the student's normalisation come in :meth:`on_device`."""
        crops, paths, bad = stack_crops(items)
        labels = None if self.labels is None else torch.tensor([self.labels[p] for p in paths], dtype=torch.long)
        return crops, {"paths": paths, "labels": labels}, bad

    def on_device(self, inputs: torch.Tensor, targets: Any, ctx: Any) -> tuple[torch.Tensor, Any]:
        """The teacher's targets of the batch's crops, computed where the student trains (the
        run's device, under its autocast), and the crops normalised for the student."""
        paths, labels = targets["paths"], targets["labels"]
        if not paths:
            res = self.config.resolution
            empty = torch.empty((0, self.teacher_dim), device=inputs.device)
            student = torch.empty((0, 3, res, res), device=inputs.device)
            return ctx.prepare(student), empty if labels is None else {"teacher": empty, "labels": labels}
        raw = self.teacher(inputs, paths)
        teacher = teacher_targets(raw, self.teacher.kind, self.settings.mode, self.teacher.spec)
        student = ctx.prepare(normalize_crops(inputs, self.student_pre))
        return student, teacher if labels is None else {"teacher": teacher, "labels": labels}

    def batch_len(self, targets: Any) -> int:
        if isinstance(targets, dict) and "paths" in targets:
            return len(targets["paths"])
        return len(split_targets(targets)[0])

    def loss(self, outputs, targets):
        if not self.batch_len(targets):
            return {"loss": outputs.sum() * 0.0}
        s = self.settings
        return {"loss": distill_loss(outputs, targets, s.mode, s.temperature, s.normalize, s.label_weight)}

    def new_metrics(self) -> Metrics:
        s = self.settings
        return DistillMetrics(s.mode, s.temperature, s.normalize, s.label_weight)

    def run_meta(self) -> dict[str, Any]:
        return {"data": self.data, "val_data": self.val_data, "teacher": self.teacher.describe(),
                "distill": dataclasses.asdict(self.settings), "teacher_dim": self.teacher_dim,
                "output_names": self.teacher.names, "preprocessing": self.student_pre.to_dict(),
                "augment": dataclasses.asdict(self.augment), "init": self.init_spec,
                "label_classes": self.classes if self.labels is not None else None}

    def finish(self, out, summary: dict[str, Any]) -> dict[str, Any]:
        """The student as a model folder ``out/student`` (:func:`~mobilenets.tasks.distill.student.save_student`),
        once an epoch has finished (a run stopped inside its first epoch has no weights yet)."""
        from mobilenets.tasks.distill.student import save_student
        from mobilenets.weights.checkpoint import run_weights

        if run_weights(out) is None:
            return {"student_folder": None}

        return {"student_folder": str(save_student(out))}

    def describe(self, metrics: dict[str, float]) -> str:
        parts = [f"val loss {metrics['loss']:.4f}"]
        for key, label in (("top1_agreement", "top-1 agreement"), ("top1_accuracy", "top-1 accuracy"),
                           ("mean_ap", "mean AP"), ("cosine", "cosine")):
            if key in metrics:
                parts.append(f"{label} {100 * metrics[key]:.2f}%" if key != "cosine" else f"{label} {metrics[key]:.4f}")
        return "  ".join(parts)


__all__ = ["DistillMetrics", "DistillSettings", "DistillTask", "MODES", "ProjectedStudent", "distill_loss",
           "folder_classes", "split_targets", "teacher_targets"]
