"""Image files through the one loop: ``mobilenet predict`` and ``mobilenet geo predict`` both
read a list of files, transform each as the model's preprocessing says and want each file's class
probabilities (:func:`predict_files`)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from mobilenets.errors import DataNotFoundError, MobileNetsError
from mobilenets.infer.context import StepContext
from mobilenets.infer.loop import predict_outputs


def _not_an_image(path: str | os.PathLike) -> str:
    """Why ``path`` (not a file) cannot be read as an image: a folder, or nothing there."""
    if Path(path).is_dir():
        return f"{path} is a folder, not an image file (give the image files in it, e.g. {Path(path) / '*.jpg'})"
    return f"image not found: {path}"


def open_rgb(path: str | os.PathLike):
    """The image file ``path`` as an RGB PIL image; a missing or unreadable file is one clear error."""
    from PIL import Image

    if not Path(path).is_file():
        raise DataNotFoundError(_not_an_image(path))
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except Exception as exc:  # noqa: BLE001 - PIL raises many types on damaged files
        raise MobileNetsError(f"cannot read image {path}: {exc}") from None


def image_batches(paths: Sequence[str | os.PathLike], transform: Callable[[Any], torch.Tensor],
                  batch_size: int = 32) -> Iterator[tuple[torch.Tensor, torch.Tensor, list]]:
    """``(images [N, 3, R, R], positions in paths [N], [])`` batches of the files, each opened
    and ``transform``-ed when its batch is reached; every file is checked to exist before the first."""
    missing = next((p for p in paths if not Path(p).is_file()), None)
    if missing is not None:
        raise DataNotFoundError(_not_an_image(missing))
    for start in range(0, len(paths), batch_size):
        chunk = paths[start:start + batch_size]
        images = torch.stack([transform(open_rgb(p)) for p in chunk])
        yield images, torch.arange(start, start + len(chunk)), []


def predict_files(model: Callable[[Any], Any], paths: Sequence[str | os.PathLike],
                  transform: Callable[[Any], torch.Tensor], ctx: StepContext | None = None, *,
                  batch_size: int = 32, progress: bool = False) -> torch.Tensor:
    """``[N, C]`` softmax probabilities (float32, CPU) of ``model``'s logits for each image file,
    in the order given, run in batches by :func:`~mobilenets.infer.loop.run_batches` under ``ctx``."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise MobileNetsError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    logits, _ = predict_outputs(model, image_batches(list(paths), transform, batch_size), ctx,
                                progress=progress, desc="predict")
    return logits.softmax(dim=1)


__all__ = ["image_batches", "open_rgb", "predict_files"]
