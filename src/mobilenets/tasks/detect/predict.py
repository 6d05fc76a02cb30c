"""Boxes for image files from a trained detector, as JSON-ready dictionaries and drawn onto a PNG."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageDraw

from mobilenets.errors import DataNotFoundError, MobileNetsError

COLOURS = ((230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212))


def _open(path: str | os.PathLike) -> Image.Image:
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"image not found: {path}")
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except Exception as exc:  # noqa: BLE001 - PIL raises many types on damaged files
        raise MobileNetsError(f"cannot read image {path}: {exc}") from None


@torch.no_grad()
def detect_images(model, meta: dict[str, Any], images: list[Image.Image], score: float = 0.3) -> list[list[dict]]:
    """Each image's detections above ``score``: ``{"label", "category_id", "score", "box"}``
    with ``box`` in pixel ``[x1, y1, x2, y2]`` of the image as given."""
    from torchvision.transforms.v2 import functional as F

    from mobilenets.tasks.detect.config import DetectorConfig

    cfg = DetectorConfig.from_dict(meta["model"])
    out = []
    for image in images:
        tensor = F.to_dtype(F.to_image(image), torch.float32, scale=True)
        if cfg.is_ssd:  # the same antialiased resize as the data pipeline (the model's own is not)
            tensor = F.resize(tensor, [cfg.resolution, cfg.resolution], antialias=True)
        device = next(model.parameters()).device
        det = {k: v.cpu() for k, v in model([tensor.as_subclass(torch.Tensor).to(device)])[0].items()}
        sx, sy = image.width / tensor.shape[-1], image.height / tensor.shape[-2]
        found = []
        for box, s, lab in zip(det["boxes"].tolist(), det["scores"].tolist(), det["labels"].tolist()):
            if s < score:
                continue
            found.append({"label": meta["classes"][lab - 1], "category_id": meta["category_ids"][lab - 1],
                          "score": round(s, 4), "box": [round(box[0] * sx, 2), round(box[1] * sy, 2),
                                                        round(box[2] * sx, 2), round(box[3] * sy, 2)]})
        out.append(found)
    return out


def draw(image: Image.Image, detections: list[dict], path: str | os.PathLike) -> Path:
    """``image`` with its labelled boxes, saved as ``path`` (PNG)."""
    canvas = image.copy()
    pen = ImageDraw.Draw(canvas)
    for det in detections:
        colour = COLOURS[det["category_id"] % len(COLOURS)]
        x1, y1, x2, y2 = det["box"]
        pen.rectangle([x1, y1, x2, y2], outline=colour, width=max(2, image.width // 200))
        text = f"{det['label']} {det['score']:.2f}"
        left, top, right, bottom = pen.textbbox((x1, y1), text)
        pen.rectangle([left, top - (bottom - top) - 2, right + 4, top], fill=colour)
        pen.text((x1 + 2, top - (bottom - top) - 2), text, fill=(0, 0, 0))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path


def predict(checkpoint: str, images: list[str], *, score: float = 0.3, draw_to: str | None = None,
            device: str = "cpu") -> list[dict[str, Any]]:
    """Detections for each image file (``mobilenet detect predict``); with ``draw_to`` each image
    is also drawn with its boxes (one file: that name; several: ``NAME-<i>.png``)."""
    from mobilenets.tasks.detect.run import load_detector
    from mobilenets.utils.device import resolve_device

    if not 0 <= score <= 1:
        raise MobileNetsError(f"score must be in [0, 1], got {score!r}")
    model, meta = load_detector(checkpoint)
    model = model.to(resolve_device(device))
    opened = [_open(p) for p in images]
    found = detect_images(model, meta, opened, score)
    results = []
    for i, (path, image, dets) in enumerate(zip(images, opened, found)):
        item: dict[str, Any] = {"image": str(path), "width": image.width, "height": image.height, "detections": dets}
        if draw_to is not None:
            target = Path(draw_to)
            if len(images) > 1:
                target = target.with_name(f"{target.stem}-{i}{target.suffix or '.png'}")
            item["drawn"] = str(draw(image, dets, target))
        results.append(item)
    return results


__all__ = ["detect_images", "draw", "predict"]
