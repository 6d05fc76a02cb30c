"""The default ``mobilenet export --int8`` of the real ImageNet MobileNetV1, as a user runs it, and
the same files' agreement with the float model on crops of photos the calibration never saw.

Issue 25's acceptance, in one script:

    python benchmarks/int8_default.py DIR [--formats onnx,tflite,executorch]
    qemu-x86_64 -cpu Haswell python benchmarks/int8_cpus.py run DIR haswell --files default
    qemu-x86_64 -cpu Skylake-Server python benchmarks/int8_cpus.py run DIR skylake-server --files default
    python benchmarks/int8_cpus.py report DIR --latency-runs 0

1. the real model (``nudity`` 0.2.3's frozen graph) converted into ``DIR/model`` (as ``mobilenet
   convert`` does);
2. ``--calibration-crops`` crops of 13 real photos written as JPEG files into ``DIR/photos`` (the
   folder a user passes to ``--calibration``), ``--check-crops`` crops of the 7 other photos
   (:func:`mobilenets.data.photos.split_photos`) preprocessed into ``DIR/check.npy``, the float
   model's logits into ``DIR/ref.npy``;
3. ``mobilenet export --checkpoint DIR/model --int8 --calibration DIR/photos --output
   DIR/default.<suffix>`` for each format, no remedy flag (the export picks its method), timed;
4. each file run on the check crops natively (``mobilenets.deploy.runtime.load_runner``); the ONNX
   file's logits saved as ``DIR/out-native/default.npy`` so that ``int8_cpus.py run`` under the
   emulator and ``int8_cpus.py report`` compare the same file on other CPUs.

Prints, per format: the method the export chose, its own check (sidecar), the agreement overall and
on confident crops (float top-1 probability > 0.5), the mean KL divergence from the float model's
softmax to the file's, the export's time and peak resident memory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np

from _cli import ScriptParser, positive_int

SUFFIX = {"onnx": ".onnx", "tflite": ".tflite", "executorch": ".pte"}


def run_measured(cmd: list[str]) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``cmd`` (output captured); its result and its peak resident memory in GB (Linux: the
    child's own ``ru_maxrss``, from ``os.wait4``)."""
    import tempfile

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(cmd, proc.returncode, out.read(), err.read()), usage.ru_maxrss / 1e6


def mean_kl(ref: np.ndarray, logits: np.ndarray) -> float:
    """Mean KL divergence from the float model's softmax to the int8 file's (nats): how far the whole
    output moved, finer than whether its top-1 did."""
    def log_softmax(z: np.ndarray) -> np.ndarray:
        z = z.astype(np.float64) - z.max(1, keepdims=True)
        return z - np.log(np.exp(z).sum(1, keepdims=True))

    lp, lq = log_softmax(ref), log_softmax(logits)
    return float((np.exp(lp) * (lp - lq)).sum(1).mean())


def main() -> None:
    p = ScriptParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folder")
    p.add_argument("--formats", default="onnx,tflite,executorch")
    p.add_argument("--calibration-crops", type=positive_int, default=320)
    p.add_argument("--check-crops", type=positive_int, default=480)
    p.add_argument("--methods", default="auto",
                   help="comma-separated --int8-method values; auto (the default export) writes default.<suffix>, "
                        "another method default-<method>.<suffix>")
    p.add_argument("--json", metavar="FILE")
    args = p.parse_args()

    import torch

    from _models import real_mobilenet
    from int8_cpus import agreement
    from int8_real import preprocessed
    from mobilenets.data.photos import split_photos, write_crops
    from mobilenets.data.preprocess import Preprocessing
    from mobilenets.deploy.runtime import load_runner
    from mobilenets.weights.checkpoint import load_checkpoint

    folder = args.folder
    os.makedirs(folder, exist_ok=True)
    model_dir = real_mobilenet(f"{folder}/model")
    model, _ = load_checkpoint(model_dir)
    model.eval()
    pre = Preprocessing.from_dict(model.pretrained_cfg).at(model.config.resolution)
    train_photos, held_photos = split_photos()
    if not os.path.isdir(f"{folder}/photos"):
        write_crops(f"{folder}/photos", args.calibration_crops, photos=train_photos, seed=1)
    if not os.path.isfile(f"{folder}/check.npy"):
        x = preprocessed(write_crops(f"{folder}/crops-check", args.check_crops, photos=held_photos, seed=3), pre)
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        np.save(f"{folder}/check.npy", x)
        np.save(f"{folder}/ref.npy", ref)
    x, ref = np.load(f"{folder}/check.npy"), np.load(f"{folder}/ref.npy")

    rows = []
    for fmt, method in [(f, m) for m in args.methods.split(",") for f in args.formats.split(",")]:
        stem = "default" if method == "auto" else f"default-{method}"
        out = f"{folder}/{stem}{SUFFIX[fmt]}"
        for stale in (out, out + ".json"):
            if os.path.exists(stale):
                os.remove(stale)
        cmd = [sys.executable, "-m", "mobilenets", "export", "--checkpoint", str(model_dir), "--int8",
               "--calibration", f"{folder}/photos", "--output", out]
        # a forced method is measured, not shipped: no floor (plain fails the default 0.90 on this model)
        cmd += [] if method == "auto" else ["--int8-method", method, "--min-agreement", "0"]
        t = time.time()
        done, peak_gb = run_measured(cmd)
        seconds = time.time() - t
        if done.returncode != 0:
            print(f"{fmt}: export failed ({done.returncode}): {done.stderr.strip().splitlines()[-1:]}", flush=True)
            rows.append({"format": fmt, "exit": done.returncode, "stderr": done.stderr.strip()[-500:]})
            continue
        side = json.loads(open(out + ".json").read())
        runner = load_runner(out, threads=2)
        logits = np.concatenate([runner(x[i:i + 16]) for i in range(0, len(x), 16)])
        if fmt == "onnx":
            os.makedirs(f"{folder}/out-native", exist_ok=True)
            np.save(f"{folder}/out-native/{stem}.npy", logits)
        overall, conf, n_conf = agreement(ref, logits)
        q = side.get("quantization") or {}
        row = {"format": fmt, "asked": method, "method": q.get("int8_method"), "export_seconds": round(seconds, 1),
               "export_peak_memory_gb": round(peak_gb, 2), "export_check": side.get("check"),
               "agreement": round(overall, 4), "confident": round(conf, 4), "mean_kl": round(mean_kl(ref, logits), 4),
               "crops": len(x), "confident_crops": n_conf, "weights": q.get("weights")}
        rows.append(row)
        print(f"{fmt:10s} method {row['method']}: {100 * overall:.1f} % / {100 * conf:.1f} % "
              f"({len(x)} crops, {n_conf} confident), mean KL {row['mean_kl']:.4f}; export {seconds:.0f} s, "
              f"peak {peak_gb:.1f} GB", flush=True)
    if args.json:
        from mobilenets.bench.run import machine_info

        with open(args.json, "w") as fh:
            json.dump({"machine": machine_info(2), "command": " ".join(sys.argv), "rows": rows}, fh, indent=2)


if __name__ == "__main__":
    main()
