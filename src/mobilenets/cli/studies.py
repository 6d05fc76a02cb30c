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

    _add_finetune(sub)
    _add_reproduce(sub)


def _add_finetune(sub) -> None:
    from mobilenets.cli.args import add_training_args
    from mobilenets.train.recipes import PRESETS

    p = add_command(sub, "finetune", cmd_finetune, help="transfer a pretrained MobileNet to a new classification data set "
                         "(ImageNet-style folders or Stanford Dogs' layout)")
    g = p.add_argument_group("fine-tuning")
    g.add_argument("--data", metavar="DIR",
                   help="DIR/train/<class>/ + DIR/val/<class>/, or Stanford Dogs: DIR/Images/ + DIR/lists/*.mat")
    g.add_argument("--body-lr-scale", type=float, default=0.1,
                   help="the pretrained body's learning rate as a fraction of --lr (default 0.1)")
    g.add_argument("--freeze-body", action="store_true", help="train the classifier only")
    g.add_argument("--freeze-bn", action="store_true", help="keep the BatchNorm statistics of the weights")
    add_training_args(p, model_default="mobilenet_v1_1.0_224, or the --init weights'", presets=PRESETS,
                      recipe_default="transfer")


def _add_reproduce(sub) -> None:
    from mobilenets.cli.args import add_running_args
    from mobilenets.train.recipes import PRESETS

    p = add_command(sub, "reproduce", cmd_reproduce, help="re-run the paper's Tables 4-7 (on the digits at small scale without --data)")
    p.add_argument("table", choices=TABLES)
    p.add_argument("--data", metavar="DIR", help="ImageNet-style folder (default: the built-in digits, small scale)")
    p.add_argument("--epochs", type=positive_int, help="epochs per row (default: 6 on digits, the recipe's with --data)")
    p.add_argument("--recipe", default="paper", choices=list(PRESETS), help="training preset for every row "
                                                                            "(default paper)")
    # --output is the folder of the rows' runs; resume is automatic (finished rows are read back)
    add_running_args(p, exclude=("resume", "max_steps", "keep_last", "checkpoint_every"))


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
    """Fine-tune (paper Section 4.2, Table 10): --init weights (a checkpoint, run folder or converted
    model folder; without it, --model from scratch) trained on a new classification data set with
    the transfer recipe: a new head, the pretrained body at --body-lr-scale of the learning rate.
    Ends with the confusion matrix of the best weights and the Table 10 layout.

    example:
      mobilenet finetune --init runs/imagenet --data ~/stanford-dogs --epochs 8 --output runs/dogs
    """
    from mobilenets.cli.args import log_for, print_summary, recipe_overrides, train_options
    from mobilenets.studies.finetune import finetune, finetune_text

    if not args.resume and not args.data:
        from mobilenets.cli.common import UsageError

        raise UsageError("finetune needs --data (or --resume with --output)")
    result = finetune(args.data, args.init, model=args.model, alpha=args.alpha, resolution=args.resolution,
                      variant=args.variant, recipe=args.recipe, recipe_overrides=recipe_overrides(args),
                      body_lr_scale=args.body_lr_scale, freeze_body=args.freeze_body, freeze_bn=args.freeze_bn,
                      options=train_options(args), log=log_for(args))
    print_summary(args, result, [finetune_text(result)])


def cmd_reproduce(args: argparse.Namespace) -> None:
    """Re-run one of the paper's Tables 4-7: every row trained and evaluated with one recipe, each in
    its own run folder under --output (finished rows are read back, killed rows resumed).

    example:
      mobilenet reproduce table6 --epochs 3 --output runs/table6
    """
    from mobilenets.cli.args import log_for, print_summary
    from mobilenets.studies.reproduce import reproduce, reproduce_text
    from mobilenets.train.options import TrainOptions

    options = TrainOptions(workers=args.workers, seed=args.seed, device=args.device, threads=args.threads,
                           amp=args.amp, float64=args.float64, channels_last=args.channels_last,
                           compile=args.compile, sync_bn=args.sync_bn, deterministic=args.deterministic,
                           progress=not args.no_progress, eval_batch_size=args.eval_batch_size)
    result = reproduce(args.table, args.data, output=args.output, epochs=args.epochs, recipe=args.recipe,
                       options=options, log=log_for(args))
    print_summary(args, result, [reproduce_text(result)])
