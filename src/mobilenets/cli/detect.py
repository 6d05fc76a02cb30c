"""``mobilenet detect train|eval|predict|export|bench|anchors|convert``: the commands of :mod:`mobilenets.tasks.detect`.

Each handler is a thin layer over a library function (:func:`~mobilenets.tasks.detect.run.train`,
:func:`~mobilenets.tasks.detect.run.eval_checkpoint`, :func:`~mobilenets.tasks.detect.evaluate.
evaluate_files`, :func:`~mobilenets.tasks.detect.predict.predict`,
:func:`~mobilenets.tasks.detect.anchors.anchors_table`, :func:`~mobilenets.tasks.detect.convert.convert_detector`).
Nothing heavy is imported before a command runs.
"""

from __future__ import annotations

import argparse
import json

from mobilenets.cli.common import (
    Choices,
    add_batch_size_arg,
    add_command,
    add_device_arg,
    add_engine_threads_arg,
    add_json_arg,
    add_plot_arg,
    add_progress_arg,
    add_threads_arg,
    choice,
    positive_float,
    positive_int,
)
from mobilenets.tasks.detect.config import ANCHOR_ORDERS, DETECTORS  # torch-free: the library's lists of names

# Shown as the library spells them (faster_rcnn); faster-rcnn is accepted as an alias.
DETECTOR_CHOICES = Choices(DETECTORS)
SSD_DETECTORS = tuple(d for d in DETECTORS if d.startswith("ssd"))  # what `detect bench` times
BACKENDS = ("auto", "faster_coco_eval", "pycocotools")
CHECKPOINT_HELP = ("a detection run folder (its best weights), a weights file of one, a detector folder, or a "
                   "registry detector, tf-od:NAME (see `mobilenet weights list --source tf-od`; fetched and "
                   "converted once, then cached)")


def _detector(name: str) -> str:
    return name.replace("-", "_")


def register(sub) -> None:
    group = sub.add_parser("detect", help="object detection: SSD, SSDLite, Faster R-CNN on the MobileNet (Table 13)",
                           description="Object detection on the MobileNet backbone: SSD300/SSDLite as the TF Object "
                                       "Detection API's ssd_mobilenet_v1, Faster R-CNN as its faster_rcnn_mobilenet_v1.")
    sub = group.add_subparsers(dest="detect_command", required=True, metavar="COMMAND", parser_class=type(group))
    _add_train(sub)
    p = add_command(sub, "eval", cmd_eval, help="COCO's 12 numbers of a detector (--checkpoint) or of a results file")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--checkpoint", metavar="RUN", help=CHECKPOINT_HELP)
    g.add_argument("--annotations", metavar="ANN.json", help="COCO instances file to score --results against")
    p.add_argument("--results", metavar="RES.json", help="COCO results file (with --annotations)")
    p.add_argument("--data", metavar="DIR", help="COCO/VOC folder (default: the data the run was trained on)")
    p.add_argument("--split", default="val", choices=("train", "val"), help="split to score (default val)")
    p.add_argument("--output", metavar="DIR",
                   help="FOLDER where detections.json and pr.png go (default: RUN/eval-<data folder name>-<split>, "
                        "never the run folder itself)")
    add_plot_arg(p, "default: none; with --results only: with --checkpoint pr.png is always drawn in --output",
                 "the precision-recall curves")
    p.add_argument("--backend", default="auto", **choice(BACKENDS),
                   help="COCO evaluation library (default auto: faster_coco_eval if installed, else pycocotools)")
    add_batch_size_arg(p, 16)
    add_device_arg(p)
    add_threads_arg(p)
    add_progress_arg(p)
    add_json_arg(p)

    p = add_command(sub, "predict", cmd_predict, help="boxes for images, optionally drawn with --draw")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--checkpoint", required=True, metavar="RUN", help=CHECKPOINT_HELP)
    p.add_argument("--score", type=float, default=0.3, help="lowest score shown (default 0.3)")
    p.add_argument("--draw", metavar="OUT.png", help="draw the labelled boxes (several images: OUT-<i>.png; "
                                                     "default: no drawing)")
    add_device_arg(p)
    add_threads_arg(p)
    add_json_arg(p)

    p = add_command(sub, "export", cmd_export, help="export a detector to ONNX and TFLite (box decoding and NMS inside)")
    p.add_argument("--checkpoint", required=True, metavar="RUN", help=CHECKPOINT_HELP)
    p.add_argument("--output", required=True, metavar="DIR",
                   help="folder for the exported files (created if missing; files of the same names are replaced)")
    p.add_argument("--int8", action="store_true", help="also int8 (static, per-channel) models (default: float32 only)")
    p.add_argument("--formats", metavar="LIST", help="comma-separated: onnx, tflite (default: both)")
    p.add_argument("--format", **choice(("web",)),
                   help="web: a static folder that runs the detector in a browser (ONNX Runtime Web, detector.js, "
                        "a demo page drawing the boxes; serve it with python -m http.server -d DIR) instead of the "
                        "--formats files (default: the --formats files)")
    p.add_argument("--force", action="store_true",
                   help="--format web: write into an --output folder that exists and is not empty (default: refuse)")
    p.add_argument("--calibration", metavar="DIR",
                   help="a folder of images to calibrate --int8 on (any images under it; default: the training "
                        "images of the data the run was trained on)")
    p.add_argument("--calibration-images", type=positive_int, default=64, metavar="N",
                   help="calibration images (default 64)")
    add_json_arg(p)

    p = add_command(sub, "bench", cmd_bench, help="batch-1 latency beside torchvision's ssdlite320_mobilenet_v3_large "
                                                  "(eager and ONNX Runtime, interleaved)")
    p.add_argument("--checkpoint", metavar="RUN", help=CHECKPOINT_HELP + " (default: random weights)")
    p.add_argument("--detector", default="ssd", **choice(SSD_DETECTORS), help="without --checkpoint (default ssd)")
    p.add_argument("--alpha", type=positive_float, default=1.0, help="without --checkpoint: width multiplier (default 1.0)")
    p.add_argument("--resolution", type=positive_int, default=300, help="without --checkpoint (default 300)")
    p.add_argument("--no-peer", action="store_true", help="leave out torchvision's SSDLite320")
    p.add_argument("--no-int8", action="store_true", help="leave out our int8 ONNX model")
    add_threads_arg(p, 2, " of the eager models")
    add_engine_threads_arg(p, None, " of the ONNX models")
    p.add_argument("--rounds", type=positive_int, default=10, help="interleaved timing rounds (default 10)")
    add_json_arg(p)
    add_progress_arg(p)

    p = add_command(sub, "anchors", cmd_anchors, help="every anchor as normalised [cy, cx, h, w] (TF OD API order)")
    p.add_argument("--detector", default="ssd", **choice(DETECTORS), help="default ssd")
    p.add_argument("--resolution", type=positive_int, default=300, help="input size (default 300)")
    add_json_arg(p)

    p = add_command(sub, "convert", cmd_convert, help="import a TF Object Detection API SSD-MobileNetV1 (TF.js "
                                                      "weights, or pipeline.config + frozen graph / checkpoint)")
    p.add_argument("source", metavar="SOURCE",
                   help="a TF.js *-weights_manifest.json (with its .bin shards) or a folder holding one, or a TF OD "
                        "API export folder: pipeline.config with frozen_inference_graph.pb or model.ckpt*")
    p.add_argument("--output", required=True, metavar="DIR", help="the detector folder to write (model.safetensors, "
                                                                  "detector.json)")
    p.add_argument("--classes", metavar="LIST", help="comma-separated class names (default: face for face-api's "
                                                     "detector, else class1, class2, ...)")
    p.add_argument("--anchor-order", **choice(ANCHOR_ORDERS),
                   help="where each location's in-between-scale anchor goes, for a TF OD API export, which stores "
                        "no anchors: interpolated_last (the current TF OD API's; used when not given) or "
                        "interpolated_second (older exports). A TF.js source's stored anchors decide it")
    add_json_arg(p)


def _add_train(sub) -> None:
    from mobilenets.cli.args import add_training_args, parse_bool
    from mobilenets.tasks.detect.recipes import DETECT_PRESETS
    from mobilenets.train.recipes import NON_CLASSIFICATION_FIELDS

    p = add_command(sub, "train", cmd_train, help="train SSD/SSDLite/Faster R-CNN (default: SSD on the built-in stand-in data)")
    g = p.add_argument_group("detection")
    g.add_argument("--data", metavar="DIR", help="COCO folder (annotations/instances_{train,val}*.json) or VOC "
                                                 "folder; default: the built-in stand-in (shapes on photos)")
    g.add_argument("--detector", **choice(DETECTORS), help="default: ssd")
    g.add_argument("--classification", **choice(("softmax", "sigmoid")),
                   help="SSD loss/scores: softmax (torchvision, default) or per-class sigmoid (TF)")
    g.add_argument("--head-kernel", type=int, choices=(1, 3), help="SSD box predictor kernel (default: 1, TF's)")
    g.add_argument("--zoom-out", type=parse_bool, metavar="BOOL",
                   help="random zoom-out augmentation (default: on with the modern recipe, off on the stand-in)")
    g.add_argument("--bn-momentum", type=float, help="BatchNorm momentum in training, PyTorch's sense (default: 0.03, "
                                                    "whatever the --init checkpoint has)")
    add_training_args(p, model_default="alpha 0.25, 160 px on the stand-in; alpha 1.0, 300 px otherwise",
                      presets=DETECT_PRESETS, recipe_default="modern", fields=NON_CLASSIFICATION_FIELDS,
                      init_aliases=("--backbone",))


def cmd_train(args: argparse.Namespace) -> None:
    """Train a detector on a COCO or VOC folder, or without --data on the built-in stand-in (shapes on
    real photos). --init (or its older name --backbone) starts the MobileNet backbone from a
    classification checkpoint, run folder or model folder (its alpha, padding and activation).

    examples:
      mobilenet detect train --epochs 2 --output runs/ssd
      mobilenet detect train --data ~/coco --init mobilenet_v1_1.0_224/ --detector ssd --resolution 300
    """
    from mobilenets.cli.args import log_for, print_summary, recipe_overrides, train_options
    from mobilenets.tasks.detect.run import train

    detector = {k: getattr(args, k) for k in ("classification", "head_kernel") if getattr(args, k) is not None}
    summary = train(args.data, _detector(args.detector) if args.detector else None, alpha=args.alpha,
                    resolution=args.resolution, variant=args.variant, model=args.model, init=args.init,
                    recipe=args.recipe, recipe_overrides=recipe_overrides(args), detector_overrides=detector,
                    zoom_out=args.zoom_out, bn_momentum=args.bn_momentum, options=train_options(args),
                    log=log_for(args))
    m = summary["metrics"]
    line = "  ".join(f"{k} {m[k]:.3f}" for k in ("AP", "AP50", "AP75", "AR100") if k in m)
    print_summary(args, summary, [
        f"trained {summary['epochs']} epochs ({summary['steps']} steps) in {summary['seconds']:.1f} s; "
        f"val {line or '(no validation data)'}; best AP {summary['best'] if summary['best'] is not None else 'n/a'}",
        f"run folder: {summary['output']}" + (f"; curves: {summary['curves']}" if "curves" in summary else "")])


def _print_metrics(result: dict, as_json: bool) -> None:
    stats = result["stats"]
    if as_json:
        print(json.dumps(stats, indent=2))
        return
    print("  ".join(f"{k} {v:.4f}" for k, v in stats.items()))
    if result.get("per_class"):
        print("per-class AP: " + ", ".join(f"{k} {v:.4f}" for k, v in result["per_class"].items()))
    for key in ("results", "plot"):
        if result.get(key):
            print(f"{key}: {result[key]}")


def cmd_eval(args: argparse.Namespace) -> None:
    """COCO's 12 numbers (AP, AP50, ..., AR100) and per-class AP: of a detection run on a split of its data
    or of --data (categories matched by name; writes detections.json and pr.png into a folder of its own),
    or of a COCO results file against an annotations file.

    examples:
      mobilenet detect eval --checkpoint runs/detect-ssd
      mobilenet detect eval --annotations instances_val2017.json --results detections.json --plot pr.png --json
    """
    from mobilenets.errors import MobileNetsError

    if args.annotations:
        if not args.results:
            raise MobileNetsError("--annotations needs --results (a COCO results file to score)")
        from mobilenets.tasks.detect.evaluate import evaluate_files

        _print_metrics(evaluate_files(args.annotations, args.results, backend=args.backend, plot=args.plot or None),
                       args.json)
        return
    if args.plot:
        raise MobileNetsError("--plot goes with --annotations and --results; with --checkpoint pr.png is drawn "
                              "in --output")
    if args.results:
        raise MobileNetsError("--results goes with --annotations; with --checkpoint the detections are computed")
    from mobilenets.tasks.detect.run import eval_checkpoint
    from mobilenets.utils.scoped import torch_threads

    with torch_threads(args.threads):  # None: torch's default
        result = eval_checkpoint(args.checkpoint, args.data, split=args.split, output=args.output,
                                 batch_size=args.batch_size, device=args.device, backend=args.backend,
                                 progress=not args.no_progress)
    _print_metrics(result, args.json)


def cmd_predict(args: argparse.Namespace) -> None:
    """The detections above --score of each image (label, COCO category id, score, box in pixels [x1, y1, x2,
    y2]); --draw also writes the images with their boxes.

    examples:
      mobilenet detect predict --checkpoint runs/detect-ssd street.jpg --draw boxes.png
      mobilenet detect predict --checkpoint runs/detect-ssd a.jpg b.jpg --score 0.5 --json
    """
    from mobilenets.tasks.detect.predict import predict
    from mobilenets.utils.scoped import torch_threads

    with torch_threads(args.threads):  # None: torch's default
        results = predict(args.checkpoint, args.images, score=args.score, draw_to=args.draw, device=args.device)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for item in results:
        found = item["detections"]
        print(f"{item['image']} ({item['width']}x{item['height']}): {len(found)} detection(s)"
              + (f", drawn in {item['drawn']}" if "drawn" in item else ""))
        for d in found:
            print(f"  {d['score']:.3f}  {d['label']:20s} [{', '.join(f'{v:.1f}' for v in d['box'])}]")


def cmd_convert(args: argparse.Namespace) -> None:
    """Convert a TF Object Detection API SSD-MobileNetV1 into a detector folder that detect predict, export,
    bench and train --init take. Its anchors, box coder, scores, NMS and input handling (resize, padding) come from the source and
    are recorded in the folder (detect eval refuses input handling it cannot apply yet).

    examples:
      mobilenet detect convert node_modules/@vladmandic/face-api/model/ssd_mobilenetv1_model-weights_manifest.json --output face-ssd
      mobilenet detect convert ssd_mobilenet_v1_coco_2018_01_28 --output coco-ssd
      mobilenet detect convert old_ssd_export --anchor-order interpolated_second --output old-ssd --json
    """
    from mobilenets.tasks.detect.convert import convert_detector

    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    out = convert_detector(args.source, args.output, classes=classes, anchor_order=args.anchor_order)
    if args.json:
        print(json.dumps({"source": args.source, "output": str(out)}, indent=2))
        return
    print(f"converted {args.source} -> {out}")


def cmd_export(args: argparse.Namespace) -> None:
    """Export an SSD/SSDLite detector to ONNX and TFLite with box decoding and NMS inside (fp32, and
    int8 with --int8), each file checked against the eager detector. As with `mobilenet export`,
    the files are moved into --output only when every check passes; a failed check is one line,
    exit status 2, and leaves nothing behind.

    examples:
      mobilenet detect export --checkpoint runs/detect-ssd --output exported --formats onnx
      mobilenet detect export --checkpoint runs/detect-ssd --output exported --int8 --calibration photos --calibration-images 128
      mobilenet detect export --checkpoint runs/detect-ssd --format web --output site  # then: python -m http.server -d site
    """
    import os

    from mobilenets.cli.common import UsageError

    if args.calibration is not None and not args.int8:
        raise UsageError("--calibration needs --int8")
    if args.calibration is not None and args.calibration.isdigit() and not os.path.exists(args.calibration):
        raise UsageError(f"--calibration is a folder of images; for the number of images use --calibration-images "
                         f"{args.calibration}")
    if args.format == "web" and args.formats is not None:
        raise UsageError("--formats applies to the file export; --format web writes model.onnx and the page")
    if args.force and args.format != "web":
        raise UsageError("--force applies to --format web (file exports replace their files)")
    if args.format == "web":
        from mobilenets.tasks.detect.web import export_detector_web

        report = export_detector_web(args.checkpoint, args.output, int8=args.int8, force=args.force,
                                     calibration=args.calibration, calibration_images=args.calibration_images)
        if args.json:
            print(json.dumps(report, indent=2))
            return
        print(f"{report['model']}: {report['files'][0]['check']}")
        print(f"web page in {report['folder']} (serve it: python -m http.server -d {report['folder']})")
        return
    from mobilenets.tasks.detect.export import export_detector

    formats = None if args.formats is None else tuple(f.strip() for f in args.formats.split(",") if f.strip())
    result = export_detector(args.checkpoint, args.output, int8=args.int8, calibration=args.calibration,
                             calibration_images=args.calibration_images,
                             **({} if formats is None else {"formats": formats}))
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for item in result["files"]:
        print(f"{item['path']}: {item['check']}")


def cmd_bench(args: argparse.Namespace) -> None:
    """Batch-1 latency of an SSD/SSDLite detector, eager PyTorch and ONNX Runtime (fp32 and int8, box decoding
    and NMS inside), interleaved with torchvision's ssdlite320_mobilenet_v3_large on the same engines.

    examples:
      mobilenet detect bench --detector ssdlite --alpha 0.5 --rounds 5
      mobilenet detect bench --checkpoint runs/detect-ssd --threads 4 --engine-threads 4 --json
    """
    run_detector_bench(args.checkpoint, args.detector, args.alpha, args.resolution, peer=not args.no_peer,
                       int8=not args.no_int8, threads=args.threads, engine_threads=args.engine_threads,
                       rounds=args.rounds, as_json=args.json, progress=not args.no_progress)


def run_detector_bench(checkpoint: str | None, detector: str, alpha: float, resolution: int, *, peer: bool,
                       int8: bool, threads: int, engine_threads: int | None, rounds: int, as_json: bool,
                       progress: bool) -> None:
    """What ``mobilenet detect bench`` and ``mobilenet bench --detector`` print: ``threads`` torch
    threads for the eager models, ``engine_threads`` (None: the same) for ONNX Runtime."""
    from mobilenets.bench.timing import BenchSettings
    from mobilenets.tasks.detect.config import make_config
    from mobilenets.tasks.detect.latency import detector_latency

    config = None if checkpoint else make_config(detector, alpha=alpha, resolution=resolution)
    settings = BenchSettings(threads=threads, engine_threads=engine_threads, batch=1, rounds=rounds)
    result = detector_latency(checkpoint, config=config, peer=peer, int8=int8, settings=settings, progress=progress)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    print(f"batch 1, {threads} torch threads, {settings.runtime_threads} ONNX Runtime threads, {rounds} interleaved "
          f"rounds (median, p10-p90 ms)")
    for name, r in result["results"].items():
        print(f"  {name:34s} {r['median_ms']:8.2f}  ({r['p10_ms']:.2f}-{r['p90_ms']:.2f})")


def cmd_anchors(args: argparse.Namespace) -> None:
    """The anchors of a detector at a resolution: per feature map its grid and boxes per location (text), or
    every anchor as normalised [cy, cx, h, w] in the TF Object Detection API's order (--json).

    examples:
      mobilenet detect anchors
      mobilenet detect anchors --detector faster_rcnn --resolution 600 --json
    """
    from mobilenets.tasks.detect.anchors import anchors_table

    table = anchors_table(args.detector, args.resolution)
    if args.json:
        print(json.dumps(table))
        return
    print(f"{table['detector']} at {table['resolution']} px: {table['count']} anchors (normalised [cy, cx, h, w], "
          f"map -> row -> column -> box)")
    for k, m in enumerate(table["maps"]):
        print(f"  map {k}: {m['rows']}x{m['cols']} x {m['per_location']} = {m['rows'] * m['cols'] * m['per_location']}"
              + (f"  (scale, aspect): {', '.join(f'({s:.4g}, {a:.4g})' for s, a in m['boxes'])}" if "boxes" in m else ""))


__all__ = ["cmd_anchors", "cmd_bench", "cmd_convert", "cmd_eval", "cmd_export", "cmd_predict", "cmd_train", "register"]
