"""``mobilenet geo cells|standin|train|predict|eval``: geolocation as PlaNet does it (paper Table 11),
a thin layer over :mod:`mobilenets.tasks.geo` (each subcommand is a plain function there)."""

from __future__ import annotations

import argparse
import json

from mobilenets.cli.common import (
    UsageError,
    add_batch_size_arg,
    add_command,
    add_device_arg,
    add_json_arg,
    add_plot_arg,
    add_progress_arg,
    add_threads_arg,
    choice,
    nonnegative_int,
    positive_int,
)
from mobilenets.train.recipes import PRESETS

CHECKPOINT_HELP = "a geo train run folder (its best weights) or its weights file"


def register(sub) -> None:
    p = sub.add_parser("geo", help="geolocation over adaptive S2 cells (PlaNet, paper Table 11)",
                       description="Geolocation as PlaNet does it: partition the globe into S2 cells by photo count, "
                                   "classify photos into cells, score by great-circle distance.")
    geo = p.add_subparsers(dest="geo_command", required=True, metavar="COMMAND", parser_class=type(p))

    c = add_command(geo, "cells", cmd_cells, help="the adaptive S2 partition of a photo list (one row per cell, and a map PNG)")
    c.add_argument("--photos", required=True, metavar="CSV", help="photo list: path,latitude,longitude")
    c.add_argument("--max-per-cell", required=True, type=positive_int, metavar="T1",
                   help="split a cell holding more photos than this (PlaNet: 10000)")
    c.add_argument("--min-per-cell", required=True, type=positive_int, metavar="T2",
                   help="drop a cell holding fewer photos than this (PlaNet: 50)")
    c.add_argument("--min-level", type=nonnegative_int, default=2, metavar="L", help="starting S2 level (default 2)")
    c.add_argument("--max-level", type=nonnegative_int, default=18, metavar="L",
                   help="finest S2 level a cell is split to (default 18, ~30 m)")
    c.add_argument("--output", required=True, metavar="CSV", help="the cells file to write")
    c.add_argument("--map", metavar="PNG", help="the map of the cells (default: the output with .png)")
    add_json_arg(c)

    s = add_command(geo, "standin", cmd_standin, help="write the built-in geotagged stand-in (photos from population density)")
    s.add_argument("--output", required=True, metavar="DIR", help="folder for images/, train.csv and val.csv")
    s.add_argument("--photos", type=positive_int, default=6000, help="photos in all (default 6000)")
    s.add_argument("--places", type=positive_int, default=150,
                   help="cities the photos are taken in, drawn by population (default 150)")
    s.add_argument("--size", type=positive_int, default=64, help="image side in pixels (default 64)")
    s.add_argument("--seed", type=int, default=0, help="default 0")
    add_progress_arg(s)
    add_json_arg(s)

    _add_train(geo)

    q = add_command(geo, "predict", cmd_predict, help="latitude/longitude and the top-k cells of images")
    q.add_argument("--checkpoint", required=True, metavar="PATH", help=CHECKPOINT_HELP)
    q.add_argument("images", nargs="+", metavar="IMAGE")
    q.add_argument("--top-k", type=positive_int, default=5, help="cells shown per image (default 5)")
    q.add_argument("--centre", action="store_true", help="place a photo at its cell's centre (default: the mean "
                                                         "position of the cell's training photos)")
    q.add_argument("--output", metavar="CSV", help="also write path,latitude,longitude (what geo eval reads; "
                                                   "default: no file)")
    add_device_arg(q)
    add_threads_arg(q)
    add_json_arg(q)

    e = add_command(geo, "eval", cmd_eval, help="share of photos within 1/25/200/750/2500 km, median error, CDF PNG")
    e.add_argument("--truth", metavar="CSV", help="true locations (path,latitude,longitude)")
    e.add_argument("--predictions", metavar="CSV", help="predicted locations, same layout, matched on path")
    e.add_argument("--checkpoint", metavar="PATH", help=f"instead: {CHECKPOINT_HELP}, run on --data")
    e.add_argument("--data", metavar="CSV", help="with --checkpoint: the photos (default: the run's validation list)")
    e.add_argument("--centre", action="store_true", help="with --checkpoint: predict cell centres, not photo means")
    add_plot_arg(e, "default: PREDICTIONS.cdf.png, or geo_eval_cdf.png in the checkpoint's folder",
                 "the CDF of the errors")
    add_batch_size_arg(e, 256)
    e.add_argument("--workers", type=nonnegative_int, default=0, help="DataLoader workers (default 0)")
    add_device_arg(e)
    add_threads_arg(e)
    add_progress_arg(e)
    add_json_arg(e)


def _add_train(geo) -> None:
    from mobilenets.cli.args import add_training_args

    p = add_command(geo, "train", cmd_train, help="train a MobileNet to classify photos into cells (the generic training loop)")
    g = p.add_argument_group("geolocation")
    g.add_argument("--data", metavar="CSV", help="training photos: path,latitude,longitude")
    g.add_argument("--val", metavar="CSV", help="validation photos, same layout")
    g.add_argument("--cells", metavar="CSV", help="the cells (`mobilenet geo cells --output`)")
    g.add_argument("--activation", **choice(("relu", "relu6")), help="default: relu (the paper's)")
    g.add_argument("--dropout", type=float, help="dropout before the classifier (default: 0.001)")
    add_training_args(p, model_default="alpha 0.5 at 64 px", presets=PRESETS, recipe_default="paper")


def cmd_cells(args: argparse.Namespace) -> None:
    """PlaNet's adaptive partition: split S2 cells until none holds more than --max-per-cell photos, drop those
    with fewer than --min-per-cell; writes one row per cell and a map of them.

    example:
      mobilenet geo cells --photos geo/train.csv --max-per-cell 200 --min-per-cell 10 --output geo/cells.csv
    """
    from mobilenets.tasks.geo.run import make_cells

    summary = make_cells(args.photos, args.max_per_cell, args.min_per_cell, args.output, args.min_level,
                         args.max_level, map_png=args.map, log=_stderr)
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(f"{summary['cells']} cells (levels {summary['levels'][0]}-{summary['levels'][1]}, largest "
          f"{summary['largest_cell']} photos) from {summary['photos']} photos in {summary['seconds']:.2f} s "
          f"({summary['cpu_seconds']:.2f} s CPU); "
          f"{summary['unassigned']} photos in dropped cells (fewer than {args.min_per_cell})")
    print(f"wrote {summary['output']} and {summary['map']}")


def cmd_standin(args: argparse.Namespace) -> None:
    """Write the built-in stand-in data set: synthetic geotagged photos taken in cities drawn by population, as
    images/ with train.csv and val.csv (path,latitude,longitude).

    examples:
      mobilenet geo standin --output geo
      mobilenet geo standin --output geo-small --photos 600 --places 20 --json
    """
    from mobilenets.tasks.geo.standin import write_standin

    summary = write_standin(args.output, photos=args.photos, places=args.places, size=args.size, seed=args.seed,
                            progress=not args.no_progress)
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(f"wrote {summary['photos']} photos ({summary['train_photos']} train, {summary['val_photos']} val) taken in "
          f"{summary['places']} cities: {summary['train']}, {summary['val']}")


def cmd_train(args: argparse.Namespace) -> None:
    """Train a MobileNet to classify photos into the S2 cells of a `geo cells` file, validated by
    great-circle error. --init starts from a classification checkpoint or model folder (a new
    classifier over the cells).

    example:
      mobilenet geo train --data photos/train.csv --val photos/val.csv --cells cells.csv --epochs 10 --output runs/geo
    """
    from mobilenets.cli.args import log_for, print_summary, recipe_overrides, train_options
    from mobilenets.tasks.geo.evaluate import THRESHOLDS_KM, table11_text
    from mobilenets.tasks.geo.task import train

    if not args.resume and not (args.data and args.val and args.cells):
        raise UsageError("geo train needs --data, --val and --cells (or --resume with --output)")
    model_overrides = {k: getattr(args, k) for k in ("activation", "dropout") if getattr(args, k) is not None}
    summary = train(args.data, args.val, args.cells, args.model, alpha=args.alpha, resolution=args.resolution,
                    variant=args.variant, recipe=args.recipe, recipe_overrides=recipe_overrides(args),
                    model_overrides=model_overrides, init=args.init, options=train_options(args), log=log_for(args))
    m = summary["metrics"]
    lines = [f"trained {summary['epochs']} epochs ({summary['steps']} steps) in {summary['seconds']:.1f} s over "
             f"{summary['cells']} cells, {summary['train_photos']} training photos"]
    if "median_km" in m:
        last = {str(t): m[f"within_{t}km"] for t in THRESHOLDS_KM} | {"median_km": m["median_km"], "n": m["images"]}
        lines.append(table11_text({"MobileNet": last, "biggest cell": summary["baseline"]}, paper=False))
    lines.append(f"saved in {summary['output']}")
    print_summary(args, summary, lines)


def cmd_predict(args: argparse.Namespace) -> None:
    """Where each image was taken: latitude and longitude, and the top-k cells with their probabilities, from a
    geo train run; --output also writes them as a CSV that geo eval reads.

    examples:
      mobilenet geo predict --checkpoint runs/geo photo.jpg
      mobilenet geo predict --checkpoint runs/geo a.jpg b.jpg --top-k 3 --output predicted.csv --json
    """
    from mobilenets.tasks.geo.predict import predict, write_predictions
    from mobilenets.utils.scoped import torch_threads

    with torch_threads(args.threads):  # None: torch's default
        results = predict(args.checkpoint, args.images, args.top_k, centre=args.centre, device=args.device)
    if args.output:
        write_predictions(results, args.output)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for r in results:
        print(f"{r['image']}: {r['latitude']:.4f}, {r['longitude']:.4f}")
        for t in r["top"]:
            print(f"  {t['probability']:7.2%}  cell {t['cell']}  ({t['latitude']:.3f}, {t['longitude']:.3f})")


def cmd_eval(args: argparse.Namespace) -> None:
    """Paper Table 11's numbers: the share of photos placed within 1, 25, 200, 750 and 2500 km and the median
    error, of a predictions CSV against the truth, or of a geo train run (beside the always-the-biggest-cell
    baseline); and a CDF plot.

    examples:
      mobilenet geo eval --checkpoint runs/geo --plot none
      mobilenet geo eval --truth geo/val.csv --predictions predicted.csv --json
    """
    if args.checkpoint and (args.truth or args.predictions):
        raise UsageError("give either --truth and --predictions, or --checkpoint (with --data)")
    plot = True if args.plot is None else args.plot  # True: the default file; False: --plot none
    if args.checkpoint:
        from mobilenets.tasks.geo.predict import eval_checkpoint
        from mobilenets.utils.scoped import torch_threads

        with torch_threads(args.threads):  # None: torch's default
            result = eval_checkpoint(args.checkpoint, args.data, args.batch_size, args.workers, args.device,
                                     centre=args.centre, plot=plot, progress=not args.no_progress, log=_stderr)
        metrics = result["model"]
    elif args.truth and args.predictions:
        if args.data or args.centre:
            raise UsageError("--data and --centre go with --checkpoint")
        from mobilenets.tasks.geo.evaluate import eval_files

        result = eval_files(args.truth, args.predictions, plot=plot, log=_stderr)
        metrics = result["metrics"]
    else:
        raise UsageError("geo eval needs --truth and --predictions, or --checkpoint")
    if args.json:
        print(json.dumps(metrics))
        return
    print(result["table"])
    if result["plot"]:
        print(f"CDF plot: {result['plot']}")


def _stderr(line: str) -> None:
    import sys

    print(line, file=sys.stderr)
