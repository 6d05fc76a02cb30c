"""TFLite detector export: the rebuilt network equals eager, and TFLite's post-process op keeps what
per-class NMS keeps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.ops import batched_nms

from mobilenets.models.mobilenet import MobileNet
from mobilenets.tasks.detect.build import build_detector
from mobilenets.tasks.detect.config import make_config

pytest.importorskip("tensorflow")


@pytest.mark.parametrize("detector,padding", [("ssd", "tf_same"), ("ssdlite", "symmetric")])
def test_tflite_network_equals_eager(tmp_path, detector, padding):
    from mobilenets.models.config import MobileNetConfig
    from mobilenets.tasks.detect.tflite import write_tflite
    from mobilenets.utils.tf import import_tf

    torch.manual_seed(0)
    cfg = make_config(detector, backbone=MobileNetConfig(alpha=0.25, padding=padding, activation="relu6"),
                      resolution=96, num_classes=3)
    model = build_detector(cfg).eval()
    for m in model.modules():  # BatchNorm statistics that are not (0, 1), so that folding is tested
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.bias.data.uniform_(-0.1, 0.1)
    write_tflite(model, cfg, tmp_path / "dense.tflite", postprocess_op=False)
    tf = import_tf()
    interp = tf.lite.Interpreter(model_path=str(tmp_path / "dense.tflite"))
    interp.allocate_tensors()
    x = torch.rand(1, 3, 96, 96)
    out = interp.get_signature_runner()(input=x.permute(0, 2, 3, 1).numpy().copy())
    with torch.no_grad():
        head = model.head(list(model.backbone((x - 0.5) / 0.5).values()))
    codes = head["bbox_regression"][0].numpy()[:, [1, 0, 3, 2]]
    scores = torch.softmax(head["cls_logits"], -1)[0].numpy()
    assert out["codes"].shape == (1, *codes.shape)
    np.testing.assert_allclose(out["codes"][0], codes, atol=2e-4)
    np.testing.assert_allclose(out["scores"][0], scores, atol=2e-5)


def test_postprocess_op_keeps_per_class_nms(tmp_path):
    """The op alone on fixed codes and scores: its boxes, classes and scores are torchvision's
    per-class NMS of the same decoded boxes (the TF OD API's decoding)."""
    from mobilenets.tasks.detect.tflite import postprocess_signature
    from mobilenets.utils.tf import import_tf

    tf = import_tf()
    rng = np.random.default_rng(0)
    n, k, keep = 200, 3, 20
    anchors = np.concatenate([rng.uniform(0.2, 0.8, (n, 2)), rng.uniform(0.05, 0.3, (n, 2))], 1).astype(np.float32)
    codes = rng.normal(0, 1, (1, n, 4)).astype(np.float32)
    logits = rng.normal(0, 2, (1, n, k + 1)).astype(np.float32)
    scores = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)

    @tf.function(experimental_implements=postprocess_signature(k, keep, 0.5, 0.05))
    def op(c, s, a):
        return tf.zeros([1, keep, 4]), tf.zeros([1, keep]), tf.zeros([1, keep]), tf.zeros([1])

    def forward(c, s):
        b, cl, sc, count = op(c, s, tf.constant(anchors))
        return {"boxes": b, "classes": cl, "scores": sc, "count": count}

    module = tf.Module()
    module.f = tf.function(forward, input_signature=[tf.TensorSpec([1, n, 4], tf.float32, name="c"),
                                                     tf.TensorSpec([1, n, k + 1], tf.float32, name="s")])
    conv = tf.lite.TFLiteConverter.from_concrete_functions([module.f.get_concrete_function()], module)
    conv.allow_custom_ops = True
    (tmp_path / "op.tflite").write_bytes(conv.convert())
    interp = tf.lite.Interpreter(model_path=str(tmp_path / "op.tflite"), num_threads=1)
    interp.allocate_tensors()
    got = interp.get_signature_runner()(c=codes, s=scores)
    count = int(got["count"][0])

    ty, tx, th, tw = codes[0].T
    cy, cx = ty / 10 * anchors[:, 2] + anchors[:, 0], tx / 10 * anchors[:, 3] + anchors[:, 1]
    h, w = np.exp(th / 5) * anchors[:, 2], np.exp(tw / 5) * anchors[:, 3]
    decoded = np.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2], 1)  # ymin, xmin, ymax, xmax
    rows, cols = np.where(scores[0, :, 1:] >= 0.05)
    order = batched_nms(torch.tensor(decoded[rows][:, [1, 0, 3, 2]]), torch.tensor(scores[0, rows, cols + 1]),
                        torch.tensor(cols), 0.5)[:keep].numpy()
    assert count == len(order) > 5
    np.testing.assert_array_equal(got["classes"][0, :count], cols[order])
    np.testing.assert_allclose(got["scores"][0, :count], scores[0, rows[order], cols[order] + 1], rtol=1e-6)
    np.testing.assert_allclose(got["boxes"][0, :count], decoded[rows[order]], atol=1e-5)


def test_detector_bn_momentum_is_the_detectors_not_the_checkpoints():
    """Converted TF weights carry momentum 0.0003; the detector trains with its own (0.03)."""
    from mobilenets.models.config import MobileNetConfig

    backbone = MobileNet(MobileNetConfig(alpha=0.25, num_classes=10, bn_momentum=0.0003))
    cfg = make_config("ssd", backbone=backbone.config.replace(bn_momentum=0.03), resolution=96, num_classes=2)
    model = build_detector(cfg, backbone)
    momenta = {m.momentum for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert momenta == {0.03}


def test_export_refuses_unknown_format_before_loading(tmp_path, capsys):
    from mobilenets.cli.main import main

    code = main(["detect", "export", "--checkpoint", str(tmp_path / "none"), "--output", str(tmp_path / "x"),
                 "--formats", "onnx,coreml"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "coreml" in err[0] and "onnx, tflite" in err[0]
    assert not (tmp_path / "x").exists()
