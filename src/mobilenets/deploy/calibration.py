"""Images for int8 calibration and for the int8 check: a folder of images or the built-in digits.

The images are preprocessed the way the model expects (its :class:`~mobilenets.data.preprocess.
Preprocessing`) into float32 NCHW arrays. Part of them is held out: the int8 check compares the
quantized export with the float model on images the calibration has not seen.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mobilenets.data.preprocess import Preprocessing
from mobilenets.deploy.sources import Source
from mobilenets.errors import DataNotFoundError, MobileNetsError

CHECK_IMAGES = 1000  # at most this many held-out images of a folder for the int8 check


@dataclass
class ImageSet:
    """Preprocessed images (float32 NCHW) for calibration and for the int8 check."""

    calibration: np.ndarray
    check: np.ndarray
    check_labels: np.ndarray | None  # None where the labels are unknown
    calibration_labels: np.ndarray | None
    source: str


def _augment(pre: Preprocessing):
    # The data pipeline's transforms take its Augment settings; only the eval fields matter here.
    from mobilenets.data.datasets import Augment

    return Augment(mean=pre.mean, std=pre.std, eval_crop=pre.crop_pct, interpolation=pre.interpolation)


def _digits_images(source: Source, resolution: int, limit: int) -> ImageSet:
    from mobilenets.data.datasets import load_data

    bundle = load_data(None, resolution, _augment(source.preprocessing))
    # Labels mean something only for a trained model whose classes are the digits.
    labelled = (source.trained and source.model.config.num_classes == len(bundle.classes)
                and source.classes in (None, bundle.classes))
    # Calibrate on the training split without its random affine augmentation (deterministic);
    # check on the validation split, which neither training nor calibration has seen.
    train = copy.copy(bundle.train)
    train.augment = None
    n = min(limit, len(train))
    idx = np.random.default_rng(0).permutation(len(train))[:n]
    cal = torch.stack([train[int(i)][0] for i in idx]).numpy()
    cal_labels = np.array([train.targets[int(i)] for i in idx])
    val = torch.stack([bundle.val[i][0] for i in range(len(bundle.val))]).numpy()
    labels = np.array(bundle.val.targets)
    if not labelled:
        labels = cal_labels = None
    return ImageSet(cal, val, labels, cal_labels, "digits")


def _folder_images(folder: str | os.PathLike, resolution: int, pre: Preprocessing,
                   classes: list[str] | None, limit: int) -> ImageSet:
    """Every image under ``folder`` (recursively, sorted); every 5th one is held out for the check.
    An image's label is its parent folder's name where that is one of ``classes``."""
    from PIL import Image, UnidentifiedImageError

    from mobilenets.data.datasets import IMAGE_EXTENSIONS, eval_transform

    root = Path(folder)
    if not root.exists():
        raise DataNotFoundError(f"calibration folder not found: {root}")
    if not root.is_dir():
        raise MobileNetsError(f"calibration data must be a folder of images: {root}")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if len(files) < 2:
        raise MobileNetsError(f"calibration folder {root} holds {len(files)} image(s); need at least 2")
    transform = eval_transform(resolution, _augment(pre))
    index = {c: i for i, c in enumerate(classes or [])}
    cal_files = [f for i, f in enumerate(files) if i % 5 != 4][:limit]
    check_files = [f for i, f in enumerate(files) if i % 5 == 4][:CHECK_IMAGES]

    def load(paths: list[Path]) -> tuple[np.ndarray, np.ndarray | None]:
        images, labels = [], []
        for p in paths:
            try:
                with Image.open(p) as im:
                    images.append(transform(im.convert("RGB")))
            except (UnidentifiedImageError, OSError, SyntaxError) as exc:
                raise MobileNetsError(f"cannot read calibration image {p}: {exc}") from None
            labels.append(index.get(p.parent.name, -1))
        lab = np.array(labels)
        return torch.stack(images).numpy(), (lab if (lab >= 0).all() else None)

    cal, cal_labels = load(cal_files)
    check, labels = load(check_files)
    return ImageSet(cal, check, labels, cal_labels, str(root))


def calibration_images(calibration: str | os.PathLike | None, source: Source, resolution: int,
                       limit: int = 256) -> ImageSet:
    """Calibration and check images: a folder of images, or (``None``) the built-in digits;
    at most ``limit`` calibration images."""
    if calibration is None:
        return _digits_images(source, resolution, limit)
    return _folder_images(calibration, resolution, source.preprocessing, source.classes, limit)
