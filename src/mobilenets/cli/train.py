"""``mobilenet train``, ``eval`` and ``predict``: training runs and what a trained checkpoint says."""

from __future__ import annotations

import argparse
import json

from mobilenets.cli.common import (
    MODEL_HELP,
    UsageError,
    add_batch_size_arg,
    add_command,
    add_device_arg,
    add_engine_threads_arg,
    add_json_arg,
    add_pretrained_arg,
    add_progress_arg,
    add_threads_arg,
    choice,
    nonnegative_int,
    positive_float,
    positive_int,
)
from mobilenets.models.config import ACTIVATIONS, PADDINGS
from mobilenets.train.recipes import PRESETS
from mobilenets.weights.convert import TARGETS

CONVERT_TARGETS = tuple(t for t in TARGETS if t != "mobilenets")  # `convert --to` other frameworks

CHECKPOINT_HELP = ("a run folder (its best weights), a model folder, a weights file, or an exported .onnx/.tflite/"
                   ".pte/TorchScript file (run by its engine, with the preprocessing and classes of its FILE.json)")


def register(sub) -> None:
    _add_train(sub)
    p = add_command(sub, "eval", cmd_eval, help="top-1/top-5 of a checkpoint or an exported file on a data set")
    _add_weights_args(p)
    p.add_argument("--data", metavar="DIR",
                   help="ImageNet-style folder (its val/ is used); default: the data the run was trained on")
    add_batch_size_arg(p, 256)
    p.add_argument("--workers", type=nonnegative_int, default=0, help="DataLoader workers (default 0)")
    add_device_arg(p)
    add_threads_arg(p)
    add_engine_threads_arg(p)
    add_progress_arg(p)
    add_json_arg(p)

    p = add_command(sub, "predict", cmd_predict, help="top-k labels with probabilities for images")
    _add_weights_args(p)
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--top-k", type=positive_int, default=5, help="labels shown per image (default 5)")
    add_device_arg(p)
    add_threads_arg(p)
    add_engine_threads_arg(p)
    add_json_arg(p)


def _add_weights_args(p) -> None:
    """--checkpoint PATH, or --pretrained [SOURCE] with the model it is for (--model/--alpha/--resolution)."""
    g = p.add_argument_group("weights: --checkpoint PATH, or --pretrained [SOURCE] with --model NAME and/or "
                             "--alpha/--resolution")
    g.add_argument("--checkpoint", metavar="PATH", help=f"{CHECKPOINT_HELP} (required unless --pretrained)")
    add_pretrained_arg(g)
    g.add_argument("--model", metavar="NAME", help=f"with --pretrained: {MODEL_HELP} (default: mobilenet_v1_1.0_224)")
    g.add_argument("--alpha", type=positive_float, help="with --pretrained: width multiplier α (default: the model's)")
    g.add_argument("--resolution", type=positive_int,
                   help="with --pretrained: input size in pixels (default: the model's)")
    p.set_defaults(model_default="mobilenet_v1_1.0_224")


def _checkpoint(args: argparse.Namespace) -> str:
    """The weights to use: --checkpoint, or the folder --pretrained resolved to (cli.main did)."""
    if not args.checkpoint:
        raise UsageError("give --checkpoint PATH, or --pretrained [SOURCE] (with --model NAME) for published weights")
    if args.model or args.alpha or args.resolution:
        raise UsageError("--model/--alpha/--resolution choose the --pretrained weights; a --checkpoint records its own")
    return args.checkpoint


def _add_train(sub) -> None:
    from mobilenets.cli.args import add_training_args

    p = add_command(sub, "train", cmd_train, help="train a MobileNet classifier (default: alpha 0.5 at 32 px on the built-in digits data)")
    g = p.add_argument_group("classification")
    g.add_argument("--data", metavar="DIR", help="ImageNet-style folder with train/ and val/; default: sklearn digits")
    g.add_argument("--activation", **choice(ACTIVATIONS), help="default: relu (the paper's), or the --init weights'")
    g.add_argument("--padding", **choice(PADDINGS),
                   help="symmetric (PyTorch's) or tf_same (TensorFlow SAME, what Keras needs); default: symmetric, "
                        "or the --init weights'")
    g.add_argument("--dropout", type=float, help="dropout before the classifier (default: 0.001, or the --init "
                                                 "weights')")
    g.add_argument("--convert-to", **choice(CONVERT_TARGETS),
                   help="the run is meant for `mobilenet convert --to` this: warn at the start if its model "
                        "cannot be (keras needs --padding tf_same --activation relu6; default: no check)")
    add_training_args(p, model_default="alpha 0.5 at 32 px", presets=PRESETS, recipe_default="paper")


def cmd_train(args: argparse.Namespace) -> None:
    """Train a MobileNet classifier on an ImageNet-style folder (train/<class>/, val/<class>/) or,
    without --data, on the built-in digits. --init starts from any checkpoint, run folder or
    converted model folder: its architecture and preprocessing, a new classifier where the classes
    differ.

    examples:
      mobilenet train --epochs 5 --output runs/digits
      mobilenet train --data ~/imagenet --model mobilenet_v1_1.0_224 --recipe modern --amp
      mobilenet train --resume --output runs/digits
    """
    from mobilenets.cli.args import log_for, print_summary, recipe_overrides, train_options
    from mobilenets.demo import train_summary_lines
    from mobilenets.train.classify import train

    model_overrides = {k: getattr(args, k) for k in ("activation", "padding", "dropout") if getattr(args, k) is not None}
    summary = train(args.data, args.model, alpha=args.alpha, resolution=args.resolution, variant=args.variant,
                    recipe=args.recipe, recipe_overrides=recipe_overrides(args), model_overrides=model_overrides,
                    options=train_options(args), init=args.init, convert_to=args.convert_to, log=log_for(args))
    print_summary(args, summary, train_summary_lines(summary))


def cmd_eval(args: argparse.Namespace) -> None:
    """Top-1 and top-5 accuracy of a checkpoint, or of an exported .onnx/.tflite/.pte/TorchScript file (run by
    its engine), with the preprocessing and classes it records; on the data the run was trained on unless
    --data is given.

    examples:
      mobilenet eval --checkpoint runs/digits
      mobilenet eval --checkpoint model.onnx --data imagenet --engine-threads 4 --json
    """
    from mobilenets.train.classify import eval_checkpoint
    from mobilenets.utils.scoped import torch_threads

    with torch_threads(args.threads):  # None: torch's default
        result = eval_checkpoint(_checkpoint(args), args.data, args.batch_size, args.workers, args.device,
                                 progress=not args.no_progress, engine_threads=args.engine_threads)
    if args.json:
        print(json.dumps(result))
        return
    print(eval_text(result))


def eval_text(result: dict) -> str:
    """``mobilenet eval``'s line: top-1, top-5 (fractions in the result), loss, and what was evaluated."""
    shown = [f"{name} {result[k]:.2%}" for k, name in (("top1", "top-1"), ("top5", "top-5")) if k in result]
    if "loss" in result:
        shown.append(f"loss {result['loss']:.4f}")
    images = f"{result['images']} images of " if "images" in result else ""
    return f"{'  '.join(shown)}  ({images}{result['data']}; {result['checkpoint']})"


def cmd_predict(args: argparse.Namespace) -> None:
    """The top-k labels of each image, with their probabilities, from a checkpoint or an exported file (its
    class names where it records them).

    examples:
      mobilenet predict --checkpoint runs/digits cat.jpg dog.jpg --top-k 3
      mobilenet predict --checkpoint model.onnx photo.jpg --json
    """
    from mobilenets.deploy.predict import predict
    from mobilenets.utils.scoped import torch_threads

    with torch_threads(args.threads):
        results = predict(_checkpoint(args), args.images, args.top_k, engine_threads=args.engine_threads,
                          device=args.device)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for item in results:
        print(item["image"])
        for p in item["top"]:
            print(f"  {p['probability']:7.2%}  {p['label']}")
