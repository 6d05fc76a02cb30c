"""Bad inputs to geo, distill, finetune, faces, convert, figures and the training runner, tried as a
new user would: each is refused with exit status 2 and one line in the user's words (CLI flags,
no ``name=``), no traceback, and nothing written (badinput_helpers.refused). Inputs that are
skipped and counted instead are checked where that behaviour is tested (tests/tasks/geo,
tests/tasks/distill)."""

import json
import shutil

import numpy as np
import pytest

from badinput_helpers import KEYWORD_FORM, SEEN, refused, run_cli
from mobilenets.data.photos import write_crops

PHOTOS = ["chelsea", "coffee", "astronaut"]


@pytest.fixture(scope="module")
def w(tmp_path_factory):
    """The inputs of every case, made once: real photos, geo lists and cells, pairs, CelebA and
    Stanford Dogs folders (good and broken), and a finished run."""
    root = tmp_path_factory.mktemp("bad")
    paths = write_crops(root / "photos", 6, photos=PHOTOS, seed=1, size=48)
    (root / "photos" / "corrupt.jpg").write_bytes(paths[0].read_bytes()[:200])
    (root / "empty").mkdir()
    (root / "notes.txt").write_text("not an image, not a model\n")
    names = [p.name for p in paths]
    geo = root / "geo"
    geo.mkdir()
    for i in range(40):  # coordinates for `geo cells` (only the files' existence is checked there)
        (geo / f"p{i}.jpg").touch()
    rng = np.random.default_rng(0)
    rows = [f"p{i}.jpg,{rng.uniform(40, 50):.5f},{rng.uniform(0, 10):.5f}" for i in range(40)]
    (geo / "points.csv").write_text("path,latitude,longitude\n" + "\n".join(rows) + "\n")
    (geo / "clash.csv").write_text("path,latitude,longitude\np1.jpg,45,5\np2.jpg,46,6\np1.jpg,45,5.5\n")
    (geo / "badcoords.csv").write_text("path,latitude,longitude\np1.jpg,95,5\np2.jpg,north,east\n")
    (geo / "noimages.csv").write_text("path,latitude,longitude\ngone1.jpg,45,5\ngone2.jpg,46,6\n")
    for n in names:
        shutil.copy(root / "photos" / n, geo / n)
    listed = "path,latitude,longitude\n" + "".join(f"{n},{45 + k},{5 + k}\n" for k, n in enumerate(names))
    (geo / "train.csv").write_text(listed)
    (geo / "val.csv").write_text(listed)
    (geo / "train_clash.csv").write_text(listed + f"{names[0]},10,10\n")
    from mobilenets.tasks.geo.run import make_cells

    make_cells(geo / "train.csv", 3, 1, geo / "cells.csv", log=lambda *_: None)
    text = (geo / "cells.csv").read_text().splitlines()
    (geo / "cells_columns.csv").write_text("class,token\n0,abc\n")
    (geo / "cells_token.csv").write_text("\n".join([text[0], text[1].replace(text[1].split(",")[1], "zz")]) + "\n")
    head, first = text[0], text[1].split(",")
    first[3] = "-4"
    (geo / "cells_count.csv").write_text("\n".join([head, ",".join(first), *text[2:]]) + "\n")
    (geo / "cells_short.csv").write_text(head + "\n0," + text[1].split(",")[1] + "\n")
    # distillation: pairs and CelebA
    d = root / "distill"
    d.mkdir()
    (d / "pairs_missing.csv").write_text("gone_a.jpg,gone_b.jpg,1\ngone_c.jpg,gone_d.jpg,0\n")
    (d / "pairs_corrupt.csv").write_text(f"{root}/photos/corrupt.jpg,{root}/photos/{names[0]},1\n"
                                         f"{root}/photos/{names[1]},{root}/photos/{names[2]},0\n")
    (d / "pairs_flag.csv").write_text(f"{names[0]},{names[1]},1\n{names[0]},{names[2]},maybe\n")
    (d / "pairs.txt").write_text("ten folds\nA 1 2\n")
    (d / "pairs_count.txt").write_text("1 2\nA 1 2\n")
    for name, attr, part in (
            ("celeba_count", "x\nSmiling Young\n", ""),
            ("celeba_lines", "3\nSmiling Young\na.jpg 1 -1\n", "a.jpg 2\n"),
            ("celeba_values", "1\nSmiling Young\na.jpg 1 0\n", "a.jpg 2\n"),
            ("celeba_partition", "1\nSmiling Young\na.jpg 1 -1\n", "b.jpg 2\n"),
            ("celeba_images", "1\nSmiling Young\na.jpg 1 -1\n", "a.jpg 2\n"),
            ("celeba_split", "1\nSmiling Young\na.jpg 1 -1\n", "a.jpg 0\n")):
        (d / name).mkdir()
        (d / name / "list_attr_celeba.txt").write_text(attr)
        if part:
            (d / name / "list_eval_partition.txt").write_text(part)
    one = root / "one_image"
    one.mkdir()
    shutil.copy(paths[0], one / "a.jpg")
    # Stanford Dogs
    from mobilenets.studies.finetune import photo_dogs_layout

    dogs = photo_dogs_layout(root / "dogs", ["chelsea", "coffee"], train=2, test=1, size=48)
    for name, change in (("dogs_truncated", "truncate"), ("dogs_text", "text"), ("dogs_noclass", "noclass"),
                         ("dogs_noimages", "noimages")):
        shutil.copytree(dogs, root / name, symlinks=True)
        lists = root / name / "lists" / "train_list.mat"
        if change == "truncate":
            lists.write_bytes(lists.read_bytes()[:300])
        elif change == "text":
            lists.write_text("file_list,labels\n")
        elif change == "noclass":
            shutil.rmtree(next((root / name / "Images").iterdir()))
        else:
            shutil.rmtree(root / name / "Images")
            (root / name / "Images").mkdir()
    # a classification run (the built-in digits, one step, checkpointed) and a geolocation-looking copy
    runs = root / "runs"
    result = run_cli(["train", "--alpha", "0.25", "--resolution", "32", "--epochs", "1", "--batch-size", "64",
                        "--max-steps", "1", "--no-progress", "--output", str(runs / "done")])
    assert result.code == 0, result.stderr
    shutil.copytree(runs / "done", runs / "geo")
    # a folder holding another reproduction (table6 on the digits for 5 epochs)
    from mobilenets.train.recipes import get_recipe

    plan = {"table": "table6", "data": None, "recipe": get_recipe("paper").replace(epochs=5, batch_size=64).to_dict()}
    (root / "repro").mkdir()
    (root / "repro" / "reproduce.json").write_text(json.dumps(plan))
    config = json.loads((runs / "geo" / "config.json").read_text())
    (runs / "geo" / "config.json").write_text(json.dumps({**config, "task": "geolocation"}))
    return root


def _train(out):
    return ["train", "--alpha", "0.25", "--resolution", "32", "--epochs", "1", "--no-progress", "--output", out]


# (id, argv from the world, the paths that must not change, what the line must say)
CASES = [
    # geo cells
    ("geo-cells-missing-list", lambda w: ["geo", "cells", "--photos", w / "nope.csv", "--max-per-cell", "5",
                                          "--min-per-cell", "1", "--output", w / "out" / "c.csv"],
     lambda w: [w / "out"], "photo list not found"),
    ("geo-cells-bad-coordinates", lambda w: ["geo", "cells", "--photos", w / "geo" / "badcoords.csv", "--max-per-cell",
                                             "5", "--min-per-cell", "1", "--output", w / "out" / "c.csv"],
     lambda w: [w / "out"], "no usable rows: 2 of 2 rows skipped"),
    ("geo-cells-images-missing", lambda w: ["geo", "cells", "--photos", w / "geo" / "noimages.csv", "--max-per-cell",
                                            "5", "--min-per-cell", "1", "--output", w / "out" / "c.csv"],
     lambda w: [w / "out"], "image not found"),
    ("geo-cells-conflicting-duplicate", lambda w: ["geo", "cells", "--photos", w / "geo" / "clash.csv",
                                                   "--max-per-cell", "5", "--min-per-cell", "1", "--output",
                                                   w / "out" / "c.csv"],
     lambda w: [w / "out"], r"p1.jpg is listed twice with different coordinates: line 2 .* and line 4"),
    ("geo-cells-min-over-max", lambda w: ["geo", "cells", "--photos", w / "geo" / "points.csv", "--max-per-cell", "5",
                                          "--min-per-cell", "9", "--output", w / "out" / "c.csv"],
     lambda w: [w / "out"], r"--min-per-cell \(9\) must not exceed --max-per-cell \(5\)"),
    ("geo-cells-no-cell-kept", lambda w: ["geo", "cells", "--photos", w / "geo" / "points.csv", "--max-per-cell",
                                          "100", "--min-per-cell", "99", "--output", w / "out" / "c.csv"],
     lambda w: [w / "out"], r"no cell holds --min-per-cell 99 photos .* lower --min-per-cell"),
    ("geo-cells-levels", lambda w: ["geo", "cells", "--photos", w / "geo" / "points.csv", "--max-per-cell", "5",
                                    "--min-per-cell", "1", "--min-level", "9", "--max-level", "4", "--output",
                                    w / "out" / "c.csv"],
     lambda w: [w / "out"], "--min-level"),
    ("geo-cells-output-under-a-file", lambda w: ["geo", "cells", "--photos", w / "geo" / "points.csv",
                                                 "--max-per-cell", "5", "--min-per-cell", "1", "--output",
                                                 w / "notes.txt" / "c.csv"],
     lambda w: [w / "notes.txt", w / "geo"], r"cannot write --output .*notes.txt is a file, not a folder"),
    ("geo-cells-map-under-a-file", lambda w: ["geo", "cells", "--photos", w / "geo" / "points.csv",
                                              "--max-per-cell", "5", "--min-per-cell", "1", "--output",
                                              w / "out" / "c.csv", "--map", w / "notes.txt" / "m.png"],
     lambda w: [w / "notes.txt", w / "out"], r"cannot write --map .*notes.txt is a file"),
    # geo train: every list and the cells file checked before the run folder is made
    *[(f"geo-train-{name}", (lambda n: lambda w: ["geo", "train", "--data", w / "geo" / "train.csv", "--val",
                                                  w / "geo" / "val.csv", "--cells", w / "geo" / n, "--epochs", "1",
                                                  "--no-progress", "--output", w / "out" / "run"])(file),
       lambda w: [w / "out", w / "geo"], match)
      for name, file, match in (("cells-missing", "none.csv", "cells file not found"),
                                ("cells-columns", "cells_columns.csv", "is not a cells file"),
                                ("cells-token", "cells_token.csv", "not an S2 cell token"),
                                ("cells-count", "cells_count.csv", "has -4 photos"),
                                ("cells-short-row", "cells_short.csv", r"cells_short.csv line 2: 2 fields, expected 8"))],
    ("geo-train-conflicting-duplicate", lambda w: ["geo", "train", "--data", w / "geo" / "train_clash.csv", "--val",
                                                   w / "geo" / "val.csv", "--cells", w / "geo" / "cells.csv",
                                                   "--epochs", "1", "--no-progress", "--output", w / "out" / "run"],
     lambda w: [w / "out", w / "geo"], "listed twice with different coordinates"),
    ("geo-train-resume-nothing", lambda w: ["geo", "train", "--resume", "--output", w / "out" / "run"],
     lambda w: [w / "out"], r"nothing to resume in .*leave out --resume"),
    ("geo-train-resume-a-classifier", lambda w: ["geo", "train", "--resume", "--output", w / "runs" / "done"],
     lambda w: [w / "runs" / "done"], "is a classification run, not a geolocation run"),
    ("geo-eval-truth-missing", lambda w: ["geo", "eval", "--truth", w / "nope.csv", "--predictions",
                                          w / "geo" / "val.csv"], lambda w: [w / "geo"], "photo list not found"),
    ("geo-eval-no-match", lambda w: ["geo", "eval", "--truth", w / "geo" / "val.csv", "--predictions",
                                     w / "geo" / "points.csv"], lambda w: [w / "geo"], "has a prediction"),
    # distill: the files of the report after training are checked before it starts
    *[(f"distill-pairs-{name}", (lambda f: lambda w: [
        "distill", "--teacher", "dlib", "--data", w / "photos", "--task", "embedding", "--pairs",
        w / "distill" / f, "--pairs-images", w / "photos", "--epochs", "1", "--no-progress", "--output",
        w / "out" / "run"])(file), lambda w: [w / "out", w / "distill"], match)
      for name, file, match in (("file-missing", "none.csv", "pairs file not found"),
                                ("images-missing", "pairs_missing.csv", "0 of 2 pairs have both images readable"),
                                ("image-corrupt", "pairs_corrupt.csv", "1 of 2 pairs .* same and different pairs"),
                                ("bad-flag", "pairs_flag.csv", "'same' must be 1/0"),
                                ("lfw-header", "pairs.txt", "the first line must be 'folds pairs_per_class'"),
                                ("lfw-count", "pairs_count.txt", "need 4 lines, got 1"))],
    *[(f"distill-{name}", (lambda f: lambda w: [
        "distill", "--teacher", "age-gender", "--data", w / "photos", "--task", "multilabel", "--celeba",
        w / "distill" / f, "--epochs", "1", "--no-progress", "--output", w / "out" / "run"])(folder),
       lambda w: [w / "out", w / "distill"], match)
      for name, folder, match in (("celeba-missing", "nope", "CelebA folder not found"),
                                  ("celeba-count-line", "celeba_count", "expected a count line"),
                                  ("celeba-count-mismatch", "celeba_lines", "announces 3 images but lists 1"),
                                  ("celeba-values", "celeba_values", "values of 1 or -1"),
                                  ("celeba-partition", "celeba_partition", "has no partition for 1 image"),
                                  ("celeba-images", "celeba_images", "missing from"),
                                  ("celeba-no-test", "celeba_split", "partition test of .* has no images"))],
    ("distill-no-images", lambda w: ["distill", "--teacher", "dlib", "--data", w / "empty", "--task", "embedding",
                                     "--epochs", "1", "--no-progress", "--output", w / "out" / "run"],
     lambda w: [w / "out"], "no images found in"),
    ("distill-too-few-to-hold-out", lambda w: ["distill", "--teacher", "dlib", "--data", w / "one_image", "--task",
                                               "embedding", "--epochs", "1", "--no-progress", "--output",
                                               w / "out" / "run"],
     lambda w: [w / "out"], "give --val-data or more images"),
    ("distill-val-every-and-val-data", lambda w: ["distill", "--teacher", "dlib", "--data", w / "photos",
                                                  "--val-data", w / "photos", "--val-every", "3", "--task",
                                                  "embedding", "--output", w / "out" / "run"],
     lambda w: [w / "out"], "--val-every holds out part of --data when no --val-data"),
    ("distill-temperature-embedding", lambda w: ["distill", "--teacher", "dlib", "--data", w / "photos",
                                                 "--temperature", "2", "--task", "embedding", "--output",
                                                 w / "out" / "run"],
     lambda w: [w / "out"], "--temperature is for --task classify .*not --task embedding"),
    ("distill-pairs-precomputed-teacher", lambda w: ["distill", "--teacher", w / "t.npz", "--data", w / "photos",
                                                     "--task", "embedding", "--pairs", w / "distill" / "pairs.txt",
                                                     "--output", w / "out" / "run"],
     lambda w: [w / "out"], "teacher that runs here"),
    # finetune on Stanford Dogs
    ("finetune-dogs-truncated-mat", lambda w: ["finetune", "--data", w / "dogs_truncated", "--model",
                                               "mobilenet_v1_0.25_128", "--epochs", "1", "--no-progress",
                                               "--output", w / "out" / "run"],
     lambda w: [w / "out", w / "dogs_truncated"], "train_list.mat is not a readable Stanford Dogs list"),
    ("finetune-dogs-text-mat", lambda w: ["finetune", "--data", w / "dogs_text", "--model", "mobilenet_v1_0.25_128",
                                          "--epochs", "1", "--no-progress", "--output", w / "out" / "run"],
     lambda w: [w / "out"], "is not a readable Stanford Dogs list"),
    ("finetune-dogs-class-without-images", lambda w: ["finetune", "--data", w / "dogs_noclass", "--model",
                                                      "mobilenet_v1_0.25_128", "--epochs", "1", "--no-progress",
                                                      "--output", w / "out" / "run"],
     lambda w: [w / "out"], "1 of 2 classes have no training image"),
    ("finetune-dogs-no-images", lambda w: ["finetune", "--data", w / "dogs_noimages", "--model",
                                           "mobilenet_v1_0.25_128", "--epochs", "1", "--no-progress", "--output",
                                           w / "out" / "run"],
     lambda w: [w / "out"], "none of the listed images is under"),
    ("finetune-data-missing", lambda w: ["finetune", "--data", w / "nope", "--output", w / "out" / "run"],
     lambda w: [w / "out"], "data folder not found"),
    ("finetune-body-lr-scale", lambda w: ["finetune", "--data", w / "dogs", "--body-lr-scale", "2", "--output",
                                          w / "out" / "run"],
     lambda w: [w / "out", w / "dogs"], r"--body-lr-scale must be in \[0, 1\]"),
    # faces crop
    ("faces-input-missing", lambda w: ["faces", "crop", w / "nope", "--output", w / "out" / "faces"],
     lambda w: [w / "out"], "data folder not found"),
    ("faces-no-images", lambda w: ["faces", "crop", w / "empty", "--output", w / "out" / "faces"],
     lambda w: [w / "out"], "no images found"),
    ("faces-output-is-a-file", lambda w: ["faces", "crop", w / "photos", "--output", w / "notes.txt"],
     lambda w: [w / "notes.txt"], "notes.txt is a file, not a folder"),
    ("faces-output-under-a-file", lambda w: ["faces", "crop", w / "photos", "--output", w / "notes.txt" / "x"],
     lambda w: [w / "notes.txt"], "notes.txt is a file, not a folder"),
    ("faces-output-is-input", lambda w: ["faces", "crop", w / "photos", "--output", w / "photos"],
     lambda w: [w / "photos"], "is the photo folder itself"),
    # convert
    ("convert-missing", lambda w: ["convert", w / "nope.pb", "--output", w / "out" / "m"], lambda w: [w / "out"],
     "nope.pb"),
    ("convert-unknown-format", lambda w: ["convert", w / "notes.txt", "--output", w / "out" / "m"],
     lambda w: [w / "out"], "cannot tell the format .* give --from"),
    ("convert-output-not-empty", lambda w: ["convert", w / "runs" / "done", "--output", w / "photos"],
     lambda w: [w / "photos"], "exists and is not empty; .*--force"),
    ("convert-output-is-a-file", lambda w: ["convert", w / "runs" / "done", "--output", w / "notes.txt"],
     lambda w: [w / "notes.txt"], "exists and is not a folder"),
    # figures
    ("figures-geolocation-run", lambda w: ["figures", w / "runs" / "geo", "--output", w / "out" / "fig"],
     lambda w: [w / "out"], "is a geolocation run: its validation figures are not an image classifier's top-1"),
    ("figures-missing-run", lambda w: ["figures", w / "nope", "--output", w / "out" / "fig"], lambda w: [w / "out"],
     "does not exist"),
    ("figures-not-a-run", lambda w: ["figures", w / "photos", "--output", w / "out" / "fig"], lambda w: [w / "out"],
     "is not a run folder"),
    ("figures-output-is-a-file", lambda w: ["figures", "--output", w / "notes.txt"], lambda w: [w / "notes.txt"],
     "--output must be a folder"),
    # library words that reached the command line (issue 24): flags, not `name=`
    ("detect-train-epochs-below-warmup", lambda w: ["detect", "train", "--epochs", "1", "--no-progress", "--output",
                                                    w / "out" / "run"],
     lambda w: [w / "out"], r"--warmup-epochs \(2\) must be less than --epochs \(1\): give more --epochs"),
    ("train-momentum-out-of-range", lambda w: [*_train(w / "out" / "run"), "--momentum", "1"], lambda w: [w / "out"],
     r"--momentum must be in \[0, 1\), got 1.0"),
    ("detect-predict-score-over-one", lambda w: ["detect", "predict", "--checkpoint", w / "runs" / "done",
                                                 w / "one_image" / "a.jpg", "--score", "2"],
     lambda w: [w / "one_image"], r"--score must be in \[0, 1\], got 2.0"),
    ("predict-a-folder-as-image", lambda w: ["predict", "--checkpoint", w / "runs" / "done", w / "one_image"],
     lambda w: [w / "one_image"], r"one_image is a folder, not an image file \(give the image files in it"),
    ("cost-torchvision-num-classes", lambda w: ["cost", "--model", "torchvision:resnet18", "--num-classes", "10"],
     lambda w: [], r"--num-classes 10: only MobileNets"),
    ("reproduce-folder-holds-another", lambda w: ["reproduce", "table6", "--epochs", "1", "--no-progress",
                                                  "--output", w / "repro"],
     lambda w: [w / "repro"], r"repro holds another reproduction \(--epochs 5; asked --epochs 1\); choose another "
     r"--output"),
    ("reproduce-folder-not-empty", lambda w: ["reproduce", "table6", "--epochs", "1", "--no-progress", "--output",
                                              w / "photos"],
     lambda w: [w / "photos"], "holds no reproduce.json; choose another --output"),
    # the runner: re-runs and resumes
    ("train-folder-holds-a-run", lambda w: _train(w / "runs" / "done"), lambda w: [w / "runs" / "done"],
     r"already holds a run: to continue it run `mobilenet train .* --resume`; to start over choose another "
     r"--output, or delete"),
    ("train-resume-empty-folder", lambda w: [*_train(w / "empty"), "--resume"], lambda w: [w / "empty"],
     "nothing to resume"),
    ("train-output-is-a-file", lambda w: _train(w / "notes.txt"), lambda w: [w / "notes.txt"], "is a file"),
    ("distill-resume-a-classifier", lambda w: ["distill", "--resume", "--output", w / "runs" / "done"],
     lambda w: [w / "runs" / "done"], "is a classification run, not a distill run"),
    ("finetune-resume-a-geo-run", lambda w: ["finetune", "--resume", "--output", w / "runs" / "geo"],
     lambda w: [w / "runs" / "geo"], "is a geolocation run, not a finetune run"),
]


@pytest.mark.parametrize("argv, watch, match", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_in_one_line_and_writes_nothing(w, argv, watch, match):
    refused(argv(w), watch(w), match=match)


def test_no_message_of_the_suite_has_a_python_keyword_form():
    """Over every line the suite saw (run after the cases: pytest keeps file order)."""
    assert len(SEEN) >= len(CASES) or not SEEN
    offenders = [line for line in SEEN if KEYWORD_FORM.search(line)]
    assert not offenders, offenders


def test_the_suite_is_large_enough():
    assert len(CASES) >= 30 and len({c[0] for c in CASES}) == len(CASES)
