"""`mobilenet detect ...` end to end on a tiny stand-in: train, eval, predict, export, anchors."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from mobilenets.cli.main import main
from mobilenets.tasks.detect.anchors import anchors_table, ssd_anchors, ssd_feature_map_sizes
from mobilenets.tasks.detect.standin import write_standin


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 2-epoch SSD run on 8 images, with one bad annotation in the training set."""
    root = tmp_path_factory.mktemp("cli")
    data = write_standin(root / "data", seed=2, train=8, val=4, size=64)
    doc = json.loads((data / "annotations" / "instances_train.json").read_text())
    doc["annotations"].append({"id": 999, "image_id": 1, "category_id": 1, "bbox": [60, 60, 30, 30]})
    (data / "annotations" / "instances_train.json").write_text(json.dumps(doc))
    code = main(["detect", "train", "--data", str(data), "--alpha", "0.25", "--resolution", "64", "--epochs", "2",
                 "--batch-size", "4", "--warmup-epochs", "0", "--output", str(root / "run"), "--no-progress",
                 "--eval-batch-size", "4"])
    assert code == 0
    return root / "run"


def test_anchors_json_is_every_anchor_in_tf_order(capsys):
    assert main(["detect", "anchors", "--detector", "ssd", "--resolution", "300", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["count"] == 1917 == len(doc["anchors"]) and doc["format"] == "normalised [cy, cx, h, w]"
    assert np.allclose(doc["anchors"], ssd_anchors(ssd_feature_map_sizes(300)).numpy(), atol=1e-6)
    grid = anchors_table("faster_rcnn", 300)
    assert grid["count"] == 19 * 19 * 12
    # TF's grid anchors: the first location at (0, 0), ratio 0.5 (w/h) outer, scale 0.25 x 256 inner
    assert grid["anchors"][0] == pytest.approx([0, 0, 64 / 0.5 ** 0.5 / 300, 64 * 0.5 ** 0.5 / 300], abs=1e-6)
    assert grid["anchors"][11] == pytest.approx([0, 0, 512 / 2 ** 0.5 / 300, 512 * 2 ** 0.5 / 300], abs=1e-6)
    assert grid["anchors"][12][:2] == pytest.approx([0, 16 / 300], abs=1e-6)  # the next column
    assert main(["detect", "anchors", "--resolution", "8"]) == 2


def test_run_folder(run, capsys):
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and all("val_AP50" in r and "val_AR100" in r for r in rows)
    assert "box outside the image" in (run / "bad_annotations.txt").read_text()
    assert (run / "curves.png").stat().st_size > 5000
    config = json.loads((run / "config.json").read_text())
    assert config["task"] == "detection" and config["classes"] == ["circle", "square", "triangle", "cross"]
    assert config["model"]["backbone"]["alpha"] == 0.25 and config["model"]["resolution"] == 64
    assert config["model"]["backbone"]["bn_momentum"] == 0.03  # the detector's, not MobileNetConfig's 0.1


def _loop_accumulator(model, meta, split):
    """What the training loop's validation accumulates for ``model`` over ``split``: the task's
    DetectionMetrics, fed by the one inference loop as ``fit``'s validation feeds it."""
    import torch
    from torch.utils.data import DataLoader

    from mobilenets.infer import StepContext, run_batches
    from mobilenets.tasks.detect.config import DetectorConfig
    from mobilenets.tasks.detect.task import DetectionTask

    task = DetectionTask(DetectorConfig.from_dict(meta["model"]), None, category_ids=meta["category_ids"],
                         class_names=meta["classes"])
    metrics = task.new_metrics()
    loader = DataLoader(task.eval_dataset(split), batch_size=4, collate_fn=task.collate)
    run_batches(model, loader, metrics.update, StepContext(torch.device("cpu")), task=task)
    return metrics


def _resized_val(src, dst, width=96, height=80):
    """A copy of the stand-in ``src`` whose val images are ``width x height`` (not the detector's
    square input size, nor square), annotations scaled with them."""
    import shutil

    from PIL import Image

    shutil.copytree(src, dst)
    ann = dst / "annotations" / "instances_val.json"
    doc = json.loads(ann.read_text())
    for image in doc["images"]:
        sx, sy = width / image["width"], height / image["height"]
        Image.open(dst / "val" / image["file_name"]).resize((width, height)).save(dst / "val" / image["file_name"])
        for a in doc["annotations"]:
            if a["image_id"] == image["id"]:
                x, y, w, h = a["bbox"]
                a["bbox"], a["area"] = [x * sx, y * sy, w * sx, h * sy], w * sx * h * sy
        image["width"], image["height"] = width, height
    ann.write_text(json.dumps(doc))
    return dst


def test_eval_reloads_and_agrees_with_the_loop(run, tmp_path, capsys):
    """``detect eval`` finds the same detections, in original image coordinates and with the
    data's category ids, as the training loop's validation saw for the same weights."""
    from mobilenets.tasks.detect.data import load_splits
    from mobilenets.tasks.detect.run import eval_checkpoint, load_detector

    model, meta = load_detector(run / "last.safetensors")
    # 1. the accumulator below is what the loop recorded: re-run on the run's own val split, it
    # gives the last epoch's numbers (the same weights: last.safetensors is saved after that pass)
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    own = _loop_accumulator(model, meta, load_splits(run.parent / "data")["val"]).compute()
    assert {k: own[k] for k in own if k != "images"} == pytest.approx(
        {k[4:]: v for k, v in last.items() if k.startswith("val_")}, abs=1e-6)

    # 2. on images of another size and shape than the detector's input (96 x 80 vs 64 x 64), so
    # that mapping boxes back to the original image (x by 1.5, y by 1.25) is not the identity
    data = _resized_val(run.parent / "data", tmp_path / "data")
    split = load_splits(data)["val"]
    seen = _loop_accumulator(model, meta, split)
    result = eval_checkpoint(str(run / "last.safetensors"), str(data), output=str(tmp_path / "eval"), batch_size=4,
                             log=lambda line: None)
    found = json.loads((tmp_path / "eval" / "detections.json").read_text())
    assert result["images"] == 4 and result["detections"] == len(found) == len(seen.results) > 0

    # the loop's ground truth (targets mapped back by original_scale) is the annotations file's
    ids = sorted(img["id"] for img in split.coco["images"])  # the dataset's order, the accumulator's 1..N
    cat = meta["category_ids"]
    by_image = {i: [] for i in ids}
    for a in split.coco["annotations"]:
        by_image[a["image_id"]].append((a["category_id"], a["bbox"]))
    mine = {i: [] for i in ids}
    for a in seen.annotations:
        mine[ids[a["image_id"] - 1]].append((cat[a["category_id"] - 1], a["bbox"]))
    assert sum(map(len, by_image.values())) > 0
    for i in ids:
        assert [c for c, _ in mine[i]] == [c for c, _ in by_image[i]]
        assert np.allclose([b for _, b in mine[i]], [b for _, b in by_image[i]], atol=1e-3)

    # every detection the same, image by image and in order: box, score, category id
    for i in ids:
        theirs = [r for r in found if r["image_id"] == i]
        loop = [r for r in seen.results if ids[r["image_id"] - 1] == i]
        assert [r["category_id"] for r in theirs] == [cat[r["category_id"] - 1] for r in loop]
        assert np.allclose([r["bbox"] for r in theirs], [r["bbox"] for r in loop], atol=1e-5, rtol=0)
        assert np.allclose([r["score"] for r in theirs], [r["score"] for r in loop], atol=1e-5, rtol=0)
    # and so the same numbers (areas aside: the loop has box areas, the file mask areas)
    loop_stats = seen.compute()
    for key in ("AP", "AP50", "AP75", "AR1", "AR10", "AR100"):
        assert result["stats"][key] == pytest.approx(loop_stats[key], abs=1e-6), key

    assert main(["detect", "eval", "--checkpoint", str(run), "--json", "--no-progress"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert list(stats)[:3] == ["AP", "AP50", "AP75"] and len(stats) == 12
    # its own folder, named after the data and split: never over the run's files
    assert (run / "eval-data-val" / "pr.png").stat().st_size > 5000
    assert (run / "eval-data-val" / "detections.json").is_file() and not (run / "detections.json").exists()


def test_predict_draws_labelled_boxes(run, tmp_path, capsys):
    from PIL import Image

    photo = tmp_path / "photo.png"
    Image.open(next((run.parent / "data" / "val").glob("*.jpg"))).resize((96, 80)).save(photo)
    assert main(["detect", "predict", str(photo), "--checkpoint", str(run), "--score", "0", "--draw",
                 str(tmp_path / "drawn.png"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out[0]["width"] == 96 and 0 < len(out[0]["detections"]) <= 100
    for d in out[0]["detections"]:
        assert 0 <= d["score"] <= 1 and d["label"] in ("circle", "square", "triangle", "cross")
        assert 0 <= d["box"][0] <= d["box"][2] <= 96 and 0 <= d["box"][1] <= d["box"][3] <= 80
    assert Image.open(tmp_path / "drawn.png").size == (96, 80)
    assert main(["detect", "predict", str(photo), "--checkpoint", str(run), "--score", "0"]) == 0  # text by default
    text = capsys.readouterr().out.splitlines()
    assert text[0] == f"{photo} (96x80): {len(out[0]['detections'])} detection(s)"
    assert len(text) == 1 + len(out[0]["detections"])
    assert main(["detect", "predict", str(tmp_path / "missing.jpg"), "--checkpoint", str(run)]) == 2


def test_export_with_a_failing_check_exits_2_in_one_line_and_writes_nothing(run, tmp_path, capsys, monkeypatch):
    """The classifier export's failure policy: a check that fails (here: a box tolerance no file
    can meet) is one line on stderr, exit status 2, and no file: no output folder, no staging
    folder beside it (a folder that already holds files: tests/deploy/test_ort_and_outputs.py)."""
    import mobilenets.tasks.detect.export as exporter

    monkeypatch.setattr(exporter, "BOX_TOLERANCE", -1.0)
    out = tmp_path / "exp"
    assert main(["detect", "export", "--checkpoint", str(run), "--output", str(out), "--formats", "onnx"]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1, captured.err
    assert "model.onnx: fp32 vs eager" in err[0] and "(tolerance -1)" in err[0] and "nothing written" in err[0]
    assert "wrote" not in captured.out
    assert not out.exists() and os.listdir(tmp_path) == []


@pytest.mark.slow
def test_export_onnx_fp32_and_int8(run, tmp_path, capsys):
    calibration = run.parent / "data" / "train"  # a folder of images, as `mobilenet export --calibration DIR`
    assert main(["detect", "export", "--checkpoint", str(run), "--output", str(tmp_path / "exp"), "--int8",
                 "--calibration", str(calibration), "--calibration-images", "4", "--formats", "onnx", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    fp32, int8 = result["files"]
    assert fp32["ok"], fp32["check"]
    assert fp32["compare"]["max_box_difference"] <= 1e-3 and fp32["compare"]["same_detections"] == 4
    # the exporter's own bar: int8 within 2 points of AP50 of its fp32 file (SEAMS T7)
    assert int8["int8"] and int8["ok"], int8["check"]
    assert 100 * (fp32["stats"]["AP50"] - int8["stats"]["AP50"]) <= 2.0
    assert f"calibrated on 4 images from {calibration}" in int8["check"]
    side = json.loads((tmp_path / "exp" / "model.onnx.json").read_text())
    assert side["classes"] == ["circle", "square", "triangle", "cross"] and side["check"] == fp32["check"]
    assert sorted(os.listdir(tmp_path / "exp")) == ["model-int8.onnx", "model-int8.onnx.json", "model.onnx",
                                                    "model.onnx.json"]  # and no staging folder


@pytest.mark.slow
def test_export_tflite_fp32_and_int8(run, tmp_path, capsys):
    assert main(["detect", "export", "--checkpoint", str(run), "--output", str(tmp_path / "exp"), "--int8",
                 "--calibration-images", "4", "--formats", "tflite", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    fp32, int8 = result["files"]
    assert fp32["format"] == int8["format"] == "tflite" and not fp32["int8"] and int8["int8"]
    assert fp32["ok"], fp32["check"]
    assert int8["ok"], int8["check"]
    assert 100 * (fp32["stats"]["AP50"] - int8["stats"]["AP50"]) <= 2.0
    assert "calibrated on 4 images from the training images" in int8["check"]
    assert b"TFLite_Detection_PostProcess" in (tmp_path / "exp" / "model-int8.tflite").read_bytes()
    side = json.loads((tmp_path / "exp" / "model.tflite.json").read_text())
    assert side["input"]["shape"] == [1, 64, 64, 3] and "TFLite_Detection_PostProcess" in side["postprocess"]


@pytest.mark.slow
def test_bench_times_ours_eager_and_onnx(run, capsys):
    assert main(["detect", "bench", "--checkpoint", str(run), "--no-peer", "--rounds", "1", "--threads", "1",
                 "--no-progress", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["results"]) == {"ours eager", "ours onnx fp32", "ours onnx int8"}
    assert all(r["median_ms"] > 0 for r in result["results"].values())
    assert result["settings"]["batch"] == 1 and result["models"]["ours"]["resolution"] == 64


@pytest.mark.slow
def test_main_bench_detector_is_detect_bench_with_the_peer(run, capsys):
    assert main(["bench", "--detector", "ssd", "--checkpoint", str(run), "--rounds", "1", "--threads", "1",
                 "--no-progress", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {"ours eager", "ours onnx fp32", "ours onnx int8"} <= set(result["results"])
    assert any(name.startswith("torchvision") or "ssdlite320" in name for name in result["results"]), result["results"]
    assert result["models"]["ours"]["resolution"] == 64
