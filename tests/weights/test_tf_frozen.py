"""TF1 frozen graphs of TF-slim MobileNetV1 in: the real ImageNet model shipped in `nudity` 0.2.3,
compared with TensorFlow running the same graph on real photos."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mobilenets.data.photos import load_photo
from mobilenets.errors import MobileNetsError
from mobilenets.weights.convert.tf_frozen import from_tf_frozen

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "china", "flower", "grace_hopper", "camera")
EGYPTIAN_CAT = 285  # ImageNet class index (1000 classes, no background)


@pytest.fixture(scope="module")
def graph_and_inputs(real_mobilenet_pb):
    from PIL import Image

    pb = real_mobilenet_pb
    # TF-slim's preprocessing for these graphs: RGB, 224 x 224, (x - 128) / 128.
    x = np.stack([(np.asarray(load_photo(n).resize((224, 224), Image.BILINEAR), dtype=np.float32) - 128) / 128
                  for n in PHOTOS])
    return pb, x


@pytest.fixture(scope="module")
def tf_logits(graph_and_inputs):
    from slim_reference import slim_logits

    return slim_logits(*graph_and_inputs)


def test_frozen_graph_equals_tensorflow_on_real_photos(graph_and_inputs, tf_logits):
    pb, x = graph_and_inputs
    model = from_tf_frozen(pb)
    cfg = model.config
    assert (cfg.alpha, cfg.resolution, cfg.num_classes, cfg.padding, cfg.activation) == \
        (1.0, 224, 1000, "tf_same", "relu6")
    assert cfg.bn_eps == 1e-3  # read from the graph's batchnorm/add/y constant
    with torch.no_grad():
        ours = model(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()
    assert tf_logits.shape == (len(PHOTOS), 1001)
    theirs = tf_logits[:, 1:]  # index 0 is TF-slim's background class, dropped by default
    rel = np.abs(ours - theirs).max() / np.abs(theirs).max()
    assert rel < 1e-4, rel
    assert (ours.argmax(1) == theirs.argmax(1)).all()
    assert ours[PHOTOS.index("chelsea")].argmax() == EGYPTIAN_CAT
    source = model.pretrained_cfg["source"]
    assert source["ignored_top_layers"] == ["final_training_ops"]  # retrain.py's 2-class head


def test_frozen_graph_keep_background_and_resolution(graph_and_inputs, tf_logits):
    pb, x = graph_and_inputs
    model = from_tf_frozen(pb, keep_background=True)
    assert model.config.num_classes == 1001
    with torch.no_grad():
        ours = model(torch.from_numpy(x[:2]).permute(0, 3, 1, 2)).numpy()
    assert np.abs(ours - tf_logits[:2]).max() / np.abs(tf_logits[:2]).max() < 1e-4
    assert from_tf_frozen(pb, resolution=160).config.resolution == 160


def test_frozen_graph_bad_files(tmp_path):
    with pytest.raises(MobileNetsError, match="not found"):
        from_tf_frozen(tmp_path / "missing.pb")
    junk = tmp_path / "junk.pb"
    junk.write_bytes(b"\x00\xff garbage that is not a protobuf \x01" * 10)
    with pytest.raises(MobileNetsError, match="not a TensorFlow GraphDef"):
        from_tf_frozen(junk)
    from mobilenets.utils.tf import import_tf

    tf = import_tf()
    graph = tf.Graph()
    with graph.as_default():
        tf.constant(1.0, name="Conv2d_0/weights")
    other = tmp_path / "other.pb"
    other.write_bytes(graph.as_graph_def().SerializeToString())
    with pytest.raises(MobileNetsError, match="not a frozen TF-slim mobilenet_v1 graph"):
        from_tf_frozen(other)
