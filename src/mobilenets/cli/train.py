"""``mobilenet train``, ``eval`` and ``predict``: training runs and what a trained checkpoint says."""

from __future__ import annotations

import argparse
import json
import os

from mobilenets.cli.common import positive_float
from mobilenets.models.config import VARIANTS


def register(sub) -> None:
    _add_train(sub)
    p = sub.add_parser("eval", help="top-1/top-5 of a checkpoint (prints one JSON object)")
    p.add_argument("--checkpoint", required=True, help="a run folder (its best weights) or a checkpoint file")
    p.add_argument("--data", help="ImageNet-style folder (uses val/); default: the data the run was trained on")
    p.add_argument("--batch-size", type=int, default=256, help="default 256")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers (default 0)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("predict", help="top-k labels with probabilities for images")
    p.add_argument("--checkpoint", required=True, help="a run folder (its best weights) or a checkpoint file")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--top-k", type=int, default=5, help="default 5")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_predict)


def _add_train(sub) -> None:
    import dataclasses

    from mobilenets.train.classify import TrainOptions
    from mobilenets.train.recipes import PRESETS, Recipe

    p = sub.add_parser("train", help="train a MobileNet (default: 0.5-32 on the built-in digits data)")
    p.add_argument("--data", help="ImageNet-style folder with train/ and val/; default: sklearn digits")
    p.add_argument("--model", help="registry name (default: alpha 0.5 at 32 px)")
    p.add_argument("--alpha", type=positive_float, help="width multiplier")
    p.add_argument("--resolution", type=int, help="input size in pixels")
    p.add_argument("--variant", choices=VARIANTS, help="separable, conv or shallow")
    p.add_argument("--activation", choices=("relu", "relu6"), help="default relu")
    p.add_argument("--dropout", type=float, help="dropout before the classifier (default 0.001)")
    p.add_argument("--recipe", default="paper", choices=sorted(PRESETS), help="training preset (default paper)")
    g = p.add_argument_group("recipe overrides (default: the preset's value)")
    for f in dataclasses.fields(Recipe):
        if f.name == "name":
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = str(f.type)
        if "bool" in kind:
            g.add_argument(flag, type=_parse_bool, metavar="BOOL")
        elif "int" in kind and "float" not in kind:
            g.add_argument(flag, type=int)
        elif "float" in kind:
            g.add_argument(flag, type=_optional_float)
        else:
            g.add_argument(flag, type=_optional_str)
    o = p.add_argument_group("running")
    defaults = TrainOptions()
    o.add_argument("--output", help="run folder (default: a new folder under runs/)")
    o.add_argument("--resume", action="store_true", help="continue the run in --output from its newest checkpoint")
    o.add_argument("--workers", type=int, default=defaults.workers, help=f"DataLoader workers (default {defaults.workers})")
    o.add_argument("--seed", type=int, default=defaults.seed, help=f"default {defaults.seed}")
    o.add_argument("--device", default=defaults.device, help="auto (default), cpu, cuda, cuda:N")
    o.add_argument("--amp", action="store_true", help="bf16 autocast")
    o.add_argument("--float64", action="store_true",
                   help="train in float64 (slow; for numerical checks such as DDP equivalence)")
    o.add_argument("--channels-last", action="store_true")
    o.add_argument("--compile", action="store_true", help="torch.compile the model")
    o.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm when distributed")
    o.add_argument("--keep-last", type=int, default=defaults.keep_last, help=f"step checkpoints kept (default {defaults.keep_last})")
    o.add_argument("--checkpoint-every", type=int, default=0, help="also checkpoint every N steps (default: epoch ends)")
    o.add_argument("--deterministic", action="store_true", help="deterministic algorithms (bit-exact resume)")
    o.add_argument("--max-steps", type=int, default=0, help="stop after N steps in total (0: no limit)")
    o.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_train)


def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"not a boolean: {text!r}")


def _optional_float(text: str) -> float | None:
    if text.lower() == "none":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def _optional_str(text: str) -> str | None:
    return None if text.lower() == "none" else text


def _cmd_train(args: argparse.Namespace) -> None:
    import dataclasses

    from mobilenets.train.classify import TrainOptions, train
    from mobilenets.train.recipes import Recipe

    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(Recipe)
                 if f.name != "name" and getattr(args, f.name, None) is not None}
    model_overrides = {k: getattr(args, k) for k in ("activation", "dropout") if getattr(args, k) is not None}
    opts = TrainOptions(output=args.output, resume=args.resume, workers=args.workers, seed=args.seed,
                        device=args.device, amp=args.amp, float64=args.float64, channels_last=args.channels_last, compile=args.compile,
                        sync_bn=args.sync_bn, keep_last=args.keep_last, checkpoint_every=args.checkpoint_every,
                        deterministic=args.deterministic, max_steps=args.max_steps, progress=not args.no_progress)
    summary = train(args.data, args.model, alpha=args.alpha, resolution=args.resolution, variant=args.variant,
                    recipe=args.recipe, recipe_overrides=overrides, model_overrides=model_overrides, options=opts)
    if int(os.environ.get("RANK", "0")) != 0:
        return
    from mobilenets.demo import train_summary_lines

    print("\n".join(train_summary_lines(summary)))


def _cmd_eval(args: argparse.Namespace) -> None:
    from mobilenets.train.classify import eval_checkpoint

    print(json.dumps(eval_checkpoint(args.checkpoint, args.data, args.batch_size, args.workers, args.device)))


def _cmd_predict(args: argparse.Namespace) -> None:
    from mobilenets.deploy.predict import predict

    results = predict(args.checkpoint, args.images, args.top_k)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for item in results:
        print(item["image"])
        for p in item["top"]:
            print(f"  {p['probability']:7.2%}  {p['label']}")
