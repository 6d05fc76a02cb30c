"""``mobilenet demo``: the main job (``make demo``)."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="the main job: train on the built-in digits, export fp32/int8 ONNX, "
                                           "print accuracy and latency of each")
    p.add_argument("--output", help="run folder (default: a new folder under runs/)")
    p.add_argument("--threads", type=int, default=2, help="inference threads for the latency table (default 2)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds (default 5)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args: argparse.Namespace) -> None:
    if args.threads < 1 or args.rounds < 1:
        raise ValueError("--threads and --rounds must be >= 1")
    from mobilenets.demo import demo

    demo(args.output, threads=args.threads, rounds=args.rounds, progress=not args.no_progress)
