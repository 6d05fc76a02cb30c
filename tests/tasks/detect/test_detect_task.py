"""Detection through the one training loop: Faster R-CNN, resume, --backbone (SSD: test_detect_cli.py)."""

from __future__ import annotations

import json

import pytest
import torch

from mobilenets.errors import MobileNetsError
from mobilenets.tasks.detect.run import load_detector, train
from mobilenets.tasks.detect.standin import write_standin
from mobilenets.train.options import TrainOptions

TINY = {"epochs": 2, "batch_size": 4, "warmup_epochs": 0.0}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_standin(tmp_path_factory.mktemp("d") / "standin", seed=1, train=8, val=3, size=64)


def _opts(out, **kw):
    return TrainOptions(output=str(out), progress=False, eval_batch_size=4, **kw)


@pytest.mark.slow
def test_faster_rcnn_trains_through_the_loop(tmp_path, data):
    summary = train(str(data), "faster_rcnn", alpha=0.25, resolution=64, recipe_overrides={**TINY, "epochs": 1},
                    detector_overrides={"proposals": 20, "anchor_base": 64}, options=_opts(tmp_path / "run"),
                    log=lambda *a: None)
    assert summary["steps"] == 2 and "AP" in summary["metrics"]
    model, meta = load_detector(tmp_path / "run")
    assert meta["model"]["anchor_base"] == 64 and meta["model"]["proposals"] == 20
    out = model([torch.rand(3, 64, 80)])[0]
    assert set(out) == {"boxes", "scores", "labels"} and out["boxes"].shape[1] == 4


@pytest.mark.slow
def test_resume_continues_the_run(tmp_path, data):
    train(str(data), "ssdlite", alpha=0.25, resolution=64, recipe_overrides=TINY,
          options=_opts(tmp_path / "run", max_steps=1), log=lambda *a: None)
    lines = []
    summary = train(None, options=_opts(tmp_path / "run", resume=True), log=lines.append)
    assert summary["steps"] == 4 and summary["epochs"] == 2
    assert any("resumed" in line for line in lines)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["model"]["detector"] == "ssdlite" and saved["data"] == str(data)


def test_backbone_starts_from_a_classification_checkpoint(tmp_path, data):
    from mobilenets.models.config import MobileNetConfig
    from mobilenets.models.mobilenet import MobileNet
    from mobilenets.tasks.detect.config import DetectorConfig
    from mobilenets.tasks.detect.run import load_data
    from mobilenets.tasks.detect.task import DetectionTask
    from mobilenets.weights.checkpoint import save_model

    torch.manual_seed(5)
    classifier = MobileNet(MobileNetConfig(alpha=0.25, resolution=64, num_classes=10, activation="relu6"))
    save_model(classifier, tmp_path / "cls")
    cfg = DetectorConfig(backbone=classifier.config.replace(num_classes=0), num_classes=4, resolution=64)
    splits = load_data(str(data))
    detector = DetectionTask(cfg, splits, backbone=str(tmp_path / "cls")).build_model()
    got = detector.backbone.features.blocks["block11"].pw.conv.weight
    assert torch.equal(got, getattr(classifier.blocks, "11").pw.conv.weight)
    fresh = DetectionTask(cfg, splits).build_model().backbone.features.blocks["block11"].pw.conv.weight
    assert not torch.equal(fresh, got)
    with pytest.raises(MobileNetsError, match="does not match"):
        DetectionTask(cfg.replace(backbone=cfg.backbone.replace(alpha=0.5)), splits,
                      backbone=str(tmp_path / "cls")).build_model()
    with pytest.raises(MobileNetsError, match="categories but num_classes"):
        DetectionTask(cfg.replace(num_classes=3), splits)
