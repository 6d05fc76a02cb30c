"""The detection bad-input sweep (issue 24): bad inputs tried as a new user would, through the
``mobilenet`` command's entry point (in this process, or each in its own process with ``--fresh``), with the exit status and the first line on stderr (for a command that
succeeds: its first line saying what was skipped or reported) recorded in a CSV.

    python benchmarks/bad_inputs_detect.py --output docs/results/2026-12-05-bad-inputs-detect.csv

Everything it needs is made in a temporary folder: tiny COCO and VOC folders with real image
files, a 1-epoch SSD run on the built-in stand-in (4 images of 64 px), a MobileNet classifier
file and the run's ONNX export. It prints the counts: cases, refused (exit != 0), handled with
exit 0, tracebacks, refusals with more than one stderr line, lines with a ``name=`` form, refusals
that left their ``--output`` behind.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import traceback
import warnings
from pathlib import Path

from _cli import ScriptParser

# the bad-input tests' helpers: the same name= check, the same renamed copy of a COCO folder
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from badinput_helpers import KEYWORD_FORM, renamed_categories  # noqa: E402

CATS = [{"id": 1, "name": "circle"}, {"id": 2, "name": "square"}]
SKIP_LINE = re.compile(r"skipped|not scored|not categories|no usable|reported|without validation")


def image(path: Path, w: int = 32, h: int = 24) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (w, h), (120, 60, 30)).save(path)
    return path


def box(i, cat=1, b=(2, 2, 10, 10), image_id=1):
    return {"id": i, "image_id": image_id, "category_id": cat, "bbox": list(b)}


GOOD = [box(1), box(2, 2, (4, 4, 8, 8), 2)]


def coco(root: Path, images=None, annotations=None, categories=None, split="train", files=True, doc=None,
         real=None) -> Path:
    images = [(1, "a.png", 32, 24), (2, "b.png", 32, 24)] if images is None else images
    if doc is None:
        doc = {"images": [{"id": i, "file_name": f, "width": w, "height": h} for i, f, w, h in images],
               "annotations": GOOD if annotations is None else annotations,
               "categories": CATS if categories is None else categories}
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / f"instances_{split}.json").write_text(doc if isinstance(doc, str) else json.dumps(doc))
    (root / split).mkdir(exist_ok=True)
    for _, f, w, h in images if files else ():
        image(root / split / f, *(real or (w, h)))
    return root


def voc(root: Path, xml: dict[str, str], listed=None) -> Path:
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    for stem, text in xml.items():
        (root / "Annotations" / f"{stem}.xml").write_text(text.replace("{stem}", stem))
        image(root / "JPEGImages" / f"{stem}.jpg")
    (root / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "Main" / "train.txt").write_text("\n".join(listed or xml) + "\n")
    return root


def obj(name="circle", b=(3, 3, 12, 12), difficult=0):
    return (f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}"
            f"</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>")


def xml(*objects, size="<size><width>32</width><height>24</height></size>"):
    return f"<annotation><filename>{{stem}}.jpg</filename>{size}{''.join(objects)}</annotation>"


def mobilenet(args, cwd: Path, fresh: bool = False) -> subprocess.CompletedProcess:
    """``mobilenet ARGS``: its own process with ``fresh``, else the same entry point
    (:func:`mobilenets.cli.main.main`) in this process, stdout and stderr captured (a fresh
    process costs seconds of imports a case); an exception escaping ``main`` is recorded as the
    traceback the user would see."""
    args = [str(a) for a in args]
    if fresh:
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        return subprocess.run([sys.executable, "-m", "mobilenets", *args], cwd=cwd, env=env, capture_output=True,
                              text=True, timeout=600)
    from mobilenets.cli.main import main as cli_main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            code = cli_main(args)
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # noqa: BLE001 - what would reach the user as a traceback
            err.write(traceback.format_exc())
            code = 1
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def cases(t: Path, run: Path, classifier: Path, onnx: Path) -> list[tuple[str, str, list]]:
    """``(command, input, argv)`` of every case; the data are written as the list is built."""
    out: list[tuple[str, str, list]] = []
    n = iter(range(1000))

    def train(what, data, *extra):
        out.append(("detect train", what, ["detect", "train", "--data", data, "--output", t / f"run{next(n)}",
                                           "--epochs", "1", "--warmup-epochs", "0", "--no-progress", *extra]))

    def d(name):
        return t / f"data-{name}"

    train("data folder that does not exist", t / "nowhere")
    train("the instances JSON file instead of its folder", coco(t / "data-json") / "annotations" / "instances_train.json")
    (t / "empty").mkdir()
    train("empty folder", t / "empty")
    train("COCO: every box of zero width or height", coco(d(1), annotations=[box(1, b=(2, 2, 0, 5)), box(2, b=(3, 3, 4, -1))]))
    train("COCO: declared sizes 10x the files (boxes inside the declared size only)",
          coco(d(2), images=[(1, "a.png", 320, 240)], annotations=[box(1, b=(100, 100, 50, 50))], real=(32, 24)))
    train("COCO: every box far outside the real image", coco(d(3), annotations=[box(1, b=(200, 200, 50, 50))]))
    train("COCO: no annotations", coco(d(4), annotations=[]))
    train("COCO: no images", coco(d(5), images=[], annotations=[]))
    train("COCO: every category id unknown", coco(d(6), annotations=[box(1, cat=7)]))
    train("COCO: annotations of image ids that do not exist", coco(d(7), annotations=[box(1, image_id=40)]))
    train("COCO: bbox a string", coco(d(8), annotations=[{**box(1), "bbox": "2,2,10,10"}]))
    train("COCO: bbox of 3 numbers", coco(d(9), annotations=[{**box(1), "bbox": [2, 2, 10]}]))
    train("COCO: bbox with NaN", coco(d(10), doc=json.dumps({"images": [{"id": 1, "file_name": "a.png"}],
                                                              "annotations": [{**box(1), "bbox": [float("nan"), 1, 2, 3]}],
                                                              "categories": CATS})))
    train("COCO: only crowd regions", coco(d(11), annotations=[{**box(1), "iscrowd": 1}]))
    train("COCO: two images share an id", coco(d(12), images=[(1, "a.png", 32, 24), (1, "b.png", 32, 24)]))
    train("COCO: two image ids name one file", coco(d(13), images=[(1, "a.png", 32, 24), (2, "a.png", 32, 24)]))
    train("COCO: two categories share an id",
          coco(d(14), categories=[{"id": 1, "name": "circle"}, {"id": 1, "name": "square"}]))
    train("COCO: one category name under two ids",
          coco(d(15), categories=[{"id": 1, "name": "circle"}, {"id": 2, "name": "circle"}]))
    train("COCO: a category without a name", coco(d(16), categories=[{"id": 1}]))
    train("COCO: category ids as strings", coco(d(17), categories=[{"id": "1", "name": "circle"}]))
    train("COCO: annotations is an object", coco(d(18), doc={"images": [], "annotations": {}, "categories": CATS}))
    train("COCO: the file is a JSON list", coco(d(19), doc=[1, 2]))
    train("COCO: the file is not JSON", coco(d(20), doc="{images: ["))
    train("COCO: the file is empty", coco(d(21), doc=""))
    train("COCO: no 'images' key", coco(d(22), doc={"annotations": [], "categories": CATS}))
    train("COCO: every image file missing", coco(d(23), files=False))
    bad_files = coco(d(24), files=False)
    for f in ("a.png", "b.png"):
        (bad_files / "train" / f).write_text("not a picture")
    train("COCO: image files that are text", bad_files)
    no_folder = coco(d(25))
    for f in (no_folder / "train").iterdir():
        f.unlink()
    (no_folder / "train").rmdir()
    train("COCO: image folder missing", no_folder)
    train("COCO: only a val split", coco(d(26), split="val"))
    train("COCO: an image record without file_name", coco(d(27), doc={"images": [{"id": 1}], "annotations": [],
                                                                       "categories": CATS}))
    train("COCO: an image id that is a list", coco(d(28), doc={"images": [{"id": [1], "file_name": "a.png"}],
                                                               "annotations": [], "categories": CATS}))
    train("COCO: boolean bbox values", coco(d(29), annotations=[{**box(1), "bbox": [True, 1, 5, 5]}]))
    train("VOC: every XML broken", voc(d(30), {"a": "<annotation><size>", "b": "not xml"}))
    train("VOC: a box coordinate that is a word", voc(d(31), {"a": xml(obj(b=(3, 3, "x", 9)))}))
    train("VOC: only difficult objects", voc(d(32), {"a": xml(obj(difficult=1))}))
    train("VOC: train.txt names images without XML", voc(d(33), {"a": xml(obj())}, ["gone1", "gone2"]))
    train("VOC: declared size 10x the JPEG's", voc(d(34), {"a": xml(obj(), size="<size><width>320</width>"
                                                                          "<height>240</height></size>")}))
    train("VOC: no object names", voc(d(35), {"a": xml(obj(name=""))}))
    train("VOC: Annotations/ but no ImageSets", voc(d(36), {"a": xml(obj())}, []))
    (d(36) / "ImageSets" / "Main" / "train.txt").unlink()
    (t / "runfile").write_text("x")
    out.append(("detect train", "--output names an existing file",
                ["detect", "train", "--data", coco(d(37)), "--output", t / "runfile", "--epochs", "1"]))
    out.append(("detect train", "--output holds a run already",
                ["detect", "train", "--data", coco(d(38)), "--output", run, "--epochs", "1", "--warmup-epochs", "0"]))
    out.append(("detect train", "--init a detection run",
                ["detect", "train", "--data", coco(d(39)), "--init", run, "--output", t / "r-init", "--epochs", "1",
                 "--warmup-epochs", "0"]))
    train("--detector yolo", coco(d(43)), "--detector", "yolo")
    train("--resolution 0", coco(d(44)), "--resolution", "0")
    train("--batch-size larger than the training set", coco(d(45)), "--batch-size", "8")
    out.append(("detect export", "--calibration without --int8",
                ["detect", "export", "--checkpoint", run, "--output", t / "x4", "--calibration", t / "empty"]))
    mixed = coco(d(40), images=[(1, "a.png", 32, 24), (2, "b.png", 32, 24), (3, "c.png", 32, 24)],
                 annotations=[*GOOD, box(3, b=(0, 0, 0, 4), image_id=3), box(4, cat=9, image_id=3),
                              box(5, b=(30, 20, 40, 40), image_id=3), {**box(6), "id": 7}])
    train("COCO: usable boxes beside bad ones (skip, count, list)", mixed, "--alpha", "0.25", "--resolution", "64",
          "--batch-size", "2", "--eval-batch-size", "2")

    data = run.parent / "data"
    base = ["detect", "eval", "--checkpoint", run, "--no-progress"]
    gone = shutil.copytree(data, t / "gone-data")  # a run trained on a folder since deleted
    moved = t / "moved-run"
    made = mobilenet(["detect", "train", "--data", gone, "--alpha", "0.25", "--resolution", "64", "--epochs", "1",
                      "--batch-size", "4", "--warmup-epochs", "0", "--output", moved, "--no-progress"], t)
    assert made.returncode == 0, made.stderr
    shutil.rmtree(gone)
    renamed = renamed_categories(data, t / "eval-renamed",
                                 {n: f"not-{n}" for n in ("circle", "square", "triangle", "cross")})
    out += [
        ("detect eval", "--checkpoint that does not exist", ["detect", "eval", "--checkpoint", t / "nope"]),
        ("detect eval", "--checkpoint a classifier weights file", ["detect", "eval", "--checkpoint", classifier]),
        ("detect eval", "--checkpoint an empty folder", ["detect", "eval", "--checkpoint", t / "empty"]),
        ("detect eval", "--data with no category name in common", base + ["--data", renamed]),
        ("detect eval", "--data with category ids in another order (scored by name)",
         base + ["--data", renamed_categories(data, t / "eval-flip", {}), "--output", t / "e1"]),
        ("detect eval", "--data where one category has another name",
         base + ["--data", renamed_categories(data, t / "eval-one", {"circle": "disc"}), "--output", t / "e2"]),
        ("detect eval", "--data whose val file names a category unlike its train file",
         base + ["--data", _val_renamed(data, t / "eval-val", {"circle": "disc"}), "--output", t / "e3"]),
        ("detect eval", "--output names an existing file", base + ["--output", t / "runfile"]),
        ("detect eval", "--output is the run folder", base + ["--output", run]),
        ("detect eval", "--output under a file", base + ["--output", t / "runfile" / "x"]),
        ("detect eval", "--split val of data with only train", base + ["--data", coco(d(41))]),
        ("detect eval", "--data whose val has no usable box",
         base + ["--data", coco(d(42), split="val", annotations=[box(1, b=(1, 1, 0, 0))])]),
        ("detect eval", "--annotations without --results", ["detect", "eval", "--annotations", t / "runfile"]),
        ("detect eval", "--annotations not JSON",
         ["detect", "eval", "--annotations", t / "runfile", "--results", t / "runfile"]),
        ("detect eval", "--results naming a category the annotations lack",
         ["detect", "eval", "--annotations", data / "annotations" / "instances_val.json", "--results",
          _write(t / "res.json", [{"image_id": 1, "category_id": 55, "bbox": [1, 1, 2, 2], "score": 0.5}])]),
        ("detect eval", "--checkpoint with --results", base + ["--results", t / "res.json"]),
        ("detect predict", "--checkpoint the run's exported model.onnx",
         ["detect", "predict", t / "p.png", "--checkpoint", onnx]),
        ("detect eval", "a run whose recorded data folder is gone", ["detect", "eval", "--checkpoint", moved]),
        ("detect predict", "--draw naming a folder", ["detect", "predict", t / "p.png", "--checkpoint", run, "--draw",
                                                      t / "empty"]),
        ("detect predict", "--draw under a file", ["detect", "predict", t / "p.png", "--checkpoint", run, "--draw",
                                                   t / "runfile" / "x.png"]),
        ("detect eval", "--plot naming a folder", ["detect", "eval", "--annotations", data / "annotations" /
                                                   "instances_val.json", "--results", t / "res.json", "--plot",
                                                   t / "empty"]),
        ("detect eval", "--plot under a file", ["detect", "eval", "--annotations", data / "annotations" /
                                                "instances_val.json", "--results", t / "res.json", "--plot",
                                                t / "runfile" / "x.png"]),
        ("detect eval", "--annotations naming a folder", ["detect", "eval", "--annotations", t / "empty", "--results",
                                                          t / "res.json"]),
        ("detect eval", "--split test", base + ["--split", "test"]),
        ("detect eval", "--backend cocoapi", base + ["--backend", "cocoapi"]),
        ("detect predict", "--score 2", ["detect", "predict", t / "p.png", "--checkpoint", run, "--score", "2"]),
        ("detect predict", "--checkpoint a classifier", ["detect", "predict", image(t / "p.png"), "--checkpoint",
                                                         classifier]),
        ("detect predict", "an image that does not exist", ["detect", "predict", t / "gone.png", "--checkpoint", run]),
        ("detect predict", "a text file as the image", ["detect", "predict", t / "runfile", "--checkpoint", run]),
        ("detect export", "--output names an existing file",
         ["detect", "export", "--checkpoint", run, "--output", t / "runfile", "--formats", "onnx"]),
        ("detect export", "--output under a file",
         ["detect", "export", "--checkpoint", run, "--output", t / "runfile" / "x", "--formats", "onnx"]),
        ("detect export", "--checkpoint a classifier",
         ["detect", "export", "--checkpoint", classifier, "--output", t / "x1", "--formats", "onnx"]),
        ("detect export", "--formats pb",
         ["detect", "export", "--checkpoint", run, "--output", t / "x2", "--formats", "pb"]),
        ("eval", "--checkpoint a detection run", ["eval", "--checkpoint", run]),
        ("predict", "--checkpoint a detection run", ["predict", "--checkpoint", run, t / "p.png"]),
        ("predict", "--checkpoint a detection run's best.safetensors",
         ["predict", "--checkpoint", run / "best.safetensors", t / "p.png"]),
        ("export", "--checkpoint a detection run", ["export", "--checkpoint", run, "--output", t / "x3.onnx"]),
        ("predict", "--checkpoint a detector's model.onnx", ["predict", "--checkpoint", onnx, t / "p.png"]),
        ("eval", "--checkpoint a detector's model.onnx", ["eval", "--checkpoint", onnx]),
    ]
    return out


def _write(path: Path, doc) -> Path:
    path.write_text(json.dumps(doc))
    return path


def _val_renamed(src: Path, dst: Path, names: dict[str, str]) -> Path:
    shutil.copytree(src, dst)
    path = dst / "annotations" / "instances_val.json"
    doc = json.loads(path.read_text())
    doc["categories"] = [{**c, "name": names.get(c["name"], c["name"])} for c in doc["categories"]]
    path.write_text(json.dumps(doc))
    return dst


def first_line(result: subprocess.CompletedProcess) -> str:
    err = [line for line in result.stderr.splitlines() if line.strip()]
    if result.returncode != 0:
        return err[0] if err else "(no stderr)"
    said = [line for line in (result.stdout + "\n" + result.stderr).splitlines() if SKIP_LINE.search(line)]
    return said[0] if said else (result.stdout.splitlines() or ["(no output)"])[0]


def main() -> None:
    parser = ScriptParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default="docs/results/2026-12-05-bad-inputs-detect.csv", help="CSV to write")
    parser.add_argument("--fresh", action="store_true", help="each case in its own process (slower: seconds of "
                                                             "imports a case; default: in this process)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bad-detect-") as tmp:
        t = Path(tmp)
        from mobilenets.models.config import MobileNetConfig
        from mobilenets.models.mobilenet import MobileNet
        from mobilenets.tasks.detect.standin import write_standin
        from mobilenets.weights.checkpoint import save_weights

        data = write_standin(t / "std" / "data", seed=5, train=4, val=3, size=64)
        run = t / "std" / "run"
        made = mobilenet(["detect", "train", "--data", data, "--alpha", "0.25", "--resolution", "64", "--epochs", "1",
                          "--batch-size", "4", "--warmup-epochs", "0", "--output", run, "--no-progress"], t)
        assert made.returncode == 0, made.stderr
        exported = mobilenet(["detect", "export", "--checkpoint", run, "--output", t / "exp", "--formats", "onnx"], t)
        assert exported.returncode == 0, exported.stderr
        classifier = t / "classifier.safetensors"
        save_weights(MobileNet(MobileNetConfig(alpha=0.25, resolution=32, num_classes=3)), classifier)
        rows, counts = [], {"cases": 0, "refused": 0, "exit 0": 0, "tracebacks": 0, "multi-line refusals": 0,
                            "name= forms": 0, "refusals that wrote their --output": 0}
        for command, what, argv in cases(t, run, classifier, t / "exp" / "model.onnx"):
            target = Path(str(argv[argv.index("--output") + 1])) if "--output" in argv else None
            existed = target is None or target.exists()
            result = mobilenet(argv, t, args.fresh)
            counts["refusals that wrote their --output"] += bool(result.returncode and not existed and target.exists())
            line = first_line(result).replace(tmp, "$TMP")
            err = [x for x in result.stderr.splitlines() if x.strip()]
            counts["cases"] += 1
            counts["refused" if result.returncode else "exit 0"] += 1
            counts["tracebacks"] += "Traceback" in result.stderr
            counts["multi-line refusals"] += bool(result.returncode and len(err) != 1)
            counts["name= forms"] += bool(KEYWORD_FORM.search(line))
            rows.append({"command": command, "input": what, "exit": result.returncode, "first_line": line})
            print(f"{result.returncode:3d}  {command:15s} {what[:50]:50s} {line[:110]}", flush=True)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    with open(args.output, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["command", "input", "exit", "first_line"])
        writer.writeheader()
        writer.writerows(rows)
    print("; ".join(f"{k}: {v}" for k, v in counts.items()))


if __name__ == "__main__":
    main()
