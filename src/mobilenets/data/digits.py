"""The built-in dataset: ``sklearn.datasets.load_digits()``, 1,797 real 8x8 handwritten digits.

The split is fixed so that every run, on every machine, trains and evaluates on the same images:
``train_test_split(test_size=0.25, stratify=labels, random_state=0)`` gives **1,347 train / 450
val** images. Each image is scaled to [0, 1], up-sampled to R x R (bilinear,
``align_corners=False``), repeated to 3 channels and normalised. It needs no download, so the
whole training pipeline can be exercised anywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from torchvision.transforms import InterpolationMode
from torchvision.transforms import v2 as T

from mobilenets.data.augment import Augment
from mobilenets.data.bundle import DataBundle

# The fixed digits split (see the module docstring): sizes 1,347 / 450.
DIGITS_TEST_SIZE = 0.25
DIGITS_SPLIT_SEED = 0
DIGITS_SOURCE = "digits"

# Up-sampled digits take 1,797 * R * R floats (one channel); up to 64 px that is <= 30 MB, so
# they are computed once. Beyond that memory grows quadratically for no speed gain worth having,
# so the 8x8 images are kept and up-sampled per item.
DIGITS_PRECOMPUTE_MAX_RESOLUTION = 64


class DigitsDataset(Dataset):
    """Part of ``load_digits()``: 8x8 digits up-sampled to ``resolution``, as 3-channel tensors.

    ``indices`` are the positions of the items in ``load_digits()`` (kept so the split can be
    checked and reproduced). With ``train=True`` each item gets a small random translation and
    scale; never a flip, because mirrored digits are different symbols (or none).
    """

    def __init__(self, images: torch.Tensor, labels: Sequence[int], indices: Sequence[int],
                 resolution: int, augment: Augment, train: bool,
                 precompute: bool | None = None) -> None:
        """``images``: float ``[N, 8, 8]`` in [0, 1]; ``precompute=None`` decides by resolution."""
        self.resolution = int(resolution)
        self.train = bool(train)
        self.targets = [int(v) for v in labels]
        self.indices = [int(v) for v in indices]
        self.mean = torch.tensor(augment.mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(augment.std, dtype=torch.float32).view(3, 1, 1)
        if precompute is None:
            precompute = self.resolution <= DIGITS_PRECOMPUTE_MAX_RESOLUTION
        self.precomputed = bool(precompute)
        small = images.to(torch.float32).unsqueeze(1).contiguous()  # [N, 1, 8, 8]
        # One channel is stored; the 3 identical channels only exist per item.
        self.images = self._upsample(small) if self.precomputed else small
        # Translate by up to 1/8 of the side (one source pixel) and scale by +-10%: handwriting
        # varies that much in position and size, and load_digits' blank border leaves room for
        # it. fill=0 is the background, since this runs before normalisation.
        self.augment = None
        if self.train:
            self.augment = T.RandomAffine(degrees=0, translate=(0.125, 0.125), scale=(0.9, 1.1),
                                          interpolation=InterpolationMode.BILINEAR, fill=0.0)

    def _upsample(self, small: torch.Tensor) -> torch.Tensor:
        """``[N, 1, 8, 8]`` -> ``[N, 1, R, R]``, bilinear with ``align_corners=False``."""
        return F.interpolate(small, size=(self.resolution, self.resolution), mode="bilinear",
                             align_corners=False)

    def __len__(self) -> int:
        """Number of digits in this part of the split."""
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        """``(image [3, R, R] float32, label)``; random only when ``train``."""
        if self.precomputed:
            image = self.images[index]
        else:
            image = self._upsample(self.images[index : index + 1])[0]
        if self.augment is not None:
            image = self.augment(image)
        image = (image.expand(3, -1, -1) - self.mean) / self.std
        return image, self.targets[index]


def load_digits_data(resolution: int, augment: Augment) -> DataBundle:
    """The built-in dataset with its fixed split."""
    # Imported here: scikit-learn is slow to import and only this source needs it.
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    labels = digits.target
    train_idx, val_idx = train_test_split(
        list(range(len(labels))), test_size=DIGITS_TEST_SIZE, stratify=labels,
        random_state=DIGITS_SPLIT_SEED)
    images = torch.from_numpy(digits.images).to(torch.float32) / 16.0  # pixel values are 0..16

    def part(indices: list[int], train: bool) -> DigitsDataset:
        return DigitsDataset(images[indices], labels[indices].tolist(), indices, resolution,
                             augment, train)

    return DataBundle(train=part(train_idx, True), val=part(val_idx, False),
                      classes=[str(d) for d in range(10)], source=DIGITS_SOURCE)
