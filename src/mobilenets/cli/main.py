"""The ``mobilenet`` command's entry point: the top-level parser and the error policy.

Each command group lives in its own module of this package and adds its subcommands with
``register(subparsers)``; nothing heavy (torch, TensorFlow, ...) is imported before a command
runs, so ``mobilenet --help`` and usage errors answer at once. Bad input (a
:class:`~mobilenets.errors.MobileNetsError`, a usage error, a missing file) is one line on stderr
and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from mobilenets.cli.common import Parser, UsageError, resolve_pretrained
from mobilenets.errors import cli_call

# Command groups, in the order of the help text (the workflow: build, cost, train, weights, ship,
# then the downstream systems).
GROUPS = ("cost", "train", "weights", "deploy", "bench", "detect", "geo", "distill", "studies", "demo")


def package_version() -> str:
    """The installed package's version (from its metadata: no torch import)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mobilenets")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="mobilenet",
                    description="MobileNets (Howard et al., 2017): build, count, train, convert, export and "
                                "benchmark any member of the family.",
                    epilog="examples:\n  mobilenet cost --model mobilenet_v1_0.5_160\n  mobilenet demo\n"
                           "run `mobilenet COMMAND --help` for a command's flags and examples")
    parser.add_argument("--version", action="version", version=f"mobilenet {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="COMMAND")
    for group in GROUPS:
        importlib.import_module(f"mobilenets.cli.{group}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mobilenet`` command; returns the exit status."""
    words = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(words)
        with cli_call(words):  # library messages name flags as typed here (mobilenets.errors.arg)
            resolve_pretrained(args)  # --pretrained / --init pretrained:...: fetched and converted once, then cached
            args.func(args)
    except UsageError as exc:
        print(f"mobilenet: error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, NotADirectoryError, PermissionError, IsADirectoryError) as exc:
        # MobileNetsError is a ValueError; the OS errors carry the path in their message.
        print(f"mobilenet: error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # TrainingDiverged: a clear line, its own exit status
        from mobilenets.train.options import TrainingDiverged

        if not isinstance(exc, TrainingDiverged):
            raise
        print(f"mobilenet: error: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt as exc:  # a training run says what it kept and how to continue
        print(f"mobilenet: interrupted{f': {exc}' if str(exc) else ''}", file=sys.stderr)
        return 130
    except ModuleNotFoundError as exc:  # an optional package: which extra brings it
        from mobilenets.extras import missing_message

        message = missing_message(exc)
        if message is None:
            raise
        print(f"mobilenet: error: {message}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `mobilenet models | head`
        return 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
