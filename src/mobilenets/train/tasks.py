"""What the training loop needs to know about a task: model, loss, metrics and data adapter.

A :class:`Task` builds its model and its train/validation datasets, turns a list of dataset
items into a batch (``collate``), computes its loss (a dict of named parts; ``"loss"`` is the one
minimised) and its validation metrics, and names the metric that picks ``best.safetensors``.
The loop (:mod:`mobilenets.train.loop`) owns everything else: devices, AMP, channels_last, DDP,
EMA, checkpoints, exact resume, progress, logs and non-finite losses. Classification
(:class:`ClassificationTask`) is the first task; detection, distillation and geolocation plug in
the same way.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from mobilenets.errors import MobileNetsError


def full_precision(t: torch.Tensor) -> torch.Tensor:
    """At least float32 (bf16 autocast outputs are upcast for the loss; float64 ones are kept)."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


class Metrics(ABC):
    """Accumulates a task's validation metrics over batches."""

    @abstractmethod
    def update(self, outputs: Any, targets: Any) -> None: ...

    @abstractmethod
    def compute(self) -> dict[str, float]: ...


class Task(ABC):
    """A trainable task. Subclasses set ``name``, ``monitor`` (a key of the validation metrics)
    and ``monitor_mode`` ("max" or "min"), and implement the abstract methods."""

    name: str = "task"
    monitor: str = "loss"
    monitor_mode: str = "min"
    # Batch size of the validation passes unless the run's options say otherwise.
    eval_batch_size: int = 256
    # The Recipe fields the task honours (None: all). The training commands offer only these as
    # flags, and the runner turns the others off in the recipe it records (no field is ignored).
    recipe_fields: tuple[str, ...] | None = None

    @abstractmethod
    def build_model(self) -> nn.Module:
        """A new model (on the CPU, in float32); the loop moves and wraps it."""

    @abstractmethod
    def datasets(self) -> tuple[Dataset, Dataset | None]:
        """``(train, val)``; items are whatever :meth:`collate` understands."""

    @abstractmethod
    def collate(self, items: Sequence[Any]) -> tuple[Any, Any, list[tuple[str, str]]]:
        """``(inputs, targets, bad)`` for a list of dataset items; ``bad`` lists ``(path, reason)``
        of items that could not be read (dropped from the batch)."""

    @abstractmethod
    def loss(self, outputs: Any, targets: Any) -> dict[str, torch.Tensor]:
        """The named parts of the loss; ``"loss"`` is the total that is minimised."""

    @abstractmethod
    def new_metrics(self) -> Metrics:
        """An empty accumulator of validation metrics."""

    def forward(self, model: nn.Module, inputs: Any) -> Any:
        return model(inputs)

    def on_device(self, inputs: Any, targets: Any, ctx: Any) -> tuple[Any, Any]:
        """The batch once it is on the run's device (``ctx``: the loop's ``StepContext``), inside
        its autocast and without gradients: where a task computes targets from the inputs there
        (the distillation teacher runs here, on the student's device and under its AMP). The loop
        calls it for training and for validation batches. Default: unchanged."""
        return inputs, targets

    def train_mode(self, model: nn.Module) -> None:
        """Put ``model`` in training mode; the loop calls it at the start of every epoch. A task
        that keeps some modules in eval mode (fine-tuning's frozen BatchNorm) says so here."""
        model.train()

    def write_files(self, out: Path) -> None:
        """Write the task's own files into the run folder ``out`` (rank 0 only; called once the
        folder has been checked and created or resumed, before the first step): e.g. the list of
        annotations the data checks skipped. Default: nothing."""
        return None

    def finish(self, out: Path, summary: dict[str, Any]) -> dict[str, Any]:
        """After the last epoch (rank 0 only): plots and other files made from the finished run;
        returns what to add to the run's summary."""
        return {}

    def batch_len(self, targets: Any) -> int:
        return len(targets)

    def run_meta(self) -> dict[str, Any]:
        """Task metadata recorded in the run's ``config.json`` (and in its weights files)."""
        return {}

    def lr_scale(self, name: str) -> float:
        """The factor on the recipe's learning rate for the model parameter ``name`` (1: all
        alike; fine-tuning gives the pretrained body less than the new head)."""
        return 1.0

    def model_config(self, model: nn.Module):
        """The config saved with the weights (``MobileNetConfig`` for our backbones), or None."""
        return getattr(model, "config", None)

    def describe(self, metrics: dict[str, float]) -> str:
        """The validation part of the per-epoch line."""
        return "  ".join(f"val {k} {v:.4g}" for k, v in metrics.items() if k != "images")


class _ClassificationMetrics(Metrics):
    def __init__(self) -> None:
        self.n = self.top1 = self.top5 = 0
        self.loss_sum = 0.0

    def update(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        if not len(targets):
            return
        self.loss_sum += float(F.cross_entropy(full_precision(outputs), targets, reduction="sum"))
        c1, c5 = accuracy_counts(outputs, targets)
        self.top1, self.top5, self.n = self.top1 + c1, self.top5 + c5, self.n + len(targets)

    def compute(self) -> dict[str, float]:
        n = max(self.n, 1)
        return {"top1": self.top1 / n, "top5": self.top5 / n, "loss": self.loss_sum / n, "images": self.n}


def accuracy_counts(logits: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = (1, 5)) -> list[int]:
    """How many of ``labels`` are among the top-k ``logits``, for each k."""
    top = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices
    hit = top.eq(labels[:, None])
    return [int(hit[:, :k].any(dim=1).sum()) for k in ks]


class ClassificationTask(Task):
    """Image classification: a MobileNet, (label-smoothed) cross-entropy, top-1/top-5.

    ``data`` is an ImageNet-style folder (``train/<class>/``, ``val/<class>/``) or None for the
    built-in digits; ``config`` the model (its ``num_classes`` is set from the data)."""

    name = "classification"
    monitor = "top1"
    monitor_mode = "max"

    def __init__(self, config, bundle=None, *, data: str | None = None, augment=None,
                 label_smoothing: float = 0.0, init_weights: dict[str, torch.Tensor] | None = None) -> None:
        """``bundle``: the loaded data (:func:`~mobilenets.data.datasets.load_data`), or None for
        the model, loss and metrics alone (timing the step on random inputs); ``data`` is what
        the run records to reload it (None: the digits); ``init_weights``: a state dict the new
        model starts from (``train(init=...)``), without ``classifier.*`` where it gets a new one."""
        self.data, self.bundle, self.augment = data, bundle, augment
        self.label_smoothing = float(label_smoothing)
        self.config = config if bundle is None else config.replace(num_classes=len(bundle.classes))
        self.init_weights = init_weights

    @classmethod
    def load(cls, data: str | None, config, augment, label_smoothing: float = 0.0) -> ClassificationTask:
        """The task over ``data`` (an ImageNet-style folder, or None for the digits), loaded at
        the model's resolution with ``augment``."""
        from mobilenets.data.datasets import load_data

        return cls(config, load_data(data, config.resolution, augment), data=data, augment=augment,
                   label_smoothing=label_smoothing)

    def build_model(self) -> nn.Module:
        from mobilenets.models.mobilenet import MobileNet

        model = MobileNet(self.config)
        if self.init_weights is not None:
            from mobilenets.train.init import load_into

            load_into(model, self.init_weights)
        return model

    def datasets(self) -> tuple[Dataset, Dataset | None]:
        if self.bundle is None:
            raise MobileNetsError("this ClassificationTask was built without data")
        return self.bundle.train, self.bundle.val

    def collate(self, items):
        from mobilenets.data.datasets import collate_skip_bad

        return collate_skip_bad(items)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        if not len(targets):  # every image of the batch was unreadable
            return {"loss": outputs.sum() * 0.0}
        return {"loss": F.cross_entropy(full_precision(outputs), targets, label_smoothing=self.label_smoothing)}

    def new_metrics(self) -> Metrics:
        return _ClassificationMetrics()

    def run_meta(self) -> dict[str, Any]:
        return {"data": self.data, "classes": self.bundle.classes,
                "preprocessing": self.augment.preprocessing(self.config.resolution).to_dict()}

    def describe(self, metrics: dict[str, float]) -> str:
        return f"val top-1 {100 * metrics['top1']:.2f}%  top-5 {100 * metrics['top5']:.2f}%  loss {metrics['loss']:.4f}"
