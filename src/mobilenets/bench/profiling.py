"""``profile()``: where the time of a forward pass goes, by layer type, beside the mult-adds.

A forward pass is split into layer types (first conv, depthwise, pointwise, full conv, BN+act,
pool, FC, other) and the measured time share set beside the analytical mult-add share: the
paper's claim that 1x1 convolutions take ~95 % of the time, checked. Eager PyTorch is timed with
forward hooks (:func:`profile_eager`); ONNX Runtime with its own profiler, per-node kernel times
classified by the node's weights in the optimized graph (:func:`profile_onnxruntime`).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mobilenets.bench.catalog import PRECISION, PROFILE_ENGINES
from mobilenets.bench.engines import (
    RANDOM_WEIGHTS,
    BenchContext,
    EngineUnavailable,
    load_model,
    model_label,
    weights_label,
)
from mobilenets.bench.exported import ExportedFile, exported_format, open_exported
from mobilenets.bench.timing import BenchSettings, check_int, progress_bar
from mobilenets.cost.count import analytical_cost
from mobilenets.errors import MobileNetsError
from mobilenets.models.config import MobileNetConfig
from mobilenets.models.mobilenet import MobileNet
from mobilenets.utils.scoped import quiet_output, torch_threads

GROUPS = ("first conv", "depthwise", "pointwise", "full conv", "BN+act", "pool", "FC", "other")


def cost_group(layer_name: str, kind: str) -> str:
    if layer_name.startswith("stem"):
        return "first conv"
    return {"dw3x3": "depthwise", "conv1x1": "pointwise", "conv3x3": "full conv", "pool": "pool",
            "fc": "FC"}.get(kind, "other")


def mult_add_shares(cfg: MobileNetConfig) -> dict[str, tuple[int, float]]:
    report = analytical_cost(cfg)
    total = report.mult_adds or 1
    out: dict[str, int] = {}
    for layer in report.layers:
        g = cost_group(layer.name, layer.kind)
        out[g] = out.get(g, 0) + layer.mult_adds
    return {g: (v, v / total) for g, v in out.items()}


def eager_group(name: str, module: nn.Module) -> str | None:
    if isinstance(module, nn.Conv2d):
        if name.startswith("stem"):
            return "first conv"
        if module.groups > 1:
            return "depthwise"
        return "pointwise" if module.kernel_size == (1, 1) else "full conv"
    if isinstance(module, (nn.BatchNorm2d, nn.ReLU, nn.ReLU6)):
        return "BN+act"
    if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AvgPool2d)):
        return "pool"
    if isinstance(module, nn.Linear):
        return "FC"
    return None


def profile_eager(net: MobileNet, batch: int = 1, runs: int = 20, threads: int = 2,
                  progress: bool = False) -> tuple[dict[str, float], float]:
    """Mean time per layer group (ms) of an eager forward pass, from forward hooks on every
    conv, BatchNorm, activation, pool and linear module; and the mean total (ms). What the hooks
    do not cover (flatten, dropout, Python dispatch) is the group "other". Runs on ``threads``
    torch threads; the caller's count is restored after."""
    times: dict[str, float] = {g: 0.0 for g in GROUPS}
    starts: dict[int, float] = {}
    handles = []

    def pre(module, _inputs):
        starts[id(module)] = time.perf_counter()

    def post_for(group):
        def post(module, _inputs, _output):
            times[group] += time.perf_counter() - starts.pop(id(module))
        return post

    for name, module in net.named_modules():
        g = eager_group(name, module)
        if g is not None:
            handles.append(module.register_forward_pre_hook(pre))
            handles.append(module.register_forward_hook(post_for(g)))
    x = torch.from_numpy(np.random.default_rng(0).standard_normal(
        (batch, 3, net.config.resolution, net.config.resolution)).astype(np.float32))
    total = 0.0
    try:
        with torch_threads(threads), torch.inference_mode():
            for _ in range(3):
                net(x)
            for g in times:
                times[g] = 0.0
            bar = progress_bar(runs, "profiling eager", progress)
            for _ in range(runs):
                t = time.perf_counter()
                net(x)
                total += time.perf_counter() - t
                bar.update()
            bar.close()
    finally:
        for h in handles:
            h.remove()
    per = {g: 1e3 * v / runs for g, v in times.items()}
    total_ms = 1e3 * total / runs
    per["other"] = max(total_ms - sum(v for g, v in per.items() if g != "other"), 0.0)
    return per, total_ms


def onnx_node_groups(optimized_path: str) -> dict[str, str]:
    """Node name -> layer group in an (ORT-optimized) ONNX graph, from each conv's weights: a
    grouped conv is depthwise, a 1x1 one pointwise, the first 3x3 one the first conv."""
    import onnx

    model = onnx.load(optimized_path, load_external_data=False)
    shapes = {init.name: list(init.dims) for init in model.graph.initializer}
    groups: dict[str, str] = {}
    first_seen = False
    for node in model.graph.node:
        op = node.op_type
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if "Conv" in op:
            w = next((shapes[i] for i in node.input[1:] if i in shapes and len(shapes[i]) == 4), None)
            if attrs.get("group", 1) > 1:
                g = "depthwise"
            elif w is not None and w[2:] == [1, 1]:
                g = "pointwise"
            elif not first_seen:
                g = "first conv"
            else:
                g = "full conv"
            if g == "first conv" or (w is not None and w[2:] != [1, 1]):
                first_seen = True
        elif op in ("GlobalAveragePool", "ReduceMean", "AveragePool", "QLinearGlobalAveragePool"):
            g = "pool"
        elif op in ("Gemm", "MatMul", "QGemm", "QLinearMatMul", "MatMulInteger", "FusedGemm"):
            g = "FC"
        elif op in ("Relu", "Clip", "BatchNormalization"):
            g = "BN+act"
        else:
            g = "other"
        groups[node.name] = g
    return groups


def profile_onnxruntime(path: str, batch: int = 1, runs: int = 20, threads: int = 2,
                        resolution: int = 224) -> tuple[dict[str, float], float]:
    """Mean time per layer group (ms) in ONNX Runtime, from its profiler: the kernel time of each
    node of the optimized graph, grouped by :func:`onnx_node_groups`; "other" is the rest of
    each run (quantize/dequantize and layout nodes, framework overhead). Also the mean run (ms)."""
    from mobilenets.deploy.ort import session

    with tempfile.TemporaryDirectory(prefix="mobilenet-profile-") as tmp:
        optimized = os.path.join(tmp, "optimized.onnx")  # to classify the nodes the profile names
        sess = session(path, threads, optimized_model=optimized, profile_prefix=os.path.join(tmp, "ort-profile"))
        name = sess.get_inputs()[0].name
        x = np.random.default_rng(0).standard_normal((batch, 3, resolution, resolution)).astype(np.float32)
        warm = 3
        for _ in range(warm + runs):
            sess.run(None, {name: x})
        trace = sess.end_profiling()
        events = json.loads(Path(trace).read_text())
        groups = onnx_node_groups(optimized)
    run_events = sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
                        key=lambda e: e["ts"])[warm:]
    if not run_events:
        raise MobileNetsError("ONNX Runtime's profile holds no model runs")
    windows = [(e["ts"], e["ts"] + e["dur"]) for e in run_events]
    per = {g: 0.0 for g in GROUPS}
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
            continue
        if not any(a <= e["ts"] <= b for a, b in windows):
            continue
        node = e["name"][: -len("_kernel_time")]
        per[groups.get(node, "other")] += e["dur"]
    total_us = sum(e["dur"] for e in run_events)
    per = {g: v / 1e3 / len(run_events) for g, v in per.items()}
    total_ms = total_us / 1e3 / len(run_events)
    per["other"] += max(total_ms - sum(per.values()), 0.0)
    return per, total_ms


def profile_names(engines: Iterable[str] | None, exported: ExportedFile | None) -> list[str]:
    """The engines to profile, checked: an exported ``.onnx`` file is profiled as itself."""
    if isinstance(engines, str):
        engines = engines.split(",")
    if exported is not None:
        if exported.format != "onnx":
            raise MobileNetsError(f"cannot profile {exported.path}: profile takes an .onnx file or a checkpoint "
                                  f"(ONNX Runtime's profiler names each node)")
        named = [e.strip() for e in engines or [] if e.strip()]
        if [e for e in named if e != exported.engine]:
            raise MobileNetsError(f"{exported.path} is profiled as itself ({exported.engine}): drop engines=")
        return [exported.engine]
    names = list(PROFILE_ENGINES) if engines is None else [e.strip() for e in engines if e.strip()]
    bad = [e for e in names if e not in PROFILE_ENGINES]
    if bad or not names:
        raise MobileNetsError(f"cannot profile {', '.join(bad) or 'no engine'}; choose from {', '.join(PROFILE_ENGINES)}")
    return names


def profile(model: str | MobileNetConfig | MobileNet | Mapping[str, Any] | None = None, *,
            engines: Iterable[str] | None = None, batch: int = 1, runs: int = 20, threads: int = 2,
            engine_threads: int | None = None, checkpoint: str | os.PathLike | None = None, calibration: str | os.PathLike | None = None,
            calibration_size: int = 64, progress: bool = True, verbose: bool = False) -> list[dict[str, Any]]:
    """Per layer group: measured time and share, beside the analytical mult-add share, for each
    of ``engines`` (torch-eager, onnxruntime, onnxruntime-int8; default all three). One row per
    (engine, group); the groups of an engine sum to its ``total_ms``. The model is named as in
    :func:`mobilenets.bench.run.bench`: an exported ``.onnx`` file as ``checkpoint`` is profiled
    itself; ``calibration`` calibrates the int8 export as there. ``threads``: torch's CPU threads
    (torch-eager); ``engine_threads``: ONNX Runtime's (None: the same). ``verbose`` lets the ONNX
    exporter print."""
    check_int("batch", batch)
    check_int("runs", runs)
    check_int("threads", threads)
    engine_threads = threads if engine_threads is None else check_int("engine_threads", engine_threads)
    check_int("calibration_size", calibration_size)
    exported = open_exported(checkpoint, model) if checkpoint is not None and exported_format(checkpoint) else None
    names = profile_names(engines, exported)
    net = load_model(model, checkpoint) if exported is None else None
    cfg = net.config if net is not None else exported.config
    shares = mult_add_shares(cfg)
    label = model_label(cfg)
    if exported is not None:
        weights = f"exported file {exported.path}"
    else:
        weights = weights_label(net, checkpoint) if isinstance(model, MobileNet) or checkpoint is not None else RANDOM_WEIGHTS
    rows = []
    with tempfile.TemporaryDirectory(prefix="mobilenet-profile-") as workdir:
        settings = BenchSettings(threads=threads, engine_threads=engine_threads, calibration_size=calibration_size)
        ctx = BenchContext(net, settings, workdir, verbose, exported=exported,
                           checkpoint=checkpoint if net is not None else None, calibration=calibration)
        bar = progress_bar(len(names), "profiling", progress)
        for engine in names:
            if engine == "torch-eager":
                per, total = profile_eager(net, batch, runs, threads)
            else:
                try:
                    with quiet_output(not verbose):  # the exporter prints; the bar does not
                        path = exported.path if exported is not None else ctx.export("onnx", engine.endswith("int8"))
                        per, total = profile_onnxruntime(path, batch, runs, engine_threads, cfg.resolution)
                except EngineUnavailable as exc:
                    rows.append({"model": label, "weights": weights, "engine": engine, "group": None,
                                 "status": "unavailable", "note": str(exc)})
                    bar.update()
                    continue
            note = ctx.notes.get(engine)  # how its int8 file was calibrated
            for g in GROUPS:
                ma, share = shares.get(g, (0, 0.0))
                if per.get(g, 0.0) == 0.0 and ma == 0 and g in ("full conv",):
                    continue
                rows.append({"model": label, "weights": weights, "engine": engine, "precision": PRECISION[engine],
                             "batch": batch,
                             "threads": threads if engine == "torch-eager" else engine_threads, "group": g, "time_ms": round(per.get(g, 0.0), 4),
                             "time_share": round(per.get(g, 0.0) / total, 4) if total else 0.0,
                             "mult_adds": ma, "mult_adds_share": round(share, 4), "total_ms": round(total, 4),
                             "status": "ok", "note": note})
            bar.update()
        bar.close()
    return rows
