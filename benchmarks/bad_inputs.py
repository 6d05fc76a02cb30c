"""The bad-input sweep of geo, distill, finetune, faces, convert, figures and the training runner:
each input tried as a new user would (a fresh `python -m mobilenets` process per command), its exit
status and first stderr line recorded in a CSV.

    PYTHONPATH=src python benchmarks/bad_inputs.py [--out docs/results/2026-12-05-bad-inputs-rest.csv]

Each case says what it expects: ``refused`` (exit 2, one line on stderr) or ``said`` (exit 0, and a
line on stdout/stderr matching the case's pattern: skipped, counted, listed). The outcome column
reads ``ok`` when that happened, ``traceback`` when a Python traceback reached the user, and
``silently wrong`` when the command exited 0 without saying what the case expects it to say (or
wrote files when it was refused). The script prints the totals and exits 1 on any traceback or
silently wrong case. Takes a few minutes on 2 cores (one process per case, torch imported each time).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

MB = [sys.executable, "-m", "mobilenets"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "TF_CPP_MIN_LOG_LEVEL": "3"}
PHOTOS = ["chelsea", "coffee", "astronaut", "rocket"]


def mb(args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([*MB, *map(str, args)], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=600)


def world(root: Path) -> None:
    """Every input of the sweep, under ``root``: real photos, a real geolocation run and a real
    classification run (tiny), and broken copies of each kind of file."""
    from mobilenets.data.photos import write_crops
    from mobilenets.studies.finetune import photo_dogs_layout

    paths = write_crops(root / "photos", 8, photos=PHOTOS, seed=3, size=48)
    names = [p.name for p in paths]
    (root / "photos_bad").mkdir()
    for p in paths[:4]:
        shutil.copy(p, root / "photos_bad" / p.name)
    (root / "photos_bad" / "truncated.jpg").write_bytes(paths[0].read_bytes()[:150])
    (root / "photos_bad" / "empty.jpg").write_bytes(b"")
    (root / "photos_bad" / "text.jpg").write_text("hello")
    (root / "empty").mkdir()
    (root / "notes.txt").write_text("not an image, not a model\n")
    (root / "one").mkdir()
    shutil.copy(paths[0], root / "one" / "a.jpg")
    # geolocation: the stand-in, its cells, a real 2-step run
    for args in (["geo", "standin", "--output", root / "standin", "--photos", "240", "--places", "12", "--size", "32",
                  "--no-progress"],
                 ["geo", "cells", "--photos", root / "standin" / "train.csv", "--max-per-cell", "60",
                  "--min-per-cell", "5", "--output", root / "standin" / "cells.csv"],
                 ["geo", "train", "--data", root / "standin" / "train.csv", "--val", root / "standin" / "val.csv",
                  "--cells", root / "standin" / "cells.csv", "--alpha", "0.25", "--resolution", "32", "--epochs", "1",
                  "--batch-size", "32", "--no-progress", "--output", root / "runs" / "geo"],
                 ["train", "--alpha", "0.25", "--resolution", "32", "--epochs", "1", "--batch-size", "64",
                  "--no-progress", "--output", root / "runs" / "cls"]):
        done = mb(args, root)
        assert done.returncode == 0, done.stderr
    g = root / "geo"
    g.mkdir()
    train = (root / "standin" / "train.csv").read_text().splitlines()
    header, body = train[0], train[1:]
    first = body[0].split(",")
    rel = lambda row: row.replace(row.split(",")[0], "../standin/" + row.split(",")[0])  # noqa: E731
    files = {
        "clash.csv": [header, rel(body[0]), rel(body[1]), rel(",".join([first[0], first[1], str(float(first[2]) + 1)]))],
        "repeat.csv": [header, *map(rel, body[:30]), rel(body[0])],
        "badcoords.csv": [header, "a.jpg,95,0", "b.jpg,north,east", "c.jpg,10,200", "d.jpg,nan,1", "e.jpg,1"],
        "missing_images.csv": [header, "gone1.jpg,45,5", "gone2.jpg,46,6"],
        "some_missing.csv": [header, *map(rel, body), "gone1.jpg,45,5", "gone2.jpg,46,6"],
        "empty.csv": [],
        "header_only.csv": [header],
        "no_header.csv": list(map(rel, body)),
        "semicolons.csv": [r.replace(",", ";") for r in [header, *map(rel, body[:5])]],
        "corrupt_image.csv": [header, *map(rel, body[:40]), "../photos_bad/truncated.jpg,10,10"],
    }
    for name, lines in files.items():
        (g / name).write_text("\n".join(lines) + ("\n" if lines else ""))
    cells = (root / "standin" / "cells.csv").read_text().splitlines()
    row = cells[1].split(",")
    variants = {
        "cells_columns.csv": ["class,token", "0,abc"],
        "cells_token.csv": [cells[0], ",".join([row[0], "zz", *row[2:]]), *cells[2:]],
        "cells_count.csv": [cells[0], ",".join([*row[:3], "-4", *row[4:]]), *cells[2:]],
        "cells_nan.csv": [cells[0], ",".join([*row[:4], "nan", *row[5:]]), *cells[2:]],
        "cells_order.csv": [cells[0], *cells[2:], cells[1]],
        "cells_short.csv": [cells[0], "0," + row[1]],
        "cells_empty.csv": [cells[0]],
    }
    for name, lines in variants.items():
        (g / name).write_text("\n".join(lines) + "\n")
    # distillation: pairs and CelebA folders
    d = root / "distill"
    d.mkdir()
    ph = root / "photos"
    (d / "pairs_missing.csv").write_text("gone_a.jpg,gone_b.jpg,1\ngone_c.jpg,gone_d.jpg,0\n")
    (d / "pairs_corrupt.csv").write_text(f"{root}/photos_bad/truncated.jpg,{ph}/{names[0]},1\n"
                                         f"{ph}/{names[1]},{ph}/{names[2]},0\n")
    (d / "pairs_some_missing.csv").write_text(f"{ph}/{names[0]},{ph}/{names[1]},1\n{ph}/{names[2]},{ph}/{names[3]},0\n"
                                              f"{ph}/{names[4]},{ph}/gone.jpg,0\n{ph}/{names[5]},{ph}/{names[6]},1\n")
    (d / "pairs_flag.csv").write_text(f"{names[0]},{names[1]},1\n{names[0]},{names[2]},maybe\n")
    (d / "pairs_fields.csv").write_text(f"{names[0]},{names[1]}\n")
    (d / "pairs_same_only.csv").write_text(f"{ph}/{names[0]},{ph}/{names[1]},1\n{ph}/{names[2]},{ph}/{names[3]},1\n")
    (d / "pairs_empty.csv").write_text("")
    (d / "pairs.txt").write_text("ten folds\nA 1 2\n")
    (d / "pairs_count.txt").write_text("1 2\nA 1 2\n")
    (d / "pairs_line.txt").write_text("1 1\nA 1 2 3 4 5\nB 1 C 2\n")
    for name, attr, part in (
            ("celeba_count", "x\nSmiling Young\n", ""),
            ("celeba_lines", "3\nSmiling Young\na.jpg 1 -1\n", "a.jpg 2\n"),
            ("celeba_values", "1\nSmiling Young\na.jpg 1 0\n", "a.jpg 2\n"),
            ("celeba_partition", "1\nSmiling Young\na.jpg 1 -1\n", "b.jpg 2\n"),
            ("celeba_partition_value", "1\nSmiling Young\na.jpg 1 -1\n", "a.jpg 7\n"),
            ("celeba_no_partition_file", "1\nSmiling Young\na.jpg 1 -1\n", ""),
            ("celeba_images", "1\nSmiling Young\na.jpg 1 -1\n", "a.jpg 2\n"),
            ("celeba_no_test", "1\nSmiling Young\na.jpg 1 -1\n", "a.jpg 0\n")):
        (d / name).mkdir()
        (d / name / "list_attr_celeba.txt").write_text(attr)
        if part:
            (d / name / "list_eval_partition.txt").write_text(part)
    np.savez(d / "teacher.npz", paths=np.array(names), outputs=np.random.default_rng(0).normal(size=(8, 4)))
    (d / "teacher_bad.npz").write_text("not a zip")
    # Stanford Dogs
    dogs = photo_dogs_layout(root / "dogs", ["chelsea", "coffee"], train=2, test=1, size=48)
    for name in ("truncated", "text", "noclass", "noimages", "notest", "twobreeds"):
        shutil.copytree(dogs, root / f"dogs_{name}", symlinks=True)
        lists = root / f"dogs_{name}" / "lists"
        if name == "truncated":
            (lists / "train_list.mat").write_bytes((lists / "train_list.mat").read_bytes()[:300])
        elif name == "text":
            (lists / "train_list.mat").write_text("file_list,labels\n")
        elif name == "noclass":
            shutil.rmtree(sorted((root / f"dogs_{name}" / "Images").iterdir())[0])
        elif name == "noimages":
            shutil.rmtree(root / f"dogs_{name}" / "Images")
            (root / f"dogs_{name}" / "Images").mkdir()
        elif name == "notest":
            (lists / "test_list.mat").unlink()
        else:
            import scipy.io

            mat = scipy.io.loadmat(lists / "train_list.mat")
            mat["labels"][-1, 0] = 1  # the second breed's image labelled as the first breed
            scipy.io.savemat(lists / "train_list.mat", {k: v for k, v in mat.items() if not k.startswith("__")})
    # runs for figures and the runner
    runs = root / "runs"
    shutil.copytree(runs / "cls", runs / "broken")
    (runs / "broken" / "config.json").write_text("{not json")
    (runs / "stopped").mkdir()
    (runs / "stopped" / "config.json").write_text((runs / "cls" / "config.json").read_text())
    (runs / "mixed").mkdir()
    shutil.copytree(runs / "geo", runs / "mixed" / "geo")
    (runs / "folder_of_geo").mkdir()
    shutil.copytree(runs / "geo", runs / "folder_of_geo" / "geo")
    (root / "out").mkdir()


def T(out):
    return ["train", "--alpha", "0.25", "--resolution", "32", "--epochs", "1", "--batch-size", "64", "--no-progress",
            "--output", out]


def G(data="../standin/train.csv", val="../standin/val.csv", cells="../standin/cells.csv", out="../out/g"):
    return ["geo", "train", "--data", data, "--val", val, "--cells", cells, "--alpha", "0.25", "--resolution", "32",
            "--epochs", "1", "--batch-size", "16", "--max-steps", "1", "--no-progress", "--output", out]


def C(photos, mx="60", mn="5", out="../out/c.csv", *extra):
    return ["geo", "cells", "--photos", photos, "--max-per-cell", mx, "--min-per-cell", mn, "--output", out, *extra]


def D(*extra, task="embedding", teacher="dlib", data="../photos"):
    return ["distill", "--teacher", teacher, "--data", data, "--task", task, "--alpha", "0.25", "--resolution", "32",
            "--epochs", "1", "--max-steps", "1", "--no-progress", "--output", "../out/d", *extra]


def F(data, *extra):
    return ["finetune", "--data", data, "--model", "mobilenet_v1_0.25_128", "--resolution", "32", "--epochs", "1",
            "--max-steps", "1", "--batch-size", "4", "--no-progress", "--output", "../out/f", *extra]


R, S = "refused", "said"
# (command, input, argv (run in root/geo), expectation, pattern for "said" / the refusal's wording)
CASES = [
    ("geo cells", "photo list missing", C("nope.csv"), R, "not found"),
    ("geo cells", "every row with bad coordinates", C("badcoords.csv"), R, "no usable rows"),
    ("geo cells", "every image missing", C("missing_images.csv"), R, "image not found"),
    ("geo cells", "some images missing", C("some_missing.csv"), S, r"skipped 2 of \d+ rows"),
    ("geo cells", "a photo twice, other coordinates", C("clash.csv"), R, "listed twice with different coordinates"),
    ("geo cells", "a photo twice, same coordinates", C("repeat.csv", "10", "1"), S, "duplicate of line 2"),
    ("geo cells", "empty CSV", C("empty.csv"), R, "no usable rows"),
    ("geo cells", "header only", C("header_only.csv"), R, "no usable rows"),
    ("geo cells", "no header row", C("no_header.csv"), S, r"\d+ cells"),
    ("geo cells", "semicolon-separated", C("semicolons.csv"), R, "no usable rows"),
    ("geo cells", "--min-per-cell > --max-per-cell", C("../standin/train.csv", "5", "9"), R, "--min-per-cell"),
    ("geo cells", "no cell keeps enough photos", C("../standin/train.csv", "500", "400"), R, "lower --min-per-cell"),
    ("geo cells", "--min-level > --max-level", C("../standin/train.csv", "60", "5", "../out/c.csv",
                                                 "--min-level", "9", "--max-level", "3"), R, "--min-level"),
    ("geo cells", "--max-level 31", C("../standin/train.csv", "60", "5", "../out/c.csv", "--max-level", "31"), R,
     "30"),
    ("geo cells", "--max-per-cell 0", C("../standin/train.csv", "0"), R, "max-per-cell"),
    ("geo cells", "--output under a file", C("../standin/train.csv", "60", "5", "../notes.txt/c.csv"), R,
     "notes.txt"),
    ("geo cells", "--map under a file", C("../standin/train.csv", "60", "5", "../out/c2.csv", "--map",
                                          "../notes.txt/m.png"), R, "notes.txt"),
    ("geo train", "cells file missing", G(cells="none.csv"), R, "cells file not found"),
    ("geo train", "cells file with other columns", G(cells="cells_columns.csv"), R, "not a cells file"),
    ("geo train", "cells file with a bad token", G(cells="cells_token.csv"), R, "S2 cell token"),
    ("geo train", "cells file with a negative count", G(cells="cells_count.csv"), R, "has -4 photos"),
    ("geo train", "cells file with a NaN mean", G(cells="cells_nan.csv"), R, "nan"),
    ("geo train", "cells file out of order", G(cells="cells_order.csv"), R, "S2 id order"),
    ("geo train", "cells file with a short row", G(cells="cells_short.csv"), R, "line 2: 2 fields"),
    ("geo train", "cells file with no cell", G(cells="cells_empty.csv"), R, "not a cells file"),
    ("geo train", "training list: a photo twice, other coordinates", G(data="clash.csv"), R, "listed twice"),
    ("geo train", "validation list missing", G(val="nope.csv"), R, "not found"),
    ("geo train", "a corrupt image in the list", G(data="corrupt_image.csv"), S, r"skipped 1 of 41 rows"),
    ("geo train", "without --cells", ["geo", "train", "--data", "../standin/train.csv", "--output", "../out/g"], R,
     "--cells"),
    ("geo train", "--resume of an empty folder", ["geo", "train", "--resume", "--output", "../empty"], R,
     "nothing to resume"),
    ("geo train", "--resume of a classification run", ["geo", "train", "--resume", "--output", "../runs/cls"], R,
     "classification run"),
    ("geo train", "again on a finished run", G(out="../runs/geo"), R, r"already holds a run: to continue it run `"),
    ("geo eval", "truth missing", ["geo", "eval", "--truth", "nope.csv", "--predictions", "../standin/val.csv"], R,
     "not found"),
    ("geo eval", "no prediction matches", ["geo", "eval", "--truth", "../standin/val.csv", "--predictions",
                                          "missing_images.csv"], R, "has a prediction"),
    ("geo eval", "--plot none", ["geo", "eval", "--checkpoint", "../runs/geo", "--plot", "none", "--no-progress"], S,
     r"^(?![\s\S]*CDF plot)"),
    ("geo eval", "--checkpoint of a classifier", ["geo", "eval", "--checkpoint", "../runs/cls", "--no-progress"], R,
     "geolocation"),
    ("geo predict", "a corrupt image", ["geo", "predict", "--checkpoint", "../runs/geo",
                                       "../photos_bad/truncated.jpg"], R, "truncated.jpg"),
    ("distill", "--pairs file missing", D("--pairs", "../distill/none.csv"), R, "pairs file not found"),
    ("distill", "--pairs: every image missing", D("--pairs", "../distill/pairs_missing.csv"), R, "0 of 2 pairs"),
    ("distill", "--pairs: a corrupt image", D("--pairs", "../distill/pairs_corrupt.csv"), R,
     "same and different pairs"),
    ("distill", "--pairs: only same-person pairs", D("--pairs", "../distill/pairs_same_only.csv"), R,
     "2 of them same-person"),
    ("distill", "--pairs: a bad 'same' value", D("--pairs", "../distill/pairs_flag.csv"), R, "'same' must be"),
    ("distill", "--pairs: two fields", D("--pairs", "../distill/pairs_fields.csv"), R, "path_a,path_b,same"),
    ("distill", "--pairs: empty CSV", D("--pairs", "../distill/pairs_empty.csv"), R, "holds no pairs"),
    ("distill", "--pairs: LFW header", D("--pairs", "../distill/pairs.txt"), R, "first line"),
    ("distill", "--pairs: LFW line count", D("--pairs", "../distill/pairs_count.txt"), R, "need 4 lines"),
    ("distill", "--pairs: LFW bad line", D("--pairs", "../distill/pairs_line.txt"), R, "expected 'name i j'"),
    ("distill", "--pairs with a precomputed teacher", D("--pairs", "../distill/pairs.txt",
                                                        teacher="../distill/teacher.npz"), R, "runs here"),
    ("distill", "--pairs with --task classify", D("--pairs", "../distill/pairs.txt", task="classify"), R,
     "--task embedding"),
    *[("distill", f"--celeba: {what}", D("--celeba", f"../distill/{folder}", task="multilabel",
                                         teacher="age-gender"), R, match)
      for what, folder, match in (("folder missing", "nope", "CelebA folder not found"),
                                  ("no count line", "celeba_count", "count line"),
                                  ("count differs", "celeba_lines", "announces 3 images but lists 1"),
                                  ("a value of 0", "celeba_values", "1 or -1"),
                                  ("an image with no partition", "celeba_partition", "no partition for"),
                                  ("partition 7", "celeba_partition_value", "0|1|2"),
                                  ("no partition file", "celeba_no_partition_file", "partition file not found"),
                                  ("test images missing", "celeba_images", "missing from"),
                                  ("no test image", "celeba_no_test", "has no images"))],
    ("distill", "an empty --data folder", D(data="../empty"), R, "no images found"),
    ("distill", "one image (nothing to hold out)", D(data="../one"), R, "--val-data"),
    ("distill", "--val-every with --val-data", D("--val-data", "../photos", "--val-every", "3"), R, "--val-every"),
    ("distill", "--temperature with --task embedding", D("--temperature", "2"), R, "--temperature is for --task"),
    ("distill", "--normalize with --task classify", D("--normalize", task="classify"), R, "--normalize is for"),
    ("distill", "--label-weight 2", D("--label-weight", "2", task="classify"), R, "--label-weight"),
    ("distill", "a teacher file that is not a zip", D(teacher="../distill/teacher_bad.npz"), R, "teacher_bad.npz"),
    ("distill", "--resume of a classification run", ["distill", "--resume", "--output", "../runs/cls"], R,
     "classification run"),
    ("finetune", "truncated train_list.mat", F("../dogs_truncated"), R, "not a readable Stanford Dogs list"),
    ("finetune", "a text file as train_list.mat", F("../dogs_text"), R, "not a readable Stanford Dogs list"),
    ("finetune", "a breed with no images", F("../dogs_noclass"), R, "no training image"),
    ("finetune", "no image under Images/", F("../dogs_noimages"), R, "none of the listed images"),
    ("finetune", "test_list.mat missing", F("../dogs_notest"), R, "test_list.mat"),
    ("finetune", "one label on two breeds", F("../dogs_twobreeds"), R, "names two breed folders"),
    ("finetune", "data folder missing", F("../nope"), R, "not found"),
    ("finetune", "--body-lr-scale 2", F("../dogs", "--body-lr-scale", "2"), R, "--body-lr-scale"),
    ("finetune", "an empty data folder", F("../empty"), R, "empty"),
    ("faces crop", "input missing", ["faces", "crop", "../nope", "--output", "../out/faces"], R, "not found"),
    ("faces crop", "no images", ["faces", "crop", "../empty", "--output", "../out/faces"], R, "no images found"),
    ("faces crop", "--output is a file", ["faces", "crop", "../photos", "--output", "../notes.txt"], R,
     "is a file, not a folder"),
    ("faces crop", "--output is the input", ["faces", "crop", "../photos", "--output", "../photos"], R,
     "photo folder itself"),
    ("faces crop", "corrupt photos among good ones", ["faces", "crop", "../photos_bad", "--output", "../out/faces",
                                                      "--no-progress"], S, "3 unreadable"),
    ("convert", "file missing", ["convert", "nope.pb", "--output", "../out/m"], R, "nope.pb"),
    ("convert", "a text file", ["convert", "../notes.txt", "--output", "../out/m"], R, "--from"),
    ("convert", "an image", ["convert", "../one/a.jpg", "--output", "../out/m"], R, "--from"),
    ("convert", "--output not empty", ["convert", "../runs/cls", "--output", "../photos"], R, "--force"),
    ("convert", "--output is a file", ["convert", "../runs/cls", "--output", "../notes.txt"], R, "not a folder"),
    ("convert", "--from keras on a run folder", ["convert", "../runs/cls", "--from", "keras", "--output",
                                                 "../out/m"], R, "cls"),
    ("figures", "a geolocation run", ["figures", "../runs/geo", "--output", "../out/fig"], R, "geolocation run"),
    ("figures", "a folder holding only a geolocation run", ["figures", "../runs/folder_of_geo", "--output",
                                                            "../out/fig"], R, "image classifier"),
    ("figures", "a run folder that does not exist", ["figures", "../nope", "--output", "../out/fig"], R,
     "does not exist"),
    ("figures", "a folder of photos", ["figures", "../photos", "--output", "../out/fig"], R, "not a run folder"),
    ("figures", "a run with a broken config.json", ["figures", "../runs/broken", "--output", "../out/fig"], R,
     "config.json"),
    ("figures", "--output is a file", ["figures", "--output", "../notes.txt"], R, "--output"),
    ("train", "again on a finished run", T("../runs/cls"), R, r"to continue it run `.*--resume`; to start over"),
    ("train", "again on a run stopped before its first checkpoint", T("../runs/stopped"), R,
     r"stopped before its first checkpoint\): to continue it run `"),
    ("train", "--resume of an empty folder", [*T("../empty"), "--resume"], R, "nothing to resume"),
    ("train", "--resume without --output", ["train", "--resume"], R, "--output"),
    ("train", "--output is a file", T("../notes.txt"), R, "is a file"),
    ("train", "--resume of a geolocation run", [*T("../runs/geo"), "--resume"], R, "geolocation run"),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/results/2026-12-05-bad-inputs-rest.csv")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bad-inputs-"))
    try:
        world(root)
        rows, totals = [], {"ok": 0, "traceback": 0, "silently wrong": 0}
        for command, what, argv, expect, pattern in CASES:
            out_before = sorted(p.relative_to(root) for p in (root / "out").rglob("*"))
            done = mb(argv, root / "geo")
            err = [line for line in done.stderr.splitlines() if line.strip()]
            first = err[0] if err else (done.stdout.splitlines() or [""])[0]
            wrote = sorted(p.relative_to(root) for p in (root / "out").rglob("*")) != out_before
            stray = list(root.rglob("none.png"))  # `--plot none` is no plot, never a file named none.png
            if "Traceback (most recent call last)" in done.stderr:
                outcome = "traceback"
            elif expect == R:
                clean = done.returncode == 2 and len(err) == 1 and first.startswith("mobilenet: error: ")
                outcome = "ok" if clean and re.search(pattern, first) and not wrote else "silently wrong"
            else:
                said = re.search(pattern, done.stdout + done.stderr, re.M)
                outcome = "ok" if done.returncode == 0 and said and not stray else "silently wrong"
            shutil.rmtree(root / "out")
            (root / "out").mkdir()
            totals[outcome] += 1
            rows.append({"command": command, "input": what, "expected": expect, "exit": done.returncode,
                         "first_line": first.replace(str(root), "TMP")[:300], "outcome": outcome})
            print(f"{outcome:>14}  {done.returncode:>3}  mobilenet {command}: {what}: {rows[-1]['first_line'][:110]}",
                  flush=True)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        print(json.dumps({"cases": len(rows), **totals, "csv": args.out}))
        return 0 if totals["ok"] == len(rows) else 1
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
