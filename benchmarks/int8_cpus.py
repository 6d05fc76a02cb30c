"""Int8 ONNX forms of the real ImageNet MobileNetV1 across CPUs: does the same file agree with the
float model on every CPU it runs on?

ONNX Runtime picks its int8 kernels by the CPU's instruction set; on x86-64 without VNNI its
uint8 x int8 kernels add pairs of products in 16 bits and saturate. QEMU's user-mode emulator runs
this venv with another CPU model (``qemu-x86_64 -cpu Haswell python ...``), and ORT then picks that
CPU's kernels. Three steps, so that the emulated step imports only numpy and onnxruntime:

    python benchmarks/int8_cpus.py prepare DIR      # files of every form (mobilenets.deploy.ort.FORMS)
    python benchmarks/int8_cpus.py run DIR native   # each file's logits on the check crops
    qemu-x86_64 -cpu Haswell python benchmarks/int8_cpus.py run DIR haswell
    python benchmarks/int8_cpus.py report DIR --latency-runs 30 [--json FILE]

``prepare``: the real model (``nudity`` 0.2.3, converted with ``from_tf_frozen``), calibration
crops of 13 photos and check crops of the 7 others (:func:`mobilenets.data.photos.split_photos`, as
``benchmarks/int8_real.py``), one file per form, plain and after bias correction on the form's own
weight grid; the float model's logits. ``report``: top-1 agreement with the float model, overall and
on confident crops (float top-1 probability > 0.5), per form and CPU; native batch-1 latency.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

from _cli import ScriptParser, positive_int


def prepare(folder: str, calibration: int, check: int) -> None:
    import torch

    from _models import real_mobilenet_graph
    from int8_real import preprocessed
    from mobilenets.data.photos import split_photos, write_crops
    from mobilenets.data.preprocess import Preprocessing
    from mobilenets.deploy import ptq
    from mobilenets.deploy.fold import inference_network
    from mobilenets.deploy.formats.onnx import write_fp32
    from mobilenets.deploy.ort import FORMS, quantize_qdq
    from mobilenets.utils.scoped import quiet_output
    from mobilenets.weights.convert.tf_frozen import from_tf_frozen

    os.makedirs(folder, exist_ok=True)
    model = from_tf_frozen(real_mobilenet_graph()).eval()
    pre = Preprocessing.from_dict(model.pretrained_cfg).at(model.config.resolution)
    train_photos, held_photos = split_photos()
    calib = preprocessed(write_crops(f"{folder}/crops-calib", calibration, photos=train_photos, seed=1), pre)
    x = preprocessed(write_crops(f"{folder}/crops-check", check, photos=held_photos, seed=3), pre)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    np.save(f"{folder}/check.npy", x)
    np.save(f"{folder}/ref.npy", ref)
    net = inference_network(model)
    fp32 = f"{folder}/fp32.onnx"
    write_fp32(net, fp32, model.config.resolution)
    for name, form in FORMS.items():
        # bias correction on the grid the form's weights really use (ptq rounds to +-INT8_MAX)
        saved, ptq.INT8_MAX = ptq.INT8_MAX, (64 if form.reduce_range else 127)
        try:
            corrected = ptq.bias_correction(net, calib[:128])
        finally:
            ptq.INT8_MAX = saved
        for tag, n in (("plain", net), ("bc", corrected)):
            src = f"{folder}/float-{tag}.onnx"
            write_fp32(n, src, model.config.resolution)
            with quiet_output(True):
                quantize_qdq(src, f"{folder}/{name}.{tag}.onnx", calib, float_classifier=True, form=name)
            print(f"wrote {name}.{tag}.onnx", flush=True)
    for tag in ("plain", "bc"):
        os.remove(f"{folder}/float-{tag}.onnx")


def run(folder: str, tag: str, limit: int | None, only: list[str] | None = None) -> None:
    """Only numpy and onnxruntime (fast to start under the emulator)."""
    import onnxruntime as ort

    x = np.load(f"{folder}/check.npy")[:limit]
    out = f"{folder}/out-{tag}"
    os.makedirs(out, exist_ok=True)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    for name in sorted(f for f in os.listdir(folder) if f.endswith(".onnx") and (not only or f[:-5] in only)):
        t = time.time()
        s = ort.InferenceSession(f"{folder}/{name}", opts, providers=["CPUExecutionProvider"])
        logits = np.concatenate([s.run(None, {"input": x[i:i + 16]})[0] for i in range(0, len(x), 16)])
        np.save(f"{out}/{name[:-5]}.npy", logits)
        print(f"{tag} {name}: {len(x)} crops in {time.time() - t:.1f}s", flush=True)


def agreement(ref: np.ndarray, out: np.ndarray) -> tuple[float, float, int]:
    ref = ref[: len(out)]
    same = ref.argmax(1) == out.argmax(1)
    e = np.exp(ref - ref.max(1, keepdims=True))
    confident = e.max(1) / e.sum(1) > 0.5
    return float(same.mean()), float(same[confident].mean()), int(confident.sum())


def latency(folder: str, names: list[str], runs: int, threads: int) -> dict[str, float]:
    """Batch-1 median ms of each file, runs interleaved (one call of each file per round)."""
    from mobilenets.deploy.ort import session

    x = np.load(f"{folder}/check.npy")[:1]
    sessions = {n: session(f"{folder}/{n}.onnx", threads, quiet=True) for n in names}
    times: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(5):
        for s in sessions.values():
            s.run(None, {"input": x})
    for _ in range(runs):
        for n, s in sessions.items():
            t = time.perf_counter()
            s.run(None, {"input": x})
            times[n].append(1000 * (time.perf_counter() - t))
    return {n: float(np.median(t)) for n, t in times.items()}


def report(folder: str, runs: int, threads: int, json_path: str | None, crops: int | None = None) -> None:
    ref = np.load(f"{folder}/ref.npy")[:crops]
    cpus = sorted(d[4:] for d in os.listdir(folder) if d.startswith("out-"))
    names = sorted(f[:-5] for f in os.listdir(folder) if f.endswith(".onnx"))
    lat = latency(folder, names, runs, threads) if runs else {}
    rows = []
    for n in names:
        row = {"file": n, "latency_ms": round(lat[n], 3) if n in lat else None}
        for cpu in cpus:
            path = f"{folder}/out-{cpu}/{n}.npy"
            if os.path.isfile(path):
                out = np.load(path)[:crops]
                overall, conf, n_conf = agreement(ref, out)
                row[cpu] = {"agreement": round(overall, 4), "confident": round(conf, 4), "crops": len(out),
                            "confident_crops": n_conf}
                native = f"{folder}/out-native/{n}.npy"
                if cpu != "native" and os.path.isfile(native):  # the same file's outputs natively
                    base = np.load(native)[: len(out)]
                    row[cpu]["same_top1_as_native"] = round(float((base.argmax(1) == out.argmax(1)).mean()), 4)
                    row[cpu]["max_abs_diff_to_native"] = float(np.abs(base - out).max())
        rows.append(row)
    print(f"{'file':24s} " + " ".join(f"{c:>22s}" for c in cpus) + f" {'ms b1':>7s}")
    for r in rows:
        cells = [f"{100 * r[c]['agreement']:5.1f}/{100 * r[c]['confident']:5.1f}% ({r[c]['crops']:3d})"
                 if c in r else "-" for c in cpus]
        print(f"{r['file']:24s} " + " ".join(f"{c:>22s}" for c in cells)
              + (f" {r['latency_ms']:7.2f}" if r["latency_ms"] else ""))
    for r in rows:
        for c in cpus:
            if "same_top1_as_native" in r.get(c, {}):
                print(f"{r['file']:24s} under {c}: top-1 equal to native on {100 * r[c]['same_top1_as_native']:.1f}% "
                      f"of crops, largest logit difference {r[c]['max_abs_diff_to_native']:.3g}")
    if json_path:
        from mobilenets.bench.run import machine_info

        with open(json_path, "w") as fh:
            json.dump({"machine": machine_info(threads), "latency_runs": runs, "rows": rows}, fh, indent=2)


def main() -> None:
    p = ScriptParser(description=__doc__.split("\n\n")[0])
    p.add_argument("step", choices=("prepare", "run", "report"))
    p.add_argument("folder")
    p.add_argument("tag", nargs="?", default="native", help="run: the CPU's name for the output folder")
    p.add_argument("--calibration-size", type=positive_int, default=256)
    p.add_argument("--check-crops", type=positive_int, default=96)
    p.add_argument("--limit", type=positive_int, help="run, report: only the first N check crops")
    p.add_argument("--files", help="run: comma-separated file names (without .onnx) to run; default all")
    p.add_argument("--latency-runs", type=int, default=30)
    p.add_argument("--threads", type=positive_int, default=1)
    p.add_argument("--json", metavar="FILE")
    args = p.parse_args()
    if args.step == "prepare":
        prepare(args.folder, args.calibration_size, args.check_crops)
    elif args.step == "run":
        run(args.folder, args.tag, args.limit, args.files.split(",") if args.files else None)
    else:
        report(args.folder, args.latency_runs, args.threads, args.json, args.limit)


if __name__ == "__main__":
    sys.exit(main())
