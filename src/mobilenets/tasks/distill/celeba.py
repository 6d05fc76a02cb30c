"""CelebA's face-attribute layout, for judging an attribute student against ground truth.

A CelebA folder holds ``list_attr_celeba.txt`` (a count line, a line of the 40 attribute names,
then ``image.jpg`` and one ``1``/``-1`` per attribute on each line), ``list_eval_partition.txt``
(``image.jpg 0|1|2``: train, val, test) and the images, in ``img_align_celeba/`` or beside the
lists. :func:`celeba_report` gives the per-attribute AP of a student's outputs on one partition
(:func:`~mobilenets.tasks.distill.metrics.mean_average_precision`: an attribute with no positive
in that partition is reported apart, not averaged as 0).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mobilenets.errors import DataNotFoundError, MobileNetsError

ATTRIBUTES_FILE, PARTITION_FILE = "list_attr_celeba.txt", "list_eval_partition.txt"
PARTITIONS = {"train": 0, "val": 1, "test": 2}


@dataclass(frozen=True)
class CelebA:
    """The attribute table of a CelebA folder: ``labels[i, j]`` is 1 when image ``files[i]`` has
    attribute ``names[j]`` (CelebA's ``1``), else 0 (its ``-1``); ``partition[i]`` is 0/1/2."""

    images: Path
    names: list[str]
    files: list[str]
    labels: np.ndarray
    partition: np.ndarray

    def split(self, name: str) -> tuple[list[str], np.ndarray]:
        """``(files, labels)`` of the partition ``name`` (train, val or test)."""
        if name not in PARTITIONS:
            raise MobileNetsError(f"unknown CelebA partition {name!r}; choose one of {', '.join(PARTITIONS)}")
        rows = np.flatnonzero(self.partition == PARTITIONS[name])
        return [self.files[i] for i in rows], self.labels[rows]


def read_attributes(path: str | os.PathLike) -> tuple[list[str], list[str], np.ndarray]:
    """``(attribute names, files, 0/1 labels [N, A])`` of a ``list_attr_celeba.txt``."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"CelebA attribute file not found: {path}")
    lines = [ln.split() for ln in path.read_text().splitlines() if ln.strip()]
    if len(lines) < 2 or len(lines[0]) != 1 or not lines[0][0].isdigit():
        raise MobileNetsError(f"{path}: expected a count line, then the attribute names, then one line per image")
    count, names, body = int(lines[0][0]), lines[1], lines[2:]
    if len(body) != count:
        raise MobileNetsError(f"{path} announces {count} images but lists {len(body)}")
    files, rows = [], []
    for k, parts in enumerate(body):
        if len(parts) != len(names) + 1 or not set(parts[1:]) <= {"1", "-1"}:
            raise MobileNetsError(f"{path} line {k + 3}: expected an image name and {len(names)} values of 1 or -1, "
                                  f"got {' '.join(parts)[:80]!r}")
        files.append(parts[0])
        rows.append([v == "1" for v in parts[1:]])
    return names, files, np.array(rows, dtype=np.int64).reshape(len(files), len(names))


def read_partition(path: str | os.PathLike) -> dict[str, int]:
    """``{image: 0|1|2}`` of a ``list_eval_partition.txt``."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"CelebA partition file not found: {path}")
    out = {}
    for k, line in enumerate(path.read_text().splitlines()):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
            raise MobileNetsError(f"{path} line {k + 1}: expected 'image.jpg 0|1|2', got {line[:80]!r}")
        out[parts[0]] = int(parts[1])
    return out


def read_celeba(root: str | os.PathLike) -> CelebA:
    """The CelebA folder ``root`` (see the module docstring)."""
    root = Path(root)
    if not root.is_dir():
        raise DataNotFoundError(f"CelebA folder not found: {root}")
    names, files, labels = read_attributes(root / ATTRIBUTES_FILE)
    part = read_partition(root / PARTITION_FILE)
    lost = [f for f in files if f not in part]
    if lost:
        raise MobileNetsError(f"{root / PARTITION_FILE} has no partition for {len(lost)} image(s) (first: {lost[0]})")
    images = root / "img_align_celeba" if (root / "img_align_celeba").is_dir() else root
    return CelebA(images, names, files, labels, np.array([part[f] for f in files], dtype=np.int64))


def output_columns(output_names: list[str] | None, outputs: int, names: list[str]) -> list[tuple[int, int]]:
    """``(student output, CelebA column)`` pairs: by name when the student's outputs are named
    after CelebA attributes, else in order when it has as many outputs as CelebA attributes."""
    if output_names and set(output_names) & set(names):
        col = {n: j for j, n in enumerate(names)}
        return [(i, col[n]) for i, n in enumerate(output_names) if n in col]
    if outputs == len(names):
        return list(enumerate(range(len(names))))
    raise MobileNetsError(f"the student's {outputs} outputs{' (' + ', '.join(output_names[:5]) + ', ...)' if output_names else ''} "
                          f"are not CelebA's {len(names)} attributes")


def celeba_split(root: str | os.PathLike, split: str = "test",
                 limit: int | None = None) -> tuple[CelebA, list[str], np.ndarray]:
    """``(the CelebA folder, files, labels)`` of partition ``split``, checked: the lists are
    well formed (:func:`read_celeba`), the partition has images and every one of them exists.
    What a command calls before it trains, so that a bad folder is refused up front."""
    data = read_celeba(root)
    files, labels = data.split(split)
    if limit is not None:
        files, labels = files[:limit], labels[:limit]
    if not files:
        raise MobileNetsError(f"CelebA partition {split} of {root} has no images")
    missing = [f for f in files if not (data.images / f).is_file()]
    if missing:
        raise DataNotFoundError(f"{len(missing)} image(s) of the {split} partition are missing from {data.images} "
                                f"(first: {missing[0]})")
    return data, files, labels


def celeba_report(student: Any, pre: Any, root: str | os.PathLike, split: str = "test", *,
                  output_names: list[str] | None = None, crop_size: int | None = None,
                  limit: int | None = None) -> dict[str, Any]:
    """Per-attribute AP (and their mean) of ``student``'s outputs on CelebA partition ``split``
    against its ground truth; ``limit`` keeps the first images only (a quick look)."""
    from mobilenets.tasks.distill.data import load_crops
    from mobilenets.tasks.distill.metrics import format_average_precision, mean_average_precision
    from mobilenets.tasks.distill.run import outputs_of

    data, files, labels = celeba_split(root, split, limit)
    crops = load_crops(data.images, files, crop_size or student.config.resolution)
    scores = outputs_of(student, crops, pre)
    pairs = output_columns(output_names, scores.shape[1], data.names)
    result = mean_average_precision(labels[:, [j for _, j in pairs]], scores[:, [i for i, _ in pairs]],
                                    [data.names[j] for _, j in pairs])
    result.update(split=split, images=len(files), table=format_average_precision(result))
    return result


__all__ = ["ATTRIBUTES_FILE", "CelebA", "PARTITIONS", "PARTITION_FILE", "celeba_report", "output_columns",
           "celeba_split", "read_attributes", "read_celeba", "read_partition"]
