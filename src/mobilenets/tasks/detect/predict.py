"""Boxes for image files from a trained detector, as JSON-ready dictionaries and drawn onto a PNG."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageDraw

from mobilenets.errors import MobileNetsError, arg
from mobilenets.infer.images import open_rgb

COLOURS = ((230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212))


def detect_images(model, meta: dict[str, Any], images: list[Image.Image], score: float = 0.3, *, ctx=None,
                  batch_size: int = 8) -> list[list[dict]]:
    """Each image's detections above ``score``: ``{"label", "category_id", "score", "box"}``
    with ``box`` in pixel ``[x1, y1, x2, y2]`` of the image as given. The images run in batches
    through the one inference loop (:func:`~mobilenets.infer.loop.run_batches`) under ``ctx``
    (a :class:`~mobilenets.infer.context.StepContext`; default: where the model's weights are)."""
    from torchvision.transforms.v2 import functional as F

    from mobilenets.infer.context import StepContext
    from mobilenets.infer.loop import run_batches
    from mobilenets.tasks.detect.config import DetectorConfig
    from mobilenets.tasks.detect.inputs import ssd_input

    cfg = DetectorConfig.from_dict(meta["model"])
    ctx = ctx or StepContext(next(model.parameters()).device)

    def tensor(image: Image.Image) -> tuple[torch.Tensor, tuple[float, float]]:
        if cfg.is_ssd:  # the input handling the detector records (resize, padding; see inputs.py)
            return ssd_input(image, cfg)
        x = F.to_dtype(F.to_image(image), torch.float32, scale=True).as_subclass(torch.Tensor)
        return x, (1.0, 1.0)

    def batches():
        for start in range(0, len(images), batch_size):
            chunk = [tensor(image) for image in images[start:start + batch_size]]
            yield [x for x, _ in chunk], [(x.shape[-2:], scale) for x, scale in chunk], []

    out: list[list[dict]] = []

    def collect(detections, sizes) -> None:
        for det, (_, (sx, sy)) in zip(detections, sizes):
            found = []
            for box, s, lab in zip(det["boxes"].float().tolist(), det["scores"].float().tolist(),
                                   det["labels"].tolist()):
                if s < score:
                    continue
                found.append({"label": meta["classes"][lab - 1], "category_id": meta["category_ids"][lab - 1],
                              "score": round(s, 5), "box": [round(box[0] * sx, 3), round(box[1] * sy, 3),
                                                            round(box[2] * sx, 3), round(box[3] * sy, 3)]})
            out.append(found)

    run_batches(model, batches(), collect, ctx, desc="detect")
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
            device: str = "cpu", amp: bool = False, channels_last: bool = False,
            batch_size: int = 8) -> list[dict[str, Any]]:
    """Detections for each image file (``mobilenet detect predict``); with ``draw_to`` each image
    is also drawn with its boxes (one file: that name; several: ``NAME-<i>.png``). ``device``,
    ``amp`` (bf16 autocast), ``channels_last`` and ``batch_size``: how the images are run."""
    from mobilenets.deploy.outputs import check_file_target
    from mobilenets.infer.context import inference_context, prepare_model
    from mobilenets.tasks.detect.run import load_detector

    if not 0 <= score <= 1:
        raise MobileNetsError(f"{arg('score')} must be in [0, 1], got {score!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise MobileNetsError(f"{arg('batch_size')} must be an integer >= 1, got {batch_size!r}")
    targets = [None] * len(images) if draw_to is None else [
        Path(draw_to) if len(images) == 1 else Path(draw_to).with_name(f"{Path(draw_to).stem}-{i}"
                                                                      f"{Path(draw_to).suffix or '.png'}")
        for i in range(len(images))]
    for target in targets:  # before any work: a drawing that cannot be written is one line
        if target is not None:
            check_file_target(target, "--draw")
    ctx = inference_context(device, amp, channels_last)
    model, meta = load_detector(checkpoint)
    model = prepare_model(model, ctx)
    opened = [open_rgb(p) for p in images]
    found = detect_images(model, meta, opened, score, ctx=ctx, batch_size=batch_size)
    results = []
    for i, (path, image, dets) in enumerate(zip(images, opened, found)):
        item: dict[str, Any] = {"image": str(path), "width": image.width, "height": image.height, "detections": dets}
        if targets[i] is not None:
            item["drawn"] = str(draw(image, dets, targets[i]))
        results.append(item)
    return results


__all__ = ["detect_images", "draw", "predict"]
