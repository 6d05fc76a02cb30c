"""``mobilenet convert``: pretrained weights from Keras, TF-slim checkpoints, TF1 frozen graphs,
TFLite files, timm, Hugging Face or our own checkpoints (the format detected from the source when
``--from`` is not given), written as a model folder, a timm weights file or a Keras model.

The library side is :func:`mobilenets.weights.convert.convert`; this module only maps the flags
onto it. Nothing heavy is imported until the command runs (the format names are plain constants).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mobilenets.cli.common import (
    UsageError,
    add_command,
    add_json_arg,
    add_verbose_arg,
    canonical,
    choice,
    positive_int,
)
from mobilenets.weights.convert import FORMATS, TARGETS

SOURCE_HELP = ("a .keras/.h5 file (keras), a TF checkpoint prefix or folder (tf_slim), a TF1 frozen graph .pb "
               "(tf_frozen), a float .tflite file (tflite), a .safetensors/.pt/.pth/.bin weights file (timm), a "
               "Hugging Face model folder (hf), or a model folder, run folder or weights file of this package "
               "(mobilenets)")


def register(sub) -> None:
    p = add_command(sub, "convert", cmd_convert, help="pretrained weights from keras, tf_slim, tf_frozen, tflite, timm or hf "
                                                      "(and to timm/keras)")
    p.add_argument("source", metavar="SOURCE", nargs="?", help=f"the source: {SOURCE_HELP}")
    p.add_argument("--checkpoint", metavar="SOURCE",
                   help="the source, as the other commands name it (instead of SOURCE; default: none)")
    p.add_argument("--from", dest="source_format", **choice(FORMATS),
                   help="the source's format (default: detected from the file name and content)")
    p.add_argument("--output", required=True, metavar="FOLDER",
                   help="the output FOLDER (created if missing; required, no default): config.json + model.safetensors, "
                        "<timm name>.safetensors or model.keras go in it")
    p.add_argument("--to", default="mobilenets", **choice(TARGETS),
                   help="mobilenets (config.json + model.safetensors), timm or keras (default mobilenets)")
    p.add_argument("--keep-background", action="store_true",
                   help="tf_slim, tf_frozen, tflite: keep the 1001st (background, index 0) class (default: "
                        "dropped, 1000 classes)")
    p.add_argument("--resolution", type=positive_int,
                   help="tf_slim, tf_frozen: the input size in pixels (default: the graph's input shape, else "
                        "the checkpoint's file name, else 224; other formats record it)")
    p.add_argument("--force", action="store_true",
                   help="write into an --output folder that exists and is not empty (default: refuse)")
    add_verbose_arg(p)
    add_json_arg(p)


def cmd_convert(args: argparse.Namespace) -> None:
    """Convert pretrained weights. Give the source as SOURCE or as --checkpoint SOURCE (exactly one of them);
    without --from its format is detected from the file name and content.

    examples:
      mobilenet convert mobilenet_1_0_224_tf.h5 --output weights/keras-1.0-224
      mobilenet convert mobilenet_v1_0.5_160.ckpt --from tf_slim --output weights/slim-0.5-160
      mobilenet convert runs/digits --to keras --output keras-digits
    """
    if (args.source is None) == (args.checkpoint is None):
        raise UsageError("convert: give the source once: either SOURCE or --checkpoint SOURCE")
    source = args.source if args.source is not None else args.checkpoint
    out = Path(args.output)
    if out.is_dir() and any(out.iterdir()) and not args.force:
        raise UsageError(f"--output {out} exists and is not empty; pass --force to write into it")

    from mobilenets.utils.scoped import quiet_output
    from mobilenets.weights.convert import convert, detect_format

    fmt = args.source_format or detect_format(source)
    with quiet_output(not args.verbose):  # TensorFlow's start-up and converter logs, unless --verbose
        model, written = convert(source, fmt, out, to=args.to, keep_background=args.keep_background,
                                 resolution=args.resolution, overwrite=args.force)
    cfg = model.config
    if args.json:
        print(json.dumps({"source": str(source), "source_format": canonical(fmt),
                          "detected": args.source_format is None, "to": args.to, "written": str(written),
                          "config": cfg.to_dict()}, indent=2))
        return
    detected = " (detected)" if args.source_format is None else ""
    print(f"converted {canonical(fmt)}{detected} -> {args.to}: alpha {cfg.alpha:g}, {cfg.resolution} px, "
          f"{cfg.num_classes} classes, padding {cfg.padding}, {cfg.activation}, bn_eps {cfg.bn_eps:g}")
    print(f"wrote {written}")
