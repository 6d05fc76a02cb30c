"""The flags of every training command, built in one place.

``mobilenet train``, ``detect train``, ``geo train``, ``distill`` and ``finetune`` call
:func:`add_training_args`: the same model flags (``--model/--alpha/--resolution/--variant`` and
``--init``), the same running flags (where the run goes, resume, device, threads, precision,
compile, DDP, checkpoints, progress, ``--json``), with the same names, types and help, and the
recipe flags of **only the recipe fields the task honours** (a task that does not use a field
does not offer its flag: no flag is accepted and ignored). Task-specific flags go in a group
titled after the task. :func:`train_options` and :func:`recipe_overrides` turn the parsed flags
into the library's arguments. This module imports no torch.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from collections.abc import Sequence
from typing import Any

from mobilenets.cli.common import DEVICE_HELP, choice, nonnegative_int, positive_float, positive_int
from mobilenets.models.config import VARIANTS
from mobilenets.train.options import TrainOptions
from mobilenets.train.recipes import FIELD_HELP, Recipe

MODEL_FLAGS = ("model", "alpha", "resolution", "variant", "init")
RUNNING_FLAGS = ("output", "resume", "workers", "seed", "device", "threads", "amp", "float64", "channels_last",
                 "compile", "sync_bn", "keep_last", "checkpoint_every", "deterministic", "max_steps",
                 "eval_batch_size", "no_progress", "json")
RECIPE_FIELDS = tuple(f.name for f in dataclasses.fields(Recipe) if f.name != "name")
VARIANT_CHOICE = choice(VARIANTS)  # one object: the flag's type is the same in every command
INIT_HELP = ("start from the weights of a checkpoint, run folder or converted model folder, or from published "
             "ImageNet weights: pretrained[:SOURCE][:MODEL], e.g. pretrained:tf-slim (the model the flags name), "
             "pretrained:keras:mobilenet_v1_0.5_160 (see `mobilenet weights list`; default: random weights; the "
             "command's description says how it uses them)")


def parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"not a boolean: {text!r}")


def recipe_flag_type(kind: Any):
    """The argparse type of a Recipe field, from its annotation (``int``, ``float``, ``str``,
    ``bool``, or one of those ``| None``, where ``none`` means None)."""
    args = [a for a in typing.get_args(kind) if a is not type(None)] or [kind]
    base, optional = args[0], type(None) in typing.get_args(kind)

    def parse(text: str):
        if optional and text.lower() == "none":
            return None
        if base is bool:
            return parse_bool(text)
        try:
            return base(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a{'n integer' if base is int else ' number'}: {text!r}") from None

    parse.__name__ = f"{base.__name__}{'_or_none' if optional else ''}"
    return parse


_HINTS = typing.get_type_hints(Recipe)
# One parser function per Recipe field type, shared by every command (so `type` is the same object).
_FIELD_TYPES = {name: recipe_flag_type(_HINTS[name]) for name in RECIPE_FIELDS}


def add_model_args(p: argparse.ArgumentParser, default: str, init_aliases: Sequence[str] = ()) -> None:
    """``--model``, ``--alpha``, ``--resolution``, ``--variant`` and ``--init``: the same help in
    every training command; the command's default model is in the group's title."""
    g = p.add_argument_group(f"model (default: {default}): --model NAME and/or --alpha/--resolution/--variant, "
                             f"or --init WEIGHTS")
    g.add_argument("--model", metavar="NAME",
                   help="a registry name, e.g. mobilenet_v1_0.5_160 (see `mobilenet models`); when not given, the "
                        "model in this group's title")
    g.add_argument("--alpha", type=positive_float, help="width multiplier α > 0 (default: the model's)")
    g.add_argument("--resolution", type=positive_int, help="input size in pixels, >= 32 (default: the model's)")
    g.add_argument("--variant", **VARIANT_CHOICE,
                   help="separable (MobileNet), conv (full 3x3 convs) or shallow (blocks 7-11 removed); "
                        "default: the model's")
    g.add_argument("--init", *init_aliases, metavar="WEIGHTS", help=INIT_HELP)


def add_running_args(p: argparse.ArgumentParser, *, exclude: Sequence[str] = ()) -> None:
    """The running flags: how a run runs, not what it learns (that is the recipe)."""
    d = TrainOptions()
    o = p.add_argument_group("running")
    flags = {
        "output": lambda: o.add_argument("--output", metavar="DIR", help="run folder (default: a new folder under "
                                                                         "runs/)"),
        "resume": lambda: o.add_argument("--resume", action="store_true",
                                         help="continue the run in --output from its newest checkpoint, with its own "
                                              "recorded settings (flags that differ are listed, not applied)"),
        "workers": lambda: o.add_argument("--workers", type=nonnegative_int, default=d.workers,
                                          help=f"DataLoader workers (default {d.workers}; results do not depend on "
                                               f"it)"),
        "seed": lambda: o.add_argument("--seed", type=int, default=d.seed,
                                       help=f"seed of the data order, augmentation and initial weights (default "
                                            f"{d.seed})"),
        "device": lambda: o.add_argument("--device", default=d.device, help=DEVICE_HELP),
        "threads": lambda: o.add_argument("--threads", type=positive_int,
                                          help="torch CPU threads (default: torch's)"),
        "amp": lambda: o.add_argument("--amp", action="store_true", help="bf16 autocast"),
        "float64": lambda: o.add_argument("--float64", action="store_true",
                                          help="train in float64 (slow; for numerical checks such as DDP "
                                               "equivalence)"),
        "channels_last": lambda: o.add_argument("--channels-last", action="store_true",
                                                help="channels_last memory format"),
        "compile": lambda: o.add_argument("--compile", action="store_true", help="torch.compile the model"),
        "sync_bn": lambda: o.add_argument("--sync-bn", action="store_true",
                                          help="BatchNorm statistics over all processes when distributed "
                                               "(torchrun)"),
        "keep_last": lambda: o.add_argument("--keep-last", type=positive_int, default=d.keep_last,
                                            help=f"step checkpoints kept (default {d.keep_last})"),
        "checkpoint_every": lambda: o.add_argument("--checkpoint-every", type=nonnegative_int,
                                                   default=d.checkpoint_every,
                                                   help="also checkpoint every N steps (default 0: at epoch ends "
                                                        "only)"),
        "deterministic": lambda: o.add_argument("--deterministic", action="store_true",
                                                help="deterministic algorithms (bit-exact resume)"),
        "max_steps": lambda: o.add_argument("--max-steps", type=nonnegative_int, default=d.max_steps,
                                            help="stop after N steps in total (default 0: no limit)"),
        "eval_batch_size": lambda: o.add_argument("--eval-batch-size", type=positive_int,
                                                  help="batch size of the validation passes (default: the task's: "
                                                       "256, detection 16)"),
        "no_progress": lambda: o.add_argument("--no-progress", action="store_true", help="no progress bars"),
        "json": lambda: o.add_argument("--json", action="store_true",
                                       help="print the summary as one JSON document (progress lines go to stderr)"),
    }
    unknown = set(exclude) - set(flags)
    if unknown:
        raise ValueError(f"unknown running flags {sorted(unknown)}")
    for name, add in flags.items():
        if name not in exclude:
            add()


def add_recipe_args(p: argparse.ArgumentParser, presets: dict[str, Recipe], default: str,
                    fields: Sequence[str] | None = None) -> None:
    """``--recipe`` (one of ``presets``, default ``default``) and one flag per Recipe field the
    task honours (``fields``; None: all), each with the presets' values as its default."""
    p.add_argument("--recipe", default=default, **choice(presets),
                   help=f"training preset (default {default}); the overrides below change single fields of it")
    g = p.add_argument_group("recipe overrides (default: the preset's value; 'none' where a field may be empty)")
    for name in RECIPE_FIELDS:
        if fields is not None and name not in fields:
            continue
        values = ", ".join(f"{preset} {getattr(r, name)}" for preset, r in presets.items())
        g.add_argument("--" + name.replace("_", "-"), type=_FIELD_TYPES[name],
                       metavar="BOOL" if _HINTS[name] is bool else name.upper(),
                       help=f"{FIELD_HELP[name]} (default: {values})")
    p.set_defaults(recipe_fields=tuple(fields) if fields is not None else RECIPE_FIELDS)


def add_training_args(p: argparse.ArgumentParser, *, model_default: str, presets: dict[str, Recipe],
                      recipe_default: str, fields: Sequence[str] | None = None,
                      init_aliases: Sequence[str] = ()) -> None:
    """Model, recipe and running flags of a training command (see the module docstring)."""
    add_model_args(p, model_default, init_aliases)
    add_recipe_args(p, presets, recipe_default, fields)
    add_running_args(p)


def recipe_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The recipe fields given on the command line."""
    return {name: getattr(args, name) for name in getattr(args, "recipe_fields", RECIPE_FIELDS)
            if getattr(args, name, None) is not None}


def train_options(args: argparse.Namespace) -> TrainOptions:
    """The running flags as :class:`TrainOptions`."""
    return TrainOptions(output=args.output, resume=args.resume, workers=args.workers, seed=args.seed,
                        device=args.device, threads=args.threads, amp=args.amp, float64=args.float64,
                        channels_last=args.channels_last, compile=args.compile, sync_bn=args.sync_bn,
                        keep_last=args.keep_last, checkpoint_every=args.checkpoint_every,
                        deterministic=args.deterministic, max_steps=args.max_steps,
                        progress=not args.no_progress, eval_batch_size=args.eval_batch_size)


def log_for(args: argparse.Namespace):
    """Where a training command's progress lines go: stdout, or stderr with ``--json`` (stdout then
    holds only the JSON document)."""
    if getattr(args, "json", False):
        return lambda line: print(line, file=sys.stderr)
    return print


def print_summary(args: argparse.Namespace, summary: dict[str, Any], lines: Sequence[str]) -> None:
    """The summary of a finished run, on rank 0 only: ``lines`` as text, or the summary as JSON."""
    from mobilenets.train.runner import is_main

    if not is_main():
        return
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print("\n".join(lines))


__all__ = ["MODEL_FLAGS", "RECIPE_FIELDS", "RUNNING_FLAGS", "add_model_args", "add_recipe_args", "add_running_args",
           "add_training_args", "log_for", "parse_bool", "print_summary", "recipe_flag_type", "recipe_overrides",
           "train_options"]
