"""``mobilenet bench`` and ``profile``: inference latency across engines, and where it goes.

The model is named as in every command (``--model``, ``--alpha``, ``--resolution``, ...,
``--checkpoint``): ``--checkpoint`` takes any checkpoint, run folder or converted model folder
(its weights are timed), or an exported file (``.onnx``, ``.tflite``, ``.pte``, TorchScript),
timed itself. Third-party libraries' output (TensorFlow, ExecuTorch, the ONNX exporter) is
silenced unless ``--verbose``; progress bars go to stderr. Imports no torch until a command runs.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from mobilenets.bench.catalog import ALL_MODELS_ENGINES, OURS, PEERS, PROFILE_ENGINES, QUICK_ENGINES
from mobilenets.cli.common import (
    CHECKPOINT_HELP,
    UsageError,
    add_batch_size_arg,
    add_command,
    add_engine_threads_arg,
    add_json_arg,
    add_model_args,
    add_plot_arg,
    add_progress_arg,
    add_threads_arg,
    add_verbose_arg,
    choice,
    positive_int,
)
from mobilenets.cli.deploy import INT8_METHODS, int8_method
from mobilenets.cli.detect import SSD_DETECTORS

MODEL_FLAGS = ("model", "alpha", "resolution", "variant", "num_classes", "checkpoint")


CALIBRATION_HELP = ("a folder of images (or 'digits') that calibrates the int8 exports (default: the data the "
                    "checkpoint records, else the built-in digits, which is fine for latency, not for accuracy)")


def engine_list(text: str) -> list[str]:
    """``--engines``: comma-separated names (checked by the library, which knows them all)."""
    return [t for t in (p.strip() for p in text.split(",")) if t]


def register(sub: Any) -> None:
    p = add_command(sub, "bench", cmd_bench, help="inference latency across engines (eager, compiled, ONNX Runtime, TFLite, "
                                                  "ExecuTorch; --peers adds timm and Keras)")
    add_model_args(p, checkpoint=False)
    p.add_argument("--checkpoint", metavar="PATH", help=f"{CHECKPOINT_HELP} (its weights are timed, instead of random "
                                                        "ones), or an exported .onnx/.tflite/.pte/TorchScript file "
                                                        "(timed itself)")
    p.add_argument("--engines", type=engine_list, metavar="LIST",
                   help=f"comma-separated engines (default: all of ours, {','.join(OURS)}; with --quick "
                        f"{','.join(QUICK_ENGINES)}; with --all-models {','.join(ALL_MODELS_ENGINES)})")
    p.add_argument("--peers", action="store_true", help=f"also run the peers {', '.join(PEERS)} (default: off)")
    p.add_argument("--detector", **choice(SSD_DETECTORS),
                   help="time a detector instead (batch 1, beside torchvision's ssdlite320_mobilenet_v3_large; "
                        "as `mobilenet detect bench`: --checkpoint a detection run, or --alpha/--resolution, "
                        "default: 1.0 and 300 px)")
    p.add_argument("--calibration", metavar="DIR", help=CALIBRATION_HELP)
    p.add_argument("--int8-method", **choice(("auto",) + INT8_METHODS), default="auto",
                   help="the int8 exports' label-free remedy, as `mobilenet export --int8-method` (default auto: "
                        "the export tries each and keeps the best; random weights: plain)")
    p.add_argument("--bias-correction", action="store_true",
                   help="the former name of --int8-method bias_correction")
    p.add_argument("--batch-size", type=positive_int,
                   help="the batch-N size; every engine also runs batch 1 (default: 8; 4 with --quick)")
    p.add_argument("--rounds", type=positive_int, help="interleaved timing rounds (default: 10; 2 with --quick)")
    p.add_argument("--quick", action="store_true",
                   help=f"a smoke run (well under a minute): engines {','.join(QUICK_ENGINES)} unless --engines, "
                        "2 rounds, short visits, a 1024² matmul for the peak, 16 calibration images")
    p.add_argument("--all-models", action="store_true",
                   help="batch-1 latency of the 16 paper models instead of one model "
                        f"(engines {','.join(ALL_MODELS_ENGINES)} unless --engines)")
    add_plot_arg(p, "its folder must exist; with --all-models only; default: none",
                 "latency against mult-adds")
    add_threads_arg(p, 2, " of the torch engines (and the FLOP-peak measurement)")
    add_engine_threads_arg(p, None)
    add_json_arg(p)
    add_verbose_arg(p)
    add_progress_arg(p)

    p = add_command(sub, "profile", cmd_profile, help="measured time per layer type beside the mult-add share")
    add_model_args(p, checkpoint=False)
    p.add_argument("--checkpoint", metavar="PATH", help=f"{CHECKPOINT_HELP} (instead of random weights), or an "
                                                        "exported .onnx file (profiled itself)")
    p.add_argument("--engines", type=engine_list, metavar="LIST",
                   help=f"comma-separated, from {','.join(PROFILE_ENGINES)} (default: all three)")
    add_batch_size_arg(p, 1, "images per forward pass")
    p.add_argument("--calibration", metavar="DIR", help=CALIBRATION_HELP)
    p.add_argument("--runs", type=positive_int, default=20, help="timed forward passes per engine (default 20)")
    add_threads_arg(p, 2, " of torch-eager")
    add_engine_threads_arg(p, None)
    add_json_arg(p)
    add_verbose_arg(p)
    add_progress_arg(p)


def model_and_checkpoint(args: argparse.Namespace) -> tuple[Any, str | None]:
    """What the library gets: ``(model, checkpoint)``. Without ``--checkpoint`` the config the
    model flags name (the library gives it BatchNorm statistics from random images). With it:
    an exported file and the fields the model flags give (what the file must be); else the
    checkpoint's model (the other flags must agree with it, as in every command) and its path."""
    from mobilenets.cli.common import model_config, model_from_args, model_overrides

    if not args.checkpoint:
        return model_config(args), None
    from mobilenets.bench.exported import exported_format

    if exported_format(args.checkpoint):
        from mobilenets.models.registry import expected_fields

        named = expected_fields(args.model, **model_overrides(args)) if args.model or model_overrides(args) else None
        return named, args.checkpoint
    return model_from_args(args)[0], args.checkpoint


def settings_from_args(args: argparse.Namespace) -> Any:
    from mobilenets.bench.timing import BenchSettings

    s = BenchSettings.quick(args.threads) if args.quick else BenchSettings(threads=args.threads)
    s.engine_threads = args.engine_threads
    if args.batch_size is not None:
        s.batch = args.batch_size
    if args.rounds is not None:
        s.rounds = args.rounds
    return s


def cmd_bench(args: argparse.Namespace) -> None:
    """Batch-1 and batch-N latency of one model in every engine, interleaved round by round, beside its mult-
    adds and the FLOP floor of this CPU; or of the 16 paper models (--all-models), or of a detector
    (--detector).

    examples:
      mobilenet bench --model mobilenet_v1_0.5_160 --quick
      mobilenet bench --checkpoint model.onnx --threads 4 --engine-threads 4
      mobilenet bench --all-models --plot latency.png
      mobilenet bench --detector ssdlite --json
    """
    if args.plot and not args.all_models:
        raise UsageError("--plot needs --all-models")
    if args.detector:
        from mobilenets.cli.detect import run_detector_bench

        run_detector_bench(args.checkpoint, args.detector, args.alpha or 1.0, args.resolution or 300, peer=True,
                           int8=True, threads=args.threads, engine_threads=args.engine_threads,
                           rounds=args.rounds or 10, as_json=args.json, progress=not args.no_progress)
        return
    s = settings_from_args(args)
    progress = not args.no_progress
    if args.all_models:
        given = [f"--{k.replace('_', '-')}" for k in (*MODEL_FLAGS, "peers")
                 if getattr(args, k) is not None and getattr(args, k) is not False]
        if given:
            raise UsageError(f"--all-models runs the 16 paper models: drop {', '.join(given)}")
        from mobilenets.bench.report import all_models_text
        from mobilenets.bench.run import bench_all_models

        engines = args.engines if args.engines is not None else (list(QUICK_ENGINES) if args.quick else None)
        rows = bench_all_models(engines=engines, settings=s, plot=args.plot or None, calibration=args.calibration,
                                progress=progress, verbose=args.verbose)
        print(json.dumps(rows, indent=2) if args.json else all_models_text(rows))
        if args.plot and not args.json:
            print(f"wrote {args.plot}")
        return
    from mobilenets.bench.exported import exported_format
    from mobilenets.bench.report import bench_text
    from mobilenets.bench.run import bench, machine_info

    model, checkpoint = model_and_checkpoint(args)
    quick = args.quick and not (checkpoint and exported_format(checkpoint))  # an exported file is its own engine
    engines = args.engines if args.engines is not None else (list(QUICK_ENGINES) if quick else None)
    rows = bench(model, checkpoint=checkpoint, engines=engines, peers=args.peers, settings=s,
                 calibration=args.calibration, int8_method=int8_method(args), progress=progress,
                 verbose=args.verbose)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    info = machine_info(s.threads)
    threads = f"{s.threads}" if s.runtime_threads == s.threads else f"{s.threads} torch / {s.runtime_threads} engine"
    print(f"{rows[0]['model']} ({rows[0]['weights']}): {info['cpu']}, {threads} threads, torch {info['torch']}, "
          f"onnxruntime {info['onnxruntime']}, tensorflow {info['tensorflow']}; {s.rounds} interleaved rounds"
          + ("; --quick: a smoke run, not a measurement" if args.quick else ""))
    print(bench_text(rows))


def cmd_profile(args: argparse.Namespace) -> None:
    """Where the time goes: measured time per layer group (stem, depthwise, pointwise, pool, classifier) in
    torch-eager and ONNX Runtime (fp32, int8), beside each group's share of the mult-adds.

    examples:
      mobilenet profile --model mobilenet_v1_1.0_224 --runs 10
      mobilenet profile --checkpoint model.onnx --engine-threads 4 --json
    """
    from mobilenets.bench.profiling import profile
    from mobilenets.bench.report import profile_text

    model, checkpoint = model_and_checkpoint(args)
    rows = profile(model, checkpoint=checkpoint, engines=args.engines, batch=args.batch_size, runs=args.runs,
                   threads=args.threads, engine_threads=args.engine_threads, calibration=args.calibration, progress=not args.no_progress,
                   verbose=args.verbose)
    print(json.dumps(rows, indent=2) if args.json else profile_text(rows))
