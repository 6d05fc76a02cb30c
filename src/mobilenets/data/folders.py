"""ImageNet-style image folders: ``PATH/train/<class>/*.jpg`` and ``PATH/val/<class>/*.jpg``.

Classes are the sorted sub-folder names of ``train/``; ``val/`` uses the same mapping. Files are
only listed, never decoded, up front (a full scan of ImageNet's 1.28M files would take longer
than an epoch of small-model training); an unreadable file becomes a
:class:`~mobilenets.data.samples.BadSample` when it is met. A class none of whose files can be
opened is refused up front, naming the class.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset

from mobilenets.data.augment import Augment
from mobilenets.data.bundle import DataBundle
from mobilenets.data.jpeg import DraftRandomResizedCrop
from mobilenets.data.samples import BadSample
from mobilenets.data.transforms import eval_transform, train_transform
from mobilenets.errors import MobileNetsError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class DataFolderNotFoundError(FileNotFoundError, ValueError):
    """A data folder (or its ``train/``/``val/``) does not exist.

    It is both a ``FileNotFoundError`` and a ``ValueError`` so that callers that report bad user
    input by catching either one show this message instead of a traceback.
    """


def _is_image_file(name: str) -> bool:
    """True for image extensions (any case); hidden files such as macOS ``._x.jpg`` are skipped."""
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def _class_folders(split_dir: Path) -> list[str]:
    """Sorted names of the non-hidden sub-folders of ``split_dir``."""
    with os.scandir(split_dir) as entries:
        return sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))


def _list_images(class_dir: Path) -> list[str]:
    """Image files under ``class_dir`` (recursively), in a stable order."""
    found = []
    for root, dirs, files in os.walk(class_dir, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(os.path.join(root, f) for f in sorted(files) if _is_image_file(f))
    return found


def _find_samples(split_dir: Path, classes: list[str]) -> list[tuple[str, int]]:
    """``(path, class index)`` for every image in ``split_dir/<class>/``; classes may be absent."""
    index = {name: i for i, name in enumerate(classes)}
    samples = []
    for name in _class_folders(split_dir):
        samples.extend((path, index[name]) for path in _list_images(split_dir / name))
    if not samples:
        raise MobileNetsError(f"no images found in {split_dir} (expected one sub-folder per class "
                         f"holding {'/'.join(IMAGE_EXTENSIONS)} files)")
    return samples


def _opens(path: str) -> str | None:
    """None if PIL can read the image's header and size, else the reason it cannot."""
    try:
        with Image.open(path) as image:
            image.size  # noqa: B018 - the header is parsed by open(); size is what the crop needs
        return None
    except Exception as exc:  # noqa: BLE001 - PIL raises many types on malformed files
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def check_classes_readable(split_dir: Path, samples: list[tuple[str, int]], classes: list[str]) -> None:
    """Refuse a class none of whose images can be opened: it would train as a class that never
    appears. Reads one header per class (the first file, unless it is bad), so ImageNet's 1,000
    classes cost about 1,000 header reads; a bad file elsewhere is found when it is met."""
    by_class: dict[int, list[str]] = {}
    for path, label in samples:
        by_class.setdefault(label, []).append(path)
    for label, paths in by_class.items():
        reasons = []
        for path in paths:
            reason = _opens(path)
            if reason is None:
                break
            reasons.append(reason)
        else:
            raise MobileNetsError(f"class {classes[label]!r} in {split_dir}: none of its {len(paths)} image(s) "
                                  f"can be read (first: {paths[0]}: {reasons[0]})")


def _load_rgb(path: str) -> Image.Image:
    """Decode an image fully, as RGB; raises on truncated or unrecognised files."""
    with Image.open(path) as image:
        # convert() forces the full decode inside the caller's try, so truncation surfaces here
        # (PIL raises "image file is truncated" unless LOAD_TRUNCATED_IMAGES is set).
        return image.convert("RGB")


class ImageFolderDataset(Dataset):
    """Images in ``root/<class>/...``; unreadable files give a :class:`BadSample`, not an error."""

    def __init__(self, root: str | os.PathLike, samples: list[tuple[str, int]], classes: list[str],
                 transform: Any, resolution: int, loader: Any = None) -> None:
        """``samples``: ``(path, class index)`` pairs, as found by :func:`load_data`.
        ``loader(path)`` decodes a file to a PIL image (default: the whole image, as RGB)."""
        self.loader = loader or _load_rgb
        self.root = str(root)
        self.samples = samples
        self.targets = [t for _, t in samples]
        self.classes = list(classes)
        self.transform = transform
        self.resolution = int(resolution)

    def __len__(self) -> int:
        """Number of image files (including any that will turn out unreadable)."""
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int] | BadSample:
        """``(image [3, R, R], label)``, or ``BadSample(path, reason)`` if the file won't decode."""
        path, target = self.samples[index]
        try:
            image = self.loader(path)
        except Exception as exc:  # noqa: BLE001 - PIL raises many types on malformed files
            # Only decoding is guarded: an error in the transforms is a bug and must surface.
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return BadSample(path, reason, (3, self.resolution, self.resolution))
        return self.transform(image), target


def load_folder_data(data_dir: str | os.PathLike, resolution: int, augment: Augment) -> DataBundle:
    """An ImageNet-style folder with ``train/`` and ``val/``."""
    root = Path(data_dir)
    if not root.exists():
        raise DataFolderNotFoundError(f"data folder not found: {root}")
    if not root.is_dir():
        raise MobileNetsError(f"data folder is not a folder: {root}")
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise DataFolderNotFoundError(
                f"data folder {root} has no {split}/ sub-folder (expected {root / split})")
    classes = _class_folders(root / "train")
    if not classes:
        raise MobileNetsError(f"no images found in {root / 'train'} (expected one sub-folder per class)")
    unknown = sorted(set(_class_folders(root / "val")) - set(classes))
    if unknown:
        shown = ", ".join(unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        raise MobileNetsError(f"{root / 'val'} has class folders that {root / 'train'} lacks: {shown}")
    train_samples = _find_samples(root / "train", classes)
    val_samples = _find_samples(root / "val", classes)
    check_classes_readable(root / "train", train_samples, classes)
    train = ImageFolderDataset(root / "train", train_samples, classes,
                               train_transform(resolution, augment, crop=False), resolution,
                               loader=DraftRandomResizedCrop(resolution, (augment.crop_min_area, 1.0)))
    val = ImageFolderDataset(root / "val", val_samples, classes,
                             eval_transform(resolution, augment), resolution)
    return DataBundle(train=train, val=val, classes=classes, source=str(root))
