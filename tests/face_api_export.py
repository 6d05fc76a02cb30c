"""Archives in official layouts built from a real detector, face-api's SSD-MobileNetV1 face detector
(npm @vladmandic/face-api 1.7.15, installed by the Makefile under tests/reference/face_api): a TF
Object Detection API export (pipeline.config + TF checkpoint and/or frozen graph, the TF1 zoo's
``.tar.gz`` layout) and face-api's npm tarball. Shared by the importer's tests
(tests/tasks/detect/test_detect_convert.py) and the registry's (tests/weights/test_pretrained_detectors.py);
importable from any test because tests/conftest.py's folder is on sys.path."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np

REFERENCE = Path(__file__).resolve().parent / "reference" / "face_api"
PACKAGE_DIR = REFERENCE / "node_modules" / "@vladmandic" / "face-api"
MODEL_DIR = PACKAGE_DIR / "model"
MANIFEST = MODEL_DIR / "ssd_mobilenetv1_model-weights_manifest.json"


# A TF OD API export built from face-api's weights (no real TF OD API archive can be downloaded
# here): the names of TF's ssd_mobilenet_v1 checkpoints, every BatchNorm kept (face-api's folded
# layers written as BatchNorm with gamma 1, mean 0, variance 1 - eps and beta = the folded bias),
# and the pipeline.config of a 512 px, 2-class SSD. It exercises the pipeline.config reader, the TF
# checkpoint and frozen-graph readers and the TF names; a frozen graph here holds the weights as
# Const nodes only (the reader reads nothing else), not TF's inference ops.
PIPELINE = """
model {
  ssd {
    num_classes: 2
    box_coder { faster_rcnn_box_coder { y_scale: 10.0 x_scale: 10.0 height_scale: 5.0 width_scale: 5.0 } }
    image_resizer { fixed_shape_resizer { height: 512 width: 512 } }
    anchor_generator {
      ssd_anchor_generator {
        num_layers: 6  min_scale: 0.2  max_scale: 0.95
        aspect_ratios: 1.0  aspect_ratios: 2.0  aspect_ratios: 0.5  aspect_ratios: 3.0  aspect_ratios: 0.3333
      }
    }
    box_predictor { convolutional_box_predictor { kernel_size: 1  use_dropout: false } }
    feature_extractor {
      type: "ssd_mobilenet_v1"  # the TF1 zoo's
      depth_multiplier: 1.0
      min_depth: 16
      conv_hyperparams { batch_norm { epsilon: 0.001  scale: true } }
    }
    post_processing {
      batch_non_max_suppression { score_threshold: 1e-8 iou_threshold: 0.5 max_detections_per_class: 100
                                  max_total_detections: 100 }
      score_converter: SIGMOID
    }
  }
}
train_config: { batch_size: 24 }
"""


def tf_od_api_weights() -> dict[str, np.ndarray]:
    from mobilenets.tasks.detect.tfjs import read_manifest

    fa = read_manifest(MANIFEST)
    fe = "FeatureExtractor/MobilenetV1"
    out: dict[str, np.ndarray] = {}

    def layer(src: str, dst: str, kernel: str = "weights") -> None:
        out[f"{dst}/{kernel}"] = fa[f"{src}/{kernel}"]
        if f"{src}/BatchNorm/gamma" in fa:
            for t in ("gamma", "beta", "moving_mean", "moving_variance"):
                out[f"{dst}/BatchNorm/{t}"] = fa[f"{src}/BatchNorm/{t}"]
        else:
            b = fa[f"{src}/convolution_bn_offset"]
            out.update({f"{dst}/BatchNorm/gamma": np.ones_like(b), f"{dst}/BatchNorm/beta": b,
                        f"{dst}/BatchNorm/moving_mean": np.zeros_like(b),
                        f"{dst}/BatchNorm/moving_variance": np.full_like(b, 1 - 0.001)})

    layer("MobilenetV1/Conv2d_0_pointwise", f"{fe}/Conv2d_0")
    for i in range(1, 14):
        layer(f"MobilenetV1/Conv2d_{i}_depthwise", f"{fe}/Conv2d_{i}_depthwise", "depthwise_weights")
        layer(f"MobilenetV1/Conv2d_{i}_pointwise", f"{fe}/Conv2d_{i}_pointwise")
    for k, (mid, depth) in enumerate([(256, 512), (128, 256), (128, 256), (64, 128)]):
        layer(f"Prediction/Conv2d_{2 * k}_pointwise", f"{fe}/Conv2d_13_pointwise_1_Conv2d_{k + 2}_1x1_{mid}")
        layer(f"Prediction/Conv2d_{2 * k + 1}_pointwise", f"{fe}/Conv2d_13_pointwise_2_Conv2d_{k + 2}_3x3_s2_{depth}")
    for i in range(6):
        for part in ("BoxEncodingPredictor", "ClassPredictor"):
            for t in ("weights", "biases"):
                out[f"BoxPredictor_{i}/{part}/{t}"] = fa[f"Prediction/BoxPredictor_{i}/{part}/{t}"]
    out["global_step"] = np.array(200000, dtype=np.int64)
    return out


def write_tf_od_api_export(folder: Path, *, checkpoint: bool = True, frozen: bool = True,
                           pipeline: str = PIPELINE) -> Path:
    """``folder`` with pipeline.config and, as asked, ``model.ckpt.*`` and ``frozen_inference_graph.pb``
    holding face-api's weights under TF's names (written by TensorFlow itself)."""
    from mobilenets.utils.tf import import_tf

    tf = import_tf()
    weights = tf_od_api_weights()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pipeline.config").write_text(pipeline)
    names = sorted(weights)
    if checkpoint:
        tf.raw_ops.SaveV2(prefix=str(folder / "model.ckpt"), tensor_names=names, shape_and_slices=[""] * len(names),
                          tensors=[tf.constant(weights[n]) for n in names])
    if frozen:
        graph = tf.Graph()
        with graph.as_default():
            for n in names:
                tf.constant(weights[n], name=n)
        (folder / "frozen_inference_graph.pb").write_bytes(graph.as_graph_def().SerializeToString())
    return folder


def tar_gz(files: dict[str, Path | bytes]) -> bytes:
    """A .tar.gz holding each ``name -> file or bytes`` (the archive layouts the publishers serve)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:  # float weights: gzip -9 takes ~50 s
        for name, data in files.items():
            body = data.read_bytes() if isinstance(data, Path) else data
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return buf.getvalue()


def tf1_zoo_archive(stem: str, work: Path) -> bytes:
    """The TF1 detection zoo's ``<stem>.tar.gz``: ``<stem>/{pipeline.config, frozen_inference_graph.pb,
    model.ckpt.*}``, built from face-api's weights."""
    folder = write_tf_od_api_export(work / stem)
    return tar_gz({f"{stem}/{p.name}": p for p in sorted(folder.iterdir()) if p.is_file()})


def face_api_npm_tarball() -> bytes:
    """face-api's npm tarball in npm's layout (``package/...``), with what the registry reads from it:
    package.json and the SSD's weights manifest and shard, from the installed package."""
    files: dict[str, Path | bytes] = {"package/package.json": PACKAGE_DIR / "package.json"}
    for p in sorted(MODEL_DIR.glob("ssd_mobilenetv1_model*")):
        files[f"package/model/{p.name}"] = p
    return tar_gz(files)
