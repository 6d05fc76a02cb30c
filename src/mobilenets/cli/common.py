"""What every command shares: the parser class, one way to name a model, and the common flags.

A model is named the same way in every command that takes one: ``--model NAME`` (a registry
name), and/or ``--alpha/--resolution/--variant/--num-classes`` over it, or ``--checkpoint PATH``
(a run folder, model folder or weights file). This module imports no torch: ``mobilenet --help``
and argument errors answer at once; commands import what they need when they run.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from typing import Any

from mobilenets.models.config import VARIANTS

MODEL_HELP = "a registry name, e.g. mobilenet_v1_0.5_160 (see `mobilenet models`)"
CHECKPOINT_HELP = "a run folder (its best weights), a model folder (config.json + model.safetensors) or a weights file"
DEVICE_HELP = "cpu, cuda, cuda:N or auto (default auto: the GPU if there is one)"


class UsageError(Exception):
    """A bad command line: printed as one line, exit status 2."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs keep their lines (the ``example:`` command lines, indented, are
    shown as written); a line of prose that is not indented is wrapped to the terminal."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        import textwrap

        return "\n".join(line if line[:1].isspace() or len(line) <= width else
                         textwrap.fill(line, width, initial_indent=indent, subsequent_indent=indent)
                         for line in text.splitlines())


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage dump) and exit status 2, flags are never
    abbreviated (an old ``--batch`` must not quietly mean ``--batch-size``), and a description or
    epilog keeps its line breaks (the ``example:`` lines of every command)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def add_command(sub: Any, name: str, func: Any, help: str, **kwargs: Any) -> argparse.ArgumentParser:
    """A subcommand that runs ``func``, described by ``func``'s docstring: the paragraphs before
    its ``example:``/``examples:`` line are the description, the rest (indented ``mobilenet ...``
    lines, which a test parses) the epilog."""
    import inspect
    import re

    doc = inspect.cleandoc(func.__doc__ or "")
    head, *tail = re.split(r"^(?=examples?:$)", doc, maxsplit=1, flags=re.M)
    description = "\n\n".join(" ".join(par.split()) for par in head.strip().split("\n\n"))
    p = sub.add_parser(name, help=help, description=description or None, epilog=tail[0] if tail else None, **kwargs)
    p.set_defaults(func=func)
    return p


def canonical(name: str) -> str:
    """A choice's canonical spelling: with underscores (``faster_rcnn``, ``tf_same``, ``tf_slim``)."""
    return name.replace("-", "_")


class Choices(tuple):
    """The values of a choice flag, shown (help, errors) in the canonical underscore spelling and
    accepted in either spelling: ``--detector faster-rcnn`` is ``--detector faster_rcnn``. The
    parsed value is the library's own spelling of it (``FORMATS`` of the converters say
    ``tf-slim``). Use through :func:`choice`."""

    def __new__(cls, values: Iterable[str]) -> Choices:
        values = tuple(values)
        self = super().__new__(cls, (canonical(v) for v in values))
        self.library = {canonical(v): v for v in values}
        return self

    def __contains__(self, value: object) -> bool:
        return isinstance(value, str) and canonical(value) in self.library

    def parse(self, text: str) -> str:
        """The argparse ``type=``: the library's spelling of ``text`` (unknown text is returned as
        given, so that argparse reports it with the canonical choices)."""
        return self.library.get(canonical(text), text)


def choice(values: Iterable[str]) -> dict[str, Any]:
    """``add_argument`` keywords of a choice flag: ``p.add_argument("--detector", **choice(DETECTORS))``
    shows ``{ssd,ssdlite,faster_rcnn}``, takes ``faster-rcnn`` as an alias and parses to the library's
    spelling."""
    c = Choices(values)
    return {"choices": c, "type": c.parse}


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
    g.add_argument("--model", metavar="NAME", help=f"{MODEL_HELP}{', ' + extra_models if extra_models else ''} "
                                                    f"(default: {default})")
    g.add_argument("--alpha", type=positive_float, help="width multiplier α > 0 (default: the model's)")
    g.add_argument("--resolution", type=positive_int, help="input size in pixels, >= 32 (default: the model's)")
    g.add_argument("--variant", choices=VARIANTS,
                   help="separable (MobileNet), conv (full 3x3 convs) or shallow (blocks 7-11 removed); "
                        "default: the model's")
    if num_classes:
        g.add_argument("--num-classes", type=nonnegative_int, help="classifier outputs (default: the model's, 1000)")
    if checkpoint:
        g.add_argument("--checkpoint", metavar="PATH", help=f"{CHECKPOINT_HELP} (instead of random weights)")
    add_pretrained_arg(g)
    p.set_defaults(model_default=default)


PRETRAINED_CHOICES = ("best", "tf-slim", "keras", "timm", "hf")  # weights.pretrained.registry.SOURCES, plus best
PRETRAINED_HELP = ("the published ImageNet weights of the model the flags name, fetched once into the cache (see "
                   "`mobilenet weights list`): from SOURCE, or without SOURCE the best available (highest published "
                   "top-1 for that alpha and resolution); instead of --checkpoint (default: none)")
INIT_PRETRAINED = "pretrained"  # --init pretrained[:SOURCE][:MODEL-OR-FILE]
# registry detectors: `detect ... --checkpoint tf-od:NAME` (or face-api:...), `detect train --init tf-od:NAME`
DETECTOR_ENTRY_PREFIXES = ("tf-od:", "face-api:")


def _detector_entry(args: argparse.Namespace, flag: str, value: Any) -> str | None:
    """The cached detector folder when ``value`` names a registry detector (``tf-od:NAME``, with or
    without ``pretrained:``), fetched and converted on first use; None for anything else."""
    if not isinstance(value, str):
        return None
    name = value[len(INIT_PRETRAINED) + 1:] if value.startswith(INIT_PRETRAINED + ":") else value
    if not name.startswith(DETECTOR_ENTRY_PREFIXES):
        return None
    if getattr(getattr(args, "func", None), "__module__", "") != "mobilenets.cli.detect":
        raise UsageError(f"--{flag} {value}: a registry detector; `mobilenet detect ...` commands take it")
    from mobilenets.weights.pretrained.detectors import detector_path

    return str(detector_path(name, progress=getattr(args, "progress", True)))


def add_pretrained_arg(g: Any) -> None:
    """``--pretrained [SOURCE]``, the same in every command that names a classifier."""
    g.add_argument("--pretrained", nargs="?", const="best", metavar="SOURCE", **choice(PRETRAINED_CHOICES),
                   help=PRETRAINED_HELP)


def _named_model(args: argparse.Namespace, model: str | None = None) -> str:
    """``mobilenet_v1_<alpha>_<resolution>``: what the model flags name (the command's default model
    under --alpha/--resolution)."""
    from mobilenets.models.registry import model_name
    from mobilenets.weights.pretrained.registry import parse_model

    if getattr(args, "variant", None) not in (None, "separable"):
        raise UsageError(f"pretrained weights are published for the separable MobileNet only, not --variant "
                         f"{args.variant}")
    base = model or getattr(args, "model", None) or getattr(args, "model_default", None) or "mobilenet_v1_1.0_224"
    alpha, res = parse_model(base)
    return model_name(getattr(args, "alpha", None) or alpha, getattr(args, "resolution", None) or res)


def init_spec_entry(args: argparse.Namespace, spec: str):
    """The registry entry ``--init pretrained[:SOURCE][:MODEL]`` names; without MODEL, the model
    flags name it (``--model``/``--alpha``/``--resolution``; a resolution nothing is published for
    takes that alpha's 224-px weights)."""
    from mobilenets.errors import MobileNetsError
    from mobilenets.weights.pretrained.fetch import resolve_spec
    from mobilenets.weights.pretrained.registry import SOURCES

    rest = spec[len(INIT_PRETRAINED) + 1:]
    if rest not in ("", *SOURCES):
        return resolve_spec(rest)
    named = _named_model(args)
    try:
        return resolve_spec(named, rest or True)
    except MobileNetsError:
        # a run may train at any resolution (--resolution 32 on the digits): start from the weights
        # published for that alpha at 224 px, which run at any input size
        from mobilenets.models.registry import model_name
        from mobilenets.weights.pretrained.registry import parse_model

        fallback = model_name(parse_model(named)[0], 224)
        if fallback == named:
            raise
        return resolve_spec(fallback, rest or True)


def resolve_pretrained(args: argparse.Namespace) -> None:
    """Turn ``--pretrained [SOURCE]`` into ``--checkpoint`` (the cached, converted model folder;
    the model flags that chose it are then consumed) and ``--init pretrained[:...]`` into the
    folder's path, fetching and converting on first use. Called once by ``cli.main`` before a
    command runs; commands without these flags are untouched."""
    for flag in ("checkpoint", "init"):  # a registry detector: its cached, converted folder
        folder = _detector_entry(args, flag, getattr(args, flag, None))
        if folder is not None:
            setattr(args, flag, folder)
            return
    source = getattr(args, "pretrained", None)
    if source is not None:
        if getattr(args, "checkpoint", None):
            raise UsageError("--pretrained and --checkpoint both name the weights; give one of them")
        from mobilenets.weights.pretrained.fetch import pretrained_path

        name = _named_model(args)
        args.checkpoint = str(pretrained_path(name, True if source == "best" else source))
        args.model = args.alpha = args.resolution = None  # they chose the weights, which now fix the model
    init = getattr(args, "init", None)
    if isinstance(init, str) and (init == INIT_PRETRAINED or init.startswith(INIT_PRETRAINED + ":")):
        from mobilenets.weights.pretrained.fetch import pretrained_path

        entry = init_spec_entry(args, init)
        if entry.kind != "classifier":
            raise UsageError(f"--init {init}: {entry.name} is a {entry.kind}, not classifier weights")
        args.init = str(pretrained_path(entry))


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


def add_threads_arg(p: argparse.ArgumentParser, default: int | None = None, what: str = "") -> None:
    """``--threads N``: torch's CPU threads, in every command (an exported file's runtime has
    ``--engine-threads``)."""
    shown = f"default {default}" if default else "default: torch's"
    p.add_argument("--threads", type=positive_int, default=default, metavar="N",
                   help=f"torch CPU threads{what} ({shown})")


def add_engine_threads_arg(p: argparse.ArgumentParser, default: int | None = 2, what: str = "") -> None:
    """``--engine-threads N``: the CPU threads of an exported file's runtime (ONNX Runtime, TFLite,
    ExecuTorch), in every command that runs one."""
    p.add_argument("--engine-threads", type=positive_int, default=default, metavar="N",
                   help=f"CPU threads of an exported file's runtime (ONNX Runtime, TFLite, ExecuTorch){what} "
                        f"({f'default {default}' if default else 'default: the same as --threads'})")


NO_PLOT = False  # what ``--plot none`` parses to


def plot_file(text: str) -> str | bool:
    """``--plot``'s type, the same in every command: a PNG path, or ``none`` for no plot (False)."""
    return NO_PLOT if text.strip().lower() == "none" else text


def add_plot_arg(p: argparse.ArgumentParser, default_help: str, what: str = "the plot",
                 default: str | None = None) -> None:
    """``--plot FILE.png`` (a path) or ``--plot none`` (no plot, False); ``default`` when not given."""
    p.add_argument("--plot", type=plot_file, metavar="FILE.png", default=default,
                   help=f"{what}: a PNG file to write, or 'none' for no plot ({default_help})")


def add_batch_size_arg(p: argparse.ArgumentParser, default: int, what: str = "images per batch") -> None:
    p.add_argument("--batch-size", type=positive_int, default=default, help=f"{what} (default {default})")


def add_json_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON document instead of text (default: text)")


def add_verbose_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--verbose", action="store_true",
                   help="show what third-party libraries print (TensorFlow, ExecuTorch, ...); quiet by default")


def add_progress_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
