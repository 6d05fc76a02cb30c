"""The runners of exported files: format detection, bad files, and no process-wide state left changed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mobilenets.deploy.export import FP32_TOLERANCE, export_model
from mobilenets.deploy.runtime import load_runner
from mobilenets.errors import MobileNetsError
from mobilenets.models.mobilenet import MobileNet
from mobilenets.utils.scoped import torch_threads


def test_runner_rejects_unknown_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="exported model not found"):
        load_runner(tmp_path / "missing.onnx")
    (tmp_path / "m.xyz").write_bytes(b"")
    with pytest.raises(MobileNetsError, match="cannot tell the format"):
        load_runner(tmp_path / "m.xyz")
    (tmp_path / "m.onnx").write_bytes(b"not an onnx file")
    with pytest.raises(MobileNetsError, match="cannot load ONNX model"):
        load_runner(tmp_path / "m.onnx")
    (tmp_path / "m.pt").write_bytes(b"not a TorchScript file")
    with pytest.raises(MobileNetsError, match="cannot load TorchScript model"):
        load_runner(tmp_path / "m.pt")
    with pytest.raises(MobileNetsError, match="threads must be an integer >= 1"):
        load_runner(tmp_path / "m.pt", threads=0)


def test_torchscript_runner_leaves_torch_threads_alone(tmp_path, randomized_bn, monkeypatch):
    """PyTorch's thread count is process-wide: loading and calling a TorchScript runner with
    ``threads=1`` must give the caller's count back, and run at 1 thread inside the call."""
    model = randomized_bn(MobileNet(alpha=0.25, resolution=32, num_classes=10), classifier_std=1.0)
    out = tmp_path / "m.pt"
    export_model(model, out, "torchscript")
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    with torch_threads(3):
        runner = load_runner(out, threads=1)
        assert torch.get_num_threads() == 3
        seen = []
        real = torch.set_num_threads

        def spy(n: int) -> None:  # records what each call runs at
            seen.append(n)
            real(n)

        monkeypatch.setattr(torch, "set_num_threads", spy)
        logits = runner(x)
        monkeypatch.undo()
        assert torch.get_num_threads() == 3
        assert seen[0] == 1 and seen[-1] == 3
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    # export's fp32 limit, relative to the logits (O(10) to O(50) with classifier_std=1.0)
    np.testing.assert_allclose(logits, ref, atol=FP32_TOLERANCE * max(1.0, float(np.abs(ref).max())), rtol=0)


def test_runner_rejects_arrays_that_are_not_batches(tmp_path):
    out = tmp_path / "m.onnx"
    export_model("mobilenet_v1_0.25_128", out)
    runner = load_runner(out)
    with pytest.raises(MobileNetsError, match="expected an NCHW batch"):
        runner(np.zeros((3, 128, 128), np.float32))
    assert runner.meta["format"] == "onnx"  # the sidecar, read beside the file
    assert runner(np.zeros((1, 3, 128, 128), np.float32)).shape == (1, 1000)
