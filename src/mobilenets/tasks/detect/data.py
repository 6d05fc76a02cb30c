"""Detection data: COCO folders and Pascal VOC folders, checked, as torchvision datasets.

A COCO folder is ``DIR/annotations/instances_<split>*.json`` with the images in ``DIR/<split>*/``
(COCO 2017: ``train2017/``, ``val2017/``) or ``DIR/images/``; a VOC folder has ``Annotations/``,
``JPEGImages/`` and ``ImageSets/Main/<split>.txt`` (or is a ``VOCdevkit`` holding one). VOC XML is
turned into the same COCO dictionary (:mod:`mobilenets.tasks.detect.voc`), so one path reads both.

Annotations are checked before anything trains, against the real image files
(:func:`~mobilenets.tasks.detect.checks.clean_coco`, whose docstring is the policy): what cannot be
used is skipped, counted, listed and summed up in one line; conflicting duplicates are refused.
An image whose header reads but whose pixels cannot be decoded is found when it is read and
becomes a :class:`~mobilenets.data.samples.BadSample` (the loop lists it in ``bad_files.txt``). Crowd annotations are left out of training targets (torchvision's detectors
have no "ignore" region) but stay in the ground truth COCO evaluation reads.

Items are read by torchvision's ``CocoDetection`` wrapped for ``transforms.v2`` (boxes are
``tv_tensors.BoundingBoxes`` that move with crops, flips and resizes), with labels mapped to
1..K in the order of the category ids (0 is background).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.datasets import CocoDetection, VisionDataset, wrap_dataset_for_transforms_v2

from mobilenets.data.samples import BadSample
from mobilenets.errors import DataNotFoundError, MobileNetsError
from mobilenets.tasks.detect.checks import NO_BOXES, OVERHANG, align_categories, clean_coco, usable_boxes
from mobilenets.utils.scoped import quiet_prints

SPLITS = ("train", "val")


@dataclass
class DetectionSplit:
    """One split: its checked COCO dictionary, its image folder and what was skipped."""

    name: str
    images: Path
    coco: dict[str, Any]
    source: str  # the annotation file (or VOC folder) it came from
    bad: list[tuple[str, str]] = field(default_factory=list)  # (what, why)

    @property
    def category_ids(self) -> list[int]:
        return sorted(c["id"] for c in self.coco["categories"])

    @property
    def class_names(self) -> list[str]:
        names = {c["id"]: c["name"] for c in self.coco["categories"]}
        return [names[i] for i in self.category_ids]


def summary_line(splits: list[DetectionSplit], listed_in: str | os.PathLike | None = None,
                 named: bool = True) -> str | None:
    """One line summing up what was skipped (None when nothing was); ``named``: with the files
    it was skipped from."""
    bad = [b for s in splits for b in s.bad]
    if not bad:
        return None
    empty = sorted({what.split(" (id")[0].removeprefix("category ") for what, why in bad if why == NO_BOXES})
    bad = [(what, why) for what, why in bad if why != NO_BOXES]
    reasons = Counter(why_of(why) for _, why in bad)
    images = sum(1 for what, _ in bad if what.startswith(("image ", "annotation file ")))
    where = f"; listed in {listed_in}" if listed_in else ""
    parts = ", ".join(f"{n} {why}" for why, n in reasons.most_common())
    sources = f" in {', '.join(s.source for s in splits)}" if named else ""
    counted = " and ".join([f"{len(bad) - images} bad annotation(s)"] * (len(bad) > images)
                           + [f"{images} image(s)"] * (images > 0))
    line = f"skipped {counted}{sources}: {parts}" if bad else ""
    if empty:
        line += ("; " if line else "") + f"no usable box for {len(empty)} categor{'y' if len(empty) == 1 else 'ies'}: " \
                                         f"{', '.join(empty)}"
    return line + where


def why_of(reason: str) -> str:
    """A skip reason without its particulars (what :func:`summary_line` counts)."""
    return reason.split(" (")[0]


def write_bad_list(splits: list[DetectionSplit], path: str | os.PathLike) -> Path | None:
    """Every skipped item as ``split<TAB>what<TAB>why`` in ``path`` (nothing written if none)."""
    rows = [f"{s.name}\t{what}\t{why}\n" for s in splits for what, why in s.bad]
    if not rows:
        return None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(rows))
    return path


def _coco_files(root: Path) -> dict[str, tuple[Path, Path]]:
    found = {}
    for split in SPLITS:
        jsons = sorted((root / "annotations").glob(f"instances_{split}*.json"))
        if not jsons:
            continue
        ann = jsons[0]
        stem = ann.stem.removeprefix("instances_")
        images = next((p for p in (root / stem, root / "images" / stem, root / "images") if p.is_dir()), root / stem)
        found[split] = (ann, images)
    return found


def load_splits(data: str | os.PathLike) -> dict[str, DetectionSplit]:
    """The checked ``train`` and ``val`` splits of a COCO or VOC folder (see the module docstring)."""
    import json

    from mobilenets.tasks.detect.voc import find_voc_root, voc_split

    root = Path(data)
    if root.is_file():
        raise MobileNetsError(f"data {root} is a file: give the folder that holds annotations/instances_<split>*.json "
                              f"and the images (COCO), or a VOC folder")
    if not root.is_dir():
        raise DataNotFoundError(f"data folder not found: {root}")
    voc = find_voc_root(root)
    splits: dict[str, DetectionSplit] = {}
    if voc is not None:
        names: list[str] | None = None
        for split in SPLITS:
            doc, bad = voc_split(voc, split, names)
            if doc is None:
                continue
            names = names or [c["name"] for c in doc["categories"]]
            clean, more = clean_coco(doc, voc / "JPEGImages", f"{voc} ({split})")
            splits[split] = DetectionSplit(split, voc / "JPEGImages", clean, f"{voc} ({split})", bad + more)
    else:
        for split, (ann, images) in _coco_files(root).items():
            try:
                doc = json.loads(ann.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise MobileNetsError(f"{ann} is not valid JSON: {exc}") from None
            clean, bad = clean_coco(doc, images, str(ann))
            if split != "train" and "train" in splits:  # one set of categories, matched by name
                clean, bad = align_categories(clean, bad, splits["train"].coco["categories"], "train")
            splits[split] = DetectionSplit(split, images, clean, str(ann), bad)
    if "train" not in splits and "val" not in splits:
        raise DataNotFoundError(f"no detection data in {root}: expected annotations/instances_<train|val>*.json "
                                f"(COCO) or Annotations/ + JPEGImages/ + ImageSets/Main/<train|val>.txt (VOC)")
    return splits


class CheckedCocoDetection(CocoDetection):
    """torchvision's ``CocoDetection`` over an already checked COCO dictionary (its constructor only
    reads a file; ours builds the same index from the dictionary, without pycocotools' prints)."""

    def __init__(self, images: str | os.PathLike, coco: dict[str, Any]) -> None:
        VisionDataset.__init__(self, str(images))
        from pycocotools.coco import COCO

        self.coco = COCO()
        self.coco.dataset = coco
        with quiet_prints():  # pycocotools prints from Python
            self.coco.createIndex()
        self.ids = sorted(self.coco.imgs.keys())


class DetectionDataset(Dataset):
    """``(image float [3, H, W] in [0, 1], target)`` items, ``target`` with ``boxes`` (pixel
    ``xyxy``, float32), ``labels`` (1..K), ``image_id``, ``orig_size`` and ``size`` (``(H, W)``
    of the file and of the image given); a :class:`BadSample` for an image that
    cannot be read. ``transforms`` is a ``transforms.v2`` callable over ``(image, target)``."""

    def __init__(self, split: DetectionSplit, transforms, category_ids: list[int]) -> None:
        self.split, self.transforms = split, transforms
        self.base = wrap_dataset_for_transforms_v2(CheckedCocoDetection(split.images, split.coco),
                                                   target_keys=("image_id", "boxes", "labels", "iscrowd"))
        self.label_of = {cid: i + 1 for i, cid in enumerate(category_ids)}

    def __len__(self) -> int:
        return len(self.base)

    def path(self, index: int) -> str:
        image_id = self.base.ids[index]
        return str(self.split.images / self.base.coco.imgs[image_id]["file_name"])

    def __getitem__(self, index: int):
        try:
            image, target = self.base[index]
        except Exception as exc:  # noqa: BLE001 - PIL raises many types on damaged files
            return BadSample(self.path(index), f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        boxes = target.get("boxes")
        h, w = image.height, image.width
        if boxes is None:  # an image without annotations: the wrapper gives no boxes at all
            boxes = tv_tensors.BoundingBoxes(torch.zeros(0, 4), format="XYXY", canvas_size=(h, w))
            labels = torch.zeros(0, dtype=torch.int64)
        else:
            crowd = torch.tensor(target["iscrowd"], dtype=torch.bool)
            boxes, labels = tv_tensors.wrap(boxes[~crowd], like=boxes), torch.as_tensor(target["labels"])[~crowd]
        labels = torch.tensor([self.label_of[int(c)] for c in labels], dtype=torch.int64)
        sample = {"boxes": boxes, "labels": labels, "image_id": int(target["image_id"]), "orig_size": (h, w)}
        if self.transforms is not None:
            image, sample = self.transforms(image, sample)
        sample["boxes"] = sample["boxes"].as_subclass(torch.Tensor).float()
        sample["size"] = (image.height, image.width) if hasattr(image, "height") else tuple(image.shape[-2:])
        if isinstance(image, torch.Tensor):
            image = image.as_subclass(torch.Tensor)  # a plain tensor for the model (tv_tensors.Image otherwise)
        return image, sample


def collate_detection(items) -> tuple[tuple[list[torch.Tensor], list[dict]], list[dict], list[tuple[str, str]]]:
    """``((images, targets), targets, bad)``: the detectors take the targets with the images in
    training (torchvision's SSD and FasterRCNN compute their losses inside ``forward``)."""
    bad = [(i.path, i.reason) for i in items if isinstance(i, BadSample)]
    good = [i for i in items if not isinstance(i, BadSample)]
    images = [image for image, _ in good]
    targets = [target for _, target in good]
    return (images, targets), targets, bad


__all__ = ["OVERHANG", "CheckedCocoDetection", "DetectionDataset", "DetectionSplit", "clean_coco", "collate_detection",
           "load_splits", "summary_line", "usable_boxes", "write_bad_list"]
