"""The registry's detectors through a real HTTP server on 127.0.0.1 (``pretrained_server``, the mirror
override): the TF1 zoo's ``ssd_mobilenet_v1_coco_2018_01_28.tar.gz`` layout built from face-api's real
weights (tests/face_api_export.py), fetched, converted and cached by `mobilenet weights download`, then
run by `mobilenet detect predict --checkpoint tf-od:NAME`; face-api's npm tarball fetched, converted and
cached by `mobilenet faces crop --detector mobilenet-ssd`; offline without a cache, one line."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from face_api_export import MANIFEST, face_api_npm_tarball, tf1_zoo_archive

sys.path.insert(0, os.path.dirname(__file__))
from pretrained_server import Site, serve  # noqa: E402

from mobilenets.cli.main import main  # noqa: E402
from mobilenets.data.photos import load_photo  # noqa: E402
from mobilenets.weights.pretrained import download as dl  # noqa: E402
from mobilenets.weights.pretrained.registry import FACE_API_ENTRY, get_entry  # noqa: E402

COCO = "tf-od:ssd_mobilenet_v1_coco_2018_01_28"
COCO_PATH = "/models/object_detection/ssd_mobilenet_v1_coco_2018_01_28.tar.gz"
FACE_API_PATH = "/@vladmandic/face-api/-/face-api-1.7.15.tgz"


@pytest.fixture()
def site(monkeypatch, tmp_path):
    """A fresh server and cache for one test, the mirror pointing at the server."""
    assert MANIFEST.is_file(), "face-api is not installed: run the Makefile set-up (npm ci in tests/reference/face_api)"
    s = Site()
    server, _ = serve(s)
    monkeypatch.setenv("MOBILENETS_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("MOBILENETS_MIRROR", s.url)
    for var in ("MOBILENETS_OFFLINE", "HF_HUB_OFFLINE", "MOBILENETS_FACE_SSD"):
        monkeypatch.delenv(var, raising=False)
    yield s
    server.shutdown()


def head_outputs(folder: Path, image) -> tuple[np.ndarray, np.ndarray]:
    """Every anchor's box regression and face logit (class column 1) of the detector in ``folder``:
    the network's own outputs, before anchors."""
    from mobilenets.tasks.detect.config import DetectorConfig
    from mobilenets.tasks.detect.inputs import ssd_input
    from mobilenets.tasks.detect.run import load_detector

    model, meta = load_detector(folder)
    x, _ = ssd_input(image, DetectorConfig.from_dict(meta["model"]))
    with torch.no_grad():
        images, _ = model.transform([x])
        out = model.head(list(model.backbone(images.tensors).values()))
    return out["bbox_regression"][0].numpy(), out["cls_logits"][0, :, 1].numpy()


def predict_json(checkpoint: str, image: str, capsys) -> list:
    assert main(["detect", "predict", "--checkpoint", checkpoint, "--score", "0.5", "--json", image]) in (0, None)
    return json.loads(capsys.readouterr().out)


@pytest.mark.slow  # ~20 s on 2 shared cores: TensorFlow writes the export, three detectors converted
def test_tf_od_entry_downloads_converts_and_predicts(site, tmp_path, capsys):
    """`weights download tf-od:NAME` fetches the zoo's archive layout through the mirror, converts and
    caches it; `detect predict --checkpoint tf-od:NAME` then reads only the cache and gives the
    detections of the same export converted by `detect convert`, whose network equals the TF.js
    conversion's (the same face-api weights)."""
    from mobilenets.tasks.detect.convert import convert_detector
    from mobilenets.weights.pretrained.detectors import detector_path

    site.files[COCO_PATH] = tf1_zoo_archive("ssd_mobilenet_v1_coco_2018_01_28", tmp_path / "build")
    assert main(["weights", "download", COCO, "--no-progress"]) == 0
    folder = detector_path(COCO)
    assert capsys.readouterr().out == f"{COCO}: {folder}\n"
    assert (folder / "detector.json").is_file() and len(site.requests) == 1
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no staging left
    photo = tmp_path / "grace_hopper.png"
    load_photo("grace_hopper").resize((512, 512)).save(photo)
    got = predict_json(COCO, str(photo), capsys)
    assert len(site.requests) == 1  # the second use reads only the cache
    local = convert_detector(tmp_path / "build" / "ssd_mobilenet_v1_coco_2018_01_28", tmp_path / "local-ssd")
    want = predict_json(str(local), str(photo), capsys)
    assert got == want and len(got[0]["detections"]) >= 1
    assert got[0]["detections"][0]["label"] == "class1" and got[0]["detections"][0]["score"] > 0.9  # her face
    face = convert_detector(MANIFEST, tmp_path / "tfjs-ssd")
    boxes, logits = head_outputs(folder, load_photo("grace_hopper").resize((512, 512)))
    ref_boxes, ref_logits = head_outputs(face, load_photo("grace_hopper").resize((512, 512)))
    assert np.abs(boxes - ref_boxes).max() < 1e-4 and np.abs(logits - ref_logits).max() < 1e-4


def test_tf_od_entry_refusals(site, capsys, tmp_path, monkeypatch):
    """A classifier command refuses a detector entry; offline without a cache names the download command;
    404: one line, the cache clean."""
    assert main(["predict", "--checkpoint", COCO, str(tmp_path / "x.jpg")]) == 2
    assert "detect" in capsys.readouterr().err
    monkeypatch.setenv("MOBILENETS_OFFLINE", "1")
    assert main(["detect", "predict", "--checkpoint", COCO, str(tmp_path / "x.jpg")]) == 2
    monkeypatch.delenv("MOBILENETS_OFFLINE")
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"mobilenet weights download {COCO}" in err
    assert main(["detect", "predict", "--checkpoint", COCO, str(tmp_path / "x.jpg")]) == 2
    assert "HTTP 404" in capsys.readouterr().err
    assert not dl.cache_root().exists() or not [p for p in dl.cache_root().rglob("*") if p.is_file()]


def test_coco_class_names_from_the_label_map(tmp_path):
    """The TF1 zoo's COCO pipeline.config names PATH_TO_BE_CONFIGURED/mscoco_label_map.pbtxt (not in the
    archive): COCO's 90 ids, 80 named as the TF OD API's label map, the 10 gaps marked; a label map in
    the export folder is read instead."""
    from mobilenets.tasks.detect.labels import class_names

    (tmp_path / "pipeline.config").write_text('model { ssd { num_classes: 90 } }\ntrain_input_reader: {\n'
                                              '  label_map_path: "PATH_TO_BE_CONFIGURED/mscoco_label_map.pbtxt"\n}\n')
    names = class_names(tmp_path, 90)
    assert len(names) == 90 and names[0] == "person" and names[89] == "toothbrush" and names[17] == "dog"
    gaps = [i + 1 for i, n in enumerate(names) if n.startswith("unused-")]
    assert gaps == [12, 26, 29, 30, 45, 66, 68, 69, 71, 83]
    (tmp_path / "mscoco_label_map.pbtxt").write_text('item {\n  id: 1\n  display_name: "face"\n}\n')
    assert class_names(tmp_path, 2) == ["face", "unused-2"]
    (tmp_path / "pipeline.config").write_text("model { ssd { num_classes: 2 } }\n")
    assert class_names(tmp_path, 2) == ["class1", "class2"]


def test_face_api_entry_through_faces_crop(site, tmp_path, monkeypatch, capsys):
    """`faces crop --detector mobilenet-ssd` without a cached detector fetches face-api's npm tarball
    (through the mirror), converts and caches it (the same weights as `detect convert` of the installed
    package); offline without it, one line naming `mobilenet weights download face-api:...`."""
    from mobilenets.tasks.distill.faces import face_ssd_folder
    from mobilenets.weights.files import read_safetensors

    entry = get_entry(FACE_API_ENTRY)
    assert entry.url == "https://registry.npmjs.org/@vladmandic/face-api/-/face-api-1.7.15.tgz"
    assert (entry.licence, entry.kind, entry.classes, entry.resolution) == ("MIT", "detector", 1, 512)
    photos = tmp_path / "photos"
    photos.mkdir()
    load_photo("grace_hopper").save(photos / "grace_hopper.png")
    monkeypatch.setenv("MOBILENETS_OFFLINE", "1")
    assert main(["faces", "crop", str(photos), "--output", str(tmp_path / "none"), "--detector", "mobilenet-ssd"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"mobilenet weights download {FACE_API_ENTRY}" in err
    assert not (tmp_path / "none").exists() and not site.requests
    monkeypatch.delenv("MOBILENETS_OFFLINE")
    site.files[FACE_API_PATH] = face_api_npm_tarball()
    assert main(["faces", "crop", str(photos), "--output", str(tmp_path / "crops"), "--detector", "mobilenet-ssd",
                 "--no-progress", "--json"]) in (0, None)
    assert json.loads(capsys.readouterr().out)["faces"] == 1
    folder = face_ssd_folder("mobilenet-ssd")  # now from the cache: no new request
    assert len(site.requests) == 1 and json.loads((folder / "detector.json").read_text())["classes"] == ["face"]
    from mobilenets.tasks.detect.convert import convert_detector

    local = convert_detector(MANIFEST, tmp_path / "local")
    got, _ = read_safetensors(folder / "model.safetensors")
    want, _ = read_safetensors(local / "model.safetensors")
    assert sorted(got) == sorted(want) and all(torch.equal(got[k], want[k]) for k in want)
