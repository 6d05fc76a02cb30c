"""Batch-1 latency of our SSD beside torchvision's ``ssdlite320_mobilenet_v3_large``, eager and ONNX.

What ``mobilenet bench --detector ssd`` times (the bench package calls :func:`detector_latency`):
each detector end to end on one image already at its input size (pre-processing, network, box
decoding, NMS), eager PyTorch and ONNX Runtime (the graph of :mod:`~mobilenets.tasks.detect.export`,
NMS inside; also int8 for ours), interleaved by :func:`mobilenets.bench.timing.time_interleaved`
so machine load hits all alike. The peer is built with random weights (no download): latency
does not depend on the weights' values, but the number of boxes reaching NMS does: untrained
heads (the peer, and ours when no checkpoint is given) are biased towards background first, as a
trained detector is on almost every anchor (:func:`background_biased`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mobilenets.bench.timing import BenchSettings, time_interleaved
from mobilenets.utils.scoped import torch_threads


def _onnx(model, resolution: int, folder: Path, name: str, calibration: list[np.ndarray] | None = None,
          threads: int = 2, score: float = 0.01, iou: float = 0.6, keep: int = 100):
    from mobilenets.tasks.detect.onnx_graph import DenseSSD, append_nms, export_dense, session

    dense_path = str(folder / f"{name}-dense.onnx")
    export_dense(DenseSSD(model, resolution).eval(), dense_path)
    if calibration is not None:
        from mobilenets.tasks.detect.onnx_graph import quantize_dense

        quantize_dense(dense_path, str(folder / f"{name}-dense-int8.onnx"), calibration)
        dense_path = str(folder / f"{name}-dense-int8.onnx")
    append_nms(dense_path, str(folder / f"{name}.onnx"), iou=iou, score=score, keep=keep)
    return session(folder / f"{name}.onnx", threads)


BACKGROUND_LOGIT = 8.0  # softmax: objects at ~3e-4 beside a background logit of 8 (sigmoid: -8 each)


def background_biased(model) -> None:
    """Bias an SSD's class logits towards background, in place: a trained detector scores almost
    every anchor as background, an untrained one scores all of them ~1/K, which would time an NMS
    over every anchor of every class (torchvision's SSDLite320: ~0.3 s) instead of the network."""
    sigmoid = getattr(model, "classification", "softmax") == "sigmoid"
    columns = model.head.classification_head.num_columns
    with torch.no_grad():
        for per_map in model.head.classification_head.module_list:
            last = [m for m in per_map.modules() if isinstance(m, torch.nn.Conv2d)][-1]
            bias = last.bias.view(-1, columns)
            bias.fill_(-BACKGROUND_LOGIT if sigmoid else 0.0)
            bias[:, 0] = BACKGROUND_LOGIT


def detector_latency(checkpoint: str | None = None, *, config=None, settings: BenchSettings | None = None,
                     peer: bool = True, int8: bool = True, progress: bool = False) -> dict[str, Any]:
    """``{"results": {engine: {median_ms, p10_ms, p90_ms, samples}}, "settings", "models"}`` for
    our detector (a detection checkpoint, or a :class:`~mobilenets.tasks.detect.config.
    DetectorConfig` with random weights) and, with ``peer``, torchvision's SSDLite320."""
    from mobilenets.tasks.detect.build import build_detector
    from mobilenets.tasks.detect.config import make_config
    from mobilenets.tasks.detect.run import load_detector

    s = (settings or BenchSettings()).validate()
    if checkpoint is not None:
        ours, meta = load_detector(checkpoint)
        from mobilenets.tasks.detect.config import DetectorConfig

        config = DetectorConfig.from_dict(meta["model"])
    else:
        config = config or make_config("ssd")
        ours = build_detector(config).eval()
        background_biased(ours)
    r = config.resolution
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(3, r, r, generator=gen)
    calib = [torch.rand(3, r, r, generator=gen).numpy() for _ in range(min(s.calibration_size, 16))]
    runs: dict[str, Any] = {}
    models = {"ours": {"detector": config.detector, "alpha": config.backbone.alpha, "resolution": r}}
    with torch_threads(s.threads), torch.no_grad(), tempfile.TemporaryDirectory(prefix="mobilenet-det-bench-") as tmp:
        folder = Path(tmp)
        runs["ours eager"] = lambda: ours([image])
        sess = _onnx(ours, r, folder, "ours", threads=s.runtime_threads, score=config.score_thresh, iou=config.nms_thresh,
                     keep=config.detections)
        x = image.numpy()[None]
        runs["ours onnx fp32"] = lambda: sess.run(None, {"input": x})
        if int8:
            q = _onnx(ours, r, folder, "ours-int8", calib, s.runtime_threads, config.score_thresh, config.nms_thresh,
                      config.detections)
            runs["ours onnx int8"] = lambda: q.run(None, {"input": x})
        if peer:
            from torchvision.models.detection import ssdlite320_mobilenet_v3_large

            # the peer's random init from seed 0, on a forked generator: the caller's is left as it was
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                tv = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None).eval()
            background_biased(tv)
            tv_image = torch.rand(3, 320, 320, generator=gen)
            runs["torchvision ssdlite320 eager"] = lambda: tv([tv_image])
            tv_sess = _onnx(tv, 320, folder, "ssdlite320", threads=s.runtime_threads, score=tv.score_thresh,
                            iou=tv.nms_thresh, keep=tv.detections_per_img)
            tv_x = tv_image.numpy()[None]
            runs["torchvision ssdlite320 onnx fp32"] = lambda: tv_sess.run(None, {"input": tv_x})
            models["torchvision ssdlite320"] = {"detector": "ssdlite320_mobilenet_v3_large", "resolution": 320}
        results = time_interleaved(runs, s, progress)
    return {"results": results, "settings": s.__dict__, "models": models}


__all__ = ["background_biased", "detector_latency"]
