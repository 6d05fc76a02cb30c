"""``mobilenet cost``, ``models`` and ``tables``: what a network costs, the registry, the paper's tables."""

from __future__ import annotations

import argparse
import json

from mobilenets.cli.common import add_command, add_json_arg, add_model_args, choice
from mobilenets.tasks.detect.config import DETECTORS  # torch-free: the library's one list of names


def register(sub) -> None:
    p = add_command(sub, "cost", cmd_cost, help="per-layer mult-adds and parameters of one model (paper Tables 1-3)")
    add_model_args(p, extra_models="or torchvision:NAME (any torchvision network, counted on a real forward pass)")
    p.add_argument("--measure", action="store_true",
                   help="count a real forward pass instead of the formulas (always so for torchvision:NAME)")
    p.add_argument("--single-layer", action="store_true", help="print paper Table 3 (one 14x14x512 layer) instead")
    p.add_argument("--detector", **choice(DETECTORS),
                   help="count a detector on the model instead (per part, paper Table 13; 90 classes and 300 px "
                        "unless --num-classes/--resolution say otherwise; default: no detector)")
    add_json_arg(p)

    p = add_command(sub, "models", cmd_models, help="list the registry with each model's mult-adds and parameters")
    add_json_arg(p)

    p = add_command(sub, "tables", cmd_tables, help="reproduce the paper's cost tables (2-9) beside the printed figures")
    p.add_argument("--no-reference-nets", action="store_true",
                   help="skip the torchvision networks of Tables 8-9 (they are built and run once each)")
    add_json_arg(p)


def cmd_cost(args: argparse.Namespace) -> None:
    """Per-layer mult-adds and parameters of one model, counted exactly from the architecture (or on a real
    forward pass with --measure), beside the paper's printed figures; or of a detector on it (--detector).

    examples:
      mobilenet cost --model mobilenet_v1_0.5_160
      mobilenet cost --alpha 0.75 --resolution 192 --variant shallow --json
      mobilenet cost --model torchvision:resnet18
      mobilenet cost --detector faster_rcnn --resolution 600
    """
    from mobilenets.cost.count import analytical_cost, measure_cost, model_cost, single_layer_rows
    from mobilenets.cost.report import cost_text
    from mobilenets.paper.printed import figures
    from mobilenets.paper.tables import single_layer_text

    if args.single_layer:
        print(json.dumps(single_layer_rows(), indent=2) if args.json else single_layer_text())
        return
    if args.detector:
        cmd_detector_cost(args)
        return
    if args.checkpoint:
        from mobilenets.cli.common import model_from_args

        model, _ = model_from_args(args)
        res = model.config.resolution
        report = (measure_cost(model, (3, res, res), name=str(args.checkpoint)) if args.measure
                  else analytical_cost(model.config, name=str(args.checkpoint)))
    else:
        report = model_cost(args.model, alpha=args.alpha, resolution=args.resolution,
                            variant=args.variant or "separable",
                            num_classes=1000 if args.num_classes is None else args.num_classes, measure=args.measure)
    print(json.dumps(report.to_dict(), indent=2) if args.json else cost_text(report, figures(report.model)))


def cmd_detector_cost(args: argparse.Namespace) -> None:
    """``mobilenet cost --detector ...``: a detector's cost per part (backbone, extras, heads, RPN,
    second stage at 300 proposals), beside paper Table 13 where it lists the setting."""
    from mobilenets.cost.detection import detector_cost, detector_cost_text
    from mobilenets.errors import MobileNetsError
    from mobilenets.models.config import MobileNetConfig
    from mobilenets.paper.printed import TABLE13
    from mobilenets.tasks.detect.config import make_config

    if args.checkpoint or args.measure:
        raise MobileNetsError("--detector counts a detector built from --model/--alpha/--resolution/--variant "
                              "(no --checkpoint, no --measure)")
    base = MobileNetConfig()
    if args.model or args.alpha or args.variant:
        from mobilenets.models.registry import resolve_config

        base = resolve_config(args.model, alpha=args.alpha, variant=args.variant, default=base)
    num_classes = 90 if args.num_classes is None else args.num_classes
    detector = args.detector  # the library's spelling (faster_rcnn), whichever the user typed
    cfg = make_config(detector, backbone=base, resolution=args.resolution or 300, num_classes=num_classes)
    cost = detector_cost(cfg)
    if args.json:
        print(json.dumps(cost.to_dict(), indent=2))
        return
    printed = TABLE13.get((detector, cfg.resolution)) if base.alpha == 1 and num_classes == 90 else None
    print(detector_cost_text(cost, printed))
    if printed and detector == "faster_rcnn":
        unpooled = detector_cost(cfg.replace(crop_pool=False))
        print(f"(the printed mult-adds are blocks 12-13 at 7x7 on each proposal: without the 2x2 max-pool of "
              f"TF's config, {unpooled.mult_adds / 1e9:.2f} billion; parameters with BatchNorm and biases: "
              f"{cost.params_total / 1e6:.2f} million)")


def cmd_models(args: argparse.Namespace) -> None:
    """Every model of the registry by name (the 16 paper models and their variants), with its width,
    resolution, mult-adds and parameters.

    examples:
      mobilenet models
      mobilenet models --json
    """
    from mobilenets.cost.report import models_rows, models_text

    print(json.dumps(models_rows(), indent=2) if args.json else models_text())


def cmd_tables(args: argparse.Namespace) -> None:
    """The paper's cost tables (2-9) recomputed from the architecture, each number beside the printed one with
    how well they match (exact, rounded, differs).

    examples:
      mobilenet tables
      mobilenet tables --no-reference-nets --json
    """
    from mobilenets.paper.tables import paper_tables_data, paper_tables_text

    ref = not args.no_reference_nets
    print(json.dumps(paper_tables_data(ref), indent=2) if args.json else paper_tables_text(ref))
