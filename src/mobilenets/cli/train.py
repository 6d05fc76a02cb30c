"""``mobilenet train``, ``eval`` and ``predict``: training runs and what a trained checkpoint says."""

from __future__ import annotations

import argparse
import json

from mobilenets.cli.common import (
    add_batch_size_arg,
    add_device_arg,
    add_json_arg,
    add_progress_arg,
    nonnegative_int,
    positive_int,
)
from mobilenets.models.config import ACTIVATIONS, PADDINGS
from mobilenets.train.recipes import PRESETS
from mobilenets.weights.convert import TARGETS

CONVERT_TARGETS = tuple(t for t in TARGETS if t != "mobilenets")  # `convert --to` other frameworks

CHECKPOINT_HELP = ("a run folder (its best weights), a model folder, a weights file, or an exported .onnx/.tflite/"
                   ".pte/TorchScript file (run by its engine, with the preprocessing and classes of its FILE.json)")
EXPORT_THREADS_HELP = "CPU threads of an exported file's engine (default 2)"


def register(sub) -> None:
    _add_train(sub)
    p = sub.add_parser("eval", help="top-1/top-5 of a checkpoint (prints one JSON object)")
    p.add_argument("--checkpoint", required=True, metavar="PATH", help=CHECKPOINT_HELP)
    p.add_argument("--data", metavar="DIR",
                   help="ImageNet-style folder (its val/ is used); default: the data the run was trained on")
    add_batch_size_arg(p, 256)
    p.add_argument("--workers", type=nonnegative_int, default=0, help="DataLoader workers (default 0)")
    add_device_arg(p)
    p.add_argument("--threads", type=positive_int, default=2, help=EXPORT_THREADS_HELP)
    add_progress_arg(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("predict", help="top-k labels with probabilities for images")
    p.add_argument("--checkpoint", required=True, metavar="PATH", help=CHECKPOINT_HELP)
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--top-k", type=positive_int, default=5, help="labels shown per image (default 5)")
    p.add_argument("--threads", type=positive_int, default=2, help=EXPORT_THREADS_HELP)
    add_json_arg(p)
    p.set_defaults(func=cmd_predict)


def _add_train(sub) -> None:
    from mobilenets.cli.args import add_training_args

    p = sub.add_parser(
        "train", help="train a MobileNet classifier (default: alpha 0.5 at 32 px on the built-in digits data)",
        description="Train a MobileNet classifier on an ImageNet-style folder (train/<class>/, val/<class>/) or, "
                    "without --data, on the built-in digits. --init starts from any checkpoint, run folder or "
                    "converted model folder: its architecture and preprocessing, a new classifier where the "
                    "classes differ.",
        epilog="examples:\n  mobilenet train --epochs 5 --output runs/digits\n"
               "  mobilenet train --data ~/imagenet --model mobilenet_v1_1.0_224 --recipe modern --amp\n"
               "  mobilenet train --resume --output runs/digits")
    g = p.add_argument_group("classification")
    g.add_argument("--data", metavar="DIR", help="ImageNet-style folder with train/ and val/; default: sklearn digits")
    g.add_argument("--activation", choices=ACTIVATIONS, help="default relu (the paper's), or the --init weights'")
    g.add_argument("--padding", choices=PADDINGS,
                   help="symmetric (PyTorch's) or tf_same (TensorFlow SAME, what Keras needs); default symmetric, "
                        "or the --init weights'")
    g.add_argument("--dropout", type=float, help="dropout before the classifier (default 0.001)")
    g.add_argument("--convert-to", choices=CONVERT_TARGETS,
                   help="the run is meant for `mobilenet convert --to` this: warn at the start if its model "
                        "cannot be (keras needs --padding tf_same --activation relu6; default: no check)")
    add_training_args(p, model_default="alpha 0.5 at 32 px", presets=PRESETS, recipe_default="paper")
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> None:
    from mobilenets.cli.args import log_for, print_summary, recipe_overrides, train_options
    from mobilenets.demo import train_summary_lines
    from mobilenets.train.classify import train

    model_overrides = {k: getattr(args, k) for k in ("activation", "padding", "dropout") if getattr(args, k) is not None}
    summary = train(args.data, args.model, alpha=args.alpha, resolution=args.resolution, variant=args.variant,
                    recipe=args.recipe, recipe_overrides=recipe_overrides(args), model_overrides=model_overrides,
                    options=train_options(args), init=args.init, convert_to=args.convert_to, log=log_for(args))
    print_summary(args, summary, train_summary_lines(summary))


def cmd_eval(args: argparse.Namespace) -> None:
    from mobilenets.train.classify import eval_checkpoint

    print(json.dumps(eval_checkpoint(args.checkpoint, args.data, args.batch_size, args.workers, args.device,
                                     progress=not args.no_progress, threads=args.threads)))


def cmd_predict(args: argparse.Namespace) -> None:
    from mobilenets.deploy.predict import predict

    results = predict(args.checkpoint, args.images, args.top_k, threads=args.threads)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for item in results:
        print(item["image"])
        for p in item["top"]:
            print(f"  {p['probability']:7.2%}  {p['label']}")
