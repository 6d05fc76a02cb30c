"""TFLite (LiteRT) export: the folded network rebuilt as a TensorFlow graph, then converted.

The graph is built from our weights with ``tf.nn`` ops (conv / depthwise conv / pad / relu /
mean / matmul), NHWC, batch dimension ``None``, and converted with ``TFLiteConverter``. This
path works for every member of the family (any padding, activation or variant) and is exact to
~1e-5. Int8 is full-integer quantization with a representative dataset, the classifier left float.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from torch import nn

from mobilenets.deploy.fold import InferenceNet
from mobilenets.errors import MobileNetsError
from mobilenets.models.layers import same_padding
from mobilenets.utils.tf import import_tf


def conv_steps(layers: Iterable[nn.Module], size: int) -> tuple[list[tuple[str, Any]], int]:
    """Folded layers (:func:`~mobilenets.deploy.fold.fold_sequence`: ``ZeroPad2d``, ``Conv2d`` with
    bias, ``ReLU``/``ReLU6``) for a ``size`` px input as TensorFlow steps in NHWC, and the output
    size: ("pad", paddings), ("conv", (kernel HWIO, bias, stride, "SAME"/"VALID")), ("dwconv",
    ...), ("relu", cap or None). Padding that equals TF "SAME" for this input size
    (:func:`~mobilenets.models.layers.same_padding`) is written as SAME (one op); any other
    padding as an explicit pad then VALID. The one PyTorch-to-TensorFlow lowering: the
    classifier's :func:`tf_steps` and the detector's TFLite export both use it."""
    steps: list[tuple[str, Any]] = []
    pending = (0, 0)  # padding of a ZeroPad2d waiting for its conv
    for layer in layers:
        if isinstance(layer, nn.ZeroPad2d):
            left, right, top, bottom = layer.padding
            if (left, right) != (top, bottom):
                raise MobileNetsError("only square padding is exported")
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
                raise MobileNetsError(f"grouped conv with {layer.groups} groups is not exported")
            size = (size + before + after - k) // s + 1
        elif isinstance(layer, nn.ReLU6):
            steps.append(("relu", 6.0))
        elif isinstance(layer, nn.ReLU):
            steps.append(("relu", None))
        else:
            raise MobileNetsError(f"cannot export layer {type(layer).__name__} to TFLite")
    return steps, size


def tf_steps(net: InferenceNet, resolution: int) -> list[tuple[str, Any]]:
    """The folded network as a list of TensorFlow steps in NHWC: :func:`conv_steps` of its
    features, then ("pool", None) and ("dense", (weight [in, out], bias)) for a classifier."""
    steps, _ = conv_steps(net.features, resolution)
    steps.append(("pool", None))
    if isinstance(net.classifier, nn.Linear):
        steps.append(("dense", (net.classifier.weight.detach().numpy().T.copy(),
                                net.classifier.bias.detach().numpy())))
    return steps


def tf_constants(tf, steps: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """``steps`` with their arrays made TensorFlow constants (once, outside the traced function)."""
    return [(kind, tuple(tf.constant(v) if isinstance(v, np.ndarray) else v for v in arg)
             if isinstance(arg, tuple) else arg) for kind, arg in steps]


def apply_steps(tf, x, steps: list[tuple[str, Any]]):
    """Run TensorFlow ``steps`` (:func:`conv_steps`, :func:`tf_steps`) on the NHWC tensor ``x``."""
    for kind, arg in steps:
        if kind == "pad":
            x = tf.pad(x, arg)
        elif kind == "conv":
            x = tf.nn.bias_add(tf.nn.conv2d(x, arg[0], strides=arg[2], padding=arg[3]), arg[1])
        elif kind == "dwconv":
            x = tf.nn.bias_add(tf.nn.depthwise_conv2d(x, arg[0], strides=[1, arg[2], arg[2], 1], padding=arg[3]),
                               arg[1])
        elif kind == "relu":
            x = tf.nn.relu(x) if arg is None else tf.nn.relu6(x)
        elif kind == "pool":
            x = tf.reduce_mean(x, axis=[1, 2])
        elif kind == "dense":
            x = tf.matmul(x, arg[0]) + arg[1]
        else:
            raise MobileNetsError(f"unknown TensorFlow step {kind!r}")
    return x


def write(net: InferenceNet, path: str, resolution: int, calibration: np.ndarray | None = None) -> None:
    """Convert the TensorFlow rebuild of ``net``. Int8: full-integer quantization (every op int8,
    TFLITE_BUILTINS_INT8; per-channel conv weights, the converter's default) calibrated with a
    representative dataset; float32 input and output, so callers feed the same data either way."""
    tf = import_tf()

    consts = tf_constants(tf, tf_steps(net, resolution))

    def forward(x):
        return tf.identity(apply_steps(tf, x, consts), name="logits")

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
        if isinstance(net.classifier, nn.Linear):
            # Every op int8 but the classifier, kept float so that the logits are not rounded to 8
            # bits (see mobilenets.deploy.quantizer.int8_quantizer): the converter's public selective
            # quantization is the quantization debugger's deny-list.
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
            options = tf.lite.experimental.QuantizationDebugOptions(denylisted_ops=["FULLY_CONNECTED"])
            debugger = tf.lite.experimental.QuantizationDebugger(
                converter=converter, debug_dataset=representative, debug_options=options)
            data = debugger.get_nondebug_quantized_model()
        else:
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            data = converter.convert()
    else:
        data = converter.convert()
    with open(path, "wb") as fh:
        fh.write(data)


__all__ = ["apply_steps", "conv_steps", "tf_constants", "tf_steps", "write"]
