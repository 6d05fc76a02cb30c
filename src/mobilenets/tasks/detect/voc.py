"""Pascal VOC XML folders turned into COCO dictionaries (one reading path for both formats).

A VOC root holds ``Annotations/<id>.xml``, ``JPEGImages/<id>.jpg`` and
``ImageSets/Main/<split>.txt``. VOC's pixel coordinates are 1-based and inclusive: a box
``xmin..xmax`` covers ``xmax - xmin + 1`` pixels and becomes COCO's ``[xmin - 1, ymin - 1, w, h]``.
``difficult`` objects become crowd annotations (COCO evaluation ignores them, as VOC's does).
Categories are the sorted object names of the first split read (train), and later splits use
them (a name only in ``val`` is an unknown category there). A missing ``<size>`` takes the image
file's real size; a declared one must match it (:mod:`mobilenets.tasks.detect.checks`).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

SPLIT_FILES = {"train": ("train", "trainval"), "val": ("val", "test")}


def find_voc_root(root: Path) -> Path | None:
    """``root`` if it is a VOC folder, else the first ``VOC*`` folder under it (or under
    ``root/VOCdevkit``), else None."""
    if (root / "Annotations").is_dir():
        return root
    for base in (root, root / "VOCdevkit"):
        if base.is_dir():
            for sub in sorted(base.glob("VOC*")):
                if (sub / "Annotations").is_dir():
                    return sub
    return None


def _number(node: ET.Element | None, tag: str) -> float:
    text = node.findtext(tag) if node is not None else None
    if text is None:
        raise ValueError(f"no <{tag}>")
    return float(text)


def read_xml(path: Path) -> dict[str, Any]:
    """``{"file_name", "width", "height", "objects": [(name, [x, y, w, h], difficult)]}``."""
    tree = ET.parse(path).getroot()
    size = tree.find("size")
    objects = []
    for obj in tree.findall("object"):
        box = obj.find("bndbox")
        x0, y0 = _number(box, "xmin") - 1, _number(box, "ymin") - 1
        x1, y1 = _number(box, "xmax"), _number(box, "ymax")
        objects.append((obj.findtext("name", "").strip(), [x0, y0, x1 - x0, y1 - y0],
                        obj.findtext("difficult", "0").strip() == "1"))
    # a missing <size> is filled in from the image file (mobilenets.tasks.detect.checks)
    declared = [_number(size, tag) if size is not None and size.findtext(tag) is not None else None
                for tag in ("width", "height")]
    return {"file_name": tree.findtext("filename") or f"{path.stem}.jpg", "width": declared[0],
            "height": declared[1], "objects": objects}


def voc_split(root: Path, split: str, names: list[str] | None = None) -> tuple[dict[str, Any] | None, list[tuple[str, str]]]:
    """The COCO dictionary of ``split`` (None if the folder has no list for it) and the XML files
    that could not be read, as ``(what, why)``. ``names``: the categories to use (default: this
    split's own, sorted)."""
    lists = [root / "ImageSets" / "Main" / f"{n}.txt" for n in SPLIT_FILES[split]]
    listed = next((p for p in lists if p.is_file()), None)
    if listed is None:
        return None, []
    bad: list[tuple[str, str]] = []
    records = []
    stems: list[str] = []
    for stem in (line.split()[0] for line in listed.read_text().splitlines() if line.strip()):
        if stem in stems:
            bad.append((f"image {stem}", f"listed twice in {listed.name} (one kept)"))
        else:
            stems.append(stem)
    for stem in stems:
        xml = root / "Annotations" / f"{stem}.xml"
        try:
            records.append(read_xml(xml))
        except (OSError, ET.ParseError, ValueError) as exc:
            bad.append((f"annotation file {xml}", f"unreadable VOC XML ({exc})"))
    if names is None:
        names = sorted({name for r in records for name, _, _ in r["objects"] if name})
    ids = {n: i + 1 for i, n in enumerate(names)}
    images, annotations = [], []
    for image_id, rec in enumerate(records, start=1):
        images.append({"id": image_id, "file_name": rec["file_name"], "width": rec["width"], "height": rec["height"]})
        for name, box, difficult in rec["objects"]:
            if not name:
                bad.append((f"an object of {rec['file_name']}", "no <name>"))
                continue
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": ids.get(name, name),
                                "bbox": box, "area": max(box[2], 0) * max(box[3], 0), "iscrowd": int(difficult)})
    categories = [{"id": i, "name": n} for n, i in ids.items()]
    return {"images": images, "annotations": annotations, "categories": categories}, bad


__all__ = ["find_voc_root", "read_xml", "voc_split"]
