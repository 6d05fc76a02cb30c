"""COCO evaluation: faster-coco-eval (the default backend) equals pycocotools' COCOeval to 1e-6;
both backends give hand-derived numbers on small hand-made cases; the wrapper's names, order and
per-class AP are checked against independent computations."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mobilenets.cli.main import main
from mobilenets.errors import DataNotFoundError, MobileNetsError
from mobilenets.tasks.detect.evaluate import STAT_NAMES, evaluate_files


def _ground_truth(path):
    """Three images, three categories (one without any box), a crowd box and a small object."""
    rng = np.random.default_rng(0)
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 200, "height": 160} for i in (1, 2, 3)]
    anns = []
    for img in images:
        for _ in range(4):
            w, h = rng.uniform(8, 90, 2)
            x, y = rng.uniform(0, 200 - w), rng.uniform(0, 160 - h)
            anns.append({"id": len(anns) + 1, "image_id": img["id"], "category_id": int(rng.integers(1, 3)),
                         "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
    anns.append({"id": 99, "image_id": 2, "category_id": 1, "bbox": [0, 0, 60, 60], "area": 3600, "iscrowd": 1})
    cats = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}, {"id": 7, "name": "never"}]
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return anns


def _results(anns, rng, classes=(1, 2, 7)):
    out = []
    for a in anns:
        x, y, w, h = a["bbox"]
        for _ in range(2):
            out.append({"image_id": a["image_id"], "category_id": int(rng.choice(classes)),
                        "bbox": [x + rng.normal(0, 4), y + rng.normal(0, 4), w * rng.uniform(0.7, 1.3),
                                 h * rng.uniform(0.7, 1.3)], "score": float(rng.random())})
    return out


def _pycocotools(ann_file, res_file, category=None):
    """pycocotools' 12 numbers of a non-empty results file, straight from its own API (over one
    category when ``category`` is given)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from mobilenets.utils.scoped import quiet_prints

    with quiet_prints():
        gt = COCO(str(ann_file))
        ev = COCOeval(gt, gt.loadRes(str(res_file)), "bbox")
        if category is not None:
            ev.params.catIds = [category]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return dict(zip(STAT_NAMES, ev.stats))


@pytest.mark.parametrize("kind", ["mixed", "one_class", "perfect", "one_image"])
def test_faster_coco_eval_equals_pycocotools(tmp_path, kind):
    """The default backend (faster-coco-eval, a separate C++ implementation) against pycocotools."""
    anns = _ground_truth(tmp_path / "ann.json")
    rng = np.random.default_rng(1)
    results = {"mixed": lambda: _results(anns, rng),
               "one_class": lambda: _results(anns, rng, classes=(2,)),
               "perfect": lambda: [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
                                    "score": 0.9} for a in anns if not a["iscrowd"]],
               "one_image": lambda: [r for r in _results(anns, rng) if r["image_id"] == 3]}[kind]()
    (tmp_path / "res.json").write_text(json.dumps(results))
    ours = evaluate_files(tmp_path / "ann.json", tmp_path / "res.json", backend="auto")
    reference = _pycocotools(tmp_path / "ann.json", tmp_path / "res.json")
    assert ours["backend"] == "faster_coco_eval"
    assert list(ours["stats"]) == list(STAT_NAMES)
    for name in STAT_NAMES:
        assert ours["stats"][name] == pytest.approx(reference[name], abs=1e-6), name
    if kind == "perfect":
        assert ours["stats"]["AP"] == pytest.approx(1.0) and set(ours["per_class"]) == {"a", "b"}
    else:
        assert 0 < ours["stats"]["AP"] < 1


def test_pycocotools_backend_plumbing(tmp_path):
    """With ``backend="pycocotools"`` the numbers are pycocotools' own; what is ours is the
    plumbing: the 12 names in COCO's order, per-class AP keyed by name for the classes with ground
    truth, each equal to COCOeval's AP over that one category, and AP their mean."""
    anns = _ground_truth(tmp_path / "ann.json")
    (tmp_path / "res.json").write_text(json.dumps(_results(anns, np.random.default_rng(4))))
    ours = evaluate_files(tmp_path / "ann.json", tmp_path / "res.json", backend="pycocotools")
    assert ours["backend"] == "pycocotools"
    assert list(ours["stats"]) == list(STAT_NAMES)
    assert set(ours["per_class"]) == {"a", "b"}  # "never" has no ground truth: no AP, not 0 or -1
    for name, category in (("a", 1), ("b", 2)):
        alone = _pycocotools(tmp_path / "ann.json", tmp_path / "res.json", category=category)
        assert ours["per_class"][name] == pytest.approx(alone["AP"], abs=1e-9), name
    assert abs(ours["per_class"]["a"] - ours["per_class"]["b"]) > 0.1  # swapped names would show
    assert ours["stats"]["AP"] == pytest.approx(np.mean(list(ours["per_class"].values())), abs=1e-9)


# Hand-made ground truth for numbers derived by hand. COCO's area ranges: small < 32^2 <= medium
# < 96^2 <= large; no box here is large. Category 7 has no box at all.
HAND_IMAGES = [{"id": 1, "width": 200, "height": 200}, {"id": 2, "width": 200, "height": 200}]
HAND_GT = [
    {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100, "iscrowd": 0},  # a, small
    {"id": 2, "image_id": 1, "category_id": 1, "bbox": [100, 100, 50, 50], "area": 2500, "iscrowd": 0},  # a, medium
    {"id": 3, "image_id": 2, "category_id": 2, "bbox": [100, 100, 50, 50], "area": 2500, "iscrowd": 0},  # b, medium
]
HAND_CATEGORIES = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}, {"id": 7, "name": "never"}]
_A = 25.5 / 101  # class a's AP in "graded": precision 1/2 at the 51 recall points 0, .01, ..., .5; 0 above
HAND_CASES = {
    # No detections: every AP and AR is 0 where there is ground truth; COCO reports -1 ("undefined")
    # for an area range without ground truth (large, here), not 0.
    "empty": ([], {"AP": 0, "AP50": 0, "AP75": 0, "APs": 0, "APm": 0, "APl": -1,
                   "AR1": 0, "AR10": 0, "AR100": 0, "ARs": 0, "ARm": 0, "ARl": -1}, {"a": 0, "b": 0}),
    # Every box found exactly: 1 everywhere with ground truth, except AR1: at most one detection per
    # image and category, so class a finds one of its two boxes in image 1 (0.5), class b 1 -> 0.75.
    "perfect": ([{"image_id": g["image_id"], "category_id": g["category_id"], "bbox": g["bbox"], "score": 0.9}
                 for g in HAND_GT],
                {"AP": 1, "AP50": 1, "AP75": 1, "APs": 1, "APm": 1, "APl": -1,
                 "AR1": 0.75, "AR10": 1, "AR100": 1, "ARs": 1, "ARm": 1, "ARl": -1}, {"a": 1, "b": 1}),
    # Class a: a false positive (score .95, small, far from everything), then its medium box found
    # exactly (.9); its small box missed. Precision 1/2 at recall 1/2 at every IoU -> AP _A; recall
    # 1/2, but 0 with one detection per image (the false positive comes first). Small range: only
    # the missed box counts (the found one is medium, ignored) -> 0. Medium range: the false
    # positive is small, ignored; the medium box found -> AP 1, AR 1.
    # Class b: its box found at IoU 50*36 / 50^2 = 0.72, a hit at thresholds .50-.70 (5 of 10) and
    # a miss at .75-.95 -> AP 1/2 (AP50 1, AP75 0), AR 1/2, no small box (-1, left out of the means).
    # Category 7: no ground truth, left out of every mean.
    "graded": ([{"image_id": 1, "category_id": 1, "bbox": [150, 0, 20, 20], "score": 0.95},
                {"image_id": 1, "category_id": 1, "bbox": [100, 100, 50, 50], "score": 0.9},
                {"image_id": 2, "category_id": 2, "bbox": [100, 100, 50, 36], "score": 0.8}],
               {"AP": (_A + 0.5) / 2, "AP50": (_A + 1) / 2, "AP75": (_A + 0) / 2, "APs": 0, "APm": (1 + 0.5) / 2,
                "APl": -1, "AR1": (0 + 0.5) / 2, "AR10": (0.5 + 0.5) / 2, "AR100": (0.5 + 0.5) / 2, "ARs": 0,
                "ARm": (1 + 0.5) / 2, "ARl": -1}, {"a": _A, "b": 0.5}),
}


@pytest.mark.parametrize("case", sorted(HAND_CASES))
@pytest.mark.parametrize("backend", ["faster_coco_eval", "pycocotools"])
def test_hand_known_numbers(tmp_path, backend, case):
    results, stats, per_class = HAND_CASES[case]
    (tmp_path / "ann.json").write_text(json.dumps({"images": HAND_IMAGES, "annotations": HAND_GT,
                                                   "categories": HAND_CATEGORIES}))
    (tmp_path / "res.json").write_text(json.dumps(results))
    ours = evaluate_files(tmp_path / "ann.json", tmp_path / "res.json", backend=backend)
    assert ours["backend"] == backend and ours["detections"] == len(results)
    assert list(ours["stats"]) == list(STAT_NAMES)
    assert ours["stats"] == pytest.approx(stats, abs=1e-9)
    assert ours["per_class"] == pytest.approx(per_class, abs=1e-9)


@pytest.mark.parametrize("backend", ["faster_coco_eval", "pycocotools"])
def test_no_ground_truth_is_undefined_everywhere(tmp_path, backend):
    """Detections, but no category has a box: every one of the 12 numbers is COCO's -1, no class AP."""
    (tmp_path / "ann.json").write_text(json.dumps({"images": HAND_IMAGES, "annotations": [],
                                                   "categories": HAND_CATEGORIES}))
    (tmp_path / "res.json").write_text(json.dumps(HAND_CASES["graded"][0]))
    ours = evaluate_files(tmp_path / "ann.json", tmp_path / "res.json", backend=backend)
    assert ours["stats"] == dict.fromkeys(STAT_NAMES, -1.0) and ours["per_class"] == {}


def test_cli_scores_a_results_file_with_the_twelve_names(tmp_path, capsys):
    anns = _ground_truth(tmp_path / "ann.json")
    (tmp_path / "res.json").write_text(json.dumps(_results(anns, np.random.default_rng(2))))
    assert main(["detect", "eval", "--annotations", str(tmp_path / "ann.json"), "--results",
                 str(tmp_path / "res.json"), "--json", "--plot", str(tmp_path / "pr.png")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert list(printed) == list(STAT_NAMES)
    reference = _pycocotools(tmp_path / "ann.json", tmp_path / "res.json")
    for name in STAT_NAMES:  # all 12 printed numbers, not only AP
        assert printed[name] == pytest.approx(reference[name], abs=1e-6), name
    assert 0 < printed["AP"] < 1  # a results file that is neither empty nor perfect
    assert (tmp_path / "pr.png").stat().st_size > 5000


def test_bad_results_are_one_clear_error(tmp_path, capsys):
    _ground_truth(tmp_path / "ann.json")
    (tmp_path / "res.json").write_text(json.dumps([{"image_id": 42, "category_id": 1, "bbox": [0, 0, 1, 1],
                                                    "score": 1.0}]))
    with pytest.raises(MobileNetsError, match="image_id 42"):
        evaluate_files(tmp_path / "ann.json", tmp_path / "res.json")
    with pytest.raises(DataNotFoundError):
        evaluate_files(tmp_path / "ann.json", tmp_path / "missing.json")
    assert main(["detect", "eval", "--annotations", str(tmp_path / "ann.json"), "--results",
                 str(tmp_path / "res.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mobilenet: error:") and len(err.strip().splitlines()) == 1
    assert main(["detect", "eval", "--annotations", str(tmp_path / "ann.json")]) == 2
