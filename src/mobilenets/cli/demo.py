"""``mobilenet demo``: the main job (``make demo``)."""

from __future__ import annotations

import argparse

from mobilenets.cli.common import add_progress_arg, positive_int


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="the main job: train on the built-in digits, export fp32/int8 ONNX, "
                                           "print accuracy and latency of each")
    p.add_argument("--output", metavar="DIR", help="run FOLDER (default: a new folder under runs/)")
    p.add_argument("--threads", type=positive_int, default=2,
                   help="inference threads for the latency table (default 2)")
    p.add_argument("--rounds", type=positive_int, default=5, help="interleaved timing rounds (default 5)")
    p.add_argument("--epochs", type=positive_int, help="training epochs (default 30)")
    add_progress_arg(p)
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> None:
    from mobilenets.demo import demo

    demo(args.output, threads=args.threads, rounds=args.rounds, epochs=args.epochs, progress=not args.no_progress)
