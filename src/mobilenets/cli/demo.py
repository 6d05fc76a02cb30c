"""``mobilenet demo``: the main job (``make demo``)."""

from __future__ import annotations

import argparse
import json

from mobilenets.cli.common import (
    add_command,
    add_engine_threads_arg,
    add_json_arg,
    add_progress_arg,
    add_threads_arg,
    positive_int,
)


def register(subparsers) -> None:
    p = add_command(subparsers, "demo", cmd_demo, help="the main job: train on the built-in digits, export fp32/int8 ONNX, "
                                                       "print accuracy and latency of each")
    p.add_argument("--output", metavar="DIR", help="run FOLDER (default: a new folder under runs/)")
    add_threads_arg(p, 2, " of eager PyTorch in the latency table")
    add_engine_threads_arg(p, None, " in the latency table")
    p.add_argument("--rounds", type=positive_int, default=5, help="interleaved timing rounds (default 5)")
    p.add_argument("--epochs", type=positive_int, help="training epochs (default: the digits recipe's, 30)")
    add_progress_arg(p)
    add_json_arg(p)


def cmd_demo(args: argparse.Namespace) -> None:
    """The main job end to end: train a MobileNet on the built-in digits, export it as fp32 and int8 ONNX
    (checked), then print the top-1 and batch-1 latency of eager PyTorch and of each exported file.

    examples:
      mobilenet demo
      mobilenet demo --epochs 3 --output runs/demo-quick
    """
    from mobilenets.demo import demo

    log = print
    if args.json:  # the narrative goes to stderr; stdout holds only the JSON document
        import functools
        import sys

        log = functools.partial(print, file=sys.stderr)
    summary = demo(args.output, threads=args.threads, engine_threads=args.engine_threads, rounds=args.rounds,
                   epochs=args.epochs, progress=not args.no_progress, log=log)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
