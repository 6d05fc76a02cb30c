"""Detection data: the stand-in COCO folder, COCO/VOC reading, bad annotations, boxes under transforms."""

from __future__ import annotations

import json

import pytest
import torch

from mobilenets.data.samples import BadSample
from mobilenets.errors import DataNotFoundError, MobileNetsError
from mobilenets.tasks.detect.data import NO_BOXES, DetectionDataset, collate_detection, load_splits, summary_line
from mobilenets.tasks.detect.standin import CLASSES, write_standin
from mobilenets.tasks.detect.transforms import DetectAugment, eval_transforms, train_transforms


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    return write_standin(tmp_path_factory.mktemp("d") / "standin", seed=3, train=6, val=3, size=96)


def test_standin_is_a_coco_folder_with_exact_boxes(standin):
    import numpy as np
    from PIL import Image

    doc = json.loads((standin / "annotations" / "instances_train.json").read_text())
    assert [c["name"] for c in doc["categories"]] == list(CLASSES)
    assert len(doc["images"]) == 6 and doc["annotations"]
    # an object's box touches its pixels on all four sides: the shape colour differs from the
    # photo around it, so each box edge row/column differs from the row/column just outside
    img = doc["images"][0]
    pixels = np.asarray(Image.open(standin / "train" / img["file_name"]), dtype=np.float64)
    for ann in (a for a in doc["annotations"] if a["image_id"] == img["id"]):
        x, y, w, h = ann["bbox"]
        assert 0 <= x and 0 <= y and x + w <= 96 and y + h <= 96 and 0 < ann["area"] <= w * h
    # the same seed writes the same folder, another seed another one
    again = write_standin(standin.parent / "again", seed=3, train=6, val=3, size=96)
    assert (again / "annotations" / "instances_val.json").read_text() == \
        (standin / "annotations" / "instances_val.json").read_text()
    other = write_standin(standin.parent / "other", seed=4, train=6, val=3, size=96)
    assert (other / "annotations" / "instances_val.json").read_text() != \
        (standin / "annotations" / "instances_val.json").read_text()
    with pytest.raises(MobileNetsError, match="already exists"):
        write_standin(standin)
    assert pixels.shape == (96, 96, 3)


def test_boxes_are_the_bounds_of_the_visible_masks(standin):
    import numpy as np

    from mobilenets.tasks.detect.standin import FORMAT_VERSION, draw_image, photos

    doc = json.loads((standin / "annotations" / "instances_train.json").read_text())
    rng = np.random.default_rng([FORMAT_VERSION, 3 * 2])  # the train split of seed 3
    for image in doc["images"][:3]:
        _, objects = draw_image(rng, photos(), 96)
        anns = [a for a in doc["annotations"] if a["image_id"] == image["id"]]
        assert len(anns) == len(objects) >= 1
        for ann, obj in zip(anns, objects):
            ys, xs = np.argwhere(obj["mask"]).T
            assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
            assert ann["area"] == obj["mask"].sum() and ann["category_id"] == obj["category"] + 1


def test_dataset_items_and_collate(standin):
    splits = load_splits(standin)
    assert set(splits) == {"train", "val"} and not splits["train"].bad
    ids = splits["train"].category_ids
    ds = DetectionDataset(splits["train"], train_transforms(DetectAugment(photometric=True, zoom_out=True), 64), ids)
    image, target = ds[0]
    assert image.shape == (3, 64, 64) and image.dtype == torch.float32 and 0 <= image.min() and image.max() <= 1
    assert target["boxes"].shape[1] == 4 and target["labels"].min() >= 1 and target["labels"].max() <= len(CLASSES)
    assert target["orig_size"] == (96, 96) and target["size"] == (64, 64)
    assert type(image) is torch.Tensor and type(target["boxes"]) is torch.Tensor
    (images, targets), again, bad = collate_detection([ds[0], BadSample("x.jpg", "broken"), ds[1]])
    assert len(images) == 2 and targets is again and bad == [("x.jpg", "broken")]


def test_boxes_follow_flips_and_resizes(standin):
    splits = load_splits(standin)
    ids = splits["train"].category_ids
    plain = DetectionDataset(splits["train"], eval_transforms(None), ids)[0][1]
    halved = DetectionDataset(splits["train"], eval_transforms(48), ids)[0][1]
    assert torch.allclose(halved["boxes"] * 2, plain["boxes"], atol=1e-4)
    flipped_ds = DetectionDataset(splits["train"], train_transforms(DetectAugment(crop=False, hflip=True), None), ids)
    seen = set()
    for seed in range(12):  # the flip is random: some seeds flip, some do not
        torch.manual_seed(seed)
        boxes = flipped_ds[0][1]["boxes"]
        flipped = torch.stack([96 - plain["boxes"][:, 2], plain["boxes"][:, 1], 96 - plain["boxes"][:, 0],
                               plain["boxes"][:, 3]], 1)
        seen.add("same" if torch.allclose(boxes, plain["boxes"]) else "flip" if torch.allclose(boxes, flipped) else "?")
    assert seen == {"same", "flip"}


def _coco_with_problems(root, standin):
    import shutil

    (root / "annotations").mkdir(parents=True)
    shutil.copytree(standin / "val", root / "val")
    doc = json.loads((standin / "annotations" / "instances_val.json").read_text())
    image = doc["images"][0]
    good = len(doc["annotations"])
    extra = [
        {"id": 900, "image_id": image["id"], "category_id": 1, "bbox": [90, 90, 30, 30], "area": 1},  # outside
        {"id": 901, "image_id": image["id"], "category_id": 1, "bbox": [10, 10, 0, 5], "area": 0},  # zero area
        {"id": 902, "image_id": image["id"], "category_id": 77, "bbox": [10, 10, 5, 5], "area": 25},  # category
        {"id": 903, "image_id": 99, "category_id": 1, "bbox": [1, 1, 5, 5], "area": 25},  # unknown image id
        {"id": 904, "image_id": image["id"], "category_id": 2, "bbox": [-0.5, 0, 96.8, 10], "area": 9},  # rounding: kept
    ]
    doc["images"].append({"id": 50, "file_name": "gone.jpg", "width": 96, "height": 96})
    doc["annotations"] += extra + [{"id": 905, "image_id": 50, "category_id": 1, "bbox": [1, 1, 5, 5]}]
    (root / "annotations" / "instances_val.json").write_text(json.dumps(doc))
    # an image whose header reads but whose pixels are cut short: met only when it is decoded
    cut = root / "val" / doc["images"][1]["file_name"]
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    # a file that is not an image at all: found by the checks, before anything runs
    (root / "val" / doc["images"][2]["file_name"]).write_bytes(b"\xff\xd8 not a jpeg")
    return good - sum(a["image_id"] == doc["images"][2]["id"] for a in doc["annotations"])


def test_bad_annotations_are_skipped_counted_and_listed(tmp_path, standin):
    good = _coco_with_problems(tmp_path / "coco", standin)
    split = load_splits(tmp_path / "coco")["val"]
    assert len(split.coco["annotations"]) == good + 1  # overhangs of 0.5/0.3 px are rounding: clipped, kept
    assert [0.0, 0.0, 96.0, 10.0] in [a["bbox"] for a in split.coco["annotations"]]
    assert [a["id"] for a in split.coco["annotations"]] == list(range(1, good + 2))  # renumbered
    reasons = sorted(why.split(" (")[0] for _, why in split.bad if why != NO_BOXES)  # 3 images: not every class
    assert reasons == ["box outside the image", "missing image file", "not a readable image", "unknown category",
                       "unknown image id", "zero area"]
    assert ("annotation 902 of image 1", "unknown category (77)") in split.bad
    line = summary_line([split], "RUN/bad_annotations.txt")
    assert line.startswith("skipped 4 bad annotation(s) and 2 image(s)") and "RUN/bad_annotations.txt" in line
    assert "\n" not in line
    # the image cut short is met when decoded: a BadSample, the others still load
    ds = DetectionDataset(split, eval_transforms(None), split.category_ids)
    items = [ds[i] for i in range(len(ds))]
    assert sum(isinstance(i, BadSample) for i in items) == 1 and len(items) == 2


def test_missing_folders_are_one_clear_error(tmp_path, standin):
    with pytest.raises(DataNotFoundError, match="data folder not found"):
        load_splits(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataNotFoundError, match="no detection data"):
        load_splits(tmp_path / "empty")
    _coco_with_problems(tmp_path / "coco", standin)
    import shutil

    shutil.rmtree(tmp_path / "coco" / "val")
    with pytest.raises(DataNotFoundError, match="image folder not found"):
        load_splits(tmp_path / "coco")


def test_voc_folder_reads_as_coco(tmp_path, standin):
    import shutil

    root = tmp_path / "VOCdevkit" / "VOC2007"
    (root / "Annotations").mkdir(parents=True)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    shutil.copytree(standin / "train", root / "JPEGImages")
    doc = json.loads((standin / "annotations" / "instances_train.json").read_text())
    names = {c["id"]: c["name"] for c in doc["categories"]}
    stems = []
    for img in doc["images"][:3]:
        stem = img["file_name"][:-4]
        stems.append(stem)
        objs = "".join(
            f"<object><name>{names[a['category_id']]}</name><difficult>0</difficult><bndbox>"
            f"<xmin>{a['bbox'][0] + 1}</xmin><ymin>{a['bbox'][1] + 1}</ymin>"
            f"<xmax>{a['bbox'][0] + a['bbox'][2]}</xmax><ymax>{a['bbox'][1] + a['bbox'][3]}</ymax></bndbox></object>"
            for a in doc["annotations"] if a["image_id"] == img["id"])
        (root / "Annotations" / f"{stem}.xml").write_text(
            f"<annotation><filename>{img['file_name']}</filename><size><width>96</width><height>96</height>"
            f"<depth>3</depth></size>{objs}</annotation>")
    (root / "Annotations" / "broken.xml").write_text("<annotation><size>")
    (root / "ImageSets" / "Main" / "train.txt").write_text("\n".join(stems + ["broken"]) + "\n")
    split = load_splits(tmp_path)["train"]
    assert [why.split(" (")[0] for _, why in split.bad] == ["unreadable VOC XML"]
    original = sorted(tuple(a["bbox"]) for a in doc["annotations"] if a["image_id"] in
                      {i["id"] for i in doc["images"][:3]})
    assert sorted(tuple(a["bbox"]) for a in split.coco["annotations"]) == original
    assert split.class_names == sorted({names[a["category_id"]] for a in doc["annotations"]
                                        if a["image_id"] in {i["id"] for i in doc["images"][:3]}})


def test_cli_missing_data_and_image_folder_are_one_line(tmp_path, standin, capsys):
    from mobilenets.cli.main import main

    assert main(["detect", "train", "--data", str(tmp_path / "nowhere"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mobilenet: error: data folder not found") and "\n" not in err
    _coco_with_problems(tmp_path / "coco", standin)
    import shutil

    shutil.rmtree(tmp_path / "coco" / "val")
    assert main(["detect", "train", "--data", str(tmp_path / "coco"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mobilenet: error: image folder not found") and "\n" not in err

