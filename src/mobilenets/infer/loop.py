"""The one batched inference loop (:func:`run_batches`) and its thin layers: a task's validation
metrics (:func:`evaluate`, what the training loop's validation and ``mobilenet eval`` run) and
the stacked outputs of a model (:func:`predict_outputs`).

Every evaluation and prediction goes through :func:`run_batches`, so each honours the same
:class:`~mobilenets.infer.context.StepContext` (device, bf16 autocast, channels_last, float64) and
shows the same progress bar: classification eval, detection eval and predict, geolocation eval
and predict, fine-tuning's confusion matrix, distillation reports and ``mobilenet predict``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from mobilenets.infer.context import StepContext

# What the loop hands each batch's outputs to: a task's ``Metrics.update`` or a collector.
Consumer = Callable[[Any, Any], None]


def run_batches(model: Callable[[Any], Any], batches: Iterable[tuple[Any, Any, list]], consume: Consumer,
                ctx: StepContext | None = None, *, task: Any = None, progress: bool = False, desc: str = "eval",
                skipped: Callable[[list[tuple[str, str]]], None] | None = None) -> int:
    """Run ``model`` over ``batches`` and hand each batch's ``(outputs, targets)`` to ``consume``;
    returns how many items were run.

    ``model``: a module (put in eval mode; the caller has placed it, e.g. with
    :func:`~mobilenets.infer.context.prepare_model`) or any callable (an exported file's runner).
    ``batches``: ``(inputs, targets, bad)`` triples, what a DataLoader with a task's ``collate``
    gives; ``bad`` (``(path, reason)`` of unreadable items) goes to ``skipped``. Each batch is
    moved to ``ctx``'s device (default: the CPU, no autocast) and run under its autocast without
    gradients; with a ``task`` (a :class:`~mobilenets.train.tasks.Task`), its ``on_device`` hook
    sees the moved batch, its ``forward`` runs the model and its ``batch_len`` counts the items
    (default: ``len(targets)``). Empty batches (every item unreadable) are passed over."""
    ctx = ctx or StepContext(torch.device("cpu"))
    if isinstance(model, nn.Module):
        model.eval()
    count = task.batch_len if task is not None else len
    bar = None
    if progress:
        from tqdm import tqdm

        batches = bar = tqdm(batches, desc=desc, leave=False, dynamic_ncols=True, file=sys.stderr)
    seen = 0
    try:
        # no_grad, not inference_mode: the training loop evaluates its own model between epochs,
        # and a buffer a module caches here must stay usable by autograd afterwards
        with torch.no_grad():
            for inputs, targets, bad in batches:
                if bad and skipped is not None:
                    skipped(bad)
                n = count(targets)
                if not n:
                    continue
                inputs, targets = ctx.prepare(inputs), ctx.prepare(targets)
                with ctx.autocast():
                    if task is not None:
                        inputs, targets = task.on_device(inputs, targets, ctx)
                        outputs = task.forward(model, inputs)
                    else:
                        outputs = model(inputs)
                consume(outputs, targets)
                seen += n
    finally:
        if bar is not None:
            bar.close()
    return seen


def evaluate(model: nn.Module, loader: Iterable, task: Any, ctx: StepContext, progress: bool = False,
             desc: str = "eval") -> dict[str, float]:
    """The task's validation metrics of ``model`` over ``loader``."""
    metrics = task.new_metrics()
    run_batches(model, loader, metrics.update, ctx, task=task, progress=progress, desc=desc)
    return metrics.compute()


def predict_outputs(model: Callable[[Any], Any], batches: Iterable[tuple[Any, Any, list]],
                    ctx: StepContext | None = None, *, progress: bool = False, desc: str = "predict",
                    skipped: Callable[[list[tuple[str, str]]], None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(outputs, targets)`` of every batch, each concatenated along the first axis on the CPU,
    outputs at least float32 (bf16 autocast outputs upcast): for a model whose outputs are one
    tensor per batch (logits, embeddings), and targets that are tensors (labels, row indices)."""
    outs: list[torch.Tensor] = []
    tgts: list[torch.Tensor] = []

    def collect(outputs: torch.Tensor, targets: torch.Tensor) -> None:
        outputs = torch.as_tensor(outputs).detach().cpu()
        outs.append(outputs.to(torch.promote_types(outputs.dtype, torch.float32)))
        tgts.append(torch.as_tensor(targets).cpu())

    run_batches(model, batches, collect, ctx, progress=progress, desc=desc, skipped=skipped)
    if not outs:
        return torch.zeros((0, 0)), torch.zeros((0,), dtype=torch.long)
    return torch.cat(outs), torch.cat(tgts)


__all__ = ["Consumer", "evaluate", "predict_outputs", "run_batches"]
