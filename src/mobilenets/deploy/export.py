"""Export a MobileNet for deployment: ONNX, TFLite (LiteRT), ExecuTorch or TorchScript, fp32 or int8.

What every export does, in order:

1. **Source**: a :class:`~mobilenets.models.mobilenet.MobileNet`, a checkpoint (file or run folder) or a
   registry name (random weights: useful for speed measurements only).
2. **Inference network** (:func:`inference_network`): BatchNorm folded into each convolution's
   weights and bias (checked against the eager model), padding made explicit for the model's
   input size (``tf_same`` becomes a constant ``ZeroPad2d`` where it is asymmetric, so no
   shape arithmetic is left in the graph), dropout removed.
3. **Int8** (``int8=True``): post-training static quantization with per-channel (per output
   channel) symmetric int8 weights and per-tensor uint8/int8 activations, calibrated on a folder
   of images or on the built-in digits training split. ``qat_epochs > 0`` first fine-tunes the
   folded network for that many epochs with fake quantization in the loop (quantization-aware
   training, see :func:`qat_finetune`) and then quantizes the fine-tuned weights the same way.
4. **Writing**: to a temporary file beside ``output``, then renamed; the preprocessing sidecar
   ``OUTPUT.json`` likewise. A failed export leaves neither behind.
5. **Check**: the written file is loaded with :func:`mobilenets.deploy.runtime.load_runner` and compared
   with the eager model on fresh inputs: fp32 on random inputs at two batch sizes (max abs
   difference of the logits, must be <= 1e-4); int8 on held-out real images (top-1 agreement
   with the fp32 eager model, and accuracy of both where labels are known).

The sidecar (``<output>.json``) records what a caller needs to feed the model: layout, input
size, dtype, mean/std, the eval resize/crop, class names, the model config, and the check.

Per format:

* ONNX: ``torch.onnx.export(dynamo=True)``, opset 20, batch dimension symbolic. Int8: ONNX Runtime
  ``quantize_static`` in QDQ format (uint8 activations, int8 per-channel weights, min/max
  calibration) after ``quant_pre_process``.
* TorchScript: traced and frozen (fp32 only); the runner applies ``optimize_for_inference``.
* TFLite: the folded network is rebuilt as a TensorFlow graph (``tf.nn`` conv/depthwise/pad/relu
  ops holding our weights, NHWC, batch ``None``) and converted with ``TFLiteConverter``; int8 is
  full-integer quantization with a representative dataset. This path works for every member of
  the family (any padding/activation/variant) and is exact to ~1e-5.
* ExecuTorch: ``torch.export`` lowered to the XNNPACK delegate; int8 through the PT2E flow with
  the ``XNNPACKQuantizer``. ExecuTorch plans memory for a bounded batch (the planner gave 15 in
  our runs, below the declared bound); the runner reads it from the program and splits larger
  batches.
"""

from __future__ import annotations

import copy
import json
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mobilenets.deploy.fold import InferenceNet, inference_network
from mobilenets.models.layers import same_padding
from mobilenets.models.mobilenet import MobileNet
from mobilenets.utils.tf import import_tf

FORMATS = ("onnx", "tflite", "executorch", "torchscript")
SUFFIXES = {"onnx": ".onnx", "tflite": ".tflite", "executorch": ".pte", "torchscript": ".pt"}
INT8_FORMATS = ("onnx", "tflite", "executorch")
FP32_TOLERANCE = 1e-4  # max abs difference of the logits, export vs eager
CHECK_BATCH_SIZES = (1, 5)
EXECUTORCH_MAX_BATCH = 32  # bound declared for ExecuTorch's dynamic batch (the planner may pick less)
CHECK_SEED = 20240517  # fresh inputs: not the seed of any training or calibration draw
SIDECAR_SUFFIX = ".json"
QAT_MAX_IMAGES = 50_000  # labelled images held in memory for quantization-aware fine-tuning


class ExportCheckFailed(ValueError):
    """The exported file does not reproduce the eager model within the tolerance."""


# --------------------------------------------------------------------------- sources


@dataclass
class Source:
    """The model to export and what is known about it."""

    model: MobileNet
    description: str  # "checkpoint PATH", "registry model NAME" or "model object"
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    eval_crop: float
    classes: list[str] | None
    data: str | None  # the data it was trained on (None: the built-in digits, or unknown)
    trained: bool


_ARCHITECTURE_FIELDS = ("alpha", "variant", "activation", "padding", "min_channels", "channel_divisor")


def resolve_source(model_or_checkpoint: Any, expect_model: str | None = None) -> Source:
    """A :class:`Source` from a MobileNet, a registry name or a checkpoint path.

    ``expect_model`` (a registry name) is the architecture the checkpoint must have: a checkpoint
    of a different architecture (width, variant, activation, padding) is refused."""
    from mobilenets.models.registry import get_config, list_models

    default = (0.5, 0.5, 0.5)
    if isinstance(model_or_checkpoint, MobileNet):
        src = Source(model_or_checkpoint.eval(), "model object", default, default, 0.875, None, None, True)
    elif isinstance(model_or_checkpoint, (str, os.PathLike)):
        text = os.fspath(model_or_checkpoint)
        if text in list_models() and not os.path.exists(text):
            m = MobileNet(get_config(text)).eval()
            src = Source(m, f"registry model {text} (untrained weights)", default, default, 0.875, None, None, False)
        else:
            from mobilenets.weights.checkpoint import load_checkpoint

            if not os.path.exists(text):
                raise FileNotFoundError(f"{text} is neither a registry model (see `mobilenet models`) "
                                        f"nor an existing checkpoint")
            m, meta = load_checkpoint(text)
            src = Source(m.eval(), f"checkpoint {text}", tuple(meta.get("mean", default)),
                         tuple(meta.get("std", default)), float(meta.get("eval_crop", 0.875)),
                         meta.get("classes"), meta.get("data"), True)
    else:
        raise TypeError(f"expected a MobileNet, a checkpoint path or a registry name, "
                        f"got {type(model_or_checkpoint).__name__}")
    if expect_model is not None:
        want = get_config(expect_model)
        have = src.model.config
        diff = [f"{f} {getattr(have, f)!r} (expected {getattr(want, f)!r})"
                for f in _ARCHITECTURE_FIELDS if getattr(have, f) != getattr(want, f)]
        if diff:
            raise ValueError(f"{src.description} is a different architecture from {expect_model}: {', '.join(diff)}")
    return src


# --------------------------------------------------------------------------- calibration data


@dataclass
class ImageSet:
    """Preprocessed images (float32 NCHW) for calibration and for the int8 check."""

    calibration: np.ndarray
    check: np.ndarray
    check_labels: np.ndarray | None  # None where the labels are unknown
    calibration_labels: np.ndarray | None
    source: str


def _digits_images(source: Source, resolution: int, limit: int) -> ImageSet:
    from mobilenets.data.datasets import Augment, load_data

    bundle = load_data(None, resolution, Augment(mean=source.mean, std=source.std))
    # Labels mean something only for a trained model whose classes are the digits.
    labelled = (source.trained and source.model.config.num_classes == len(bundle.classes)
                and source.classes in (None, bundle.classes))
    # Calibrate on the training split without its random affine augmentation (deterministic);
    # check on the validation split, which neither training nor calibration has seen.
    train = copy.copy(bundle.train)
    train.augment = None
    n = min(limit, len(train))
    idx = np.random.default_rng(0).permutation(len(train))[:n]
    cal = torch.stack([train[int(i)][0] for i in idx]).numpy()
    cal_labels = np.array([train.targets[int(i)] for i in idx])
    val = torch.stack([bundle.val[i][0] for i in range(len(bundle.val))]).numpy()
    labels = np.array(bundle.val.targets)
    if not labelled:
        labels = cal_labels = None
    return ImageSet(cal, val, labels, cal_labels, "digits")


def _folder_images(folder: str | os.PathLike, resolution: int, mean, std, eval_crop: float,
                   classes: list[str] | None, limit: int) -> ImageSet:
    """Every image under ``folder`` (recursively, sorted); every 5th one is held out for the check.
    An image's label is its parent folder's name where that is one of ``classes``."""
    from PIL import Image, UnidentifiedImageError

    from mobilenets.data.datasets import IMAGE_EXTENSIONS, Augment, eval_transform

    root = Path(folder)
    if not root.exists():
        raise FileNotFoundError(f"calibration folder not found: {root}")
    if not root.is_dir():
        raise ValueError(f"calibration data must be a folder of images: {root}")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if len(files) < 2:
        raise ValueError(f"calibration folder {root} holds {len(files)} image(s); need at least 2")
    transform = eval_transform(resolution, Augment(mean=mean, std=std, eval_crop=eval_crop))
    index = {c: i for i, c in enumerate(classes or [])}
    cal_files = [f for i, f in enumerate(files) if i % 5 != 4][:limit]
    check_files = [f for i, f in enumerate(files) if i % 5 == 4][:1000]

    def load(paths: list[Path]) -> tuple[np.ndarray, np.ndarray | None]:
        images, labels = [], []
        for p in paths:
            try:
                with Image.open(p) as im:
                    images.append(transform(im.convert("RGB")))
            except (UnidentifiedImageError, OSError, SyntaxError) as exc:
                raise ValueError(f"cannot read calibration image {p}: {exc}") from None
            labels.append(index.get(p.parent.name, -1))
        lab = np.array(labels)
        return torch.stack(images).numpy(), (lab if (lab >= 0).all() else None)

    cal, cal_labels = load(cal_files)
    check, labels = load(check_files)
    return ImageSet(cal, check, labels, cal_labels, str(root))


def calibration_images(calibration: str | os.PathLike | None, source: Source, resolution: int,
                       limit: int = 256) -> ImageSet:
    """Calibration and check images: a folder of images, or (``None``) the built-in digits."""
    if calibration is None:
        return _digits_images(source, resolution, limit)
    return _folder_images(calibration, resolution, source.mean, source.std, source.eval_crop,
                          source.classes, limit)


# --------------------------------------------------------------------------- QAT


class _FakeQuant(nn.Module):
    """Per-tensor asymmetric 8-bit fake quantization of activations with an EMA of min/max."""

    def __init__(self, momentum: float = 0.01) -> None:
        super().__init__()
        self.momentum = momentum
        self.register_buffer("lo", torch.tensor(float("nan")))
        self.register_buffer("hi", torch.tensor(float("nan")))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            lo, hi = x.detach().min().clamp(max=0), x.detach().max().clamp(min=0)
            if torch.isnan(self.lo):
                self.lo.copy_(lo), self.hi.copy_(hi)
            else:
                self.lo.lerp_(lo, self.momentum), self.hi.lerp_(hi, self.momentum)
        scale = float(max((self.hi - self.lo).item(), 1e-8) / 255.0)
        zero = int(min(max(round(-self.lo.item() / scale), 0), 255))
        return torch.fake_quantize_per_tensor_affine(x, scale, zero, 0, 255)


class _QConv(nn.Module):
    """A conv whose weights are fake-quantized per output channel, symmetric int8 (as ORT/TFLite)."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.conv.weight
        scale = (w.detach().abs().amax(dim=(1, 2, 3)) / 127.0).clamp(min=1e-12)
        zero = torch.zeros_like(scale, dtype=torch.int32)
        wq = torch.fake_quantize_per_channel_affine(w, scale, zero, 0, -127, 127)
        return nn.functional.conv2d(x, wq, self.conv.bias, self.conv.stride, self.conv.padding,
                                    self.conv.dilation, self.conv.groups)


def qat_finetune(net: InferenceNet, images: np.ndarray, labels: np.ndarray, epochs: int,
                 lr: float = 1e-4, batch_size: int = 64, seed: int = 0) -> InferenceNet:
    """Quantization-aware fine-tuning of a folded network: weights fake-quantized per channel,
    every activation (input, each ReLU, pool) fake-quantized per tensor, trained with the
    straight-through estimator (cross-entropy, Adam) on ``images``/``labels``. Returns a new
    float network with the fine-tuned weights, to be quantized by the exporter."""
    net = copy.deepcopy(net)
    layers: list[nn.Module] = [_FakeQuant()]
    for layer in net.features:
        if isinstance(layer, nn.Conv2d):
            layers.append(_QConv(layer))
        else:
            layers.append(layer)
            if isinstance(layer, (nn.ReLU, nn.ReLU6)):
                layers.append(_FakeQuant())
    qnet = InferenceNet(nn.Sequential(*layers), net.classifier)
    gen = torch.Generator().manual_seed(seed)
    x_all, y_all = torch.from_numpy(images), torch.from_numpy(labels).long()
    opt = torch.optim.Adam([p for p in qnet.parameters() if p.requires_grad], lr=lr)
    qnet.train()
    with torch.no_grad():  # observe the activation ranges before any weight moves
        for i in range(0, len(x_all), batch_size):
            qnet(x_all[i:i + batch_size])
    for _ in range(epochs):
        order = torch.randperm(len(x_all), generator=gen)
        for i in range(0, len(order), batch_size):
            b = order[i:i + batch_size]
            loss = nn.functional.cross_entropy(qnet(x_all[b]), y_all[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return net.eval()  # the same conv/linear modules, now fine-tuned


# --------------------------------------------------------------------------- writers


def _onnx_fp32(net: nn.Module, path: str, resolution: int) -> None:
    import warnings

    x = torch.randn(2, 3, resolution, resolution)
    batch = torch.export.Dim("batch", min=1, max=65536)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(net, (x,), dynamo=True, input_names=["input"], output_names=["logits"],
                                    dynamic_shapes={"x": {0: batch}}, optimize=True, verbose=False,
                                    opset_version=20)
    program.save(path)


class _Reader:
    """ONNX Runtime calibration data reader: batches of preprocessed images."""

    def __init__(self, images: np.ndarray, name: str, batch_size: int = 32) -> None:
        self.batches = [images[i:i + batch_size] for i in range(0, len(images), batch_size)]
        self.name = name
        self.i = 0

    def get_next(self):
        if self.i >= len(self.batches):
            return None
        self.i += 1
        return {self.name: np.ascontiguousarray(self.batches[self.i - 1], dtype=np.float32)}

    def rewind(self) -> None:
        self.i = 0


def _onnx_int8(net: nn.Module, path: str, resolution: int, images: np.ndarray) -> None:
    """ONNX Runtime static quantization, QDQ format: per-channel symmetric int8 weights, uint8
    activations calibrated by min/max (ORT fuses Conv+Relu, so each conv's output range is its
    ReLU's). The float model is pre-processed (shape inference, graph optimisation) first, as the
    ORT quantization docs recommend."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="mobilenet-export-") as tmp:
        fp32, pre = os.path.join(tmp, "fp32.onnx"), os.path.join(tmp, "pre.onnx")
        _onnx_fp32(net, fp32, resolution)
        quant_pre_process(fp32, pre, skip_symbolic_shape=True)
        quantize_static(pre, path, _Reader(images, "input"), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"WeightSymmetric": True, "ActivationSymmetric": False})


def _torchscript(net: nn.Module, path: str, resolution: int) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(net, torch.randn(2, 3, resolution, resolution), check_trace=False)
        frozen = torch.jit.freeze(traced.eval())
        frozen.save(path)


def _tf_layers(net: InferenceNet, resolution: int) -> list[tuple[str, Any]]:
    """The folded network as a list of TensorFlow steps in NHWC: ("pad", paddings), ("conv", (kernel
    HWIO, bias, stride, "SAME"/"VALID")), ("dwconv", ...), ("relu", cap or None), ("pool", None),
    ("dense", (weight [in, out], bias)). Padding that equals TF "SAME" for this input size is
    written as SAME (one op); any other padding as an explicit pad then VALID."""
    steps: list[tuple[str, Any]] = []
    size = resolution
    pending = (0, 0)  # padding of a ZeroPad2d waiting for its conv
    for layer in net.features:
        if isinstance(layer, nn.ZeroPad2d):
            left, right, top, bottom = layer.padding
            if (left, right) != (top, bottom):
                raise ValueError("only square padding is exported")
            pending = (top, bottom)
        elif isinstance(layer, nn.Conv2d):
            k, s = layer.kernel_size[0], layer.stride[0]
            before, after = pending if pending != (0, 0) else (layer.padding[0], layer.padding[0])
            pending = (0, 0)
            if (before, after) == same_padding(size, k, s):
                mode = "SAME"
            else:
                mode = "VALID"
                if before or after:
                    steps.append(("pad", [[0, 0], [before, after], [before, after], [0, 0]]))
            w = layer.weight.detach().numpy()
            b = layer.bias.detach().numpy()
            if layer.groups == 1:
                steps.append(("conv", (w.transpose(2, 3, 1, 0).copy(), b, s, mode)))  # OIHW -> HWIO
            elif layer.groups == layer.in_channels == layer.out_channels:
                steps.append(("dwconv", (w.transpose(2, 3, 0, 1).copy(), b, s, mode)))  # C1HW -> HWC1
            else:
                raise ValueError(f"grouped conv with {layer.groups} groups is not exported")
            size = (size + before + after - k) // s + 1
        elif isinstance(layer, nn.ReLU6):
            steps.append(("relu", 6.0))
        elif isinstance(layer, nn.ReLU):
            steps.append(("relu", None))
        else:
            raise TypeError(f"cannot export layer {type(layer).__name__} to TFLite")
    steps.append(("pool", None))
    if isinstance(net.classifier, nn.Linear):
        steps.append(("dense", (net.classifier.weight.detach().numpy().T.copy(),
                                net.classifier.bias.detach().numpy())))
    return steps


def _tflite(net: InferenceNet, path: str, resolution: int, calibration: np.ndarray | None) -> None:
    """The folded network rebuilt as a TensorFlow graph (NHWC, batch dimension None) from its
    weights, converted with the TFLite converter. Int8: full-integer quantization (every op int8,
    TFLITE_BUILTINS_INT8; per-channel conv weights, the converter's default) calibrated with a
    representative dataset; float32 input and output, so callers feed the same data either way."""
    tf = import_tf()

    steps = _tf_layers(net, resolution)
    consts = [(kind, tuple(tf.constant(v) if isinstance(v, np.ndarray) else v for v in arg)
               if isinstance(arg, tuple) else arg) for kind, arg in steps]

    def forward(x):
        for kind, arg in consts:
            if kind == "pad":
                x = tf.pad(x, arg)
            elif kind == "conv":
                x = tf.nn.bias_add(tf.nn.conv2d(x, arg[0], strides=arg[2], padding=arg[3]), arg[1])
            elif kind == "dwconv":
                x = tf.nn.bias_add(tf.nn.depthwise_conv2d(x, arg[0], strides=[1, arg[2], arg[2], 1],
                                                          padding=arg[3]), arg[1])
            elif kind == "relu":
                x = tf.nn.relu(x) if arg is None else tf.nn.relu6(x)
            elif kind == "pool":
                x = tf.reduce_mean(x, axis=[1, 2])
            elif kind == "dense":
                x = tf.matmul(x, arg[0]) + arg[1]
        return tf.identity(x, name="logits")

    module = tf.Module()
    module.forward = tf.function(forward, input_signature=[
        tf.TensorSpec([None, resolution, resolution, 3], tf.float32, name="input")])
    concrete = module.forward.get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], module)
    if calibration is not None:
        nhwc = np.ascontiguousarray(calibration.transpose(0, 2, 3, 1), dtype=np.float32)

        def representative():
            for i in range(len(nhwc)):
                yield [nhwc[i:i + 1]]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    data = converter.convert()
    with open(path, "wb") as fh:
        fh.write(data)


def _executorch(net: InferenceNet, path: str, resolution: int, calibration: np.ndarray | None) -> None:
    """``torch.export`` (dynamic batch) lowered to the XNNPACK delegate with
    ``to_edge_transform_and_lower``. Int8: the PT2E flow with the XNNPACKQuantizer (symmetric
    per-channel int8 weights, asymmetric int8 activations, static), calibrated on the images."""
    import warnings

    try:
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import (
            XnnpackPartitioner,
        )
        from executorch.exir import to_edge_transform_and_lower
    except ImportError as exc:
        raise ValueError(f"executorch export needs the executorch package ({exc}); "
                         f"pip install executorch") from None
    x = torch.randn(2, 3, resolution, resolution)
    # ExecuTorch plans memory for a bounded shape, so the batch dimension is bounded; the runner
    # reads the planned bound from the program and runs larger batches in chunks.
    dynamic = {"x": {0: torch.export.Dim("batch", min=1, max=EXECUTORCH_MAX_BATCH)}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module: nn.Module = net
        if calibration is not None:
            from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
                XNNPACKQuantizer,
                get_symmetric_quantization_config,
            )
            from torchao.quantization.pt2e.quantize_pt2e import (
                convert_pt2e,
                prepare_pt2e,
            )

            quantizer = XNNPACKQuantizer()
            quantizer.set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False))
            graph = torch.export.export(net, (x,), dynamic_shapes=dynamic).module()
            prepared = prepare_pt2e(graph, quantizer)
            with torch.no_grad():
                for i in range(0, len(calibration), 32):
                    prepared(torch.from_numpy(np.ascontiguousarray(calibration[i:i + 32], dtype=np.float32)))
            module = convert_pt2e(prepared)
        program = torch.export.export(module, (x,), dynamic_shapes=dynamic)
        lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch()
    with open(path, "wb") as fh:
        fh.write(lowered.buffer)


def _write(fmt: str, net: InferenceNet, path: str, resolution: int, images: ImageSet | None) -> None:
    if fmt == "onnx":
        if images is not None:
            _onnx_int8(net, path, resolution, images.calibration)
        else:
            _onnx_fp32(net, path, resolution)
    elif fmt == "torchscript":
        _torchscript(net, path, resolution)
    elif fmt == "tflite":
        _tflite(net, path, resolution, None if images is None else images.calibration)
    elif fmt == "executorch":
        _executorch(net, path, resolution, None if images is None else images.calibration)
    else:  # pragma: no cover - checked by export_model
        raise ValueError(f"unknown format {fmt!r}")


# --------------------------------------------------------------------------- checks


def _fp32_check(model: MobileNet, runner: Callable[[np.ndarray], np.ndarray], resolution: int) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(CHECK_SEED)
    worst, scale, per_batch = 0.0, 0.0, {}
    for n in CHECK_BATCH_SIZES:
        x = torch.randn(n, 3, resolution, resolution, generator=gen)
        with torch.no_grad():
            ref = model(x).numpy()
        out = runner(x.numpy())
        if out.shape != ref.shape:
            raise ExportCheckFailed(f"exported model gives shape {out.shape} for batch {n}, eager {ref.shape}")
        diff = float(np.abs(out - ref).max())
        per_batch[str(n)] = diff
        worst = max(worst, diff)
        scale = max(scale, float(np.abs(ref).max()))
    return {"kind": "fp32", "inputs": "random normal", "batch_sizes": list(CHECK_BATCH_SIZES),
            "max_abs_diff": worst, "max_abs_diff_per_batch": per_batch, "tolerance": FP32_TOLERANCE,
            "max_abs_logit": scale,  # the size of what was compared (tiny for untrained weights)
            "passed": worst <= FP32_TOLERANCE}


def _batched(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, batch_size: int = 64) -> np.ndarray:
    return np.concatenate([fn(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def _int8_check(model: MobileNet, runner: Callable[[np.ndarray], np.ndarray], images: ImageSet) -> dict[str, Any]:
    with torch.no_grad():
        ref = _batched(lambda b: model(torch.from_numpy(b)).numpy(), images.check)
    out = _batched(runner, images.check)
    ref_top, out_top = ref.argmax(1), out.argmax(1)
    report = {"kind": "int8", "inputs": f"{len(images.check)} held-out images ({images.source})",
              "agreement": float((ref_top == out_top).mean()), "accuracy_fp32": None, "accuracy_int8": None}
    if images.check_labels is not None:
        report["accuracy_fp32"] = float((ref_top == images.check_labels).mean())
        report["accuracy_int8"] = float((out_top == images.check_labels).mean())
    # Per-channel differences tell how far the logits moved, not only whether the arg-max did.
    report["max_abs_diff"] = float(np.abs(out - ref).max())
    return report


# --------------------------------------------------------------------------- output handling


def _sidecar_path(output: str | os.PathLike) -> Path:
    return Path(os.fspath(output) + SIDECAR_SUFFIX)


def _check_writable(output: Path) -> None:
    """Fail early, with one line, if ``output`` cannot be written (before any slow work)."""
    if output.exists() and output.is_dir():
        raise ValueError(f"output {output} is a folder; give a file name")
    parent = output.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".probe", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        blocker = next((p for p in (parent, *parent.parents) if p.exists() and not p.is_dir()), None)
        reason = f"{blocker} is a file, not a folder" if blocker is not None else (exc.strerror or str(exc))
        raise PermissionError(f"cannot write to {parent}: {reason}") from None


def _temp_beside(path: Path) -> str:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    return tmp


def describe_preprocessing(source: Source, fmt: str, resolution: int) -> dict[str, Any]:
    layout = "NHWC" if fmt == "tflite" else "NCHW"
    shape = [None, resolution, resolution, 3] if layout == "NHWC" else [None, 3, resolution, resolution]
    resize = max(resolution, math.floor(resolution / source.eval_crop + 1e-6))
    return {
        "input_name": "input", "output_name": "logits", "layout": layout, "shape": shape, "dtype": "float32",
        "color": "RGB", "scale": "pixel / 255 (to [0, 1])", "mean": list(source.mean), "std": list(source.std),
        "normalize": "(x - mean) / std per channel, after scaling to [0, 1]",
        "resize_shorter_side": resize, "center_crop": resolution, "interpolation": "bilinear",
        "note": "the runtime runner (mobilenets.deploy.runtime.load_runner) takes NCHW for every format",
    }


# --------------------------------------------------------------------------- the entry point


def export_model(model_or_checkpoint: Any, output: str | os.PathLike, format: str = "onnx", *,
                 int8: bool = False, calibration: str | os.PathLike | None = None, qat_epochs: int = 0,
                 calibration_size: int = 256, expect_model: str | None = None, threads: int = 2,
                 log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Export ``model_or_checkpoint`` (MobileNet, checkpoint path or registry name) to ``output``.

    Returns a report: format, precision, paths, timings, and the check against the eager model
    (``report["check"]``). Raises ``ValueError``/``FileNotFoundError``/``PermissionError`` with a
    one-line message for bad input, and :class:`ExportCheckFailed` (a ``ValueError``) when an fp32
    export does not match the eager model within 1e-4; in every failure no file is left behind."""
    started = time.time()
    say = log or (lambda _msg: None)
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
    if int8 and format not in INT8_FORMATS:
        raise ValueError(f"--int8 is not offered for {format}; use one of {', '.join(INT8_FORMATS)}")
    if not isinstance(qat_epochs, int) or isinstance(qat_epochs, bool) or qat_epochs < 0:
        raise ValueError(f"qat_epochs must be an integer >= 0, got {qat_epochs!r}")
    if qat_epochs and not int8:
        raise ValueError("--qat-epochs needs --int8")
    if not isinstance(calibration_size, int) or calibration_size < 1:
        raise ValueError(f"calibration_size must be an integer >= 1, got {calibration_size!r}")
    if calibration is not None and not int8:
        raise ValueError("--calibration needs --int8")
    out = Path(output)
    _check_writable(out)
    sidecar = _sidecar_path(out)

    source = resolve_source(model_or_checkpoint, expect_model)
    model = source.model.float().eval()
    res = model.config.resolution
    net = inference_network(model)
    gen = torch.Generator().manual_seed(CHECK_SEED + 1)
    probe = torch.randn(4, 3, res, res, generator=gen)
    with torch.no_grad():
        ref = model(probe)
        fold_diff = float((net(probe) - ref).abs().max())
    # Folding only reorders float32 rounding: relative to the logits' size it must stay tiny.
    fold_limit = FP32_TOLERANCE * max(1.0, float(ref.abs().max()))
    if not fold_diff <= fold_limit:
        raise ExportCheckFailed(f"BatchNorm folding changed the logits by {fold_diff:.3g} (> {fold_limit:.3g})")
    say(f"{source.description}: alpha {model.config.alpha:g}, {res} px, {model.config.num_classes} classes; "
        f"BatchNorm folded (max abs change {fold_diff:.2e})")

    images = None
    qat_report = None
    if int8:
        # Quantization-aware fine-tuning trains on every labelled calibration image; the
        # quantizer then calibrates on the first calibration_size of them.
        images = calibration_images(calibration, source, res, QAT_MAX_IMAGES if qat_epochs else calibration_size)
        say(f"calibration: {min(calibration_size, len(images.calibration))} images from {images.source}")
        if qat_epochs:
            if images.calibration_labels is None:
                raise ValueError("quantization-aware fine-tuning needs labelled images: the built-in digits, "
                                 "or a folder whose sub-folders are the model's class names")
            t = time.time()
            net = qat_finetune(net, images.calibration, images.calibration_labels, qat_epochs)
            qat_report = {"epochs": qat_epochs, "images": len(images.calibration), "seconds": round(time.time() - t, 2)}
            say(f"quantization-aware fine-tuning: {qat_epochs} epochs on {len(images.calibration)} images")
            images.calibration = images.calibration[:calibration_size]

    from mobilenets.deploy.runtime import load_runner

    tmp_model = _temp_beside(out)
    tmp_side = None
    try:
        t = time.time()
        _write(format, net, tmp_model, res, images)
        write_s = time.time() - t
        runner = load_runner(tmp_model, threads=threads, format=format)
        check = _int8_check(model, runner, images) if int8 else _fp32_check(model, runner, res)
        if not int8 and not check["passed"]:
            raise ExportCheckFailed(
                f"{format} export differs from the eager model by {check['max_abs_diff']:.3g} max abs "
                f"(tolerance {FP32_TOLERANCE:g}); nothing written")
        report = {
            "output": str(out), "sidecar": str(sidecar), "format": format, "precision": "int8" if int8 else "fp32",
            "source": source.description, "model": model.config.to_dict(), "classes": source.classes,
            "trained_on": (source.data or "digits") if source.trained else None,
            "preprocessing": describe_preprocessing(source, format, res),
            "dynamic_batch": True, "batchnorm_folded": True, "fold_max_abs_diff": fold_diff,
            "batch_note": ("memory is planned for a bounded batch; mobilenets.deploy.runtime runs larger batches "
                           "in chunks") if format == "executorch" else None,
            "quantization": None if not int8 else {
                "method": "post-training static" + (" after quantization-aware fine-tuning" if qat_epochs else ""),
                "weights": "int8 symmetric, per output channel", "activations": _activation_scheme(format),
                "calibration": images.source, "calibration_images": len(images.calibration), "qat": qat_report},
            "check": check, "write_seconds": round(write_s, 2),
        }
        tmp_side = _temp_beside(sidecar)
        Path(tmp_side).write_text(json.dumps(report, indent=2) + "\n")
        os.replace(tmp_model, out)
        try:
            os.replace(tmp_side, sidecar)
        except BaseException:
            out.unlink(missing_ok=True)
            raise
    except BaseException:
        for p in (tmp_model, tmp_side):
            if p is not None and os.path.exists(p):
                os.unlink(p)
        raise
    report["size_bytes"] = out.stat().st_size
    report["seconds"] = round(time.time() - started, 2)
    return report


def _activation_scheme(fmt: str) -> str:
    if fmt == "onnx":
        return "uint8 asymmetric, per tensor (QDQ), min/max calibration"
    return "int8 asymmetric, per tensor, min/max calibration"


def check_text(report: dict[str, Any]) -> str:
    """One line summarising the check of an export report."""
    c = report["check"]
    if c["kind"] == "fp32":
        sizes = " and ".join(str(n) for n in c["batch_sizes"])
        return (f"check: max abs difference vs eager {c['max_abs_diff']:.2e} on random inputs at batch "
                f"{sizes} (tolerance {c['tolerance']:g}; logits up to {c['max_abs_logit']:.3g})")
    line = f"check: top-1 agreement with fp32 {100 * c['agreement']:.2f}% on {c['inputs']}"
    if c["accuracy_int8"] is not None:
        change = 100 * (c["accuracy_int8"] - c["accuracy_fp32"])
        line += (f"; accuracy int8 {100 * c['accuracy_int8']:.2f}% vs fp32 {100 * c['accuracy_fp32']:.2f}% "
                 f"({change:+.2f} points)")
    return line


# --------------------------------------------------------------------------- CLI


def add_cli(subparsers) -> None:
    p = subparsers.add_parser("export", help="export a model to ONNX, TFLite, ExecuTorch or TorchScript (fp32 or int8)")
    p.add_argument("--checkpoint", help="a run folder (its best weights) or a checkpoint file")
    p.add_argument("--model", help="a registry name: the model to export (untrained weights), or with "
                                   "--checkpoint the architecture the checkpoint must have")
    p.add_argument("--output", required=True, help="the file to write; OUTPUT.json gets the preprocessing")
    p.add_argument("--format", default="onnx", help=f"{' | '.join(FORMATS)} (default onnx)")
    p.add_argument("--int8", action="store_true", help="post-training static quantization, per-channel weights")
    p.add_argument("--calibration", help="folder of images for --int8 (default: the built-in digits training split)")
    p.add_argument("--calibration-size", type=int, default=256, help="calibration images (default 256)")
    p.add_argument("--qat-epochs", type=int, default=0, help="quantization-aware fine-tuning epochs before --int8")
    p.add_argument("--threads", type=int, default=2, help="runtime threads for the check (default 2)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_cmd_export)


def _cmd_export(args) -> None:
    if not args.checkpoint and not args.model:
        raise ValueError("give --checkpoint PATH or --model NAME")
    what = args.checkpoint if args.checkpoint else args.model
    expect = args.model if args.checkpoint else None
    log = None if args.json else print
    report = export_model(what, args.output, args.format, int8=args.int8, calibration=args.calibration,
                          qat_epochs=args.qat_epochs, calibration_size=args.calibration_size,
                          expect_model=expect, threads=args.threads, log=log)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(check_text(report))
    print(f"wrote {report['output']} ({report['size_bytes'] / 1e6:.2f} MB, {report['precision']}, "
          f"{report['format']}) and {report['sidecar']}")
