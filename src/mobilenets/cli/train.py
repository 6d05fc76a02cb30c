"""``mobilenet train``, ``eval`` and ``predict``: training runs and what a trained checkpoint says."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import typing

from mobilenets.cli.common import (
    add_batch_size_arg,
    add_command,
    add_device_arg,
    add_engine_threads_arg,
    add_json_arg,
    add_model_args,
    add_progress_arg,
    add_threads_arg,
    nonnegative_int,
    positive_int,
)
from mobilenets.models.config import ACTIVATIONS, PADDINGS
from mobilenets.train.options import TrainOptions
from mobilenets.train.recipes import FIELD_HELP, PRESETS, Recipe
from mobilenets.weights.convert import TARGETS

CONVERT_TARGETS = tuple(t for t in TARGETS if t != "mobilenets")  # `convert --to` other frameworks

CHECKPOINT_HELP = ("a run folder (its best weights), a model folder, a weights file, or an exported .onnx/.tflite/"
                   ".pte/TorchScript file (run by its engine, with the preprocessing and classes of its FILE.json)")


def register(sub) -> None:
    _add_train(sub)
    p = add_command(sub, "eval", cmd_eval, help="top-1/top-5 of a checkpoint or an exported file on a data set")
    p.add_argument("--checkpoint", required=True, metavar="PATH", help=CHECKPOINT_HELP)
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
    p.add_argument("--checkpoint", required=True, metavar="PATH", help=CHECKPOINT_HELP)
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--top-k", type=positive_int, default=5, help="labels shown per image (default 5)")
    add_device_arg(p)
    add_threads_arg(p)
    add_engine_threads_arg(p)
    add_json_arg(p)


def _recipe_flag_type(kind: typing.Any):
    """The argparse type of a Recipe field, from its annotation (``int``, ``float``, ``str``,
    ``bool``, or one of those ``| None``)."""
    args = [a for a in typing.get_args(kind) if a is not type(None)] or [kind]
    base, optional = args[0], type(None) in typing.get_args(kind)
    if base is bool:
        return parse_bool
    if optional:
        return lambda text: None if text.lower() == "none" else (base(text) if base is not float else _float(text))
    return _float if base is float else base


def _preset_defaults(name: str) -> str:
    values = {p: getattr(r, name) for p, r in PRESETS.items()}
    return ", ".join(f"{p} {v}" for p, v in values.items())


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a MobileNet (default: alpha 0.5 at 32 px on the built-in digits data)")
    p.add_argument("--data", metavar="DIR", help="ImageNet-style folder with train/ and val/; default: sklearn digits")
    add_model_args(p, default="alpha 0.5 at 32 px", checkpoint=False, num_classes=False)
    p.add_argument("--init", metavar="WEIGHTS",
                   help="start from these weights: a checkpoint, run folder or converted model folder (its "
                        "architecture and preprocessing; a new classifier where the classes differ; default: random)")
    p.add_argument("--activation", choices=ACTIVATIONS, help="default relu (the paper's), or the --init weights'")
    p.add_argument("--padding", choices=PADDINGS,
                   help="symmetric (PyTorch's) or tf_same (TensorFlow SAME, what Keras needs); default symmetric, "
                        "or the --init weights'")
    p.add_argument("--convert-to", choices=CONVERT_TARGETS,
                   help="the run is meant for `mobilenet convert --to` this: warn at the start if its model "
                        "cannot be (keras needs --padding tf_same --activation relu6; default: no check)")
    p.add_argument("--dropout", type=float, help="dropout before the classifier (default 0.001)")
    p.add_argument("--recipe", default="paper", choices=sorted(PRESETS), help="training preset (default paper)")
    g = p.add_argument_group("recipe overrides (default: the preset's value; 'none' where a field may be empty)")
    hints = typing.get_type_hints(Recipe)
    for f in dataclasses.fields(Recipe):
        if f.name == "name":
            continue
        g.add_argument("--" + f.name.replace("_", "-"), type=_recipe_flag_type(hints[f.name]),
                       metavar="BOOL" if hints[f.name] is bool else None,
                       help=f"{FIELD_HELP[f.name]} (default: {_preset_defaults(f.name)})")
    add_running_args(p, "with its own recipe and model")
    p.set_defaults(func=cmd_train)


def add_running_args(p: argparse.ArgumentParser, kept: str) -> None:
    """The "running" flags of every command that trains through the one loop (train, geo train,
    distill): where the run goes, resume, workers, seed, device, precision, checkpoints, progress.
    ``kept``: what --resume takes from the run, for its help."""
    o = p.add_argument_group("running")
    d = TrainOptions()
    o.add_argument("--output", metavar="DIR", help="run FOLDER (default: a new folder under runs/)")
    o.add_argument("--resume", action="store_true",
                   help=f"continue the run in --output from its newest checkpoint ({kept})")
    o.add_argument("--workers", type=nonnegative_int, default=d.workers,
                   help=f"DataLoader workers (default {d.workers}; results do not depend on it)")
    o.add_argument("--seed", type=int, default=d.seed, help=f"default {d.seed}")
    add_device_arg(o)
    o.add_argument("--amp", action="store_true", help="bf16 autocast")
    o.add_argument("--float64", action="store_true",
                   help="train in float64 (slow; for numerical checks such as DDP equivalence)")
    o.add_argument("--channels-last", action="store_true", help="channels_last memory format")
    o.add_argument("--compile", action="store_true", help="torch.compile the model")
    o.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm when distributed (torchrun)")
    o.add_argument("--keep-last", type=positive_int, default=d.keep_last,
                   help=f"step checkpoints kept (default {d.keep_last})")
    o.add_argument("--checkpoint-every", type=nonnegative_int, default=0,
                   help="also checkpoint every N steps (default 0: at epoch ends only)")
    o.add_argument("--deterministic", action="store_true", help="deterministic algorithms (bit-exact resume)")
    o.add_argument("--max-steps", type=nonnegative_int, default=0, help="stop after N steps in total (default 0: no limit)")
    add_progress_arg(o)


def parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"not a boolean: {text!r}")


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def cmd_train(args: argparse.Namespace) -> None:
    from mobilenets.train.classify import train

    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(Recipe)
                 if f.name != "name" and getattr(args, f.name, None) is not None}
    model_overrides = {k: getattr(args, k) for k in ("activation", "padding", "dropout") if getattr(args, k) is not None}
    opts = TrainOptions(output=args.output, resume=args.resume, workers=args.workers, seed=args.seed,
                        device=args.device, amp=args.amp, float64=args.float64, channels_last=args.channels_last,
                        compile=args.compile, sync_bn=args.sync_bn, keep_last=args.keep_last,
                        checkpoint_every=args.checkpoint_every, deterministic=args.deterministic,
                        max_steps=args.max_steps, progress=not args.no_progress)
    summary = train(args.data, args.model, alpha=args.alpha, resolution=args.resolution, variant=args.variant,
                    recipe=args.recipe, recipe_overrides=overrides, model_overrides=model_overrides, options=opts,
                    init=args.init, convert_to=args.convert_to)
    if int(os.environ.get("RANK", "0")) != 0:
        return
    from mobilenets.demo import train_summary_lines

    print("\n".join(train_summary_lines(summary)))


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
        result = eval_checkpoint(args.checkpoint, args.data, args.batch_size, args.workers, args.device,
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
        results = predict(args.checkpoint, args.images, args.top_k, engine_threads=args.engine_threads,
                          device=args.device)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for item in results:
        print(item["image"])
        for p in item["top"]:
            print(f"  {p['probability']:7.2%}  {p['label']}")
