"""The TF OD API SSD-MobileNetV1 importer (``mobilenet detect convert``), proven on a real detector:
face-api's SSD-MobileNetV1 face detector (npm @vladmandic/face-api 1.7.15, installed by the Makefile
under tests/reference/face_api), against face-api itself run in Node on five real photos with faces
(the saved outputs of tests/reference/face_api/reference.mjs: face_api_reference.json)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from face_api_export import MANIFEST, MODEL_DIR, PIPELINE, REFERENCE, write_tf_od_api_export  # tests/ helper
from mobilenets.errors import MobileNetsError

PHOTO_FILES = {
    "astronaut": ("skimage", "data", "astronaut.png"),
    "grace_hopper": ("matplotlib", "mpl-data", "sample_data", "grace_hopper.jpg"),
    "insightface_t1": ("insightface", "data", "images", "t1.jpg"),
    "ultralytics_zidane": ("ultralytics", "assets", "zidane.jpg"),
    "ultralytics_bus": ("ultralytics", "assets", "bus.jpg"),
}


def photo_file(name: str) -> str:
    import importlib.util
    import os

    package, *parts = PHOTO_FILES[name]
    spec = importlib.util.find_spec(package)
    return os.path.join(spec.submodule_search_locations[0], *parts)


@pytest.fixture(scope="module")
def reference() -> dict:
    assert MANIFEST.is_file(), ("face-api is not installed: run the Makefile set-up (npm ci in tests/reference/"
                                "face_api)")
    return json.loads((REFERENCE / "face_api_reference.json").read_text())


@pytest.fixture(scope="module")
def converted(tmp_path_factory, reference) -> Path:
    from mobilenets.tasks.detect.convert import convert_detector

    return convert_detector(MANIFEST, tmp_path_factory.mktemp("face") / "face-ssd")


def raw_outputs(model, cfg, image) -> tuple[np.ndarray, np.ndarray]:
    """Every anchor's decoded box (normalised [ymin, xmin, ymax, xmax] of the padded square, not
    clipped: face-api's forwardInput boxes) and face score (sigmoid of class column 1)."""
    from mobilenets.tasks.detect.inputs import ssd_input

    x, _ = ssd_input(image, cfg)
    with torch.no_grad():
        images, _ = model.transform([x])
        maps = list(model.backbone(images.tensors).values())
        out = model.head(maps)
        anchors = model.anchor_generator(images, maps)[0]
        boxes = model.box_coder.decode_single(out["bbox_regression"][0], anchors) / cfg.resolution
        scores = torch.sigmoid(out["cls_logits"][0, :, 1])
    return boxes[:, [1, 0, 3, 2]].numpy(), scores.numpy()


def test_tfjs_reader_dequantizes_as_tfjs():
    """value = q * scale + min for uint8 entries (tfjs io.decodeWeights), float32 entries as stored."""
    from mobilenets.tasks.detect.tfjs import read_manifest

    weights = read_manifest(MANIFEST)
    spec = json.loads(MANIFEST.read_text())[0]["weights"][0]
    raw = np.frombuffer((MODEL_DIR / "ssd_mobilenetv1_model.bin").read_bytes(), np.uint8, int(np.prod(spec["shape"])))
    q = spec["quantization"]
    expected = (raw.astype(np.float64) * q["scale"] + q["min"]).astype(np.float32).reshape(spec["shape"])
    assert np.array_equal(weights[spec["name"]], expected)
    assert weights["Output/extra_dim"].shape == (1, 5118, 4) and weights["Output/extra_dim"].dtype == np.float32


def test_converted_config_records_tf_conventions(converted):
    meta = json.loads((converted / "detector.json").read_text())
    model = meta["model"]
    # face-api's anchors put the in-between box second: found by matching its stored anchors
    assert model["anchor_order"] == "interpolated_second" and meta["source"]["anchors_max_abs_diff"] < 1e-6
    assert (model["input_resize"], model["input_pad"], model["clip_before_nms"]) == ("tf_legacy", "bottom_right", False)
    assert model["resolution"] == 512 and model["classification"] == "sigmoid" and meta["classes"] == ["face"]
    assert model["box_scales"] == [10.0, 10.0, 5.0, 5.0]


def test_raw_outputs_match_face_api(converted, reference):
    """Decoded boxes and face scores of every saved anchor within 1e-4 of face-api's, on five photos."""
    from mobilenets.data.photos import load_photo
    from mobilenets.tasks.detect.config import DetectorConfig
    from mobilenets.tasks.detect.run import load_detector

    model, meta = load_detector(converted)
    cfg = DetectorConfig.from_dict(meta["model"])
    for name, ref in reference["images"].items():
        boxes, scores = raw_outputs(model, cfg, load_photo(name))
        idx = np.array([a["index"] for a in ref["anchors"]])
        assert np.abs(boxes[idx] - np.array([a["box"] for a in ref["anchors"]])).max() < 1e-4, name
        assert np.abs(scores[idx] - np.array([a["score"] for a in ref["anchors"]])).max() < 1e-4, name
        stats = ref["stats"]
        assert len(scores) == stats["count"]
        assert abs(scores.sum() - stats["score_sum"]) < 1e-4 * stats["count"], name
        assert abs(boxes.astype(np.float64).sum() - stats["box_sum"]) < 1e-4 * stats["count"] * 4, name


@pytest.mark.parametrize("score", [0.5, 0.1])
def test_detect_predict_gives_face_api_detections(converted, reference, score, capsys):
    """`mobilenet detect predict --checkpoint DIR --score S --json IMAGE...` from the image files: the same
    faces in the same order as face-api's locateFaces, boxes within 0.01 px, scores within 1e-4."""
    from mobilenets.cli.main import main

    names = list(reference["images"])
    assert main(["detect", "predict", "--checkpoint", str(converted), "--score", str(score), "--json",
                 *[photo_file(n) for n in names]]) in (0, None)
    results = json.loads(capsys.readouterr().out)
    for name, item in zip(names, results):
        want = reference["images"][name]["detections"][str(score)]
        got = item["detections"]
        assert len(got) == len(want), name
        for g, w in zip(got, want):
            assert g["label"] == "face"
            assert abs(g["score"] - w["score"]) < 1e-4, name
            assert np.abs(np.array(g["box"]) - np.array(w["box"])).max() < 0.01, (name, g["box"], w["box"])
    assert sum(len(r["detections"]) for r in results) >= 9  # the five photos hold at least nine faces


def test_face_api_model_folder_converts(tmp_path):
    """face-api's whole model folder (seven nets): its one SSD manifest is the one converted."""
    from mobilenets.tasks.detect.convert import convert_detector

    out = convert_detector(MODEL_DIR, tmp_path / "face")
    assert json.loads((out / "detector.json").read_text())["source"]["file"] == MANIFEST.name


def test_anchor_mismatch_is_refused(tmp_path):
    """Stored anchors that no anchor order reproduces: one line, nothing written."""
    import shutil

    from mobilenets.tasks.detect.convert import convert_detector

    src = tmp_path / "model"
    shutil.copytree(MODEL_DIR, src, ignore=lambda d, names: [n for n in names if not n.startswith("ssd_mobilenetv1")])
    manifest = src / MANIFEST.name
    data = bytearray((src / "ssd_mobilenetv1_model.bin").read_bytes())
    data[-4:] = np.float32(0.25).tobytes()  # the last anchor's xmax
    (src / "ssd_mobilenetv1_model.bin").write_bytes(bytes(data))
    with pytest.raises(MobileNetsError, match="stored anchors are not TF's") as err:
        convert_detector(manifest, tmp_path / "out")
    assert "\n" not in str(err.value) and not (tmp_path / "out").exists()


def test_bad_sources_are_refused(tmp_path):
    from mobilenets.tasks.detect.convert import convert_detector

    with pytest.raises(MobileNetsError, match="not found"):
        convert_detector(tmp_path / "missing", tmp_path / "out")
    (tmp_path / "x-weights_manifest.json").write_text("<html>not json</html>")
    with pytest.raises(MobileNetsError, match="not a TF.js weights manifest"):
        convert_detector(tmp_path / "x-weights_manifest.json", tmp_path / "out")
    (tmp_path / "x-weights_manifest.json").write_text(json.dumps([{"paths": ["gone.bin"], "weights": []}]))
    with pytest.raises(MobileNetsError, match="gone.bin"):
        convert_detector(tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_tf_legacy_resize_matches_tensorflow():
    """Our TF legacy bilinear resize against TF's own (ResizeBilinear, half_pixel_centers false)."""
    from mobilenets.utils.tf import import_tf

    tf = import_tf()

    from mobilenets.tasks.detect.inputs import tf_legacy_resize

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (37, 53, 3)).astype(np.float32)
    for size in ((20, 20), (64, 90), (53, 37)):
        theirs = tf.raw_ops.ResizeBilinear(images=image[None], size=size, align_corners=False,
                                           half_pixel_centers=False).numpy()[0]
        ours = tf_legacy_resize(torch.from_numpy(image).permute(2, 0, 1), *size).permute(1, 2, 0).numpy()
        assert np.abs(ours - theirs).max() < 1e-3, size


def test_anchor_orders_differ_only_in_place():
    from mobilenets.tasks.detect.anchor_specs import box_specs

    last, second = box_specs(), box_specs(interpolated_second=True)
    assert last[0] == second[0]  # the reduced lowest map has no in-between box
    for a, b in zip(last[1:], second[1:]):
        assert a[-1] == b[1] and a[:-1] == [b[0], *b[2:]]


@pytest.fixture(scope="module")
def tf_od_api_archives(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tf_od_api")
    return {"checkpoint": write_tf_od_api_export(root / "ssd_face_ckpt", frozen=False),
            "frozen": write_tf_od_api_export(root / "ssd_face_frozen", checkpoint=False)}


@pytest.mark.parametrize("kind", ["checkpoint", "frozen"])
def test_tf_od_api_export_converts_to_the_same_network(kind, tf_od_api_archives, converted, tmp_path):
    """pipeline.config + checkpoint / frozen graph: the network equals the TF.js conversion's (BatchNorm
    kept instead of folded, all 3 class columns), TF's post-processing settings are read."""
    from mobilenets.data.photos import load_photo
    from mobilenets.tasks.detect.config import DetectorConfig
    from mobilenets.tasks.detect.convert import convert_detector
    from mobilenets.tasks.detect.run import load_detector

    out = convert_detector(tf_od_api_archives[kind], tmp_path / "ssd", anchor_order="interpolated_second")
    model, meta = load_detector(out)
    cfg = DetectorConfig.from_dict(meta["model"])
    assert meta["classes"] == ["class1", "class2"] and meta["source"]["format"] == "tf_od_api"
    assert (cfg.nms_thresh, cfg.score_thresh, cfg.classification, cfg.clip_before_nms) == (0.5, 1e-8, "sigmoid", False)
    assert (cfg.input_resize, cfg.input_pad, cfg.resolution) == ("tf_legacy", "none", 512)
    ref_model, ref_meta = load_detector(converted)
    ref_cfg = DetectorConfig.from_dict(ref_meta["model"])
    image = load_photo("grace_hopper").resize((512, 512))  # a square input: both configs see the same tensor
    boxes, scores = raw_outputs(model, cfg, image)
    ref_boxes, ref_scores = raw_outputs(ref_model, ref_cfg, image)
    assert np.abs(boxes - ref_boxes).max() < 1e-5 and np.abs(scores - ref_scores).max() < 1e-5
    assert scores.max() > 0.9  # Grace Hopper's face
    # the default anchor order (the current TF OD API's) gives other anchors for the same weights
    other = convert_detector(tf_od_api_archives[kind], tmp_path / "last")
    last_model, last_meta = load_detector(other)
    last_boxes, _ = raw_outputs(last_model, DetectorConfig.from_dict(last_meta["model"]), image)
    assert np.abs(last_boxes - ref_boxes).max() > 0.01


def test_pipeline_config_refusals(tmp_path):
    from mobilenets.tasks.detect.convert import convert_detector
    from mobilenets.tasks.detect.pipeline import parse_text_proto

    doc = parse_text_proto(PIPELINE)
    assert doc["model"]["ssd"]["anchor_generator"]["ssd_anchor_generator"]["aspect_ratios"][-1] == 0.3333
    assert doc["train_config"]["batch_size"] == 24
    for old, new, message in [('"ssd_mobilenet_v1"', '"ssd_mobilenet_v1_fpn"', "not supported"),
                              ("height: 512 width: 512", "height: 512 width: 640", "square"),
                              ("score_converter: SIGMOID", "score_converter: IDENTITY", "score_converter")]:
        (tmp_path / "pipeline.config").write_text(PIPELINE.replace(old, new))
        (tmp_path / "frozen_inference_graph.pb").write_bytes(b"")
        with pytest.raises(MobileNetsError, match=message) as err:
            convert_detector(tmp_path, tmp_path / "out")
        assert "\n" not in str(err.value) and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_exported_onnx_and_tflite_give_face_api_detections(converted, reference, tmp_path):
    """~1-2 min (TFLite conversion of the 512 px SSD). `detect export` of the converted face detector (its
    own checks against eager on real photos pass), then model.onnx and model.tflite on the five photos, fed
    the detector's recorded input handling: face-api's faces at 0.5 and 0.1, same order, boxes within 0.01 px."""
    from mobilenets.data.photos import load_photo
    from mobilenets.tasks.detect.config import DetectorConfig
    from mobilenets.tasks.detect.export import export_detector, run_onnx, session
    from mobilenets.tasks.detect.inputs import ssd_input
    from mobilenets.tasks.detect.tflite import TFLiteDetector

    result = export_detector(str(converted), tmp_path / "exported")
    assert {Path(f["path"]).name for f in result["files"]} == {"model.onnx", "model.tflite"}
    meta = json.loads((converted / "detector.json").read_text())
    cfg = DetectorConfig.from_dict(meta["model"])
    sess = session(tmp_path / "exported" / "model.onnx")
    runners = {"onnx": lambda x: run_onnx(sess, x), "tflite": TFLiteDetector(tmp_path / "exported" / "model.tflite")}
    for name, ref in reference["images"].items():
        x, (sx, sy) = ssd_input(load_photo(name), cfg)
        for fmt, run in runners.items():
            out = run(x.numpy())
            for score in (0.5, 0.1):
                want = ref["detections"][str(score)]
                keep = out["scores"] >= score
                boxes = out["boxes"][keep] * cfg.resolution * np.array([sx, sy, sx, sy])
                assert len(boxes) == len(want), (fmt, name, score)
                for got, w in zip(boxes, want):
                    assert np.abs(got - np.array(w["box"])).max() < 0.01, (fmt, name, got, w["box"])


def test_faces_crop_with_the_converted_face_detector(converted, tmp_path, monkeypatch, capsys):
    """`mobilenet faces crop --detector mobilenet-ssd` finds the faces of the five photos with the converted
    face-api detector (from $MOBILENETS_FACE_SSD) and aligns them with dlib's 5 points: face-api's 12
    faces at 0.5; without a converted detector, one line saying how to get one."""
    import shutil

    from mobilenets.cli.main import main

    photos = tmp_path / "photos"
    photos.mkdir()
    for name in PHOTO_FILES:
        shutil.copy(photo_file(name), photos / f"{name}{Path(photo_file(name)).suffix}")
    monkeypatch.setenv("MOBILENETS_FACE_SSD", str(converted))
    assert main(["faces", "crop", str(photos), "--output", str(tmp_path / "crops"), "--detector", "mobilenet-ssd",
                 "--no-progress", "--json"]) in (0, None)
    summary = json.loads(capsys.readouterr().out)
    assert summary["faces"] == 12 and summary["photos_without_faces"] == 0
    assert len(list((tmp_path / "crops").glob("insightface_t1_*.jpg"))) == 6
    monkeypatch.setenv("MOBILENETS_FACE_SSD", str(tmp_path / "nothing"))
    assert main(["faces", "crop", str(photos), "--output", str(tmp_path / "more"), "--detector", "mobilenet-ssd"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "detect convert" in err and not (tmp_path / "more").exists()


def test_detect_eval_refuses_input_handling_it_cannot_apply(converted, capsys):
    """detect eval's pipeline resizes as training does; on a detector converted with face-api's padding and
    TF's resize it refuses in one line instead of scoring other inputs."""
    from mobilenets.cli.main import main

    assert main(["detect", "eval", "--checkpoint", str(converted)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "input_pad bottom_right" in err


def test_detect_train_init_fine_tunes_a_converted_detector(converted, tmp_path):
    """`detect train --init DIR` with the converted face detector: its architecture and every tensor that
    fits (backbone, extras, box predictors; not the class head: other classes), on this data's classes, with
    the training pipeline's input handling recorded; one optimizer step runs through the loop."""
    from mobilenets.tasks.detect.config import DetectorConfig
    from mobilenets.tasks.detect.run import load_data, load_detector, train
    from mobilenets.tasks.detect.standin import write_standin
    from mobilenets.tasks.detect.task import DetectionTask
    from mobilenets.train.options import TrainOptions

    data = write_standin(tmp_path / "standin", seed=1, train=4, val=2, size=64)
    face, meta = load_detector(converted)
    cfg = DetectorConfig.from_dict(meta["model"]).replace(num_classes=4, input_resize="antialias", input_pad="none",
                                                          pad_rounded_scale=False)
    model = DetectionTask(cfg, load_data(str(data)), backbone=str(converted)).build_model()
    for key in ("backbone.features.blocks.block11.pw.conv.weight", "backbone.extras.3.1.bn.bias",
                "head.regression_head.module_list.5.weight"):
        assert torch.equal(model.state_dict()[key], face.state_dict()[key]), key
    assert model.state_dict()["head.classification_head.module_list.0.weight"].shape[0] == 3 * 5
    summary = train(str(data), init=str(converted), resolution=64,
                    recipe_overrides={"epochs": 1, "batch_size": 2, "warmup_epochs": 0.0},
                    options=TrainOptions(output=str(tmp_path / "run"), progress=False, eval_batch_size=2, max_steps=1),
                    log=lambda *a: None)
    assert summary["steps"] == 1
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["model"]
    assert (saved["resolution"], saved["num_classes"], saved["anchor_order"], saved["input_pad"]) == \
        (64, 4, "interpolated_second", "none")
