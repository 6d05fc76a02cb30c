"""Top-k predictions for image files with a trained checkpoint."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from mobilenets.data.datasets import Augment, eval_transform
from mobilenets.errors import DataNotFoundError, MobileNetsError
from mobilenets.weights.checkpoint import load_checkpoint


def predict(checkpoint: str, images: Sequence[str], top_k: int = 5) -> list[dict[str, Any]]:
    """For each image: the ``top_k`` labels with their probabilities."""
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise MobileNetsError(f"top_k must be an integer >= 1, got {top_k!r}")
    model, meta = load_checkpoint(checkpoint)
    classes = meta.get("classes") or [str(i) for i in range(model.config.num_classes)]
    augment = Augment.for_eval(meta)
    transform = eval_transform(model.config.resolution, augment)
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
        with torch.no_grad():
            probs = model(x).softmax(dim=1)[0]
        p, idx = probs.topk(min(top_k, len(classes)))
        results.append({"image": str(path), "top": [{"label": classes[i], "probability": float(v)}
                                                    for v, i in zip(p.tolist(), idx.tolist())]})
    return results
