"""Unreadable images do not stop training: datasets return a :class:`BadSample` in place of the
item, and :func:`collate_skip_bad` drops it from the batch and reports it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class BadSample:
    """Returned by a dataset in place of ``(image, label)`` when the file cannot be decoded.

    ``shape`` is the shape a good image would have had, so that a batch made only of bad samples
    can still produce correctly shaped empty tensors.
    """

    path: str
    reason: str
    shape: tuple[int, int, int] | None = None


def collate_skip_bad(batch: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor, list[tuple[str, str]]]:
    """DataLoader ``collate_fn``: stack the good items, report the :class:`BadSample` ones.

    Returns ``(images [N, 3, R, R] float, labels [N] long, bad)`` with ``bad`` a list of
    ``(path, reason)``. ``N`` may be smaller than the batch size, or 0 (then ``images`` has shape
    ``[0, 3, R, R]`` when R is known from the markers).
    """
    good = [item for item in batch if not isinstance(item, BadSample)]
    bad_items = [item for item in batch if isinstance(item, BadSample)]
    bad = [(item.path, item.reason) for item in bad_items]
    if good:
        images = torch.stack([image for image, _ in good])
        labels = torch.tensor([int(label) for _, label in good], dtype=torch.long)
        return images, labels, bad
    shape = next((item.shape for item in bad_items if item.shape is not None), (3, 0, 0))
    return torch.empty((0, *shape), dtype=torch.float32), torch.empty((0,), dtype=torch.long), bad
