"""Top-k predictions for image files with a trained checkpoint or an exported file (ONNX, TFLite,
ExecuTorch, TorchScript: run by :func:`~mobilenets.deploy.runtime.load_runner`, with the
preprocessing and class names its sidecar records)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from mobilenets.data.datasets import Augment, eval_transform
from mobilenets.errors import DataNotFoundError, MobileNetsError
from mobilenets.weights.checkpoint import load_checkpoint


def _model(checkpoint: str, engine_threads: int, device: str = "auto") -> tuple[
        Callable[[torch.Tensor], torch.Tensor], Any, list[str] | None, int, int]:
    """``(logits of an NCHW batch, eval Augment, class names, resolution, class count)``."""
    from mobilenets.deploy.runtime import is_exported_model, open_exported
    from mobilenets.utils.device import resolve_device

    dev = resolve_device(device)
    if is_exported_model(checkpoint):
        if dev.type != "cpu" and str(device).strip().lower() != "auto":  # auto: the runtime's CPU
            raise MobileNetsError(f"{checkpoint} is an exported model: its engine runs on the CPU, not {dev}")
        runner = open_exported(checkpoint, threads=engine_threads)
        pre = runner.preprocessing
        augment = Augment(mean=pre.mean, std=pre.std, eval_crop=pre.crop_pct, interpolation=pre.interpolation)
        num_classes = int((runner.meta or {}).get("model", {}).get("num_classes") or 0)

        def run(x: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(runner(x.numpy()))

        return run, augment, runner.classes, pre.resolution, num_classes
    model, meta = load_checkpoint(checkpoint)
    model.to(dev)

    def eager(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model(x.to(dev)).cpu()

    return eager, Augment.for_eval(meta), meta.get("classes"), model.config.resolution, model.config.num_classes


def predict(checkpoint: str, images: Sequence[str], top_k: int = 5, engine_threads: int = 2,
            device: str = "auto") -> list[dict[str, Any]]:
    """For each image: the ``top_k`` labels with their probabilities. ``checkpoint`` is a
    checkpoint (run on ``device``: auto, cpu, cuda, cuda:N) or an exported file (run on the CPU by
    its runtime with ``engine_threads`` threads)."""
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise MobileNetsError(f"top_k must be an integer >= 1, got {top_k!r}")
    logits_of, augment, classes, resolution, num_classes = _model(checkpoint, engine_threads, device)
    transform = eval_transform(resolution, augment)
    from PIL import Image, UnidentifiedImageError

    results = []
    for path in images:
        if not Path(path).is_file():
            raise DataNotFoundError(f"image not found: {path}")
        try:
            with Image.open(path) as im:
                x = transform(im.convert("RGB"))[None]
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:
            raise MobileNetsError(f"cannot read image {path}: {exc}") from None
        probs = logits_of(x).softmax(dim=1)[0]
        names = classes or [str(i) for i in range(num_classes or len(probs))]
        p, idx = probs.topk(min(top_k, len(names)))
        results.append({"image": str(path), "top": [{"label": names[i], "probability": float(v)}
                                                    for v, i in zip(p.tolist(), idx.tolist())]})
    return results
