"""The one ONNX Runtime session factory, the one ONNX int8 pipeline, the one BatchNorm fold and the
one failure policy (staged files, moved into place only on success)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.ops.misc import Conv2dNormActivation

from mobilenets.deploy.fold import fold_sequence
from mobilenets.deploy.ort import NETWORK_OPS, quantize_qdq, session
from mobilenets.deploy.outputs import Staging, check_writable
from mobilenets.errors import MobileNetsError
from mobilenets.models.config import MobileNetConfig
from mobilenets.models.layers import ConvBNAct


def _conv_graph(path, with_tail: bool) -> None:
    """A 3x3 conv + ReLU6 (+ a float-only tail: Mul by 2 and Softmax) as ONNX."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["input", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Clip", ["c", "lo", "hi"], ["r"], name="relu6")]
    out = "r"
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array(0, np.float32), "lo"),
             numpy_helper.from_array(np.array(6, np.float32), "hi")]
    if with_tail:
        inits.append(numpy_helper.from_array(np.array(2, np.float32), "two"))
        nodes += [helper.make_node("Mul", ["r", "two"], ["m"], name="scale"),
                  helper.make_node("Softmax", ["m"], ["s"], axis=1, name="softmax")]
        out = "s"
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, [1, 4, 8, 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def test_session_settings_and_one_line_errors(tmp_path):
    _conv_graph(tmp_path / "g.onnx", with_tail=False)
    sess = session(tmp_path / "g.onnx", 3)
    assert sess.get_providers() == ["CPUExecutionProvider"]
    opts = sess.get_session_options()
    assert opts.intra_op_num_threads == 3 and opts.inter_op_num_threads == 1
    assert session((tmp_path / "g.onnx").read_bytes(), 1, spinning=False).get_inputs()[0].name == "input"
    (tmp_path / "bad.onnx").write_text("not a model")
    with pytest.raises(MobileNetsError, match=r"^cannot load ONNX model .*bad.onnx: "):
        session(tmp_path / "bad.onnx")
    with pytest.raises(MobileNetsError, match="threads must be an integer >= 1"):
        session(tmp_path / "g.onnx", 0)


def test_int8_pipeline_quantizes_the_clip_with_its_conv_and_leaves_a_tail_float(tmp_path):
    import onnx

    _conv_graph(tmp_path / "g.onnx", with_tail=True)
    images = np.random.default_rng(1).uniform(0, 1, (4, 3, 8, 8)).astype(np.float32)
    settings = quantize_qdq(tmp_path / "g.onnx", tmp_path / "all.onnx", list(images), batch_size=1)
    assert settings["ops"] == "all"
    quantize_qdq(tmp_path / "g.onnx", tmp_path / "net.onnx", images, batch_size=1, network_only=True)

    def quantized_outputs(path):  # the ops whose output is quantized (feeds a QuantizeLinear)
        graph = onnx.load(str(path)).graph
        q = {n.input[0] for n in graph.node if n.op_type == "QuantizeLinear"}
        return {n.op_type for n in graph.node if any(o in q for o in n.output)}

    net, every = quantized_outputs(tmp_path / "net.onnx"), quantized_outputs(tmp_path / "all.onnx")
    assert net & {"Conv", "Clip"} and "Mul" not in net and "Softmax" not in net
    assert "Mul" in every  # the control: without network_only the tail is quantized too
    assert set(NETWORK_OPS) == {"Conv", "Clip", "Relu"}
    # the Clip is quantized with the conv: the conv's output range is the clamp's (from 0: uint8
    # zero point 0), not the conv's own, whose random weights give negative values (zero point > 0)
    graph = onnx.load(str(tmp_path / "net.onnx")).graph
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
    after_conv = [n for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] in ("c", "r")]
    assert after_conv and all(int(inits[n.input[2]]) == 0 for n in after_conv)
    out = session(tmp_path / "net.onnx").run(None, {"input": images[:1]})[0]
    ref = session(tmp_path / "g.onnx").run(None, {"input": images[:1]})[0]
    assert np.abs(out - ref).max() < 0.05


def test_fold_sequence_is_eager_for_every_block_kind():
    """Our ConvBNAct (symmetric and TF-SAME), torchvision's Conv2dNormActivation and a bare conv
    with bias: folded for a 9 px input (odd: TF-SAME pads (1, 1) at stride 2; 10 px: (0, 1))."""
    torch.manual_seed(0)
    for size in (9, 10):
        for padding in ("symmetric", "tf_same"):
            cfg = MobileNetConfig(alpha=0.25, padding=padding, activation="relu6")
            seq = nn.Sequential(ConvBNAct(3, 8, 3, 2, False, cfg), ConvBNAct(8, 8, 3, 1, True, cfg),
                                Conv2dNormActivation(8, 8, 3, stride=2, groups=8, activation_layer=nn.ReLU6),
                                nn.Conv2d(8, 5, 1))
            for m in seq.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.5, 0.5)
                    m.running_var.uniform_(0.5, 2.0)
                    m.weight.data.uniform_(0.5, 1.5)
                    m.bias.data.uniform_(-0.2, 0.2)
            seq.eval()
            layers, out_size = fold_sequence(seq, size)
            assert not any(isinstance(m, nn.BatchNorm2d) for m in layers)
            pads = [m for m in layers if isinstance(m, nn.ZeroPad2d)]
            assert len(pads) == (1 if padding == "tf_same" and size == 10 else 0)  # (0, 1) only at 10 px
            x = torch.randn(2, 3, size, size)
            with torch.no_grad():
                ref = seq(x)
                got = nn.Sequential(*layers)(x)
            assert got.shape == ref.shape and got.shape[-1] == out_size
            torch.testing.assert_close(got, ref, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="cannot fold MaxPool2d"):
        fold_sequence(nn.Sequential(nn.Conv2d(3, 3, 1), nn.MaxPool2d(2)), 8)


def test_staging_moves_files_in_only_on_commit(tmp_path):
    dest = tmp_path / "out"
    with Staging(dest) as staging:
        staging.path("a.txt").write_text("a")
    assert os.listdir(tmp_path) == []  # not committed: nothing, not even the destination
    dest.mkdir()
    (dest / "a.txt").write_text("old")
    (dest / "other").write_text("kept")
    with Staging(dest) as staging:  # a destination that holds files: left as it was
        staging.path("a.txt").write_text("new")
    assert sorted(os.listdir(dest)) == ["a.txt", "other"] and (dest / "a.txt").read_text() == "old"
    with Staging(dest) as staging:
        staging.path("a.txt").write_text("new")
        staging.path("b.txt").write_text("b")
        assert staging.commit() == [dest / "a.txt", dest / "b.txt"]
    assert sorted(os.listdir(dest)) == ["a.txt", "b.txt", "other"] and (dest / "a.txt").read_text() == "new"
    # a move that fails takes back the ones before it, and a folder the commit made
    fresh = tmp_path / "fresh"
    with Staging(fresh) as staging:
        staging.path("a.txt").write_text("a")
        staging.path("missing.txt")  # never written: its move fails
        with pytest.raises(FileNotFoundError):
            staging.commit()
    assert not fresh.exists() and sorted(os.listdir(tmp_path)) == ["out"]


def test_check_writable_names_the_blocking_file(tmp_path):
    blocker = tmp_path / "f"
    blocker.write_text("")
    with pytest.raises(MobileNetsError, match=f"cannot write to {blocker / 'x'}: {blocker} is a file, not a folder"):
        check_writable(blocker / "x")
    check_writable(tmp_path / "made" / "here")
    assert (tmp_path / "made" / "here").is_dir() and os.listdir(tmp_path / "made" / "here") == []
