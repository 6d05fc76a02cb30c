"""The main job (``make demo``, ``mobilenet demo``): train the default model on the built-in digits
data, export it to ONNX in float32 and int8, and print the accuracy and batch-1 latency of each
export beside the eager PyTorch model's.

Every step is a library function that also has its own command (``train``, ``export``,
``bench``); this module only chains them and prints one table at the end.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch


def train_summary_lines(summary: dict[str, Any]) -> list[str]:
    """What ``mobilenet train`` prints at the end of a run: accuracy, cost, where it was saved."""
    from mobilenets.cost.count import analytical_cost
    from mobilenets.models.config import MobileNetConfig

    cost = analytical_cost(MobileNetConfig.from_dict(summary["model"]))
    lines = [f"trained {summary['epochs']} epochs ({summary['steps']} steps) in {summary['seconds']:.1f} s"]
    if summary["val_top1"] is not None:
        lines.append(f"val top-1 {100 * summary['val_top1']:.2f}%  top-5 {100 * summary['val_top5']:.2f}%  "
                     f"(best top-1 {100 * summary['best_top1']:.2f}%)")
    lines.append(f"model: alpha {cost.config['alpha']:g}, {cost.config['resolution']} px: "
                 f"{cost.mult_adds / 1e6:.2f}M mult-adds, {cost.params / 1e6:.3f}M params")
    if summary["bad_files"]:
        lines.append(f"skipped {len(summary['bad_files'])} unreadable image(s); listed in "
                     f"{summary['output']}/bad_files.txt")
    lines.append(f"saved in {summary['output']}")
    return lines


def held_out_arrays(resolution: int, meta: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The held-out images of the data a run was trained on (``meta``: the run's metadata, as
    :func:`~mobilenets.weights.checkpoint.load_checkpoint` returns it), preprocessed as in evaluation."""
    from torch.utils.data import DataLoader

    from mobilenets.data.datasets import Augment, collate_skip_bad, load_data

    bundle = load_data(meta.get("data"), resolution, Augment.for_eval(meta))
    xs, ys = [], []
    for images, labels, _bad in DataLoader(bundle.val, batch_size=256, collate_fn=collate_skip_bad):
        xs.append(images.numpy())
        ys.append(labels.numpy())
    return np.concatenate(xs).astype(np.float32), np.concatenate(ys)


def _accuracy(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    top = np.concatenate([np.asarray(fn(x[i:i + 64])).argmax(1) for i in range(0, len(x), 64)])
    return float((top == y).mean()), top


def demo(output: str | None = None, *, threads: int = 2, rounds: int = 5, epochs: int | None = None,
         progress: bool = True, log: Callable[[str], None] = print, engine_threads: int | None = None) -> dict[str, Any]:
    """Train, export (fp32 and int8 ONNX), then measure accuracy and latency of each; returns the
    summary (``rows``: engine, precision, top1, agreement with eager, median_ms). ``threads``:
    torch's CPU threads; ``engine_threads``: ONNX Runtime's (None: the same). ``epochs``
    overrides the digits default (30), for quick checks."""
    from mobilenets.bench import BenchSettings, time_interleaved
    from mobilenets.deploy.export import check_text, export_model
    from mobilenets.deploy.runtime import load_runner
    from mobilenets.train.classify import train
    from mobilenets.train.options import TrainOptions
    from mobilenets.utils.scoped import torch_threads
    from mobilenets.weights.checkpoint import load_checkpoint

    engine_threads = threads if engine_threads is None else engine_threads
    summary = train(None, options=TrainOptions(output=output, progress=progress),
                    recipe_overrides={"epochs": epochs} if epochs else None, log=log)
    run = Path(summary["output"])
    for line in train_summary_lines(summary):
        log(line)

    log("\nexporting to ONNX (BatchNorm folded), float32 and int8 (static, per-channel weights, "
        "calibrated on the training digits):")
    files = {"onnx fp32": run / "export" / "model.onnx", "onnx int8": run / "export" / "model-int8.onnx"}
    for name, path in files.items():
        report = export_model(run, path, "onnx", int8=name.endswith("int8"), threads=engine_threads)
        log(f"  {path}: {check_text(report)}")

    with torch_threads(threads):  # the caller's thread count comes back afterwards
        model, meta = load_checkpoint(run)
        x, y = held_out_arrays(model.config.resolution, meta)

        def eager(batch: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return model(torch.from_numpy(batch)).numpy()

        engines: dict[str, tuple[str, Callable[[np.ndarray], np.ndarray]]] = {"pytorch eager": ("fp32", eager)}
        for name, path in files.items():
            engines[name] = (name.split()[1], load_runner(path, threads=engine_threads))
        one = x[:1].copy()
        timings = time_interleaved({name: (lambda fn=fn: fn(one)) for name, (_, fn) in engines.items()},
                                   BenchSettings(threads=threads, engine_threads=engine_threads, rounds=rounds), progress=progress)
        rows = []
        ref_top = None
        for name, (precision, fn) in engines.items():
            top1, top = _accuracy(fn, x, y)
            ref_top = top if ref_top is None else ref_top
            rows.append({"engine": name, "precision": precision, "top1": top1,
                         "agreement": float((top == ref_top).mean()), "median_ms": timings[name]["median_ms"],
                         "p10_ms": timings[name]["p10_ms"], "p90_ms": timings[name]["p90_ms"]})
    shown = f"{threads}" if engine_threads == threads else f"{threads} torch / {engine_threads} ONNX Runtime"
    log(f"\non the {len(y)} held-out digits, batch-1 latency with {shown} threads "
        f"(median of {rounds} interleaved rounds):")
    log(f"  {'engine':<14} {'precision':<9} {'top-1':>7} {'same top-1 as eager':>20} {'latency ms':>11} {'p10-p90':>14}")
    for r in rows:
        log(f"  {r['engine']:<14} {r['precision']:<9} {100 * r['top1']:6.2f}% {100 * r['agreement']:19.2f}% "
            f"{r['median_ms']:11.3f} {r['p10_ms']:6.3f}-{r['p90_ms']:<7.3f}")
    log(f"\nrun folder: {run}")
    return {"output": str(run), "train": summary, "rows": rows}
