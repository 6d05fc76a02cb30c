"""``mobilenet figures``, ``pick``, ``finetune`` and ``reproduce``: the paper's studies as commands.

Thin layers over :mod:`mobilenets.studies`; nothing heavy is imported until a command runs.
"""

from __future__ import annotations

import argparse
import json

from mobilenets.cli.common import (
    add_command,
    add_json_arg,
    add_plot_arg,
    add_progress_arg,
    add_verbose_arg,
    nonnegative_int,
    positive_int,
)

TABLES = ("table4", "table5", "table6", "table7")


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "figures", cmd_figures, help="the paper's Figures 4 and 5 (top-1 vs log mult-adds / params) as PNGs")
    p.add_argument("runs", nargs="*", metavar="RUN",
                   help="run folders (or folders of run folders) to plot beside the paper's and TF-slim's points")
    p.add_argument("--output", default=".", metavar="FOLDER",
                   help="FOLDER for figure4.png and figure5.png (default ., the current folder)")
    add_json_arg(p)

    p = add_command(sub, "pick", cmd_pick, help="the most accurate MobileNet within a latency/size budget on this machine")
    p.add_argument("--latency-ms", type=float, metavar="X", help="batch-1 latency budget in ms (median, in --engine)")
    p.add_argument("--engine", default="onnxruntime", help="a `mobilenet bench` engine of ours (default onnxruntime)")
    p.add_argument("--params", type=float, metavar="N", help="at most N weights (paper convention)")
    p.add_argument("--mult-adds", type=float, metavar="N", help="at most N mult-adds per image")
    p.add_argument("--size-mb", type=float, metavar="N", help="weights at the engine's precision, at most N MB (10^6 B)")
    p.add_argument("--accuracy-from", nargs="+", default=["paper"], metavar="SOURCE",
                   help="paper (Tables 6-7 + the Figure 4 fit), slim (the TF-slim table) or run folders (default paper)")
    p.add_argument("--grid", choices=("paper", "fine"), default="paper",
                   help="paper: the 16 models; fine: 7 widths x 7 sizes (default paper)")
    p.add_argument("--margin", type=float, default=0.1,
                   help="latency headroom: the pick's median is at most (1 - margin) x budget (default 0.1)")
    p.add_argument("--rounds", type=positive_int, default=3, help="timing rounds per candidate (default 3)")
    p.add_argument("--engine-threads", type=positive_int, default=2, metavar="N",
                   help="CPU threads of the --engine (default 2)")
    add_plot_arg(p, "default pick.png", "predicted top-1 against latency, with the budget", default="pick.png")
    add_json_arg(p)
    add_verbose_arg(p)
    add_progress_arg(p)

    p = sub.add_parser("finetune", help="transfer a pretrained MobileNet to a new classification data set "
                                        "(ImageNet-style folders or Stanford Dogs' layout)")
    p.add_argument("--init", metavar="WEIGHTS",
                   help="a checkpoint, run folder or converted model folder (default: none, train from scratch)")
    p.add_argument("--data", required=True, metavar="DIR",
                   help="DIR/train/<class>/ + DIR/val/<class>/, or Stanford Dogs: DIR/Images/ + DIR/lists/*.mat")
    p.add_argument("--model", help="registry model when training from scratch (default mobilenet_v1_1.0_224)")
    p.add_argument("--resolution", type=positive_int, help="input size (default: the weights')")
    p.add_argument("--epochs", type=positive_int, default=8, help="default 8")
    p.add_argument("--batch-size", type=positive_int, default=32, help="default 32")
    p.add_argument("--lr", type=float, default=0.01, help="the new head's learning rate at batch 32 (default 0.01)")
    p.add_argument("--body-lr-scale", type=float, default=0.1,
                   help="the pretrained body's learning rate as a fraction of --lr (default 0.1)")
    p.add_argument("--freeze-body", action="store_true", help="train the classifier only")
    p.add_argument("--freeze-bn", action="store_true", help="keep the BatchNorm statistics of the weights")
    p.add_argument("--output", metavar="DIR", help="run FOLDER (default: a new folder under runs/)")
    p.add_argument("--resume", action="store_true", help="continue the run in --output")
    p.add_argument("--threads", type=positive_int, help="torch CPU threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0, help="default 0")
    p.add_argument("--workers", type=nonnegative_int, default=0, help="DataLoader workers (default 0)")
    add_json_arg(p)
    add_progress_arg(p)
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser("reproduce", help="re-run the paper's Tables 4-7 (on the digits at small scale without --data)")
    p.add_argument("table", choices=TABLES)
    p.add_argument("--data", metavar="DIR", help="ImageNet-style folder (default: the built-in digits, small scale)")
    p.add_argument("--output", metavar="DIR", help="FOLDER of the rows' runs (default runs/reproduce-TABLE[-digits])")
    p.add_argument("--epochs", type=positive_int, help="epochs per row (default: 6 on digits, the recipe's with --data)")
    p.add_argument("--recipe", default="paper", help="training preset for every row (default paper)")
    p.add_argument("--threads", type=positive_int, help="torch CPU threads (default: torch's)")
    add_json_arg(p)
    add_progress_arg(p)
    p.set_defaults(func=cmd_reproduce)


def cmd_figures(args: argparse.Namespace) -> None:
    """Draw the paper's Figures 4 and 5 (ImageNet top-1 against log mult-adds and against log parameters) with
    the paper's and TF-slim's points, and the points of your own runs beside them.

    examples:
      mobilenet figures
      mobilenet figures runs/ --output figures --json
    """
    from mobilenets.studies.figures import figures, figures_text

    result = figures(args.output, args.runs)
    print(json.dumps(result, indent=2) if args.json else figures_text(result))


def cmd_pick(args: argparse.Namespace) -> None:
    """The MobileNet (width and resolution) with the highest predicted top-1 within a budget of latency
    measured on this machine in one engine, parameters, mult-adds or size; with the Pareto frontier of the
    candidates.

    examples:
      mobilenet pick --latency-ms 5
      mobilenet pick --latency-ms 3 --engine onnxruntime-int8 --grid fine --engine-threads 4 --plot none --json
      mobilenet pick --params 2e6
    """
    from mobilenets.errors import MobileNetsError
    from mobilenets.studies.pick import pick, pick_text

    source = args.accuracy_from[0] if args.accuracy_from in (["paper"], ["slim"]) else args.accuracy_from
    result = pick(args.latency_ms, args.engine, params=args.params, mult_adds=args.mult_adds, size_mb=args.size_mb,
                  accuracy_from=source, grid=args.grid, engine_threads=args.engine_threads, rounds=args.rounds,
                  margin=args.margin, plot=args.plot or None, progress=not args.no_progress,
                  verbose=args.verbose)
    if args.json:
        keys = ("model", "alpha", "resolution", "latency_ms", "predicted_top1", "frontier")
        print(json.dumps({k: result[k] for k in keys} | {"none_fits": result.get("none_fits")}))
    else:
        print(pick_text(result))
    if result["model"] is None:
        raise MobileNetsError(result["none_fits"])


def cmd_finetune(args: argparse.Namespace) -> None:
    from mobilenets.studies.finetune import finetune, finetune_text

    result = finetune(args.data, args.init, model=args.model, resolution=args.resolution, epochs=args.epochs,
                      batch_size=args.batch_size, lr=args.lr, body_lr_scale=args.body_lr_scale,
                      freeze_body=args.freeze_body, freeze_bn=args.freeze_bn, output=args.output, resume=args.resume,
                      threads=args.threads, seed=args.seed, workers=args.workers, progress=not args.no_progress)
    print(json.dumps(result, indent=2) if args.json else finetune_text(result))


def cmd_reproduce(args: argparse.Namespace) -> None:
    from mobilenets.studies.reproduce import reproduce, reproduce_text

    result = reproduce(args.table, args.data, output=args.output, epochs=args.epochs, recipe=args.recipe,
                       threads=args.threads, progress=not args.no_progress)
    print(json.dumps(result, indent=2) if args.json else reproduce_text(result))
