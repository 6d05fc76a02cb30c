"""Label-free image data for distillation: any folder of images, flat or nested.

Items are ``(uint8 crop [3, S, S], relative path)``: one augmented crop (random resized crop,
flip, colour jitter) that the student and the teacher each preprocess in their own way
(:func:`~mobilenets.tasks.distill.teachers.normalize_crops`); validation items are a
deterministic resize + centre crop. Unreadable files become a
:class:`~mobilenets.data.samples.BadSample` and are dropped from the batch and reported.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import InterpolationMode
from torchvision.transforms import v2 as T

from mobilenets.data.augment import Augment
from mobilenets.data.folders import IMAGE_EXTENSIONS
from mobilenets.data.samples import BadSample
from mobilenets.errors import DataNotFoundError, MobileNetsError, arg


def list_images(root: str | os.PathLike) -> list[str]:
    """Image files under ``root`` (recursively, hidden files and folders skipped), as sorted paths
    relative to ``root`` with ``/`` separators."""
    root = Path(root)
    if not root.exists():
        raise DataNotFoundError(f"data folder not found: {root}")
    if not root.is_dir():
        raise MobileNetsError(f"data folder is not a folder: {root}")
    found = []
    for base, dirs, files in os.walk(root, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel = os.path.relpath(base, root)
        for f in sorted(files):
            if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS):
                found.append(f if rel == "." else f"{rel}/{f}".replace(os.sep, "/"))
    if not found:
        raise MobileNetsError(f"no images found in {root} (looked for {'/'.join(IMAGE_EXTENSIONS)} files, "
                              f"in sub-folders too)")
    return found


def split_every(paths: Sequence[str], every: int) -> tuple[list[str], list[str]]:
    """``(train, val)``: every ``every``-th image (the last of each group) is held out."""
    if every < 2:
        raise MobileNetsError(f"{arg('val_every')} must be >= 2, got {every}")
    val = [p for i, p in enumerate(paths) if i % every == every - 1]
    train = [p for i, p in enumerate(paths) if i % every != every - 1]
    if not train or not val:
        raise MobileNetsError(f"{len(paths)} image(s) are too few to hold out every {every}-th for validation; "
                              f"give {arg('val_data')} or more images")
    return train, val


def read_rgb(path: str) -> Image.Image:
    """The whole image decoded as RGB (raises on truncated or unknown files)."""
    with Image.open(path) as image:
        return image.convert("RGB")


def crop_transform(size: int, augment: Augment | None) -> T.Compose:
    """PIL image -> ``uint8 [3, size, size]``: augmented when ``augment`` is given (random resized
    crop of at least ``crop_min_area``, flip, jitter), else resize + centre crop."""
    if augment is None:
        steps = [T.Resize(size, interpolation=InterpolationMode.BILINEAR, antialias=True), T.CenterCrop(size)]
    else:
        steps = [T.RandomResizedCrop(size, scale=(augment.crop_min_area, 1.0),
                                     interpolation=InterpolationMode.BILINEAR, antialias=True)]
        if augment.hflip:
            steps.append(T.RandomHorizontalFlip())
        if augment.color_jitter > 0:
            j = augment.color_jitter
            steps.append(T.ColorJitter(brightness=j, contrast=j, saturation=j))
    return T.Compose([*steps, T.PILToTensor()])


class ImageCrops(Dataset):
    """``(uint8 crop [3, S, S], relative path)`` of each image, or a :class:`BadSample`."""

    def __init__(self, root: str | os.PathLike, paths: Sequence[str], size: int, augment: Augment | None) -> None:
        self.root, self.paths, self.size = str(root), list(paths), int(size)
        self.transform = crop_transform(self.size, augment)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        rel = self.paths[index]
        full = os.path.join(self.root, rel)
        try:
            image = read_rgb(full)
        except Exception as exc:  # noqa: BLE001 - PIL raises many types on malformed files
            return BadSample(full, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__,
                             (3, self.size, self.size))
        return self.transform(image), rel


def stack_crops(items: Sequence) -> tuple[torch.Tensor, list[str], list[tuple[str, str]]]:
    """``(uint8 crops [N, 3, S, S], relative paths, bad)`` of a list of :class:`ImageCrops` items."""
    good = [it for it in items if not isinstance(it, BadSample)]
    bad = [(it.path, it.reason) for it in items if isinstance(it, BadSample)]
    if good:
        return torch.stack([c for c, _ in good]), [p for _, p in good], bad
    shape = next((it.shape for it in items if isinstance(it, BadSample) and it.shape), (3, 0, 0))
    return torch.empty((0, *shape), dtype=torch.uint8), [], bad


def first_readable(root: str | os.PathLike, paths: Sequence[str]) -> str:
    """The first of ``paths`` that decodes; one error naming the first failure if none does."""
    first_error = None
    for rel in paths:
        try:
            read_rgb(os.path.join(root, rel))
            return rel
        except Exception as exc:  # noqa: BLE001 - PIL raises many types on malformed files
            first_error = first_error or f"{rel}: {type(exc).__name__}: {exc}"
    raise MobileNetsError(f"none of the {len(paths)} image(s) in {root} can be read (first: {first_error})")


def load_crops(root: str | os.PathLike, paths: Sequence[str], size: int) -> torch.Tensor:
    """Deterministic ``uint8`` centre crops of ``paths`` (for probing and evaluation); one line
    naming the first file that cannot be read (and how many cannot) if any."""
    ds = ImageCrops(root, paths, size, None)
    items = [ds[i] for i in range(len(ds))]
    bad = [it for it in items if isinstance(it, BadSample)]
    if bad:
        raise MobileNetsError(f"{len(bad)} of {len(items)} image(s) cannot be read (first: {bad[0].path}: "
                              f"{bad[0].reason})")
    return torch.stack([c for c, _ in items]) if items else torch.empty((0, 3, size, size), dtype=torch.uint8)


def to_uint8_crops(images: Sequence[np.ndarray | Image.Image], size: int) -> torch.Tensor:
    """PIL images or ``[H, W, 3]`` uint8 arrays as ``uint8 [N, 3, size, size]`` centre crops."""
    tf = crop_transform(size, None)
    out = [tf(im if isinstance(im, Image.Image) else Image.fromarray(np.asarray(im, dtype=np.uint8)))
           for im in images]
    return torch.stack(out)


__all__ = ["ImageCrops", "crop_transform", "first_readable", "list_images", "load_crops", "read_rgb", "split_every",
           "stack_crops", "to_uint8_crops"]
