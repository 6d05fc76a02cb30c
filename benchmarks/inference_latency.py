"""Inference latency of ``mobilenets`` across engines, against timm and Keras, on CPU.

What it measures
----------------
``mobilenets.bench.run.bench`` (the code behind ``mobilenet bench --peers``) on one model (default
``mobilenet_v1_1.0_224``, untrained weights with BatchNorm statistics from random images; with
``--checkpoint`` the weights of any checkpoint or converted model folder, e.g. the real ImageNet
MobileNetV1 that ``mobilenet convert`` makes of a TF frozen graph, or an exported file timed
itself):

* ours: eager PyTorch, ``torch.compile``, ``torch-fast`` (BN folded, channels_last,
  ``torch.compile`` with Inductor freezing and the C++ wrapper; TorchScript freeze +
  optimize_for_inference where Inductor cannot run), ``torch-fast-bf16`` (the same in bfloat16), and the files ``mobilenet export`` writes, run by
  ``mobilenets.deploy.runtime.load_runner``: ONNX Runtime fp32 and int8, TFLite fp32 and int8,
  ExecuTorch;
* peers: timm ``mobilenetv1_100`` eager; Keras ``keras.applications.MobileNet`` through TFLite
  fp32; ONNX Runtime's own static int8 (QDQ, per-channel) of the timm model.

Batch 1 and batch N (``--batch-size``), ``--threads`` threads for every engine. Engines run
interleaved in rounds, the starting engine rotated each round, so drift in machine load hits all
alike. ``median`` / ``p10-p90`` are over every timed call; ``x fastest`` divides by the fastest
median at that batch size; ``% floor`` is the FLOP floor (2 x mult-adds x batch at the matmul
peak measured in the row's precision, 4096² by default) over the median. The speed goals of the
issue are checked at the end. An engine that is not installed gives a row saying so.

The machine (CPU model, cores, load average), the threads, the versions of torch, ONNX Runtime
and TensorFlow and the date are printed first: a load average well above 0 means other processes
shared the CPU and the numbers are noisy.

Usage::

    .venv/bin/python benchmarks/inference_latency.py [--quick] [--threads 2] [--batch-size 8]
        [--rounds 10] [--model NAME | --checkpoint PATH] [--calibration DIR] [--engines LIST]
        [--no-peers] [--profile] [--json] [--verbose]

``--quick`` is a smoke run (2 rounds, a 1024² matmul; every engine still, unlike ``mobilenet bench
--quick``); the default takes several minutes (exports and compilation included). ``--profile`` also prints ``mobilenet profile``'s table (time per layer
type beside the mult-add share, eager PyTorch and ONNX Runtime fp32/int8). Progress goes to stderr;
what TensorFlow, ExecuTorch and the exporters print is silenced unless ``--verbose``.
"""

from __future__ import annotations

import argparse
import json
import sys

from _cli import ScriptParser, positive_int


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = ScriptParser(prog="inference_latency.py", description=__doc__.split("\n", 1)[0])
    p.add_argument("--model", default=None, help="registry name (default mobilenet_v1_1.0_224)")
    p.add_argument("--checkpoint", help="a checkpoint, run folder or converted model folder (its weights), or an "
                                        "exported file (timed itself); --model, if given, must agree with it")
    p.add_argument("--calibration", help="a folder of images (or 'digits') for the int8 exports")
    p.add_argument("--threads", type=positive_int, default=2, help="threads of every engine (default 2)")
    p.add_argument("--batch-size", type=positive_int, default=None, help="batch-N size (default 8; 4 with --quick)")
    p.add_argument("--rounds", type=positive_int, default=None, help="timing rounds (default 10; 2 with --quick)")
    p.add_argument("--engines", help="comma-separated engines (default: all of ours)")
    p.add_argument("--no-peers", action="store_true", help="leave out timm and Keras")
    p.add_argument("--quick", action="store_true", help="smoke run")
    p.add_argument("--profile", action="store_true", help="also print the per-layer-type profile")
    p.add_argument("--json", action="store_true", help="print one JSON object (machine, rows, profile)")
    p.add_argument("--verbose", action="store_true", help="show what third-party libraries print")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from mobilenets import bench as B

    s = B.BenchSettings.quick(args.threads) if args.quick else B.BenchSettings(threads=args.threads)
    if args.batch_size is not None:
        s.batch = args.batch_size
    if args.rounds is not None:
        s.rounds = args.rounds
    engines = [e for e in args.engines.split(",") if e.strip()] if args.engines else None
    info = B.machine_info(args.threads)
    if not args.json:
        print(f"machine: {info['cpu']}, {info['cores']} cores, load average {info['load_average']}")
        print(f"versions: python {info['python']}, torch {info['torch']}, onnxruntime {info['onnxruntime']}, "
              f"tensorflow {info['tensorflow']}, timm {info['timm']}, executorch {info['executorch']}")
        print(f"date: {info['date']}; model {args.checkpoint or args.model or 'mobilenet_v1_1.0_224'}; "
              f"{args.threads} threads; batch 1 and {s.batch}; {s.rounds} interleaved rounds", flush=True)
    try:
        rows = B.bench(args.model, checkpoint=args.checkpoint, calibration=args.calibration, engines=engines,
                       peers=not args.no_peers, settings=s, verbose=args.verbose)
        prof = B.profile(args.model, checkpoint=args.checkpoint, calibration=args.calibration, threads=args.threads,
                         runs=5 if args.quick else 50, calibration_size=s.calibration_size,
                         verbose=args.verbose) if args.profile else None
    except ValueError as exc:
        print(f"inference_latency.py: error: {exc}", file=sys.stderr)
        return 2
    info["load_average_end"] = B.machine_info(args.threads)["load_average"]
    if args.json:
        print(json.dumps({"machine": info, "settings": s.__dict__, "rows": rows, "profile": prof}, indent=2))
        return 0
    print(f"weights: {rows[0]['weights']}")
    print(B.bench_text(rows))
    if prof is not None:
        print()
        print(B.profile_text(prof))
    print(f"load average at end: {info['load_average_end']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
