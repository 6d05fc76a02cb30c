"""The peers ``mobilenet bench --peers`` measures ours against (their models, not ours):

* ``timm-eager``: timm's ``mobilenetv1_100`` in eager PyTorch;
* ``keras-tflite``: ``keras.applications.MobileNet`` (the nearest of its widths) converted to
  TFLite fp32, run by the TFLite interpreter (XNNPACK);
* ``timm-onnxruntime-int8``: ONNX Runtime's own static int8 (QDQ, per-channel weights) of the
  timm model, pre-processed and quantized as ONNX Runtime's quantization guide recommends.

Each is set up as its own documentation recommends for speed; random weights (speed only).
"""

from __future__ import annotations

import os
import random
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mobilenets.bench.engines import BenchContext, EngineUnavailable, Run, first_line, torch_runner
from mobilenets.models.config import MobileNetConfig
from mobilenets.utils.tf import import_tf


def keras_alpha(alpha: float) -> float:
    """Keras's MobileNet comes in widths 0.25, 0.5, 0.75, 1.0: the nearest one."""
    return min((0.25, 0.5, 0.75, 1.0), key=lambda a: abs(a - alpha))


def peer_config(engine: str, cfg: MobileNetConfig) -> MobileNetConfig:
    """The architecture a peer engine runs when asked for ``cfg`` (timm's is always width 1.0;
    Keras's the nearest of its widths), for counting its mult-adds."""
    classes = cfg.num_classes or 1000
    if engine in ("timm-eager", "timm-onnxruntime-int8"):
        return MobileNetConfig(alpha=1.0, resolution=cfg.resolution, num_classes=classes)
    if engine == "keras-tflite":
        return MobileNetConfig(alpha=keras_alpha(cfg.alpha), resolution=cfg.resolution, num_classes=classes)
    return cfg


def timm_model(ctx: BenchContext) -> nn.Module:
    """timm's ``mobilenetv1_100`` (random weights, seed 0), built once per benchmark."""
    if "timm" not in ctx.cache:
        try:
            import timm
        except ImportError:
            raise EngineUnavailable("timm is not installed") from None
        with torch.random.fork_rng(devices=[]):  # seeded, without resetting the caller's generator
            torch.manual_seed(0)
            ctx.cache["timm"] = timm.create_model("mobilenetv1_100", num_classes=ctx.cfg.num_classes or 1000).eval()
    return ctx.cache["timm"]


def build_timm_eager(ctx: BenchContext, batch: int) -> Run:
    return torch_runner(timm_model(ctx), torch.from_numpy(ctx.images(batch)))


def build_keras_tflite(ctx: BenchContext, batch: int) -> Run:
    try:
        tf = import_tf()
    except ImportError:
        raise EngineUnavailable("TensorFlow is not installed") from None
    res = ctx.cfg.resolution
    path = os.path.join(ctx.workdir, "keras-mobilenet.tflite")
    if not os.path.exists(path):
        import keras

        # keras seeds Python's, numpy's and TensorFlow's global generators: give the first two back
        saved = random.getstate(), np.random.get_state()
        try:
            keras.utils.set_random_seed(0)
            km = keras.applications.MobileNet(input_shape=(res, res, 3), alpha=keras_alpha(ctx.cfg.alpha),
                                              weights=None, classes=ctx.cfg.num_classes or 1000)
        finally:
            random.setstate(saved[0])
            np.random.set_state(saved[1])
        try:
            content = tf.lite.TFLiteConverter.from_keras_model(km).convert()
        except Exception as exc:  # the converter raises many types
            raise EngineUnavailable(f"TFLite conversion of Keras MobileNet failed: {first_line(exc)}") from None
        Path(path).write_bytes(content)
    interp = tf.lite.Interpreter(model_path=path, num_threads=ctx.settings.runtime_threads)
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]
    interp.resize_tensor_input(inp["index"], [batch, res, res, 3], strict=False)
    interp.allocate_tensors()
    x = np.ascontiguousarray(ctx.images(batch).transpose(0, 2, 3, 1))  # TFLite's layout, untimed

    def run() -> Any:
        interp.set_tensor(inp["index"], x)
        interp.invoke()
        return interp.get_tensor(out["index"])

    return run


class CalibrationReader:
    """ONNX Runtime's calibration data reader over ``images``, 8 at a time."""

    def __init__(self, images: np.ndarray, name: str) -> None:
        self.items = [{name: images[i:i + 8]} for i in range(0, len(images), 8)]
        self.i = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        self.i += 1
        return self.items[self.i - 1] if self.i <= len(self.items) else None

    def rewind(self) -> None:
        self.i = 0


def timm_int8_onnx(ctx: BenchContext) -> str:
    """timm's model exported to ONNX and statically quantized by ONNX Runtime (once)."""
    if "timm-int8" in ctx.cache:
        return ctx.cache["timm-int8"]
    try:
        from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError:
        raise EngineUnavailable("onnxruntime (with its quantization tools) is not installed") from None
    res = ctx.cfg.resolution
    fp32, pre = os.path.join(ctx.workdir, "timm.onnx"), os.path.join(ctx.workdir, "timm-pre.onnx")
    q = os.path.join(ctx.workdir, "timm-int8.onnx")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's and quantizer's advice, not ours to act on
            torch.onnx.export(timm_model(ctx), (torch.randn(2, 3, res, res),), fp32, dynamo=True,
                              external_data=False, input_names=["input"], output_names=["logits"],
                              dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1, max=4096)}})
            quant_pre_process(fp32, pre, skip_symbolic_shape=True)
            calib = np.random.default_rng(1).standard_normal((ctx.settings.calibration_size, 3, res, res))
            quantize_static(pre, q, CalibrationReader(calib.astype(np.float32), "input"), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            reduce_range=False)  # ORT's own default form, as a timm user would get it
    except EngineUnavailable:  # timm missing: say so, not "export failed"
        raise
    except Exception as exc:  # the exporter and the quantizer raise many types
        raise EngineUnavailable(f"ONNX export / quantization of timm failed: {first_line(exc)}") from None
    ctx.cache["timm-int8"] = q
    return q


def build_timm_ort_int8(ctx: BenchContext, batch: int) -> Run:
    try:
        import onnxruntime  # noqa: F401 - only to say so when it is missing
    except ImportError:
        raise EngineUnavailable("onnxruntime is not installed") from None
    from mobilenets.deploy.ort import session

    path = timm_int8_onnx(ctx)
    sess = session(path, ctx.settings.runtime_threads)  # the same settings as our own ONNX files' runner
    name = sess.get_inputs()[0].name
    x = ctx.images(batch)
    return lambda: sess.run(None, {name: x})


PEER_BUILDERS: dict[str, Callable[[BenchContext, int], Run]] = {
    "timm-eager": build_timm_eager,
    "keras-tflite": build_keras_tflite,
    "timm-onnxruntime-int8": build_timm_ort_int8,
}
