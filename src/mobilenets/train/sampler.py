"""Data order and augmentation seeds that are pure functions of (seed, epoch, sample index).

That is what makes resume exact and results independent of the number of DataLoader workers:
:class:`ResumableSampler` yields ``(index, sample_seed)`` pairs for the global batch order of an
epoch (sharded across ranks, startable at any step), and :class:`SeededDataset` runs the wrapped
dataset's random transforms with Python's ``random``, NumPy's global RNG and torch's CPU RNG all
seeded from ``sample_seed`` (timm's RandAugment draws its ops with NumPy; torchvision's
transforms with torch), restoring the caller's states afterwards.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from mobilenets.errors import MobileNetsError


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of sample ``index``'s augmentation in ``epoch`` of a run seeded ``seed``."""
    return (seed * 1_000_003 + epoch) * 10_000_019 + index


class ResumableSampler(Sampler):
    """Global-batch order that is a pure function of (seed, epoch), sharded across ranks, and
    that can start at any step. Each item is ``(index, sample_seed)`` so augmentations are
    seeded per sample. torch's DistributedSampler cannot start mid-epoch nor seed augmentations
    independently of worker count, hence this small class."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1, shuffle: bool = True):
        if batch_size % world:
            raise MobileNetsError(f"batch size {batch_size} is not divisible by {world} processes")
        self.n, self.batch_size, self.seed, self.rank, self.world, self.shuffle = n, batch_size, seed, rank, world, shuffle
        self.epoch, self.start_step = 0, 0

    def steps_per_epoch(self) -> int:
        return self.n // self.batch_size  # drop_last: BN on a 3-image batch helps no one

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        self.epoch, self.start_step = epoch, start_step

    def __iter__(self) -> Iterator[tuple[int, int]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.n, generator=g) if self.shuffle else torch.arange(self.n)
        used = self.steps_per_epoch() * self.batch_size
        order = order[self.start_step * self.batch_size: used]
        for i in order[self.rank:: self.world].tolist():
            yield i, sample_seed(self.seed, self.epoch, i)

    def __len__(self) -> int:
        return (self.steps_per_epoch() - self.start_step) * self.batch_size // self.world


class SeededDataset(Dataset):
    """Runs the wrapped dataset's random transforms under a per-sample seed (``random``, NumPy
    and torch), restoring the caller's RNG states afterwards, so augmentation does not depend on
    workers or on resume."""

    def __init__(self, base: Dataset):
        self.base = base

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, item: tuple[int, int]):
        index, seed = item
        py_state, np_state = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=[]):  # torch's CPU generator, restored on exit
            torch.manual_seed(seed % (2**63))
            random.seed(seed)
            np.random.seed(seed % (2**32))
            try:
                return self.base[index]
            finally:
                random.setstate(py_state)
                np.random.set_state(np_state)
