"""The ``mobilenet`` command: a thin layer over the library's functions.

Every subcommand calls a plain function of the package; bad input gives one line on stderr
(``mobilenet: error: ...``) and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from mobilenets.models.config import VARIANTS


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage dump) and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(message)


class _UsageError(Exception):
    pass


def _positive_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


# Subcommands that live beside their code: each module has ``add_cli(subparsers)``, which adds
# its parser(s) with ``set_defaults(func=...)``; the module must import heavy dependencies
# (TensorFlow, ONNX Runtime, ...) lazily, inside ``func``.
_SUBCOMMAND_MODULES: tuple[str, ...] = ("mobilenets.weights.convert", "mobilenets.bench.engines", "mobilenets.deploy.export", "mobilenets.demo")


def module_cli(name: str):
    import importlib

    return importlib.import_module(name)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mobilenet", description="MobileNets (Howard et al., 2017): models and their exact cost.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("cost", help="per-layer mult-adds and parameters of one model (paper Tables 1-3)")
    p.add_argument("--model", help="a registry name (see `mobilenet models`) or torchvision:NAME")
    p.add_argument("--alpha", type=_positive_float, help="width multiplier (> 0; default 1.0)")
    p.add_argument("--resolution", type=int, help="input size in pixels (>= 32; default 224)")
    p.add_argument("--variant", default="separable", choices=VARIANTS,
                   help="separable (MobileNet), conv (full 3x3 convs) or shallow (blocks 7-11 removed); "
                        "default separable")
    p.add_argument("--num-classes", type=int, default=1000, help="classifier outputs (default 1000)")
    p.add_argument("--measure", action="store_true",
                   help="count a real forward pass instead of the formulas (always so for torchvision:NAME)")
    p.add_argument("--single-layer", action="store_true", help="print paper Table 3 (one 14x14x512 layer) instead")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")

    _add_train_parser(sub)
    for module in _SUBCOMMAND_MODULES:
        module_cli(module).add_cli(sub)

    p = sub.add_parser("eval", help="top-1/top-5 of a checkpoint (prints one JSON object)")
    p.add_argument("--checkpoint", required=True, help="a run folder (its best weights) or a checkpoint file")
    p.add_argument("--data", help="ImageNet-style folder (uses val/); default: the data the run was trained on")
    p.add_argument("--batch-size", type=int, default=256, help="default 256")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers (default 0)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N")

    p = sub.add_parser("predict", help="top-k labels with probabilities for images")
    p.add_argument("--checkpoint", required=True, help="a run folder (its best weights) or a checkpoint file")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--top-k", type=int, default=5, help="default 5")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("models", help="list the registry with each model's mult-adds and parameters")
    p.add_argument("--json", action="store_true", help="print a JSON list")

    p = sub.add_parser("tables", help="reproduce the paper's cost tables (2-9) beside the printed figures")
    p.add_argument("--no-reference-nets", action="store_true",
                   help="skip the torchvision networks of Tables 8-9 (they are built and run once each)")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    return parser


def _cmd_cost(args: argparse.Namespace) -> None:
    from mobilenets.cost.count import model_cost, single_layer_rows
    from mobilenets.cost.report import cost_text, single_layer_text

    if args.single_layer:
        print(json.dumps(single_layer_rows(), indent=2) if args.json else single_layer_text())
        return
    report = model_cost(args.model, alpha=args.alpha, resolution=args.resolution, variant=args.variant,
                        num_classes=args.num_classes, measure=args.measure)
    print(json.dumps(report.to_dict(), indent=2) if args.json else cost_text(report))


def _cmd_models(args: argparse.Namespace) -> None:
    from mobilenets.cost.report import models_rows, models_text

    print(json.dumps(models_rows(), indent=2) if args.json else models_text())


def _cmd_tables(args: argparse.Namespace) -> None:
    from mobilenets.paper.tables import paper_tables_data, paper_tables_text

    ref = not args.no_reference_nets
    print(json.dumps(paper_tables_data(ref), indent=2) if args.json else paper_tables_text(ref))


def _add_train_parser(sub) -> None:
    import dataclasses

    from mobilenets.train.classify import TrainOptions
    from mobilenets.train.recipes import PRESETS, Recipe

    p = sub.add_parser("train", help="train a MobileNet (default: 0.5-32 on the built-in digits data)")
    p.add_argument("--data", help="ImageNet-style folder with train/ and val/; default: sklearn digits")
    p.add_argument("--model", help="registry name (default: alpha 0.5 at 32 px)")
    p.add_argument("--alpha", type=_positive_float, help="width multiplier")
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


COMMANDS = {"cost": _cmd_cost, "models": _cmd_models, "tables": _cmd_tables, "train": _cmd_train,
            "eval": _cmd_eval, "predict": _cmd_predict}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mobilenet`` command; returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
        (getattr(args, "func", None) or COMMANDS[args.command])(args)
    except _UsageError as exc:
        print(f"mobilenet: error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, NotADirectoryError, PermissionError) as exc:
        print(f"mobilenet: error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # TrainingDiverged and friends: a clear line, non-zero exit
        from mobilenets.train.classify import TrainingDiverged

        if not isinstance(exc, TrainingDiverged):
            raise
        print(f"mobilenet: error: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("mobilenet: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `mobilenet models | head`
        return 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
