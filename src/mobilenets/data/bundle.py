"""What :func:`mobilenets.data.datasets.load_data` returns."""

from __future__ import annotations

from dataclasses import dataclass

from torch.utils.data import Dataset


@dataclass
class DataBundle:
    """What :func:`load_data` returns."""

    train: Dataset
    val: Dataset
    classes: list[str]
    source: str  # "digits" or the data folder's path
