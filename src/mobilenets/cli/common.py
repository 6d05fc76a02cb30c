"""What every command shares: the parser class, one way to name a model, and the common flags.

A model is named the same way in every command that takes one: ``--model NAME`` (a registry
name), and/or ``--alpha/--resolution/--variant/--num-classes`` over it, or ``--checkpoint PATH``
(a run folder, model folder or weights file). This module imports no torch: ``mobilenet --help``
and argument errors answer at once; commands import what they need when they run.
"""

from __future__ import annotations

import argparse
from typing import Any

from mobilenets.models.config import VARIANTS

MODEL_HELP = "a registry name, e.g. mobilenet_v1_0.5_160 (see `mobilenet models`)"
CHECKPOINT_HELP = "a run folder (its best weights), a model folder (config.json + model.safetensors) or a weights file"
DEVICE_HELP = "auto (default: the GPU if there is one), cpu, cuda or cuda:N"


class UsageError(Exception):
    """A bad command line: printed as one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage dump) and exit status 2, and flags are
    never abbreviated (an old ``--batch`` must not quietly mean ``--batch-size``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _int_at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {text}")
        return value

    return parse


positive_int = _int_at_least(1)  # argparse types: an integer >= 1
nonnegative_int = _int_at_least(0)  # an integer >= 0


def add_model_args(p: argparse.ArgumentParser, *, default: str = "mobilenet_v1_1.0_224",
                   checkpoint: bool = True, num_classes: bool = True, extra_models: str = "") -> None:
    """``--model``, ``--alpha``, ``--resolution``, ``--variant``, ``--num-classes`` and (unless
    ``checkpoint=False``) ``--checkpoint``, with the same help text everywhere."""
    g = p.add_argument_group("model: --model NAME and/or --alpha/--resolution/--variant"
                             + (", or --checkpoint PATH" if checkpoint else ""))
    g.add_argument("--model", metavar="NAME", help=f"{MODEL_HELP}{', ' + extra_models if extra_models else ''}; "
                                                    f"default {default}")
    g.add_argument("--alpha", type=positive_float, help="width multiplier α > 0 (default: the model's)")
    g.add_argument("--resolution", type=positive_int, help="input size in pixels, >= 32 (default: the model's)")
    g.add_argument("--variant", choices=VARIANTS,
                   help="separable (MobileNet), conv (full 3x3 convs) or shallow (blocks 7-11 removed); "
                        "default: the model's")
    if num_classes:
        g.add_argument("--num-classes", type=nonnegative_int, help="classifier outputs (default: the model's, 1000)")
    if checkpoint:
        g.add_argument("--checkpoint", metavar="PATH", help=f"{CHECKPOINT_HELP} (instead of random weights)")
    p.set_defaults(model_default=default)


def model_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The model flags given, as keyword arguments of :func:`mobilenets.models.registry.resolve_config`."""
    return {k: getattr(args, k, None) for k in ("alpha", "resolution", "variant", "num_classes")
            if getattr(args, k, None) is not None}


def model_config(args: argparse.Namespace):
    """The :class:`MobileNetConfig` the model flags name (``--checkpoint`` not allowed here)."""
    from mobilenets.models.registry import resolve_config

    return resolve_config(args.model, default=args.model_default, **model_overrides(args))


def model_from_args(args: argparse.Namespace):
    """``(MobileNet, meta)``: the checkpoint's model and metadata with ``--checkpoint`` (the other
    model flags, if given, must agree with it), else a new model with random weights and ``{}``."""
    from mobilenets.errors import MobileNetsError

    if getattr(args, "checkpoint", None):
        from mobilenets.models.registry import config_differences, expected_fields
        from mobilenets.weights.checkpoint import load_checkpoint

        model, meta = load_checkpoint(args.checkpoint)
        differ = config_differences(model.config, expected_fields(args.model, **model_overrides(args)))
        if differ:
            raise MobileNetsError(f"{args.checkpoint} does not match the model flags: {', '.join(differ)}")
        return model, meta
    from mobilenets.models.mobilenet import MobileNet

    return MobileNet(model_config(args)), {}


def add_device_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help=DEVICE_HELP)


def add_threads_arg(p: argparse.ArgumentParser, default: int | None = 2) -> None:
    p.add_argument("--threads", type=positive_int, default=default,
                   help=f"CPU threads (default {default})" if default else "CPU threads (default: torch's)")


def add_batch_size_arg(p: argparse.ArgumentParser, default: int, what: str = "images per batch") -> None:
    p.add_argument("--batch-size", type=positive_int, default=default, help=f"{what} (default {default})")


def add_json_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON document instead of text")


def add_verbose_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--verbose", action="store_true",
                   help="show what third-party libraries print (TensorFlow, ExecuTorch, ...); quiet by default")


def add_progress_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
