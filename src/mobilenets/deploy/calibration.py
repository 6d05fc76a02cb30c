"""Images for int8 calibration and for the int8 check: the model's own training data, a folder
of images, or the built-in digits.

:func:`calibration_images` takes them from

* ``calibration=None``: the data the model was trained on, as its run recorded it
  (:attr:`Source.data <mobilenets.deploy.sources.Source>`): an ImageNet-style folder calibrates
  on its ``train/`` split and checks on its ``val/`` split; the built-in digits calibrate on
  their training split and check on their test split. A model with no recorded training data (a
  converted model, a model object, random weights) is refused: calibrating a photo model on
  digits says nothing about it.
* ``calibration=FOLDER``: an ImageNet-style folder (``train/``, ``val/``) as above, else every
  image under the folder (recursively, sorted), of which every 5th is held out for the check.
* ``calibration="digits"``: the built-in digits, for any model (write ``./digits`` for a
  folder of that name).

The images are preprocessed the way the model expects (its :class:`~mobilenets.data.preprocess.
Preprocessing`) into float32 NCHW arrays. Unreadable files (truncated, empty, not an image) are
skipped as training skips them (:mod:`mobilenets.data.samples`) and counted in
:attr:`ImageSet.skipped` and in its ``source``; fewer than 2 readable images are refused. An
image's label is its class folder's name where that is one of the model's classes.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mobilenets.data.preprocess import Preprocessing
from mobilenets.deploy.sources import DIGITS, Source
from mobilenets.errors import DataNotFoundError, MobileNetsError, arg, from_cli

CHECK_IMAGES = 1000  # at most this many held-out images of a folder for the int8 check
HOLD_OUT_EVERY = 5  # a folder without val/: every 5th readable image is held out for the check
SPLIT_SEED = 0  # the draw of calibration images from a train/ split (deterministic)


@dataclass
class ImageSet:
    """Preprocessed images (float32 NCHW) for calibration and for the int8 check."""

    calibration: np.ndarray
    check: np.ndarray
    check_labels: np.ndarray | None  # None where the labels are unknown
    calibration_labels: np.ndarray | None
    source: str  # where the images came from, with how many unreadable files were skipped
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason) of each unreadable file


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
    return ImageSet(cal, val, labels, cal_labels, DIGITS)


def image_files(root: Path) -> list[Path]:
    """Image files under ``root`` (recursively, sorted), hidden files and folders left out as the
    data folders leave them out."""
    from mobilenets.data.datasets import IMAGE_EXTENSIONS

    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))


class _Reader:
    """Decodes and preprocesses images through the training data's own dataset class, so an
    unreadable file becomes a :class:`~mobilenets.data.samples.BadSample` (skipped, with its
    reason) exactly as in training."""

    def __init__(self, resolution: int, pre: Preprocessing, classes: list[str] | None) -> None:
        from mobilenets.data.datasets import eval_transform

        self.resolution = resolution
        self.transform = eval_transform(resolution, _augment(pre))
        self.classes = list(classes or [])
        self.index = {c: i for i, c in enumerate(self.classes)}
        self.skipped: list[tuple[str, str]] = []

    def items(self, root: Path, files: list[Path]):
        """``(image tensor, label)`` for each readable file in order (label -1: not a class of the
        model; the class is the first folder under ``root``)."""
        from mobilenets.data.datasets import BadSample, ImageFolderDataset

        parts = [p.relative_to(root).parts for p in files]
        samples = [(str(p), self.index.get(q[0], -1) if len(q) > 1 else -1) for p, q in zip(files, parts)]
        dataset = ImageFolderDataset(root, samples, self.classes, self.transform, self.resolution)
        for i in range(len(dataset)):
            item = dataset[i]
            if isinstance(item, BadSample):
                self.skipped.append((item.path, item.reason))
                continue
            yield item


def _stack(items: list) -> tuple[np.ndarray, np.ndarray | None]:
    from mobilenets.data.datasets import collate_skip_bad

    images, labels, _ = collate_skip_bad(items)
    lab = labels.numpy()
    return images.numpy(), (lab if len(lab) and (lab >= 0).all() else None)


def _take(items, n: int) -> list:
    out = []
    for item in items:
        if len(out) >= n:
            break
        out.append(item)
    return out


def _folder_images(folder: str | os.PathLike, resolution: int, pre: Preprocessing, classes: list[str] | None,
                   limit: int, what: str = "calibration folder") -> ImageSet:
    """The images of ``folder``: ImageNet-style (``train/`` calibrates, drawn at random; ``val/``
    checks) or any folder of images (sorted; every 5th readable one is held out for the check)."""
    root = Path(folder)
    if not root.exists():
        raise DataNotFoundError(f"{what} not found: {root}")
    if not root.is_dir():
        raise MobileNetsError(f"{what} must be a folder of images: {root}")
    reader = _Reader(resolution, pre, classes)
    notes = []
    cal: list = []
    check: list = []
    if (root / "train").is_dir():
        train = image_files(root / "train")
        order = np.random.default_rng(SPLIT_SEED).permutation(len(train))
        cal = _take(reader.items(root / "train", [train[int(i)] for i in order]), limit)
        if (root / "val").is_dir():
            check = _take(reader.items(root / "val", image_files(root / "val")), CHECK_IMAGES)
        notes.append("train/ calibrates, val/ checks" if check else "train/ only, part held out for the check")
    else:
        for k, item in enumerate(reader.items(root, image_files(root))):
            target = check if k % HOLD_OUT_EVERY == HOLD_OUT_EVERY - 1 else cal
            if len(target) < (CHECK_IMAGES if target is check else limit):
                target.append(item)
            if len(cal) >= limit and len(check) >= CHECK_IMAGES:
                break
    if len(cal) + len(check) < 2:
        skipped = f" ({len(reader.skipped)} unreadable skipped)" if reader.skipped else ""
        raise MobileNetsError(f"{what} {root} holds {len(cal) + len(check)} readable image(s){skipped}; "
                              f"need at least 2")
    if not check:  # too few images for every 5th, or no readable val/ image: hold some out anyway
        n = max(1, len(cal) // HOLD_OUT_EVERY)
        cal, check = cal[:-n], cal[-n:]
    if reader.skipped:
        notes.append(f"{len(reader.skipped)} unreadable image(s) skipped")
    cal_x, cal_labels = _stack(cal)
    check_x, labels = _stack(check)
    source = str(root) + (f": {'; '.join(notes)}" if notes else "")
    return ImageSet(cal_x, check_x, labels, cal_labels, source, reader.skipped)


def calibration_images(calibration: str | os.PathLike | None, source: Source, resolution: int,
                       limit: int = 256) -> ImageSet:
    """Calibration and check images (see the module docstring): the model's own training data
    (``calibration=None``), a folder of images, or ``"digits"``; at most ``limit`` calibration
    images."""
    if calibration is not None and os.fspath(calibration) == DIGITS:
        return _digits_images(source, resolution, limit)
    if calibration is not None:
        return _folder_images(calibration, resolution, source.preprocessing, source.classes, limit)
    if source.data == DIGITS:
        return _digits_images(source, resolution, limit)
    if source.data is None:
        raise MobileNetsError(f"{source.description} has no recorded training data; pass {arg('calibration')}{' ' if from_cli() else '='}FOLDER "
                              f"(a folder of images like the model's inputs, or {arg('calibration', DIGITS)})")
    if not Path(source.data).is_dir():
        raise DataNotFoundError(f"the training data its run records, {source.data}, is not a folder here; "
                                f"pass calibration=FOLDER")
    return _folder_images(source.data, resolution, source.preprocessing, source.classes, limit,
                          what="training data folder")
