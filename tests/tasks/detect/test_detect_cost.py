"""Detector cost: the formulas equal a count of the real modules, and meet paper Table 13."""

from __future__ import annotations

import json

import pytest

from mobilenets.cli.main import main
from mobilenets.cost.detection import detector_cost, measure_detector_cost
from mobilenets.paper.printed import TABLE13, printed_match
from mobilenets.tasks.detect.build import build_detector
from mobilenets.tasks.detect.config import make_config


@pytest.mark.parametrize("detector,kw", [
    ("ssd", {}),
    ("ssdlite", {"alpha": 0.5, "resolution": 203, "num_classes": 7}),
    ("ssd", {"alpha": 0.6, "resolution": 160, "head_kernel": 3, "num_classes": 3}),
    ("faster_rcnn", {"alpha": 0.25, "resolution": 150, "num_classes": 5}),
    ("faster_rcnn", {"alpha": 0.25, "resolution": 128, "crop_pool": False, "proposals": 7}),
])
def test_formulas_equal_the_real_modules(detector, kw):
    cfg = make_config(detector, **kw)
    counted, measured = detector_cost(cfg), measure_detector_cost(cfg)
    assert list(counted.parts) == list(measured.parts)
    for part in counted.parts:
        assert counted.part(part) == measured.part(part), part
    assert counted.params_total == sum(p.numel() for p in build_detector(cfg).parameters())


def test_table13_ssd_and_faster_rcnn():
    ssd = detector_cost(make_config("ssd", resolution=300, num_classes=90))
    _, p_ma, p_params = TABLE13[("ssd", 300)]
    assert printed_match(ssd.mult_adds / 1e9, p_ma) == "rounded" and printed_match(ssd.params / 1e6, p_params)
    assert ssd.mult_adds == 1_237_129_408 and ssd.params == 6_791_360
    for size in (300, 600):
        _, p_ma, p_params = TABLE13[("faster_rcnn", size)]
        tf = detector_cost(make_config("faster_rcnn", resolution=size, num_classes=90))
        paper = detector_cost(make_config("faster_rcnn", resolution=size, num_classes=90, crop_pool=False))
        # the printed figure is the second stage at 7x7 (no max-pool); TF's max-pooled one is far cheaper
        assert printed_match(paper.mult_adds / 1e9, p_ma) == "rounded" and tf.mult_adds < paper.mult_adds / 2
        assert printed_match(paper.params_total / 1e6, p_params) == "rounded"  # 6.06 M with BN and biases
        assert paper.part("second stage")["mult_adds"] == 300 * (paper.part("second stage")["mult_adds"] // 300)


def test_cost_command_and_tables(capsys):
    assert main(["cost", "--detector", "ssd", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["mult_adds"] == 1_237_129_408 and set(doc["parts"]) == {"backbone", "extras", "heads"}
    assert main(["cost", "--detector", "faster-rcnn", "--resolution", "600"]) == 0
    text = capsys.readouterr().out
    assert "paper Table 13: 30.5 billion" in text and "30.49 billion" in text
    from mobilenets.paper.tables import TABLE13_TITLE, paper_tables_data

    rows = paper_tables_data(reference_nets=False)[TABLE13_TITLE]
    assert [r["match_mult_adds"] for r in rows] == ["rounded", "", "rounded", "", "rounded"]
