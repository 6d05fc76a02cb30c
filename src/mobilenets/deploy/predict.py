"""Top-k predictions for image files with a trained checkpoint or an exported file (ONNX, TFLite,
ExecuTorch, TorchScript: run by :func:`~mobilenets.deploy.runtime.load_runner`, with the
preprocessing and class names its sidecar records)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from mobilenets.data.datasets import Augment, eval_transform
from mobilenets.errors import MobileNetsError
from mobilenets.infer.context import StepContext, inference_context, prepare_model
from mobilenets.infer.images import predict_files
from mobilenets.weights.checkpoint import load_checkpoint


def _model(checkpoint: str, engine_threads: int, ctx: StepContext) -> tuple[Callable[[torch.Tensor], torch.Tensor], Any,
                                                                    list[str] | None, int, int]:
    """``(logits of an NCHW batch, eval Augment, class names, resolution, class count)``; a
    checkpoint's model is placed as ``ctx`` says, an exported file runs in its engine (CPU)."""
    from mobilenets.deploy.runtime import is_exported_model, open_exported

    if is_exported_model(checkpoint):
        if ctx.device.type != "cpu" or ctx.amp or ctx.channels_last:
            raise MobileNetsError(f"{checkpoint} is an exported model: its engine runs on the CPU in its own "
                                  f"precision (device, amp and channels_last apply to checkpoints)")
        runner = open_exported(checkpoint, threads=engine_threads)
        pre = runner.preprocessing
        augment = Augment(mean=pre.mean, std=pre.std, eval_crop=pre.crop_pct, interpolation=pre.interpolation)
        num_classes = int((runner.meta or {}).get("model", {}).get("num_classes") or 0)

        def run(x: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(runner(x.numpy()))

        return run, augment, runner.classes, pre.resolution, num_classes
    model, meta = load_checkpoint(checkpoint)
    return (prepare_model(model, ctx), Augment.for_eval(meta), meta.get("classes"), model.config.resolution,
            model.config.num_classes)


def predict(checkpoint: str, images: Sequence[str], top_k: int = 5, engine_threads: int = 2, *,
            device: str = "auto", amp: bool = False, channels_last: bool = False,
            batch_size: int = 32) -> list[dict[str, Any]]:
    """For each image: the ``top_k`` labels with their probabilities. ``checkpoint`` is a
    checkpoint (run on ``device``: auto, cpu, cuda, cuda:N, with bf16 autocast (``amp``) and
    ``channels_last`` as asked) or an exported file (run on the CPU by its runtime with
    ``engine_threads`` threads; ``device`` auto means that CPU). The images run in batches of
    ``batch_size`` (:func:`~mobilenets.infer.images.predict_files`)."""
    from mobilenets.deploy.runtime import is_exported_model

    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise MobileNetsError(f"top_k must be an integer >= 1, got {top_k!r}")
    exported_on_auto = is_exported_model(checkpoint) and str(device).strip().lower() == "auto"
    ctx = inference_context("cpu" if exported_on_auto else device, amp, channels_last)
    logits_of, augment, classes, resolution, num_classes = _model(checkpoint, engine_threads, ctx)
    probs = predict_files(logits_of, images, eval_transform(resolution, augment), ctx, batch_size=batch_size)
    results = []
    for path, row in zip(images, probs):
        names = classes or [str(i) for i in range(num_classes or len(row))]
        p, idx = row.topk(min(top_k, len(names)))
        results.append({"image": str(path), "top": [{"label": names[i], "probability": float(v)}
                                                    for v, i in zip(p.tolist(), idx.tolist())]})
    return results
