"""Class names of a TF Object Detection API export: its ``label_map_path`` (a ``StringIntLabelMap``
``.pbtxt``, in the pipeline.config's input readers) read when the file is in the export folder,
else, for the COCO models of the TF1 zoo (whose archives do not ship the label map, and whose
``pipeline.config`` names ``PATH_TO_BE_CONFIGURED/mscoco_label_map.pbtxt``), the names of the TF
OD API's ``research/object_detection/data/mscoco_label_map.pbtxt``, kept here as data: 90 class
ids, 80 of them named (the other 10 ids have no COCO category: named ``unused-<id>``).
Anything else: ``class<i>``."""

from __future__ import annotations

from pathlib import Path

# tensorflow/models research/object_detection/data/mscoco_label_map.pbtxt: id -> display_name
MSCOCO_LABELS = {
    1: "person", 2: "bicycle", 3: "car", 4: "motorcycle", 5: "airplane", 6: "bus", 7: "train", 8: "truck",
    9: "boat", 10: "traffic light", 11: "fire hydrant", 13: "stop sign", 14: "parking meter", 15: "bench",
    16: "bird", 17: "cat", 18: "dog", 19: "horse", 20: "sheep", 21: "cow", 22: "elephant", 23: "bear",
    24: "zebra", 25: "giraffe", 27: "backpack", 28: "umbrella", 31: "handbag", 32: "tie", 33: "suitcase",
    34: "frisbee", 35: "skis", 36: "snowboard", 37: "sports ball", 38: "kite", 39: "baseball bat",
    40: "baseball glove", 41: "skateboard", 42: "surfboard", 43: "tennis racket", 44: "bottle", 46: "wine glass",
    47: "cup", 48: "fork", 49: "knife", 50: "spoon", 51: "bowl", 52: "banana", 53: "apple", 54: "sandwich",
    55: "orange", 56: "broccoli", 57: "carrot", 58: "hot dog", 59: "pizza", 60: "donut", 61: "cake", 62: "chair",
    63: "couch", 64: "potted plant", 65: "bed", 67: "dining table", 70: "toilet", 72: "tv", 73: "laptop",
    74: "mouse", 75: "remote", 76: "keyboard", 77: "cell phone", 78: "microwave", 79: "oven", 80: "toaster",
    81: "sink", 82: "refrigerator", 84: "book", 85: "clock", 86: "vase", 87: "scissors", 88: "teddy bear",
    89: "hair drier", 90: "toothbrush",
}
MSCOCO_LABEL_MAP = "mscoco_label_map.pbtxt"


def _items(doc: dict) -> list[dict]:
    items = doc.get("item", [])
    return items if isinstance(items, list) else [items]


def label_map_path(doc: dict) -> str | None:
    """The ``label_map_path`` of a parsed pipeline.config (train input reader first, then eval)."""
    for reader in ("train_input_reader", "eval_input_reader"):
        block = doc.get(reader)
        for one in block if isinstance(block, list) else [block]:
            if isinstance(one, dict) and isinstance(one.get("label_map_path"), str):
                return one["label_map_path"]
    return None


def class_names(folder: Path, count: int) -> list[str]:
    """The names of class ids 1..``count`` of the export in ``folder`` (see the module docstring)."""
    from mobilenets.tasks.detect.pipeline import parse_text_proto

    path = label_map_path(parse_text_proto((folder / "pipeline.config").read_text()))
    by_id: dict[int, str] = {}
    if path is not None:
        local = folder / Path(path).name
        if local.is_file():
            for item in _items(parse_text_proto(local.read_text())):
                if isinstance(item, dict) and "id" in item:
                    by_id[int(item["id"])] = str(item.get("display_name") or item.get("name"))
        elif Path(path).name == MSCOCO_LABEL_MAP:
            by_id = dict(MSCOCO_LABELS)
    if not by_id:
        return [f"class{i}" for i in range(1, count + 1)]
    return [by_id.get(i, f"unused-{i}") for i in range(1, count + 1)]


__all__ = ["MSCOCO_LABELS", "class_names", "label_map_path"]
