"""Training and validation data: the built-in digits set, or an ImageNet-style image folder.

:func:`load_data` returns a :class:`DataBundle` with a train and a val ``Dataset`` whose items are
``(image, label)``: a float tensor ``[3, R, R]`` normalised with ``Augment.mean``/``Augment.std``
and an ``int`` class index. Batch them with :func:`collate_skip_bad`.

Two sources:

* ``data_dir=None``: ``sklearn.datasets.load_digits()``, 1,797 real 8x8 handwritten digits
  (pixel values 0..16, classes ``"0"``..``"9"``). The split is fixed so that every run, on every
  machine, trains and evaluates on the same images: ``train_test_split(test_size=0.25,
  stratify=labels, random_state=0)`` gives **1,347 train / 450 val** images. Each image is scaled
  to [0, 1], up-sampled to R x R (bilinear, ``align_corners=False``), repeated to 3 channels and
  normalised. It needs no download, so the whole training pipeline can be exercised anywhere.
* ``data_dir=PATH``: ``PATH/train/<class>/*.jpg`` and ``PATH/val/<class>/*.jpg`` (ImageNet layout).
  Classes are the sorted sub-folder names of ``train/``; ``val/`` uses the same mapping.

Unreadable images (truncated, empty, not an image at all) do not stop training: the dataset
returns a :class:`BadSample` marker in place of the item, and :func:`collate_skip_bad` drops it
from the batch and reports it. Files are only listed, never decoded, up front, because a full
scan of ImageNet (1.28M files) would take longer than an epoch of small-model training.
"""

from __future__ import annotations

import os

from mobilenets.data.augment import Augment
from mobilenets.data.bundle import DataBundle
from mobilenets.data.digits import DIGITS_SOURCE, DigitsDataset, load_digits_data
from mobilenets.data.folders import IMAGE_EXTENSIONS, DataFolderNotFoundError, ImageFolderDataset, load_folder_data
from mobilenets.data.jpeg import DraftRandomResizedCrop
from mobilenets.data.samples import BadSample, collate_skip_bad
from mobilenets.data.transforms import ToNormalizedTensor, eval_transform, train_transform
from mobilenets.errors import MobileNetsError

# The names callers use, whichever file of this package defines them.
__all__ = ["Augment", "BadSample", "DIGITS_SOURCE", "DataBundle", "DataFolderNotFoundError", "DigitsDataset",
           "DraftRandomResizedCrop", "IMAGE_EXTENSIONS", "ImageFolderDataset", "ToNormalizedTensor",
           "collate_skip_bad", "eval_transform", "load_data", "train_transform"]


def load_data(data_dir: str | os.PathLike | None, resolution: int, augment: Augment = Augment()) -> DataBundle:
    """Build the train and val datasets.

    ``data_dir=None`` gives the built-in digits set (fixed 1,347/450 split); otherwise
    ``data_dir`` must hold ``train/<class>/`` and ``val/<class>/`` image folders. Items are
    ``(float tensor [3, resolution, resolution], int label)`` or, for unreadable files,
    :class:`BadSample`; use :func:`collate_skip_bad` as the DataLoader's ``collate_fn``.

    Augmentations draw from the global RNGs (``random``, NumPy, torch), which the training loop
    seeds per sample (:class:`~mobilenets.train.sampler.SeededDataset`).

    Raises ``ValueError`` (``DataFolderNotFoundError``, also a ``FileNotFoundError``, for missing
    folders) with a one-line message for bad input.
    """
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
        raise MobileNetsError(f"resolution must be a positive integer, got {resolution!r}")
    if not isinstance(augment, Augment):
        raise MobileNetsError(f"augment must be an Augment, got {type(augment).__name__}")
    if data_dir is None:
        return load_digits_data(resolution, augment)
    return load_folder_data(data_dir, resolution, augment)
