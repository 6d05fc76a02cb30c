"""``mobilenet convert`` and ``mobilenet weights list/download``.

``convert``: pretrained weights from Keras, TF-slim checkpoints, TF1 frozen graphs,
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
    add_progress_arg,
    add_verbose_arg,
    canonical,
    choice,
    positive_int,
)
from mobilenets.weights.convert import FORMATS, TARGETS

ENTRY_SOURCES = ("tf-slim", "keras", "timm", "hf", "tf-od", "face-api")  # weights.pretrained.registry: Entry.source

SOURCE_HELP = ("a .keras/.h5 file (keras), a TF checkpoint prefix or folder (tf_slim), a TF1 frozen graph .pb "
               "(tf_frozen), a float .tflite file (tflite), a .safetensors/.pt/.pth/.bin weights file (timm), a "
               "Hugging Face model folder (hf), or a model folder, run folder or weights file of this package "
               "(mobilenets)")


def register(sub) -> None:
    _register_convert(sub)
    register_weights(sub)


def _register_convert(sub) -> None:
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


def register_weights(sub) -> None:
    group = sub.add_parser("weights", help="published pretrained weights: list them, download them ahead of time",
                           description="The registry of official MobileNetV1 weights (TF-slim, Keras, timm, Hugging "
                                       "Face, TF Object Detection API) and the cache they are fetched into "
                                       "($MOBILENETS_HOME, else $TORCH_HOME/hub/checkpoints).")
    wsub = group.add_subparsers(dest="weights_command", required=True, metavar="COMMAND", parser_class=type(group))
    p = add_command(wsub, "list", cmd_weights_list, help="every registry entry, its published accuracy and cost, "
                                                         "and whether it is cached")
    p.add_argument("--source", **choice(ENTRY_SOURCES), help="only this publisher's entries (default: all)")
    add_json_arg(p)
    p = add_command(wsub, "download", cmd_weights_download,
                    help="fetch and convert entries into the cache (for machines that will run offline)")
    p.add_argument("names", nargs="+", metavar="NAME",
                   help="an entry of `mobilenet weights list` (e.g. tf-slim:mobilenet_v1_0.5_160), or a model name "
                        "(mobilenet_v1_0.5_160: the best available)")
    p.add_argument("--no-convert", action="store_true",
                   help="only fetch the files (default: also convert, so the first use is instant)")
    add_progress_arg(p)
    add_json_arg(p)


def _million(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e6:.1f}M" if n < 1e9 else f"{n / 1e9:.2f}G"


def cmd_weights_list(args: argparse.Namespace) -> None:
    """Every registry entry: source, kind, alpha, resolution, classes, the publisher's accuracy (ImageNet top-1/top-5,
    COCO mAP for detectors), our mult-adds and parameter count, the downloaded file's size, the licence, and whether
    the converted model is cached. Entries marked 'refused' are listed with the reason their conversion is refused.

    examples:
      mobilenet weights list
      mobilenet weights list --source keras --json
    """
    from mobilenets.weights.pretrained.catalog import entry_rows

    rows = entry_rows(args.source)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    w = max(len(r["name"]) for r in rows) if rows else 4
    header = f"{'name':<{w}} {'kind':<11} {'alpha':>5} {'res':>4} {'cls':>4} {'top-1':>6} {'top-5':>6} " \
             f"{'MACs':>7} {'params':>7} {'file':>7} {'licence':<11} cached"
    print(header)
    for r in rows:
        acc = [f"{r[k]:.1f}" if r[k] is not None else "-" for k in ("top1", "top5")]
        state = "refused" if r["refusal"] else ("yes" if r["cached"] else "downloaded" if r["downloaded"] else "no")
        print(f"{r['name']:<{w}} {r['kind']:<11} {r['alpha']:>5g} {r['resolution']:>4} {r['classes']:>4} {acc[0]:>6} "
              f"{acc[1]:>6} {_million(r['mult_adds']):>7} {_million(r['params']):>7} {_million(r['file_size']):>7} "
              f"{r['licence'].split(' ')[0]:<11} {state}")


def cmd_weights_download(args: argparse.Namespace) -> None:
    """Fetch entries into the cache and convert them, so that a later run (offline, MOBILENETS_OFFLINE=1) finds
    them there. MOBILENETS_MIRROR=http://HOST:PORT fetches from a mirror (same paths); HF_ENDPOINT for the Hub.

    examples:
      mobilenet weights download tf-slim:mobilenet_v1_1.0_224 keras:mobilenet_5_0_160_tf
      mobilenet weights download mobilenet_v1_0.25_128 --no-convert
    """
    from mobilenets.weights.pretrained.catalog import download_entries

    rows = download_entries(args.names, convert=not args.no_convert, progress=not args.no_progress)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    for r in rows:
        print(f"{r['name']}: {r['path']}")
