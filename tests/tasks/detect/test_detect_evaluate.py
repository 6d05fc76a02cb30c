"""COCO evaluation: our 12 numbers equal pycocotools' COCOeval on the same files (to 1e-6)."""

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


def _pycocotools(ann_file, res_file):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from mobilenets.utils.scoped import quiet_prints

    with quiet_prints():
        gt = COCO(str(ann_file))
        results = json.loads(res_file.read_text())
        if results:
            dt = gt.loadRes(str(res_file))
        else:  # pycocotools cannot load an empty list: an empty set of detections by hand
            dt = COCO()
            dt.dataset = {"images": gt.dataset["images"], "categories": gt.dataset["categories"], "annotations": []}
            dt.createIndex()
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return dict(zip(STAT_NAMES, ev.stats))


@pytest.mark.parametrize("kind", ["mixed", "one_class", "empty", "perfect", "one_image"])
@pytest.mark.parametrize("backend", ["auto", "pycocotools"])
def test_twelve_numbers_equal_pycocotools(tmp_path, kind, backend):
    anns = _ground_truth(tmp_path / "ann.json")
    rng = np.random.default_rng(1)
    results = {"mixed": lambda: _results(anns, rng),
               "one_class": lambda: _results(anns, rng, classes=(2,)),
               "empty": lambda: [],
               "perfect": lambda: [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
                                    "score": 0.9} for a in anns if not a["iscrowd"]],
               "one_image": lambda: [r for r in _results(anns, rng) if r["image_id"] == 3]}[kind]()
    (tmp_path / "res.json").write_text(json.dumps(results))
    ours = evaluate_files(tmp_path / "ann.json", tmp_path / "res.json", backend=backend)
    reference = _pycocotools(tmp_path / "ann.json", tmp_path / "res.json")
    assert ours["backend"] == ("faster_coco_eval" if backend == "auto" else "pycocotools")
    assert list(ours["stats"]) == list(STAT_NAMES)
    for name in STAT_NAMES:
        assert ours["stats"][name] == pytest.approx(reference[name], abs=1e-6), name
    if kind == "perfect":
        assert ours["stats"]["AP"] == pytest.approx(1.0) and set(ours["per_class"]) == {"a", "b"}
    if kind == "empty":
        assert ours["stats"]["AP"] == 0.0


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
