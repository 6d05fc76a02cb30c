"""The web export's kernel plan (mobilenets.deploy.web.kernels): which convs ONNX Runtime runs
with which kernel after the rewrite, and that the rewrite changes no value of the model.

Small MobileNets (0.25, 64 px) exported by the package's own ONNX writers; the thresholds are
lowered so that each plan splits this model's convs (its defaults are for real sizes). The
browser runs of planned files are in test_web.py."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from mobilenets.errors import MobileNetsError


def optimized_ops(path, tmp_path) -> Counter:
    """The op types of the graph ONNX Runtime runs for ``path`` (level ALL, as the web page asks)."""
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return Counter(n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node)


def run(path, x):
    from mobilenets.deploy.ort import session

    sess = session(str(path), threads=1, quiet=True)
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


@pytest.fixture(scope="module")
def small_onnx(tmp_path_factory, randomized_bn):
    """A small MobileNet's fp32 and int8 ONNX files (int8 calibrated on random images) and probe inputs."""
    from mobilenets.deploy.fold import inference_network
    from mobilenets.deploy.formats.onnx import write_fp32, write_int8
    from mobilenets.models.mobilenet import MobileNet, MobileNetConfig

    torch.manual_seed(0)
    model = randomized_bn(MobileNet(MobileNetConfig(alpha=0.25, resolution=64, num_classes=10)), classifier_std=0.5)
    net = inference_network(model.eval())
    root = tmp_path_factory.mktemp("kernels")
    images = np.random.default_rng(0).standard_normal((16, 3, 64, 64)).astype(np.float32)
    write_fp32(net, str(root / "fp32.onnx"), 64)
    write_int8(net, str(root / "int8.onnx"), 64, images)
    return root, np.random.default_rng(1).standard_normal((3, 3, 64, 64)).astype(np.float32)


def test_int8_plan_runs_its_float_convs_in_float_with_the_same_values(small_onnx, tmp_path):
    import onnx

    from mobilenets.deploy.web.kernels import compare, plan_int8

    root, x = small_onnx
    original = onnx.load(str(root / "int8.onnx"))
    before = original.SerializeToString()
    _, everything = plan_int8(original, min_macs=0)
    assert original.SerializeToString() == before  # the caller's model is not touched
    pointwise = sorted(c["macs"] for c in everything["convs"]["int8"])
    threshold = pointwise[len(pointwise) // 2]  # the larger half of the pointwise convs keeps int8
    planned, summary = plan_int8(original, min_macs=threshold)
    onnx.save(planned, str(tmp_path / "planned.onnx"))
    assert summary["int8_convs"] == sum(m >= threshold for m in pointwise) > 0
    assert summary["float_convs"] == 27 - summary["int8_convs"]
    assert sum(c["depthwise"] for c in summary["convs"]["float"]) == 13
    # what ORT runs: exactly the planned int8 convs as QLinearConv, the others as float convs
    ops = optimized_ops(tmp_path / "planned.onnx", tmp_path)
    assert ops["QLinearConv"] == summary["int8_convs"]
    assert ops["Conv"] + ops["FusedConv"] >= summary["float_convs"]
    # what ORT's int8 kernels compute for the original, up to ties of the requantization's rounding
    diff, scale = compare(root / "int8.onnx", tmp_path / "planned.onnx", probes=3)
    assert diff <= 0.01 * scale, (diff, scale)


def test_per_tensor_input_would_let_ort_requantize_the_float_weights(small_onnx, tmp_path):
    """The negative control of the per-channel input: the same plan with each float conv's input
    behind a per-tensor DequantizeLinear (the same values) lets ORT quantize the float weights
    again and fuse every conv into QLinearConv: the plan would run nothing in float."""
    import onnx

    from mobilenets.deploy.web.kernels import plan_int8

    root, _ = small_onnx
    planned, summary = plan_int8(onnx.load(str(root / "int8.onnx")), min_macs=10**12)
    assert summary["int8_convs"] == 0
    producer = {o: n for n in planned.graph.node for o in n.output}
    for node in planned.graph.node:
        if node.op_type == "Conv":
            dq = producer[node.input[0]]
            assert dq.op_type == "DequantizeLinear" and dq.name.endswith("_input_dq")
            # the same scale and zero point, per tensor
            inits = {i.name: i for i in planned.graph.initializer}
            scale = onnx.numpy_helper.to_array(inits[dq.input[1]])[:1].reshape(())
            zero = onnx.numpy_helper.to_array(inits[dq.input[2]])[:1].reshape(())
            planned.graph.initializer.extend([onnx.numpy_helper.from_array(scale, dq.input[1] + "_t"),
                                              onnx.numpy_helper.from_array(zero, dq.input[2] + "_t")])
            dq.input[1], dq.input[2] = dq.input[1] + "_t", dq.input[2] + "_t"
            del dq.attribute[:]
    onnx.save(planned, str(tmp_path / "per_tensor.onnx"))
    onnx.save(plan_int8(onnx.load(str(root / "int8.onnx")), min_macs=10**12)[0], str(tmp_path / "planned.onnx"))
    assert optimized_ops(tmp_path / "per_tensor.onnx", tmp_path)["QLinearConv"] == 27
    assert optimized_ops(tmp_path / "planned.onnx", tmp_path)["QLinearConv"] == 0


def test_fp32_plan_turns_pointwise_convs_into_gemms_with_the_same_logits(small_onnx, tmp_path):
    import onnx

    from mobilenets.deploy.web.kernels import plan_fp32

    root, x = small_onnx
    planned, summary = plan_fp32(onnx.load(str(root / "fp32.onnx")), max_positions=64, min_macs=0)
    onnx.save(planned, str(tmp_path / "planned.onnx"))
    assert summary["gemm_convs"] == 10  # the pointwise convs on 8x8 maps (2), 4x4 (6) and 2x2 (2)
    assert all(c["positions"] <= 64 for c in summary["convs"])
    ops = Counter(n.op_type for n in planned.graph.node)
    assert ops["Gemm"] == 10 + 1 and ops["Transpose"] == 20 and ops["Relu"] == 27  # + the classifier
    ref = run(root / "fp32.onnx", x)
    assert np.abs(run(tmp_path / "planned.onnx", x) - ref).max() <= 1e-5 * max(1.0, float(np.abs(ref).max()))


def test_plan_file_refuses_a_rewrite_that_changes_values(small_onnx, tmp_path, monkeypatch):
    """The guard of every int8 rewrite: a plan whose values differ is refused, the file untouched."""
    import shutil

    import onnx

    from mobilenets.deploy.web import kernels

    root, _ = small_onnx
    path = tmp_path / "model.onnx"
    shutil.copyfile(root / "int8.onnx", path)
    before = path.read_bytes()
    real = kernels.plan_int8

    def wrong_scale(model):  # the kind of bug the guard is for: one conv's weights on a wrong scale
        planned, summary = real(model)
        for init in planned.graph.initializer:
            if "_web" in init.name and init.data_type == onnx.TensorProto.FLOAT and len(init.dims) == 4:
                init.CopyFrom(onnx.numpy_helper.from_array(3 * onnx.numpy_helper.to_array(init), init.name))
                break
        return planned, summary

    monkeypatch.setattr(kernels, "plan_int8", wrong_scale)
    with pytest.raises(MobileNetsError, match="changed the int8 model's logits"):
        kernels.plan_file(path, int8=True)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]
    monkeypatch.setattr(kernels, "plan_int8", real)
    summary = kernels.plan_file(path, int8=True)
    assert summary["max_abs_change_native"] == 0.0 and summary["float_convs"] == 27  # all small: float, bit-exact
