"""Export a MobileNet for deployment: ONNX, TFLite (LiteRT), ExecuTorch or TorchScript, fp32 or int8.

What :func:`export_model` does, in order:

1. **Source** (:mod:`mobilenets.deploy.sources`): a MobileNet, a checkpoint (file or run folder),
   a registry name or a config (random weights: useful for speed measurements only).
2. **Inference network** (:func:`mobilenets.deploy.fold.inference_network`): BatchNorm folded
   into each convolution's weights and bias (checked against the eager model), padding made
   explicit for the model's input size (``tf_same`` becomes a constant ``ZeroPad2d`` where it is
   asymmetric, so no shape arithmetic is left in the graph), dropout removed.
3. **Int8** (``int8=True``): post-training static quantization with per-channel (per output
   channel) symmetric int8 weights and per-tensor uint8/int8 activations, calibrated by default on
   the data the model's run recorded (else on a folder of images, or ``"digits"`` for the built-in
   digits; a model with no known data and no calibration is refused; see
   :mod:`mobilenets.deploy.calibration`).
   ``qat_epochs > 0`` first fine-tunes the folded network for that many epochs with int8
   simulated by PT2E, distilling from the float model itself, so no labels are needed
   (:func:`mobilenets.deploy.qat.qat_finetune`); ExecuTorch lowers that int8 graph, ONNX and TFLite quantize the
   fine-tuned weights the same way.
4. **Writing** (:mod:`mobilenets.deploy.formats`, one module per format): to a temporary file
   beside ``output``, then renamed; the sidecar ``OUTPUT.json`` likewise. A failed export leaves
   neither behind. What the converters print (TensorFlow's and ExecuTorch's lines) is silenced
   unless ``verbose``.
5. **Check**: the written file is loaded with :func:`mobilenets.deploy.runtime.load_runner` and
   compared with the eager model on fresh inputs: fp32 on random inputs at two batch sizes (max
   abs difference of the logits, must be <= 1e-4); int8 on held-out real images (top-1
   agreement with the fp32 eager model, and accuracy of both where labels are known).

The sidecar records what a caller needs to feed the model: the preprocessing
(:class:`~mobilenets.data.preprocess.Preprocessing`, timm's keys) with the input layout, shape and
dtype, the class names, the model config, and the check.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mobilenets.data.preprocess import Preprocessing
from mobilenets.deploy.calibration import ImageSet
from mobilenets.deploy.calibration import calibration_images as load_calibration_images
from mobilenets.deploy.fold import inference_network
from mobilenets.deploy.formats import (
    ACTIVATION_SCHEMES,
    FORMATS,
    INT8_FORMATS,
    format_for_output,
    sidecar_path,
    write,
)
from mobilenets.deploy.int8 import (
    AUTO,
    FALLBACK_METHOD,
    MIN_AGREEMENT,
    MIN_SELECTION_IMAGES,
    apply_floor,
    halves,
    int8_methods,
    weight_qmax,
)
from mobilenets.deploy.ort import DEFAULT_FORM as ONNX_INT8_FORM
from mobilenets.deploy.ort import FORMS as ONNX_INT8_FORMS
from mobilenets.deploy.outputs import ExportCheckFailed, Staging, check_writable
from mobilenets.deploy.ptq import prepare_int8
from mobilenets.deploy.qat import qat_finetune
from mobilenets.deploy.sources import resolve_source
from mobilenets.errors import MobileNetsError
from mobilenets.models.mobilenet import MobileNet
from mobilenets.utils.scoped import quiet_output

FP32_TOLERANCE = 1e-4  # max abs difference of the logits, export vs eager, per unit of the largest logit (>= 1)
CHECK_BATCH_SIZES = (1, 5)
CONFIDENT = 0.5  # top-1 probability of the float model above which an image counts as "confident"
CHECK_SEED = 20240517  # fresh inputs: not the seed of any training or calibration draw
BIAS_CORRECTION_IMAGES = 128  # held a layer at a time; 256 doubles the export's peak memory (docs/export.md)
QAT_MAX_IMAGES = 20_000  # images held in memory (float32, 0.6 MB each at 224 px) for quantization-aware fine-tuning


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
    # float32 rounding grows with the logits' size (as in the folding check): the limit does too
    limit = FP32_TOLERANCE * max(1.0, scale)
    return {"kind": "fp32", "inputs": "random normal", "batch_sizes": list(CHECK_BATCH_SIZES),
            "max_abs_diff": worst, "max_abs_diff_per_batch": per_batch, "tolerance": limit,
            "max_abs_logit": scale,  # the size of what was compared (tiny for untrained weights)
            "passed": worst <= limit}


def _batched(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, batch_size: int = 64) -> np.ndarray:
    return np.concatenate([fn(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def _int8_check(model: MobileNet, runner: Callable[[np.ndarray], np.ndarray], images: ImageSet) -> dict[str, Any]:
    with torch.no_grad():
        ref = _batched(lambda b: model(torch.from_numpy(b)).numpy(), images.check)
    out = _batched(runner, images.check)
    ref_top, out_top = ref.argmax(1), out.argmax(1)
    same = ref_top == out_top
    # Where the float model itself is unsure, the top two logits lie close and any rounding can swap
    # them; agreement where it is confident (top-1 probability > 0.5) is reported apart.
    shifted = np.exp(ref - ref.max(1, keepdims=True))
    confident = (shifted.max(1) / shifted.sum(1)) > CONFIDENT
    report = {"kind": "int8", "inputs": f"{len(images.check)} held-out images ({images.source})",
              "images": len(images.check),
              "agreement": float(same.mean()), "confident_images": int(confident.sum()),
              "agreement_confident": float(same[confident].mean()) if confident.any() else None,
              "accuracy_fp32": None, "accuracy_int8": None}
    if images.check_labels is not None:
        report["accuracy_fp32"] = float((ref_top == images.check_labels).mean())
        report["accuracy_int8"] = float((out_top == images.check_labels).mean())
    # Per-channel differences tell how far the logits moved, not only whether the arg-max did.
    report["max_abs_diff"] = float(np.abs(out - ref).max())
    return report


def check_text(report: dict[str, Any]) -> str:
    """One line summarising the check of an export report."""
    c = report["check"]
    if c["kind"] == "fp32":
        sizes = " and ".join(str(n) for n in c["batch_sizes"])
        return (f"check: max abs difference vs eager {c['max_abs_diff']:.2e} on random inputs at batch "
                f"{sizes} (tolerance {c['tolerance']:g}; logits up to {c['max_abs_logit']:.3g})")
    line = f"check: top-1 agreement with fp32 {100 * c['agreement']:.2f}% on {c['inputs']}"
    if c.get("agreement_confident") is not None:
        line += (f" ({100 * c['agreement_confident']:.2f}% on the {c['confident_images']} where fp32's top-1 "
                 f"probability > {CONFIDENT:g})")
    if c.get("method"):
        line += f"; int8 method {c['method']}"
        tried = ((report.get("quantization") or {}).get("selection") or {}).get("tried") or {}
        if len(tried) > 1:
            line += " (best of " + ", ".join(f"{m} {100 * t['agreement']:.1f}%" for m, t in tried.items()) + \
                    " on the other held-out half)"
    if c.get("passed") is None and "note" in c:
        line += "; not held to --min-agreement: " + c["note"].split(":")[0]
    if c["accuracy_int8"] is not None:
        change = 100 * (c["accuracy_int8"] - c["accuracy_fp32"])
        line += (f"; accuracy int8 {100 * c['accuracy_int8']:.2f}% vs fp32 {100 * c['accuracy_fp32']:.2f}% "
                 f"({change:+.2f} points)")
    return line


# --------------------------------------------------------------------------- output handling


def describe_preprocessing(preprocessing: Preprocessing, fmt: str) -> dict[str, Any]:
    """The sidecar's ``preprocessing``: :meth:`Preprocessing.to_dict` (timm's keys, so
    ``Preprocessing.from_dict`` reads it back) plus the tensor the exported file takes."""
    res = preprocessing.resolution
    layout = "NHWC" if fmt == "tflite" else "NCHW"
    shape = [None, res, res, 3] if layout == "NHWC" else [None, 3, res, res]
    return {
        **preprocessing.to_dict(),
        "input_name": "input", "output_name": "logits", "layout": layout, "shape": shape, "dtype": "float32",
        "color": "RGB", "normalize": "(pixel / 255 - mean) / std per channel",
        "note": "the runtime runner (mobilenets.deploy.runtime.load_runner) takes NCHW for every format",
    }


def _validate(format: str, int8: bool, calibration: Any, qat_epochs: Any, calibration_images: Any, threads: Any) -> None:
    if format not in FORMATS:
        raise MobileNetsError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
    if int8 and format not in INT8_FORMATS:
        raise MobileNetsError(f"int8=True is not offered for {format}; use one of {', '.join(INT8_FORMATS)}")
    if not isinstance(qat_epochs, int) or isinstance(qat_epochs, bool) or qat_epochs < 0:
        raise MobileNetsError(f"qat_epochs must be an integer >= 0, got {qat_epochs!r}")
    if qat_epochs and not int8:
        raise MobileNetsError("qat_epochs > 0 needs int8=True")
    if not isinstance(calibration_images, int) or isinstance(calibration_images, bool) or calibration_images < 1:
        raise MobileNetsError(f"calibration_images must be an integer >= 1, got {calibration_images!r}")
    if calibration is not None and not int8:
        raise MobileNetsError("calibration needs int8=True")
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise MobileNetsError(f"threads must be an integer >= 1, got {threads!r}")


# --------------------------------------------------------------------------- int8: choose a method, hold it to a floor


def _write_int8(candidates: dict[str, tuple[Any, dict[str, Any]]], images: ImageSet, model: MobileNet, fmt: str,
                staged: Path, trials: Staging, res: int, threads: int, quantized: Any,
                rewrite: Callable[[Path], Any]) -> tuple[str, Any, dict[str, Any]]:
    """Write each candidate's int8 file (under ``trials``; ``rewrite`` then runs on it), keep the
    best by top-1 agreement on the selection half of the held-out images (confident agreement,
    then the stronger method, break ties), move it to ``staged`` and check it on the report half.
    One candidate: written to ``staged`` and checked on every held-out image. Returns
    ``(method, selection report, check)``."""
    from mobilenets.deploy.runtime import load_runner

    if len(candidates) == 1:
        (method, (net, details)), = candidates.items()
        write(fmt, net, str(staged), res, images.calibration, quantized=quantized)
        rewrite(staged)
        check = _int8_check(model, load_runner(staged, threads=threads, format=fmt), images)
        return method, {"tried": {method: details}, "note": "one method: no selection"}, check
    choose, report = halves(images)
    tried: dict[str, dict[str, Any]] = {}
    for method, (net, details) in candidates.items():
        path = trials.path(method + staged.suffix)
        t = time.time()
        write(fmt, net, str(path), res, images.calibration)
        rewrite(path)
        c = _int8_check(model, load_runner(path, threads=threads, format=fmt), choose)
        tried[method] = {"agreement": c["agreement"], "agreement_confident": c["agreement_confident"],
                         "confident_images": c["confident_images"], **details,
                         "write_and_check_seconds": round(time.time() - t, 2)}
    order = list(candidates)
    # Ties go to the later (stronger) method: on the real MobileNetV1 learned rounding >= bias
    # correction > plain on every format, and a few held-out images often tie.
    best = max(order, key=lambda m: (tried[m]["agreement"], tried[m]["agreement_confident"] or 0.0, order.index(m)))
    os.replace(trials.folder / (best + staged.suffix), staged)
    check = _int8_check(model, load_runner(staged, threads=threads, format=fmt), report)
    selection = {"chosen_on": f"{len(choose.check)} held-out images (every other one, from the first); the check "
                              f"reports the other {len(report.check)}", "tried": tried}
    return best, selection, check


# --------------------------------------------------------------------------- the entry point



def export_model(model_or_checkpoint: Any, output: str | os.PathLike, format: str | None = None, *,
                 int8: bool = False, calibration: str | os.PathLike | None = None, qat_epochs: int = 0,
                 calibration_images: int = 256, bias_correction: bool = False, int8_method: str | None = AUTO,
                 min_agreement: float = MIN_AGREEMENT, expect_model: Any = None, threads: int = 2,
                 verbose: bool = False, log: Callable[[str], None] | None = None,
                 progress: bool = False, calibration_size: int | None = None,
                 rewrite: Callable[[Path, bool], dict[str, Any]] | None = None) -> dict[str, Any]:
    """Export ``model_or_checkpoint`` (a MobileNet, checkpoint path, registry name or
    MobileNetConfig; see :func:`~mobilenets.deploy.sources.resolve_source`, which also explains
    ``expect_model``) to ``output`` in ``format`` (one of :data:`~mobilenets.deploy.formats.FORMATS`).

    ``format``: the output's suffix names it when omitted (a contradiction is refused);
    ``calibration``: for ``int8``, a folder of images or ``"digits"`` (default: the data the model
    was trained on, as its run recorded it), of which ``calibration_images`` calibrate
    (``calibration_size``: its former name, still accepted); ``int8_method``: the label-free int8 remedy
    (:data:`~mobilenets.deploy.ptq.INT8_METHODS`: ``plain``, ``bias_correction``, ``learned_rounding``),
    or ``auto``: try each and keep the best on half of the held-out images, reporting the other
    half (:func:`int8_methods`); ``bias_correction=True``: the former name of
    ``int8_method="bias_correction"``; ``min_agreement``: a trained model's int8 top-1 agreement
    with fp32 below which the export fails (:class:`ExportCheckFailed`); ``threads``: CPU threads of the runtime that checks the file;
    ``verbose``: let the converters print; ``log``: called with progress lines; ``rewrite``: called
    with each file's path and whether it is int8, right after the file is written and before it is
    checked, to rewrite it in place (the web export's kernel plan,
    :func:`mobilenets.deploy.web.kernels.plan_file`; the detector export's hook takes the same);
    what it returns for the file kept goes into the report as ``kernel_plan``.

    Returns a report: format, precision, paths, timings, and the check against the eager model
    (``report["check"]``). Raises :class:`~mobilenets.errors.MobileNetsError` with a one-line
    message for bad input, and :class:`ExportCheckFailed` (one too) when an fp32 export does not
    match the eager model within 1e-4; in every failure no file is left behind
    (:mod:`mobilenets.deploy.outputs`: the policy every exporter shares)."""
    started = time.time()
    if calibration_size is not None:
        calibration_images = calibration_size
    say = log or (lambda _msg: None)
    if Path(output).is_dir():  # before the suffix is read: a folder has none
        raise MobileNetsError(f"output {output} is a folder; give a file name")
    format = format_for_output(output, format)  # None: from the suffix; a contradiction is refused
    _validate(format, int8, calibration, qat_epochs, calibration_images, threads)
    if isinstance(min_agreement, bool) or not isinstance(min_agreement, (int, float)) or not 0 <= min_agreement <= 1:
        raise MobileNetsError(f"--min-agreement must be a fraction from 0 to 1, got {min_agreement!r}")
    out = Path(output)
    check_writable(out.parent)
    sidecar = sidecar_path(out)

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
    quantized = None
    chosen, selection = None, None
    candidates: dict[str, tuple[Any, dict[str, Any]]] = {}
    if int8:
        methods = int8_methods(int8_method, bias_correction, qat_epochs, source.trained)
        # Quantization-aware fine-tuning trains on every calibration image (no labels: the float
        # model teaches its int8 copy); the quantizers then calibrate on the first calibration_images.
        images = load_calibration_images(calibration, source, res, QAT_MAX_IMAGES if qat_epochs else calibration_images)
        say(f"calibration: {min(calibration_images, len(images.calibration))} images from {images.source}")
        few = len(methods) > 1 and len(images.check) < MIN_SELECTION_IMAGES
        if few:  # halves of a few images would choose at random: use the method best on a real model
            methods = [FALLBACK_METHOD]
        measure = images.calibration[:min(calibration_images, BIAS_CORRECTION_IMAGES)]
        for method in methods:
            t = time.time()
            prepared, details = prepare_int8(net, method, measure, weight_qmax(format), progress=progress)
            details["prepare_seconds"] = round(time.time() - t, 2)
            candidates[method] = (prepared, details)
            if method != "plain":
                say(f"{method.replace('_', ' ')}: {len(measure)} images, {details['prepare_seconds']:.1f} s")
        if qat_epochs:
            (method, (net, details)), = candidates.items()
            result = qat_finetune(net, images.calibration, qat_epochs, resolution=res,
                                  calibration=images.calibration[:calibration_images], log=say, progress=progress)
            net, quantized, qat_report = result.net, result.quantized, result.report
            candidates[method] = (net, details)
            images.calibration = images.calibration[:calibration_images]

    from mobilenets.deploy.runtime import load_runner

    plans: dict[str, Any] = {}

    def rewritten(path: Path) -> None:  # the rewrite's result, by file name
        if rewrite is not None:
            plans[path.name] = rewrite(path, int8)

    with Staging(out.parent) as staging, Staging(out.parent) as trials:
        staged = staging.path(out.name)
        # The converters and engines print to the C-level stdout/stderr (TensorFlow's start-up
        # and converter lines, ExecuTorch's); the check's runner too, when it first runs.
        with quiet_output(not verbose):
            t = time.time()
            if not int8:
                write(format, net, str(staged), res)
                rewritten(staged)
                write_s = time.time() - t
                check = _fp32_check(model, load_runner(staged, threads=threads, format=format), res)
            else:
                chosen, selection, check = _write_int8(candidates, images, model, format, staged, trials, res, threads,
                                                       quantized, rewritten)
                if few:
                    selection["note"] = (f"{len(images.check)} held-out images: too few to choose between methods "
                                         f"(< {MIN_SELECTION_IMAGES}); {FALLBACK_METHOD}, the best on a real model")
                write_s = time.time() - t
        if not int8 and not check["passed"]:
            raise ExportCheckFailed(
                f"{format} export differs from the eager model by {check['max_abs_diff']:.3g} max abs "
                f"(tolerance {check['tolerance']:.3g}); nothing written")
        if int8:
            apply_floor(check, min_agreement, source.trained, chosen)
        report = {
            "output": str(out), "sidecar": str(sidecar), "format": format, "precision": "int8" if int8 else "fp32",
            "source": source.description, "model": model.config.to_dict(), "classes": source.classes,
            "trained_on": source.data if source.trained else None,  # None: not recorded (converted models)
            "preprocessing": describe_preprocessing(source.preprocessing, format),
            "dynamic_batch": True, "batchnorm_folded": True, "fold_max_abs_diff": fold_diff,
            "batch_note": ("memory is planned for a bounded batch; mobilenets.deploy.runtime runs larger batches "
                           "in chunks") if format == "executorch" else None,
            "quantization": None if not int8 else {
                "method": ("quantization-aware fine-tuning (self-distillation), then "
                           + ("the fine-tuned PT2E graph as it is" if quantized is not None and format == "executorch"
                              else "post-training static quantization of the fine-tuned weights")
                           if qat_epochs else "post-training static"),
                "int8_method": chosen, "selection": selection,
                "classifier": "float (logits not rounded to 8 bits)",
                "bias_correction": chosen in ("bias_correction", "learned_rounding"),
                "weights": (ONNX_INT8_FORMS[ONNX_INT8_FORM].describe()["weights"] if format == "onnx"
                            else "int8 symmetric, per output channel") + (
                    " (learned rounding: weights on the grid, integers learned per weight)"
                    if chosen == "learned_rounding" else ""),
                "activations": ACTIVATION_SCHEMES[format],
                "calibration": images.source, "calibration_images": len(images.calibration), "qat": qat_report},
            "check": check, "write_seconds": round(write_s, 2),
        }
        if rewrite is not None:
            report["kernel_plan"] = plans.get(staged.name) or plans.get((chosen or "") + staged.suffix)
        staging.path(sidecar.name).write_text(json.dumps(report, indent=2) + "\n")
        staging.commit()
    report["size_bytes"] = out.stat().st_size
    report["seconds"] = round(time.time() - started, 2)
    return report
