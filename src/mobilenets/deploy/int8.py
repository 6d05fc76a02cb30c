"""The int8 export's choice of label-free method and the floor it is held to.

:func:`int8_methods` says which of :data:`~mobilenets.deploy.ptq.INT8_METHODS` an export tries,
:func:`weight_qmax` on which weight grid (the grid the file really uses), :func:`halves` splits the
held-out images into the half that chooses and the half that reports, and :func:`apply_floor` holds
a trained model's agreement to ``--min-agreement`` beyond measurement noise (:func:`wilson_interval`).
:func:`mobilenets.deploy.export.export_model` writes and checks the files.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

from torch import nn

from mobilenets.deploy.calibration import ImageSet
from mobilenets.deploy.ort import weight_qmax as onnx_weight_qmax
from mobilenets.deploy.outputs import ExportCheckFailed
from mobilenets.deploy.ptq import INT8_MAX, INT8_METHODS
from mobilenets.errors import MobileNetsError

AUTO = "auto"  # int8_method: try every label-free method, keep the best on held-out images
MIN_AGREEMENT = 0.90  # int8 top-1 agreement with fp32 below which a trained model's export fails
MIN_FLOOR_IMAGES = 20  # fewer held-out images than this: the agreement is too coarse to hold to the floor
MIN_SELECTION_IMAGES = 2 * MIN_FLOOR_IMAGES  # fewer: no choice between methods, FALLBACK_METHOD is used
FALLBACK_METHOD = "learned_rounding"  # the best label-free method on the real MobileNetV1 (docs/export.md)


def weight_qmax(fmt: str) -> int | Callable[[nn.Conv2d], int]:
    """The largest integer of the symmetric weight grid the ``fmt`` file uses: 127 (int8) for
    TFLite and ExecuTorch; per conv for ONNX, whose one form for every CPU keeps 8 bits in depthwise
    convs and 7 (64) in the others (:func:`mobilenets.deploy.ort.weight_qmax`). Learned rounding and
    bias correction must work on the grid the file really uses."""
    if fmt == "onnx":
        return lambda conv: onnx_weight_qmax(conv.weight.shape, conv.groups)
    return INT8_MAX


def int8_methods(int8_method: str | None, bias_correction: bool, qat_epochs: int, trained: bool) -> list[str]:
    """The label-free methods an int8 export tries (more than one: it keeps the best on held-out
    images). ``auto`` (or None): all of :data:`~mobilenets.deploy.ptq.INT8_METHODS` for a trained
    model; ``plain`` alone for random weights (exported for speed: agreement says nothing there);
    before quantization-aware fine-tuning, ``bias_correction`` alone for a trained model (QAT starts
    from it: on the real MobileNetV1, ExecuTorch, 128 held-out crops, one epoch from bias correction
    reached 80.5 % top-1 agreement, from plain 68.8 %, plain's own level). (``export_model`` uses :data:`FALLBACK_METHOD` alone where
    fewer than :data:`MIN_SELECTION_IMAGES` are held out.)"""
    if bias_correction:  # the former flag: an alias of int8_method="bias_correction"
        if int8_method not in (None, AUTO, "bias_correction"):
            raise MobileNetsError(f"--bias-correction contradicts --int8-method {int8_method}; give one of them")
        return ["bias_correction"]
    if int8_method in (None, AUTO):
        if not trained:
            return ["plain"]
        return ["bias_correction"] if qat_epochs else list(INT8_METHODS)
    if int8_method not in INT8_METHODS:
        raise MobileNetsError(f"unknown --int8-method {int8_method!r}; choose one of {AUTO}, {', '.join(INT8_METHODS)}")
    return [int8_method]


def halves(images: ImageSet) -> tuple[ImageSet, ImageSet]:
    """The held-out images split in two, alternately: one half chooses the method, the other
    reports the chosen file's agreement (so the figure reported is not the one maximised)."""
    def part(start: int) -> ImageSet:
        labels = None if images.check_labels is None else images.check_labels[start::2]
        return dataclasses.replace(images, check=images.check[start::2], check_labels=labels)

    if len(images.check) < 2:
        return images, images
    return part(0), part(1)


def wilson_interval(fraction: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval (95 % for ``z`` 1.96) of a proportion ``fraction`` measured on ``n``
    trials. Written out: four lines, where scipy/statsmodels would be a dependency for them."""
    centre = (fraction + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(fraction * (1 - fraction) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def apply_floor(check: dict[str, Any], min_agreement: float, trained: bool, method: str) -> None:
    """Hold a trained model's int8 agreement to ``min_agreement`` (:class:`ExportCheckFailed`
    below it); random weights are exported for speed, so their agreement is only recorded."""
    check["method"] = method
    check["min_agreement"] = min_agreement
    if not trained:
        check["passed"] = None
        check["note"] = "untrained weights: the agreement says nothing about a real model; not held to the floor"
        return
    images = check["images"]
    if images < MIN_FLOOR_IMAGES:
        check["passed"] = None
        check["note"] = (f"{images} held-out images: too few to hold the agreement to the floor "
                         f"(one image is {100 / images:.0f} points); give more with --calibration")
        return
    # A few dozen held-out images measure the agreement to several points (32 images: +-10), so the
    # floor fails a file only where the agreement is below it beyond that: where even the upper end
    # of its 95 % (Wilson score) interval is. Measured: the real MobileNetV1's default ONNX file agreed
    # on 81 % of 32 held-out crops of the calibration photos and on 94 % of 480 crops of other photos.
    low, high = wilson_interval(check["agreement"], images)
    check["agreement_interval_95"] = [low, high]
    check["passed"] = high >= min_agreement
    if not check["passed"]:
        raise ExportCheckFailed(
            f"int8 top-1 agreement with fp32 is {100 * check['agreement']:.1f}% (95% interval {100 * low:.0f}-"
            f"{100 * high:.0f}%) on {check['inputs']} (method {method}), below --min-agreement "
            f"{100 * min_agreement:g}%; nothing written. Try --calibration with more images like the model's inputs, "
            f"--qat-epochs 1, or a lower --min-agreement")


__all__ = ["AUTO", "FALLBACK_METHOD", "MIN_AGREEMENT", "MIN_FLOOR_IMAGES", "MIN_SELECTION_IMAGES", "apply_floor",
           "halves", "int8_methods", "weight_qmax", "wilson_interval"]
