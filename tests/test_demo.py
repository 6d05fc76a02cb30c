"""The main job: train on digits, export fp32/int8 ONNX, accuracy and latency of each."""

import json

from mobilenets.cli.main import main
from mobilenets.demo import demo


def test_demo_trains_exports_and_measures(tmp_path):
    import torch

    lines = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = demo(str(tmp_path / "run"), epochs=8, rounds=1, threads=2, progress=False, log=lines.append)
        assert torch.get_num_threads() == 1  # the demo's 2 threads were given back
    finally:
        torch.set_num_threads(threads)
    rows = {r["engine"]: r for r in out["rows"]}
    assert list(rows) == ["pytorch eager", "onnx fp32", "onnx int8"]
    eager = rows["pytorch eager"]
    assert eager["top1"] > 0.8  # 10 classes: chance is 0.1
    # the run's best weights, on the same 450 held-out digits that training evaluated
    assert abs(eager["top1"] - out["train"]["best_top1"]) < 1e-9
    assert rows["onnx fp32"]["agreement"] == 1.0 and rows["onnx fp32"]["top1"] == eager["top1"]
    assert rows["onnx int8"]["agreement"] > 0.9
    assert all(r["median_ms"] > 0 for r in rows.values())
    assert (tmp_path / "run" / "export" / "model.onnx").is_file()
    assert json.loads((tmp_path / "run" / "export" / "model-int8.onnx.json").read_text())
    text = "\n".join(lines)
    assert "mult-adds" in text and "same top-1 as eager" in text and str(tmp_path / "run") in text
    assert "epoch 8/8  train loss" in text  # training's per-epoch lines go to the same log


def test_demo_bad_arguments(capsys):
    assert main(["demo", "--threads", "0"]) == 2
    assert capsys.readouterr().err.strip().startswith("mobilenet: error:")
