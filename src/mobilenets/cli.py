"""The ``mobilenet`` command: a thin layer over the library's functions.

Every subcommand calls a plain function of the package; bad input gives one line on stderr
(``mobilenet: error: ...``) and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from .config import VARIANTS


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

    p = sub.add_parser("models", help="list the registry with each model's mult-adds and parameters")
    p.add_argument("--json", action="store_true", help="print a JSON list")

    p = sub.add_parser("tables", help="reproduce the paper's cost tables (2-9) beside the printed figures")
    p.add_argument("--no-reference-nets", action="store_true",
                   help="skip the torchvision networks of Tables 8-9 (they are built and run once each)")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    return parser


def _cmd_cost(args: argparse.Namespace) -> None:
    from .cost import model_cost
    from .tables import cost_text, single_layer_text
    from .cost import single_layer_rows

    if args.single_layer:
        print(json.dumps(single_layer_rows(), indent=2) if args.json else single_layer_text())
        return
    report = model_cost(args.model, alpha=args.alpha, resolution=args.resolution, variant=args.variant,
                        num_classes=args.num_classes, measure=args.measure)
    print(json.dumps(report.to_dict(), indent=2) if args.json else cost_text(report))


def _cmd_models(args: argparse.Namespace) -> None:
    from .tables import models_rows, models_text

    print(json.dumps(models_rows(), indent=2) if args.json else models_text())


def _cmd_tables(args: argparse.Namespace) -> None:
    from .tables import paper_tables_data, paper_tables_text

    ref = not args.no_reference_nets
    print(json.dumps(paper_tables_data(ref), indent=2) if args.json else paper_tables_text(ref))


COMMANDS = {"cost": _cmd_cost, "models": _cmd_models, "tables": _cmd_tables}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mobilenet`` command; returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
        COMMANDS[args.command](args)
    except _UsageError as exc:
        print(f"mobilenet: error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, NotADirectoryError, PermissionError) as exc:
        print(f"mobilenet: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mobilenet: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `mobilenet models | head`
        return 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
