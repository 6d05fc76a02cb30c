"""Bad detection inputs, tried through the CLI as a user would: each is refused with exactly one
line on stderr, a non-zero exit, no traceback, no Python ``name=`` form, and nothing written (no
run folder, no eval folder, the data untouched); or, where the policy is to skip, skipped,
counted and said in one line. Checks run before the first step, so no case trains.
"""

from __future__ import annotations

import json
import shutil

import pytest

from badinput_helpers import KEYWORD_FORM, check_message, refused, renamed_categories, run_cli
from mobilenets.errors import MobileNetsError
from mobilenets.tasks.detect.data import load_splits, summary_line
from mobilenets.tasks.detect.standin import CLASSES, write_standin

CATS = [{"id": 1, "name": "circle"}, {"id": 2, "name": "square"}]


def image(path, w=32, h=24):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (w, h), (120, 60, 30)).save(path)


def coco(root, images=None, annotations=None, categories=None, split="train", files=True, doc=None, real=None):
    """A COCO folder: ``images`` as (id, file, w, h) with real files of that size (``files``; of
    size ``real`` where given)."""
    images = [(1, "a.png", 32, 24), (2, "b.png", 32, 24)] if images is None else images
    if annotations is None:
        annotations = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 2, 10, 10]},
                       {"id": 2, "image_id": 2, "category_id": 2, "bbox": [4, 4, 8, 8]}]
    if doc is None:
        doc = {"images": [{"id": i, "file_name": f, "width": w, "height": h} for i, f, w, h in images],
               "annotations": annotations, "categories": CATS if categories is None else categories}
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    text = doc if isinstance(doc, str) else json.dumps(doc)
    (root / "annotations" / f"instances_{split}.json").write_text(text)
    (root / split).mkdir(exist_ok=True)
    if files:
        for _, f, w, h in images:
            image(root / split / f, *(real or (w, h)))
    return root


def voc(root, xml: dict[str, str], listed=None):
    for stem, text in xml.items():
        (root / "Annotations").mkdir(parents=True, exist_ok=True)
        (root / "Annotations" / f"{stem}.xml").write_text(text)
        image(root / "JPEGImages" / f"{stem}.jpg")
    (root / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "Main" / "train.txt").write_text("\n".join(listed or xml) + "\n")
    return root


def obj(name="circle", box=(3, 3, 12, 12), difficult=0):
    x0, y0, x1, y1 = box
    return (f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox><xmin>{x0}</xmin>"
            f"<ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>")


def xml(*objects, size="<size><width>32</width><height>24</height></size>"):
    return f"<annotation><filename>{{stem}}.jpg</filename>{size}{''.join(objects)}</annotation>"


def train_refused(tmp_path, data, match):
    """``detect train`` on ``data``: refused before anything is written (no run folder)."""
    run = tmp_path / "run"
    line = refused(["detect", "train", "--data", data, "--output", run, "--epochs", "1", "--warmup-epochs", "0",
                    "--no-progress"],
                   [tmp_path], match=match)
    assert not run.exists()
    return line


# --- detect train: the data are checked before the first step -------------------------------

def one(i, cat=1, box=(2, 2, 10, 10), image_id=1):
    return {"id": i, "image_id": image_id, "category_id": cat, "bbox": list(box)}


TRAIN_CASES = {
    "every box degenerate": (dict(annotations=[one(1, box=(2, 2, 0, 5)), one(2, box=(3, 3, 4, -1))]),
                             "no usable box.*2 zero area"),
    "declared size differs from every file": (dict(images=[(1, "a.png", 320, 240)], annotations=[one(1)],
                                                   real=(32, 24)),
                                              "no usable box.*declared size differs"),
    "boxes far outside the real image": (dict(annotations=[one(1, box=(200, 200, 50, 50)), one(2, box=(-40, 0, 10, 10))]),
                                         "no usable box.*box outside the image"),
    "no annotations at all": (dict(annotations=[]), "no usable box.*no annotations"),
    "no images at all": (dict(images=[], annotations=[]), "no usable box.*0 usable image"),
    "every category id unknown": (dict(annotations=[one(1, cat=7), one(2, cat=9)]), "no usable box.*unknown category"),
    "every annotation of an unknown image": (dict(annotations=[one(1, image_id=40), one(2, image_id=41)]),
                                             "no usable box.*unknown image id"),
    "bbox not a list": (dict(annotations=[{"id": 1, "image_id": 1, "category_id": 1, "bbox": "2,2,10,10"}]),
                        "no usable box.*not a box"),
    "bbox of three numbers": (dict(annotations=[{"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 2, 10]}]),
                              "no usable box.*not a box"),
    "only crowd regions": (dict(annotations=[{**one(1), "iscrowd": 1}]), "no usable box"),
    "two images share an id": (dict(images=[(1, "a.png", 32, 24), (1, "b.png", 32, 24)]),
                               "images 'a.png' and 'b.png' share id 1"),
    "two image ids name one file": (dict(images=[(1, "a.png", 32, 24), (2, "a.png", 32, 24)]),
                                    "images 1 and 2 both name the file a.png"),
    "two categories share an id": (dict(categories=[{"id": 1, "name": "circle"}, {"id": 1, "name": "square"}]),
                                   "categories 'circle' and 'square' share id 1"),
    "a category name under two ids": (dict(categories=[{"id": 1, "name": "circle"}, {"id": 2, "name": "circle"}]),
                                      "'circle' is listed under two ids, 1 and 2"),
    "a category without a name": (dict(categories=[{"id": 1}]), "a category needs an integer id and a name"),
    "annotations not a list": (dict(doc={"images": [], "annotations": {}, "categories": CATS}),
                               "is not a COCO instances file"),
    "a JSON list, not an object": (dict(doc=[1, 2]), "is not a COCO instances file"),
    "not JSON": (dict(doc="{images: ["), "is not valid JSON"),
    "an empty file": (dict(doc=""), "is not valid JSON"),
    "no images key": (dict(doc={"annotations": [], "categories": CATS}), "is not a COCO instances file"),
    "every image file missing": (dict(files=False), "no usable box.*missing image file"),
}


@pytest.mark.parametrize("case", list(TRAIN_CASES))
def test_train_refuses_bad_coco_before_anything_is_written(tmp_path, case):
    spec, match = TRAIN_CASES[case]
    data = coco(tmp_path / "data", **spec)
    train_refused(tmp_path, data, match)


def test_train_refuses_files_that_are_not_images(tmp_path):
    data = coco(tmp_path / "data", files=False)
    for name in ("a.png", "b.png"):
        (data / "train" / name).write_text("not a picture")
    line = train_refused(tmp_path, data, "no usable box.*2 not a readable image")
    assert "2 image(s)" in line


@pytest.mark.parametrize("case", ["missing folder", "empty folder", "no image folder", "only a val split",
                                  "the JSON file, not its folder"])
def test_train_refuses_folders_without_training_data(tmp_path, case):
    data = tmp_path / "data"
    if case == "the JSON file, not its folder":
        data = coco(data) / "annotations" / "instances_train.json"
    elif case == "empty folder":
        data.mkdir()
    elif case == "no image folder":
        coco(data)
        shutil.rmtree(data / "train")
    elif case == "only a val split":
        coco(data, split="val")
    match = {"missing folder": "data folder not found", "empty folder": "no detection data",
             "no image folder": "image folder not found", "only a val split": "no training split",
             "the JSON file, not its folder": "is a file: give the folder that holds annotations"}[case]
    train_refused(tmp_path, data, match)


VOC_CASES = {
    "every XML broken": ({"a": "<annotation><size>", "b": "not xml"}, None, "no usable box.*unreadable VOC XML"),
    "a box with a word for a number": ({"a": xml(obj(box=(3, 3, "x", 9)))}, None, "unreadable VOC XML"),
    "only difficult objects": ({"a": xml(obj(difficult=1))}, None, "no usable box"),
    "listed images without XML": ({"a": xml(obj())}, ["a_missing", "b_missing"], "no usable box"),
    "declared size differs": ({"a": xml(obj(), size="<size><width>300</width><height>200</height></size>")}, None,
                              "declared size differs"),
}


@pytest.mark.parametrize("case", list(VOC_CASES))
def test_train_refuses_bad_voc_with_a_line_about_the_folder(tmp_path, case):
    files, listed, match = VOC_CASES[case]
    data = voc(tmp_path / "voc", {k: v.replace("{stem}", k) for k, v in files.items()}, listed)
    line = train_refused(tmp_path, data, match)
    assert "num_classes" not in line and str(data) in line


def test_train_output_naming_a_file(tmp_path):
    data = coco(tmp_path / "data")
    (tmp_path / "run").write_text("x")
    refused(["detect", "train", "--data", data, "--output", tmp_path / "run", "--epochs", "1"], [tmp_path],
            match="is a file")


def test_no_run_starts_with_zero_usable_targets(tmp_path):
    """The library refuses it too, and the run folder is never made."""
    from mobilenets.tasks.detect.run import train
    from mobilenets.train.options import TrainOptions

    data = coco(tmp_path / "data", annotations=[one(1, box=(2, 2, 0, 0))])
    with pytest.raises(MobileNetsError, match="no usable box to train on"):
        train(str(data), options=TrainOptions(output=str(tmp_path / "run"), progress=False), log=lambda *a: None)
    assert not (tmp_path / "run").exists()


# --- what is skipped and counted, and what is filled in --------------------------------------

def test_sizes_come_from_the_files_and_duplicates_are_reported(tmp_path):
    doc = {"images": [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "b.png", "width": 32, "height": 24},
                      {"id": 2, "file_name": "b.png", "width": 32, "height": 24}],
           "annotations": [one(1, box=(20, 10, 12, 14)), one(2, image_id=2), one(3, image_id=2),
                           {**one(3, box=(1, 1, 5, 5)), "image_id": 2}],
           "categories": CATS + [{"id": 3, "name": "cross"}, {"id": 3, "name": "cross"}]}
    data = coco(tmp_path / "data", images=[(1, "a.png", 32, 24), (2, "b.png", 32, 24)], doc=doc)
    split = load_splits(data)["train"]
    img = {i["id"]: i for i in split.coco["images"]}
    assert (img[1]["width"], img[1]["height"]) == (32, 24)  # no size declared: the file's
    assert [a["bbox"] for a in split.coco["annotations"]] == [[20.0, 10.0, 12.0, 14.0], [2.0, 2.0, 10.0, 10.0],
                                                              [1.0, 1.0, 5.0, 5.0]]
    assert [a["id"] for a in split.coco["annotations"]] == [1, 2, 3]  # two sharing id 3: renumbered
    whys = [why for _, why in split.bad]
    assert whys.count("listed twice (one kept)") == 2 and any(w.startswith("duplicate box") for w in whys)
    line = summary_line([split])
    assert "no usable box for 2 categories: 'cross', 'square'" in line and check_message(line)


def test_boxes_overhanging_by_rounding_are_clipped_and_the_rest_skipped(tmp_path):
    data = coco(tmp_path / "data", annotations=[one(1, box=(-0.5, 0, 32.8, 10)), one(2, box=(30, 2, 10, 10))])
    split = load_splits(data)["train"]
    assert [a["bbox"] for a in split.coco["annotations"]] == [[0.0, 0.0, 32.0, 10.0]]
    assert split.bad[0] == ("annotation 2 of image 1", "box outside the image (32 x 24)")


def test_a_declared_size_unlike_the_file_skips_the_image_and_says_why(tmp_path):
    data = coco(tmp_path / "data", images=[(1, "a.png", 32, 24), (2, "b.png", 32, 24)])
    image(data / "train" / "b.png", 64, 48)  # the file is another picture than the record says
    split = load_splits(data)["train"]
    assert [i["id"] for i in split.coco["images"]] == [1]
    assert split.bad[:1] == [(f"image {data / 'train' / 'b.png'}", "declared size differs from the file (32 x 24 "
                          "declared, 64 x 48 in the file; image and boxes skipped) (1 annotation(s) not used)")]


def test_voc_without_size_takes_the_file_size_and_duplicate_lines_are_reported(tmp_path):
    data = voc(tmp_path / "voc", {"a": xml(obj(box=(1, 1, 32, 24)), size="").replace("{stem}", "a")}, ["a", "a"])
    split = load_splits(data)["train"]
    assert split.coco["images"][0]["width"] == 32 and split.coco["annotations"][0]["bbox"] == [0.0, 0.0, 32.0, 24.0]
    assert split.bad[0] == ("image a", "listed twice in train.txt (one kept)")


# --- a trained run: eval, predict, export and the wrong kind of checkpoint -------------------

@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 1-step SSD run on the stand-in (4 training images of 64 px)."""
    root = tmp_path_factory.mktemp("badrun")
    data = write_standin(root / "data", seed=5, train=4, val=3, size=64)
    result = run_cli(["detect", "train", "--data", data, "--alpha", "0.25", "--resolution", "64", "--epochs", "1",
                      "--batch-size", "4", "--warmup-epochs", "0", "--output", root / "run", "--no-progress",
                      "--eval-batch-size", "4"])
    assert result.code == 0, result.stderr
    return root / "run"


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    from mobilenets.models.config import MobileNetConfig
    from mobilenets.models.mobilenet import MobileNet
    from mobilenets.weights.checkpoint import save_weights

    path = tmp_path_factory.mktemp("cls") / "cls.safetensors"
    save_weights(MobileNet(MobileNetConfig(alpha=0.25, resolution=32, num_classes=3)), path)
    return path


def test_eval_refuses_data_with_no_category_in_common(run, tmp_path):
    data = renamed_categories(run.parent / "data", tmp_path / "other", {n: f"not-{n}" for n in CLASSES})
    refused(["detect", "eval", "--checkpoint", run, "--data", data, "--no-progress"], [run, tmp_path],
            match="none of the run's classes .* is a category of")


def test_eval_maps_categories_by_name_and_reports_unknown_ones(run, tmp_path):
    """The same data with category ids reversed scores exactly the same; a renamed category is
    reported and left out; detections.json carries the data set's ids; the run is untouched."""
    common = ["detect", "eval", "--checkpoint", run, "--json", "--no-progress", "--backend", "pycocotools"]
    same = run_cli(common + ["--data", run.parent / "data", "--output", tmp_path / "a"])
    flipped = run_cli(common + ["--data", renamed_categories(run.parent / "data", tmp_path / "flip", {}),
                                "--output", tmp_path / "b"])
    assert same.code == flipped.code == 0, flipped.stderr
    assert json.loads(flipped.stdout) == json.loads(same.stdout)
    found = json.loads((tmp_path / "b" / "detections.json").read_text())
    assert found and {r["category_id"] for r in found} <= {99, 98, 97, 96}
    renamed = run_cli(common + ["--data", renamed_categories(run.parent / "data", tmp_path / "ren", {"circle": "disc"}),
                                "--output", tmp_path / "c"])
    assert renamed.code == 0 and "the run does not know: disc" in renamed.stdout
    assert "1 of the run's classes are not categories" in renamed.stdout
    assert not (run / "detections.json").exists() and not (run / "pr.png").exists()


@pytest.mark.parametrize("case", ["output is a file", "output is the run folder", "output under a file",
                                  "split the data lacks", "val with no usable box", "checkpoint missing",
                                  "a classifier checkpoint", "annotations without results", "results not JSON"])
def test_eval_refuses(run, classifier, tmp_path, case):
    (tmp_path / "file").write_text("x")
    base = ["detect", "eval", "--checkpoint", run, "--no-progress"]
    if case == "output is a file":
        argv, match = base + ["--output", tmp_path / "file"], "--output .* is a file; give a folder"
    elif case == "output is the run folder":
        argv, match = base + ["--output", run], "is the run folder; eval writes into a folder of its own"
    elif case == "output under a file":
        argv, match = base + ["--output", tmp_path / "file" / "sub"], "is a file, not a folder"
    elif case == "split the data lacks":
        data = coco(tmp_path / "data", categories=[{"id": 1, "name": "circle"}])
        argv, match = base + ["--data", data], "has no val split"
    elif case == "val with no usable box":
        data = coco(tmp_path / "data", split="val", annotations=[one(1, box=(1, 1, 0, 0))])
        argv, match = base + ["--data", data], "no usable box to score against"
    elif case == "checkpoint missing":
        argv, match = ["detect", "eval", "--checkpoint", tmp_path / "nope"], "checkpoint not found"
    elif case == "a classifier checkpoint":
        argv, match = ["detect", "eval", "--checkpoint", classifier], "is a classification checkpoint: use `mobilenet eval"
    elif case == "annotations without results":
        argv, match = ["detect", "eval", "--annotations", tmp_path / "file"], "--annotations needs --results"
    else:
        argv, match = ["detect", "eval", "--annotations", tmp_path / "file", "--results", tmp_path / "file"], \
            "is not valid JSON"
    refused(argv, [run, tmp_path], match=match)


@pytest.mark.parametrize("command", [["eval"], ["predict", "IMG"], ["export", "--output", "OUT", "--format", "onnx"]])
def test_a_detection_run_given_to_a_classifier_command_names_what_it_is(run, tmp_path, command):
    photo = tmp_path / "p.png"
    image(photo)
    argv = [photo if a == "IMG" else tmp_path / "out" if a == "OUT" else a for a in command]
    refused([*argv, "--checkpoint", run], [run, tmp_path], match="is a detection run: use `mobilenet detect eval`")
    state = sorted((run / "checkpoints").glob("step-*.pt"))[-1]  # its training state: read without running code
    refused([*argv, "--checkpoint", state], [run, tmp_path],
            match="is a detection run's checkpoint: use `mobilenet detect eval`")


def test_a_detectors_onnx_given_to_predict_names_what_it_is(run, tmp_path):
    """The sidecar of a detector export (what `detect export` writes beside model.onnx) names it."""
    model = tmp_path / "model.onnx"
    model.write_bytes(b"\x08\x07")  # never loaded: the sidecar decides
    (tmp_path / "model.onnx.json").write_text(json.dumps({"classes": list(CLASSES), "detector": {"detector": "ssd"}}))
    photo = tmp_path / "p.png"
    image(photo)
    for argv in (["predict", "--checkpoint", model, photo], ["eval", "--checkpoint", model]):
        refused(argv, [tmp_path], match="is an exported detector \\(ssd, 4 classes")


@pytest.mark.parametrize("case", ["output is a file", "output under a file", "a classifier checkpoint"])
def test_detect_export_refuses(run, classifier, tmp_path, case):
    (tmp_path / "file").write_text("x")
    out = {"output is a file": tmp_path / "file", "output under a file": tmp_path / "file" / "x"}.get(case, tmp_path / "o")
    ckpt = classifier if case == "a classifier checkpoint" else run
    match = {"output is a file": "is a file; give a folder", "output under a file": "is a file, not a folder",
             "a classifier checkpoint": "is a classification checkpoint"}[case]
    refused(["detect", "export", "--checkpoint", ckpt, "--output", out, "--formats", "onnx"], [run, tmp_path],
            match=match)


def test_detect_predict_refuses_a_classifier_checkpoint_or_an_export(classifier, tmp_path):
    photo = tmp_path / "p.png"
    image(photo)
    refused(["detect", "predict", photo, "--checkpoint", classifier], [tmp_path],
            match="is a classification checkpoint")
    (tmp_path / "model.onnx").write_bytes(b"\x08\x07")
    refused(["detect", "predict", photo, "--checkpoint", tmp_path / "model.onnx"], [tmp_path],
            match="is an exported model: give the detection run it was exported from")


def test_eval_of_a_run_whose_data_is_gone_asks_for_data(run, tmp_path):
    """A copy of the run whose recorded data folder no longer exists (the run records it in its
    weights' metadata: rewritten here as a move would leave it)."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    moved = tmp_path / "moved"
    moved.mkdir()
    with safe_open(str(run / "last.safetensors"), "pt") as f:
        header = dict(f.metadata())
    meta = json.loads(header["run"])
    header["run"] = json.dumps({**meta, "data": str(tmp_path / "deleted-data")})
    save_file(load_file(run / "last.safetensors"), moved / "last.safetensors", metadata=header)
    refused(["detect", "eval", "--checkpoint", moved], [tmp_path, run],
            match="the data the run was trained on, .*deleted-data, is not found: give --data")


def test_the_keyword_form_check_can_fail():
    """The check every message above went through catches the forms issue 24 found."""
    for line in ("resume it (resume=True)", "val_data=None", "task='embedding'"):
        assert KEYWORD_FORM.search(line)
    with pytest.raises(AssertionError):
        check_message("continue it with --resume (resume=True)")
    assert not KEYWORD_FORM.search("no usable box to train on in data (--output, --val-data)")


def test_val_categories_are_matched_to_train_by_name(tmp_path):
    """A val file listing the same classes under other ids (and one more) is re-labelled to the
    train file's ids by name: training's validation never scores a square as a circle."""
    data = coco(tmp_path / "data")
    coco(data, split="val", categories=[{"id": 1, "name": "square"}, {"id": 2, "name": "circle"},
                                        {"id": 3, "name": "hexagon"}],
         annotations=[one(1, cat=1), one(2, cat=2, image_id=2), one(3, cat=3, image_id=2)])
    splits = load_splits(data)
    val = splits["val"]
    assert val.coco["categories"] == splits["train"].coco["categories"] == CATS
    assert [(a["image_id"], a["category_id"]) for a in val.coco["annotations"]] == [(1, 2), (2, 1)]
    assert ("annotation of image 2", "category not in the train split ('hexagon')") in val.bad


@pytest.mark.parametrize("case", ["--draw a folder", "--draw under a file", "--plot a folder", "--plot under a file",
                                  "--annotations a folder"])
def test_a_file_output_naming_a_folder_or_under_a_file(run, tmp_path, case):
    """Where a command writes a FILE: a folder of that name, or a file where one of its folders
    should be, is one line before any work (was a FileExistsError traceback)."""
    (tmp_path / "file").write_text("x")
    (tmp_path / "d.png").mkdir()
    photo = image(tmp_path / "p.png") or tmp_path / "p.png"
    target = tmp_path / ("d.png" if "folder" in case else "file/x.png")
    ann = run.parent / "data" / "annotations" / "instances_val.json"
    (tmp_path / "res.json").write_text(json.dumps([{"image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5],
                                                    "score": 0.9}]))
    if case.startswith("--draw"):
        argv = ["detect", "predict", photo, "--checkpoint", run, "--draw", target]
    elif case.startswith("--plot"):
        argv = ["detect", "eval", "--annotations", ann, "--results", tmp_path / "res.json", "--plot", target]
    else:
        argv = ["detect", "eval", "--annotations", tmp_path / "d.png", "--results", tmp_path / "res.json"]
    match = "is a folder; give" if "folder" in case else "is a file, not a folder"
    refused(argv, [tmp_path, run], match=match)
