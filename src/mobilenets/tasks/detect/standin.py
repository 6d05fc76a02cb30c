"""The built-in detection data: shapes with exact boxes composited onto real photos, as a COCO folder.

So that ``mobilenet detect train`` runs out of the box (no download), :func:`write_standin` draws
circles, squares, triangles and crosses (random size, colour, shade, rotation; 1-4 per image)
onto random crops of real photographs (``skimage.data``: astronaut, chelsea, coffee, rocket,
hubble_deep_field, immunohistochemistry, camera, moon, coins, brick, grass, gravel; scikit-learn's
china.jpg and flower.jpg), and writes a real COCO folder (``train/``, ``val/``,
``annotations/instances_{train,val}.json``), so the same code path as COCO reads it. Everything is
a function of the seed. Boxes are exact: each is the bounding box of the object's visible pixels
(shapes are drawn without anti-aliasing, and one drawn later hides part of an earlier one: the
earlier box shrinks to what is left; objects less than half visible are not placed). ``area`` is
the visible pixel count (what COCO's small/medium/large split reads).
"""

from __future__ import annotations

import functools
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from mobilenets.errors import MobileNetsError

CLASSES = ("circle", "square", "triangle", "cross")
FORMAT_VERSION = 1  # bump when the drawing changes: cached folders of another version are rebuilt
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "camera",
          "moon", "coins", "brick", "grass", "gravel")
MIN_VISIBLE = 0.5  # an object must keep half its pixels when later ones are drawn over it


@functools.lru_cache(maxsize=1)
def photos() -> tuple[np.ndarray, ...]:
    """The background photos as RGB arrays (those this skimage install has; read once)."""
    from skimage import data as skd
    from sklearn.datasets import load_sample_image

    out = []
    for name in PHOTOS:
        try:
            image = getattr(skd, name)()
        except Exception:  # noqa: BLE001 - a photo this skimage version would have to download
            continue
        out.append(np.stack([image] * 3, -1) if image.ndim == 2 else image[..., :3])
    out += [load_sample_image("china.jpg"), load_sample_image("flower.jpg")]
    for photo in out:
        photo.flags.writeable = False  # shared by every caller
    return tuple(out)


def _background(rng: np.random.Generator, backgrounds, size: int) -> Image.Image:
    photo = backgrounds[rng.integers(len(backgrounds))]
    h, w = photo.shape[:2]
    side = int(rng.uniform(0.4, 1.0) * min(h, w))
    y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
    crop = Image.fromarray(np.ascontiguousarray(photo[y:y + side, x:x + side]))
    if rng.random() < 0.5:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return crop.resize((size, size), Image.Resampling.BILINEAR)


def _polygon(kind: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    if kind == "square":
        corners = [(1, 1), (-1, 1), (-1, -1), (1, -1)]
        pts = [(x * r / math.sqrt(2), y * r / math.sqrt(2)) for x, y in corners]
    elif kind == "triangle":
        pts = [(r * math.cos(2 * math.pi * k / 3 - math.pi / 2), r * math.sin(2 * math.pi * k / 3 - math.pi / 2))
               for k in range(3)]
    else:  # cross: a plus sign with arms a third of its width
        a, b = r / math.sqrt(2), r / (3 * math.sqrt(2))
        pts = [(b, a), (-b, a), (-b, b), (-a, b), (-a, -b), (-b, -b), (-b, -a), (b, -a), (b, -b), (a, -b), (a, b), (b, b)]
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in pts]


def _shape_mask(kind: str, size: int, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    mask = Image.new("1", (size, size), 0)
    draw = ImageDraw.Draw(mask)
    if kind == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=1)
    else:
        draw.polygon(_polygon(kind, cx, cy, r, angle), fill=1)
    return np.array(mask, dtype=bool)


def _fill(rng: np.random.Generator, size: int) -> np.ndarray:
    """A colour with a linear shade across the object (not one flat colour)."""
    base = rng.uniform(0, 255, 3)
    gy, gx = np.mgrid[0:size, 0:size] / size
    shade = (rng.uniform(-60, 60) * gx + rng.uniform(-60, 60) * gy)[..., None]
    return np.clip(base + shade, 0, 255)


def draw_image(rng: np.random.Generator, backgrounds, size: int,
               max_objects: int = 4) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """One image and its objects (``category`` index, visible ``mask``)."""
    pixels = np.asarray(_background(rng, backgrounds, size), dtype=np.float64).copy()
    owner = np.full((size, size), -1)
    placed: list[tuple[int, int]] = []  # (category, pixel count when drawn)
    for _ in range(int(rng.integers(1, max_objects + 1))):
        for _attempt in range(20):
            kind = int(rng.integers(len(CLASSES)))
            r = rng.uniform(0.08, 0.25) * size
            cx, cy = rng.uniform(r, size - r), rng.uniform(r, size - r)
            mask = _shape_mask(CLASSES[kind], size, cx, cy, r, rng.uniform(0, 2 * math.pi))
            if not mask.any():
                continue
            trial = owner.copy()
            trial[mask] = len(placed)
            if all((trial == i).sum() >= MIN_VISIBLE * n for i, (_, n) in enumerate(placed)):
                owner = trial
                placed.append((kind, int(mask.sum())))
                pixels[mask] = _fill(rng, size)[mask]
                break
    pixels += rng.normal(0, 4, pixels.shape)  # sensor-like noise over objects and background alike
    objects = [{"category": kind, "mask": owner == i} for i, (kind, _) in enumerate(placed)]
    return np.clip(pixels, 0, 255).astype(np.uint8), objects


def _annotation(ann_id: int, image_id: int, category: int, mask: np.ndarray) -> dict[str, Any]:
    rows, cols = np.where(mask.any(1))[0], np.where(mask.any(0))[0]
    x0, y0, x1, y1 = int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1
    return {"id": ann_id, "image_id": image_id, "category_id": category + 1, "bbox": [x0, y0, x1 - x0, y1 - y0],
            "area": int(mask.sum()), "iscrowd": 0}


def write_standin(root: str | os.PathLike, *, seed: int = 0, train: int = 2000, val: int = 200, size: int = 320,
                  max_objects: int = 4, progress: bool = False) -> Path:
    """Write the stand-in COCO folder to ``root`` (atomically: a half-written folder is never left
    under the real name) and return ``root``. ``root`` must not exist."""
    root = Path(root)
    if root.exists():
        raise MobileNetsError(f"{root} already exists; the stand-in dataset is written to a new folder")
    for name, value in (("train", train), ("val", val), ("size", size), ("max_objects", max_objects)):
        if not isinstance(value, int) or value < 1:
            raise MobileNetsError(f"{name} must be an integer >= 1, got {value!r}")
    if size < 32:
        raise MobileNetsError(f"size must be >= 32 px, got {size}")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        backgrounds = photos()
        categories = [{"id": i + 1, "name": n, "supercategory": "shape"} for i, n in enumerate(CLASSES)]
        ann_id = 1
        for split, count, split_seed in (("train", train, seed * 2), ("val", val, seed * 2 + 1)):
            rng = np.random.default_rng([FORMAT_VERSION, split_seed])
            (tmp / split).mkdir()
            images, annotations = [], []
            steps = range(count)
            if progress:
                from tqdm import tqdm

                steps = tqdm(steps, desc=f"stand-in {split}", leave=False)
            for i in steps:
                pixels, objects = draw_image(rng, backgrounds, size, max_objects)
                name = f"{i:06d}.jpg"
                Image.fromarray(pixels).save(tmp / split / name, quality=92)
                images.append({"id": i + 1, "file_name": name, "width": size, "height": size})
                for obj in objects:
                    annotations.append(_annotation(ann_id, i + 1, obj["category"], obj["mask"]))
                    ann_id += 1
            doc = {"info": {"description": "mobilenets detection stand-in", "version": FORMAT_VERSION, "seed": seed},
                   "images": images, "annotations": annotations, "categories": categories}
            (tmp / "annotations").mkdir(exist_ok=True)
            (tmp / "annotations" / f"instances_{split}.json").write_text(json.dumps(doc))
        try:
            tmp.rename(root)
        except OSError:  # another process finished the same folder first: keep theirs
            if not (root / "annotations" / "instances_val.json").is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


def default_standin(seed: int = 0, train: int = 2000, val: int = 200, size: int = 320, cache: str | None = None,
                    progress: bool = False) -> Path:
    """The stand-in folder for these settings, written on first use to the cache
    (:func:`~mobilenets.utils.cache.cache_dir`) and reused after."""
    from mobilenets.utils.cache import cache_dir

    base = Path(cache) if cache else cache_dir()
    root = base / f"detect-standin-v{FORMAT_VERSION}-seed{seed}-{train}-{val}-{size}px"
    if not (root / "annotations" / "instances_val.json").is_file():
        if root.exists():  # a folder that is not a finished stand-in (never renamed into place half-done)
            raise MobileNetsError(f"{root} exists but is not a stand-in dataset; remove it")
        write_standin(root, seed=seed, train=train, val=val, size=size, progress=progress)
    return root


__all__ = ["CLASSES", "default_standin", "draw_image", "photos", "write_standin"]
