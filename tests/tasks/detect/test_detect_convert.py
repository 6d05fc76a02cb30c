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

from mobilenets.errors import MobileNetsError

REFERENCE = Path(__file__).resolve().parents[2] / "reference" / "face_api"
MODEL_DIR = REFERENCE / "node_modules" / "@vladmandic" / "face-api" / "model"
MANIFEST = MODEL_DIR / "ssd_mobilenetv1_model-weights_manifest.json"
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
    import tensorflow as tf

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
