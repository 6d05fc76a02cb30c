"""``mobilenet export``: write a model as ONNX, TFLite, ExecuTorch or TorchScript, fp32 or int8, or a web folder.

The library does the work (:func:`mobilenets.deploy.export.export_model`; ``--format web``:
:func:`mobilenets.deploy.web.export_web`); this module only
turns flags into its arguments. Flag combinations are checked here, before any model loads, so
the error names the flags.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from mobilenets.cli.common import (
    UsageError,
    add_command,
    add_engine_threads_arg,
    add_json_arg,
    add_model_args,
    add_verbose_arg,
    choice,
    model_overrides,
    nonnegative_int,
    positive_int,
)
from mobilenets.deploy.formats import FOLDER_FORMATS, FORMATS, INT8_FORMATS, SUFFIXES, suffix_format

WEB = "web"
INT8_CHOICES = (*INT8_FORMATS, WEB)

# Mirrors of mobilenets.deploy.ptq.INT8_METHODS and mobilenets.deploy.int8.MIN_AGREEMENT: `mobilenet
# --help` must not import torch (tests/deploy/test_int8_methods.py checks they agree).
INT8_METHODS = ("plain", "bias_correction", "learned_rounding")
MIN_AGREEMENT = 0.90


def fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be a fraction from 0 to 1, got {text}")
    return value


def register(sub) -> None:
    p = add_command(sub, "export", cmd_export,
                    help="export a model to ONNX, TFLite, ExecuTorch or TorchScript (fp32 or int8), or a web page folder")
    add_model_args(p)
    p.add_argument("--output", required=True, metavar="FILE",
                   help="the FILE to write; FILE.json gets the preprocessing (--format web: the folder to write)")
    p.add_argument("--format", choices=(*FORMATS, *FOLDER_FORMATS),
                   help=f"the file format (default: from the --output suffix: {', '.join(SUFFIXES)}); web: a static "
                        f"folder that runs the model in a browser (model.onnx, ONNX Runtime Web, mobilenet.js, "
                        f"index.html)")
    p.add_argument("--force", action="store_true",
                   help="--format web: write into an --output folder that exists and is not empty (default: refuse)")
    q = p.add_argument_group("int8")
    q.add_argument("--int8", action="store_true",
                   help=f"post-training static quantization, per-channel int8 weights ({', '.join(INT8_CHOICES)}; "
                        f"default: float32)")
    q.add_argument("--calibration", metavar="DIR",
                   help="a folder of images to calibrate --int8 on, ImageNet-style (train/ calibrates, val/ checks) "
                        "or any images, or 'digits' (default: the data the checkpoint's run was trained on; "
                        "refused where none is recorded)")
    q.add_argument("--calibration-images", "--calibration-size", dest="calibration_images", type=positive_int,
                   default=256, metavar="N", help="calibration images (default 256); --calibration-size is its old name")
    q.add_argument("--int8-method", **choice(("auto",) + INT8_METHODS), default="auto",
                   help="the label-free remedy before quantizing: plain (round to nearest), bias_correction (conv "
                        "biases cancel the mean shift of weight rounding), learned_rounding (AdaRound-style: each "
                        "weight rounded up or down to keep each layer's output closest to float, biases corrected), "
                        "or auto: try each, keep the best on half of the held-out images and report the other half "
                        "(real ImageNet MobileNetV1, 480 crops of photos calibration never saw, top-1 agreement "
                        "with float: ONNX plain 67 %%, bias_correction 92 %%, learned_rounding 91 %%; TFLite "
                        "learned_rounding 94 %%; 2026-12-05; "
                        "default auto; random weights: plain)")
    q.add_argument("--bias-correction", action="store_true",
                   help="the former name of --int8-method bias_correction")
    q.add_argument("--min-agreement", type=fraction, default=MIN_AGREEMENT, metavar="F",
                   help=f"fail (nothing written) when the int8 file's top-1 agreement with the float model on the "
                        f"held-out images is below F, a fraction, beyond measurement noise (the upper end of its 95 %% "
                        f"interval is below F) (default {MIN_AGREEMENT:g}; 0 keeps any; not applied to random "
                        f"weights or to fewer than 20 held-out images)")
    q.add_argument("--qat-epochs", type=nonnegative_int, default=0, metavar="N",
                   help="quantization-aware fine-tuning epochs before --int8 quantizes, distilling from the float "
                        "model on the --calibration images: no labels needed (default 0: none)")
    add_engine_threads_arg(p, 2, " that checks the written file")
    add_json_arg(p)
    add_verbose_arg(p)


def _format(args: argparse.Namespace) -> str:
    """The format to write: --format, else the one the --output suffix names; a --format that
    the suffix contradicts is refused (an ONNX file named .tflite helps no one)."""
    named = suffix_format(args.output)
    if args.format == WEB:
        if named is not None:
            raise UsageError(f"--format web writes a folder, but --output {args.output} names a {named} file (give a folder name)")
        return WEB
    if args.force:
        raise UsageError("--force applies to --format web (file exports replace their file)")
    if args.format is None:
        if named is None:
            raise UsageError(f"cannot tell the format from --output {args.output}: end it in "
                             f"{', '.join(SUFFIXES)} or give --format {' | '.join(FORMATS)}")
        return named
    if named is not None and named != args.format:
        raise UsageError(f"--format {args.format} contradicts --output {args.output} (a {named} file name); "
                         f"change one of them")
    return args.format


def _check_flags(args: argparse.Namespace) -> str:
    """Refuse bad flag combinations (naming the flags); the format to write."""
    if not args.checkpoint and not args.model and not model_overrides(args):
        # exporting random weights by accident helps no one: they must be asked for by name
        raise UsageError("give --checkpoint PATH (trained weights), or name a model with --model NAME "
                         "(and/or --alpha/--resolution/...) to export random weights")
    fmt = args.format or suffix_format(args.output)
    if args.int8 and fmt is not None and fmt not in INT8_CHOICES:
        raise UsageError(f"--int8 is not offered for {fmt}; use --format {' | '.join(INT8_CHOICES)}")
    if args.qat_epochs and not args.int8:
        raise UsageError("--qat-epochs needs --int8")
    if args.calibration is not None and not args.int8:
        raise UsageError("--calibration needs --int8")
    if (args.bias_correction or args.int8_method != "auto") and not args.int8:
        raise UsageError("--int8-method and --bias-correction need --int8")
    int8_method(args)
    return _format(args)


def int8_method(args: argparse.Namespace) -> str:
    """The ``--int8-method`` asked (``--bias-correction`` being its former spelling of
    bias_correction); a contradiction of the two is refused. Shared by `export` and `bench`."""
    if args.bias_correction and args.int8_method not in ("auto", "bias_correction"):
        raise UsageError(f"--bias-correction contradicts --int8-method {args.int8_method}; give one of them")
    return "bias_correction" if args.bias_correction else args.int8_method


def _what_to_export(args: argparse.Namespace):
    """``(model_or_checkpoint, expect_model)`` for :func:`export_model` from the model flags."""
    overrides = model_overrides(args)
    if not args.checkpoint:
        from mobilenets.cli.common import model_config

        return model_config(args), None
    # Flags given with --checkpoint are what the checkpoint must have: the architecture of
    # --model (if given), then each of --alpha/--resolution/--variant/--num-classes.
    from mobilenets.models.registry import expected_fields

    if not overrides:
        return args.checkpoint, args.model  # a name: errors say "different architecture from NAME"
    return args.checkpoint, expected_fields(args.model, **overrides)


def cmd_export(args: argparse.Namespace) -> None:
    """Folds BatchNorm, writes the model and FILE.json (its preprocessing and the check), then checks
    the written file against the eager model; a failed export leaves nothing behind (one line, exit
    status 2). The model: --checkpoint PATH (trained weights; --model/--alpha/--variant/... given
    with it name the architecture it must have), or --model NAME and/or --alpha/--resolution/...
    (random weights: for speed measurements). --calibration DIR and --calibration-images N mean
    what they mean for `mobilenet detect export`.

    examples:
      mobilenet export --checkpoint runs/digits --output model.onnx
      mobilenet export --checkpoint runs/digits --int8 --calibration digits --calibration-images 128 --output model-int8.tflite
      mobilenet export --model mobilenet_v1_0.25_128 --output random.pte
      mobilenet export --checkpoint runs/digits --format web --output site  # then: python -m http.server -d site
    """
    fmt = _check_flags(args)
    from mobilenets.deploy.export import check_text, export_model

    what, expect = _what_to_export(args)
    if fmt == WEB:
        _export_web(args, what, expect)
        return
    report = export_model(what, args.output, fmt, **export_options(args, expect))
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(check_text(report))
    print(f"wrote {report['output']} ({report['size_bytes'] / 1e6:.2f} MB, {report['precision']}, "
          f"{report['format']}) and {report['sidecar']}")



def export_options(args: argparse.Namespace, expect: Any) -> dict[str, Any]:
    """The keywords of :func:`~mobilenets.deploy.export.export_model` the export flags give, for a
    file and for a web folder alike (every flag honoured by both)."""
    return dict(int8=args.int8, calibration=args.calibration, qat_epochs=args.qat_epochs,
                calibration_images=args.calibration_images, int8_method=int8_method(args),
                min_agreement=args.min_agreement, progress=not args.json, expect_model=expect,
                threads=args.engine_threads, verbose=args.verbose, log=None if args.json else print)


def _export_web(args: argparse.Namespace, what, expect) -> None:
    from mobilenets.deploy.export import check_text
    from mobilenets.deploy.web import export_web

    report = export_web(what, args.output, force=args.force, **export_options(args, expect))
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(check_text(report))
    plan = report.get("kernel_plan")
    if plan:
        print("kernel plan for ONNX Runtime Web: " + (
            f"{plan['int8_convs']} convs int8, {plan['float_convs']} in float with integer-exact sums "
            f"(logits within {plan['max_abs_change_native']:.2g} of the unplanned file in native ONNX Runtime)"
            if "int8_convs" in plan else f"{plan['gemm_convs']} pointwise convs as Gemms over NHWC positions"))
    print(f"wrote {report['folder']}: {', '.join(report['files'])} ({report['precision']}); "
          f"serve it over HTTP and open index.html, e.g. python -m http.server -d {report['folder']}")
