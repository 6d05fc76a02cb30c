"""Every check of a detection data set, done before anything trains, scores or is written.

:func:`clean_coco` takes a COCO instances dictionary (VOC XML is turned into one first) and its
image folder, and returns the dictionary without what cannot be used, with the list of what was
left out as ``(what, why)``. The policy:

- **Refused (one line, nothing read further):** a file that is not a COCO instances dictionary; a
  category without an integer id and a name; two categories sharing an id under different names,
  or one name under two ids (evaluation maps categories by name); two images sharing an id but
  naming different files or sizes; two image ids naming the same file (its boxes would be split
  between two "images", each missing the other's boxes).
- **Reported, one copy kept:** a category, image or annotation listed twice identically.
- **Skipped, counted, listed:** an image record without an id or file name; a missing image
  file; a file that is not a readable image (its header is opened: PIL reads the size without
  decoding); an image whose declared ``width``/``height`` differ from the file's (its boxes were
  drawn on another picture, or the record names the wrong file: the image and its boxes are
  skipped rather than trusted); an annotation of an unknown image or category; a box that is not
  ``[x, y, width, height]``, of zero area, or outside the real image by more than
  :data:`OVERHANG` pixels (boxes within it are clipped to the image, as COCO's own overhang by
  rounding); an exact duplicate box (same image, category and box).
- **Filled in:** an image without ``width``/``height`` takes the file's real size.
- **Reported only:** a category with no usable box in the split (the detector never sees it).
- **Matched by name:** a ``val`` file whose categories differ from ``train``'s takes ``train``'s
  ids by name (:func:`align_categories`); a box of a category ``train`` lacks is skipped.

Annotation ids are renumbered 1..N (torchvision reads annotations by id: two sharing one would
read the same box twice). Whether anything is left to train on is the caller's check
(:func:`usable_boxes`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from mobilenets.errors import DataNotFoundError, MobileNetsError

OVERHANG = 1.0  # pixels a box may extend past the image before it counts as outside (then clipped)
NO_BOXES = "no usable box in this split"  # the report of a category no box of the split uses


def _bbox_problem(bbox: Any, width: float, height: float) -> tuple[str | None, list[float] | None]:
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4 or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bbox):
        return "not a box [x, y, width, height]", None
    x, y, w, h = (float(v) for v in bbox)
    if w <= 0 or h <= 0:
        return "zero area", None
    if x < -OVERHANG or y < -OVERHANG or x + w > width + OVERHANG or y + h > height + OVERHANG:
        return f"box outside the image ({width:g} x {height:g})", None
    x0, y0, x1, y1 = max(x, 0.0), max(y, 0.0), min(x + w, width), min(y + h, height)
    if x1 <= x0 or y1 <= y0:
        return "zero area", None
    return None, [x0, y0, x1 - x0, y1 - y0]


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _categories(doc: dict[str, Any], source: str, bad: list[tuple[str, str]]) -> list[dict[str, Any]]:
    by_id: dict[int, dict[str, Any]] = {}
    by_name: dict[str, int] = {}
    for cat in doc["categories"]:
        if not isinstance(cat, dict) or not _is_id(cat.get("id")) or not isinstance(cat.get("name"), str) \
                or not cat["name"].strip():
            raise MobileNetsError(f"{source}: a category needs an integer id and a name, got {cat!r}")
        cid, name = cat["id"], cat["name"]
        if cid in by_id:
            if by_id[cid]["name"] != name:
                raise MobileNetsError(f"{source}: categories {by_id[cid]['name']!r} and {name!r} share id {cid}")
            bad.append((f"category {name!r} (id {cid})", "listed twice (one kept)"))
            continue
        if name in by_name:
            raise MobileNetsError(f"{source}: category {name!r} is listed under two ids, {by_name[name]} and {cid}")
        by_id[cid], by_name[name] = cat, cid
    return list(by_id.values())


def _real_size(path: Path) -> tuple[int, int] | str:
    """``(width, height)`` from the file's header, or why it cannot be read."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, UnidentifiedImageError, ValueError) as exc:  # PIL's ways of saying "not an image"
        return str(exc).split("\n")[0] or type(exc).__name__


def _declared(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _images(doc: dict[str, Any], images: Path, source: str,
            bad: list[tuple[str, str]]) -> tuple[dict[Any, dict[str, Any]], dict[Any, tuple[str, str]]]:
    """The usable image records by id (sizes made real) and the skipped ones' ids with why."""
    with os.scandir(images) as entries:
        present = {e.name for e in entries}
    records: dict[Any, dict[str, Any]] = {}
    by_file: dict[str, Any] = {}
    for img in doc["images"]:
        if not isinstance(img, dict) or not _is_id(img.get("id")) or not isinstance(img.get("file_name"), str) \
                or not img["file_name"]:
            bad.append((f"image record {img!r}"[:120], "no integer id or file_name (skipped)"))
            continue
        iid, name = img["id"], img["file_name"]
        if iid in records:
            if records[iid] != img:
                raise MobileNetsError(f"{source}: images {records[iid]['file_name']!r} and {name!r} share id {iid}")
            bad.append((f"image {iid} ({name})", "listed twice (one kept)"))
            continue
        if name in by_file:
            raise MobileNetsError(f"{source}: images {by_file[name]} and {iid} both name the file {name}")
        records[iid], by_file[name] = img, iid
    kept: dict[Any, dict[str, Any]] = {}
    lost: dict[Any, tuple[str, str]] = {}
    for iid, img in records.items():
        name = img["file_name"]
        path = images / name
        if (name not in present) if "/" not in name else not path.is_file():
            lost[iid] = f"image {path}", "missing image file"
            continue
        real = _real_size(path)
        if isinstance(real, str):
            lost[iid] = f"image {path}", f"not a readable image ({real})"
            continue
        w, h = _declared(img.get("width")), _declared(img.get("height"))
        if w is not None and h is not None and (w, h) != (float(real[0]), float(real[1])):
            lost[iid] = f"image {path}", f"declared size differs from the file ({w:g} x {h:g} declared, " \
                                         f"{real[0]} x {real[1]} in the file; image and boxes skipped)"
            continue
        kept[iid] = {**img, "width": real[0], "height": real[1]}
    return kept, lost


def clean_coco(doc: Any, images: Path, source: str = "annotations") -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """``doc`` without what cannot be used, and the list of what was left out as ``(what, why)``
    (the policy: see the module docstring)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list) \
            or not isinstance(doc.get("categories"), list) or not isinstance(doc.get("annotations", []), list):
        raise MobileNetsError(f"{source} is not a COCO instances file (needs the lists 'images', 'annotations' "
                              f"and 'categories')")
    if not images.is_dir():
        raise DataNotFoundError(f"image folder not found: {images} (for {source})")
    bad: list[tuple[str, str]] = []
    categories = _categories(doc, source, bad)
    names = {c["id"]: c["name"] for c in categories}
    kept, lost = _images(doc, images, source, bad)
    annotations: list[dict[str, Any]] = []
    lost_boxes = dict.fromkeys(lost, 0)
    seen: set[tuple] = set()
    for ann in doc.get("annotations", []):
        if not isinstance(ann, dict):
            bad.append((f"annotation {ann!r}"[:120], "not an object"))
            continue
        image_id, category = ann.get("image_id"), ann.get("category_id")
        what = f"annotation {ann.get('id')} of image {image_id}"
        if image_id in lost_boxes:
            lost_boxes[image_id] += 1  # listed once, with its image
            continue
        if not _is_id(category) or category not in names:
            bad.append((what, f"unknown category ({category!r})"))
            continue
        img = kept.get(image_id) if _is_id(image_id) else None
        if img is None:
            bad.append((what, f"unknown image id ({image_id!r})"))
            continue
        why, box = _bbox_problem(ann.get("bbox"), float(img["width"]), float(img["height"]))
        if why is not None:
            bad.append((what, why))
            continue
        crowd = int(bool(ann.get("iscrowd", 0)))
        key = (image_id, category, crowd, *box)
        if key in seen:
            bad.append((what, "duplicate box (same image, category and box; one kept)"))
            continue
        seen.add(key)
        area = ann.get("area")
        area = float(area) if _declared(area) is not None and area > 0 else box[2] * box[3]
        annotations.append({**ann, "id": len(annotations) + 1, "bbox": box, "area": area, "iscrowd": crowd})
    bad += [(what, f"{why} ({lost_boxes[i]} annotation(s) not used)") for i, (what, why) in lost.items()]
    clean = {**doc, "categories": sorted(categories, key=lambda c: c["id"]), "images": list(kept.values()),
             "annotations": annotations}
    return clean, bad + empty_categories(clean)


def empty_categories(coco: dict[str, Any]) -> list[tuple[str, str]]:
    """A :data:`NO_BOXES` report for each category of ``coco`` with no usable box."""
    boxed = {a["category_id"] for a in coco["annotations"] if not a["iscrowd"]}
    return [(f"category {c['name']!r} (id {c['id']})", NO_BOXES) for c in coco["categories"] if c["id"] not in boxed]


def align_categories(coco: dict[str, Any], bad: list[tuple[str, str]], reference: list[dict[str, Any]],
                     reference_name: str) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """``coco`` with the categories (and ids) of ``reference`` (another split's), its boxes
    re-labelled by category NAME; a box of a name ``reference`` lacks is skipped and listed.
    COCO's train and val files normally share their categories; when they differ, matching by id
    would score one class as another."""
    ids = {c["name"]: c["id"] for c in reference}
    own = {c["id"]: c["name"] for c in coco["categories"]}
    if own == {i: n for n, i in ids.items()}:
        return coco, bad
    bad = [b for b in bad if b[1] != NO_BOXES]
    annotations = []
    for ann in coco["annotations"]:
        name = own[ann["category_id"]]
        if name not in ids:
            bad.append((f"annotation of image {ann['image_id']}", f"category not in the {reference_name} split "
                                                                   f"({name!r})"))
        else:
            annotations.append({**ann, "category_id": ids[name]})
    aligned = {**coco, "categories": sorted(reference, key=lambda c: c["id"]), "annotations": annotations}
    return aligned, bad + empty_categories(aligned)


def usable_boxes(coco: dict[str, Any]) -> int:
    """The boxes a detector can learn from or be scored on (crowd regions left out)."""
    return sum(1 for a in coco["annotations"] if not a.get("iscrowd"))


__all__ = ["NO_BOXES", "OVERHANG", "align_categories", "clean_coco", "empty_categories", "usable_boxes"]
