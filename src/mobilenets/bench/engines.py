"""Inference speed of a MobileNet across engines (``mobilenet bench``) and where its time goes
(``mobilenet profile``).

``bench`` times batch-1 and batch-N inference of one model in every engine asked for:

* ``torch-eager``: the :class:`~mobilenets.models.mobilenet.MobileNet` module, ``torch.inference_mode``;
* ``torch-compile``: ``torch.compile`` (Inductor) with Inductor's weight freezing and a
  channels_last model, as PyTorch's CPU inference guide recommends;
* ``torch-fast``: our PyTorch-native inference path, :func:`fast_inference` (BatchNorm folded
  into the convolutions, channels_last, ``torch.compile`` with freezing and the C++ wrapper: the
  fastest fp32 form measured, ahead of TorchScript ``optimize_for_inference`` and of plain
  ``torch.compile``); it must match eager within 1e-4 (of the logit scale);
* ``torch-fast-bf16``: the same in bfloat16 (AVX512-BF16 / AMX CPUs), precision "bf16";
* ``onnxruntime`` / ``onnxruntime-int8``, ``tflite`` / ``tflite-int8``, ``executorch``: the files
  ``mobilenet export`` writes, run by :func:`mobilenets.deploy.runtime.load_runner` (each engine set up as
  its own documentation recommends for speed);
* with ``peers``: timm's ``mobilenetv1_100`` in eager PyTorch (``timm-eager``), Keras's
  ``keras.applications.MobileNet`` converted to TFLite fp32 (``keras-tflite``), and ONNX Runtime's
  own static int8 (QDQ, per-channel weights) of the timm model (``timm-onnxruntime-int8``).

Engines are built only when asked for; one that cannot be built (ExecuTorch not installed, ...)
gives a row with ``status`` "unavailable" and the reason, not an error. Timing is interleaved:
every round runs every (engine, batch) unit in turn, the starting unit rotated each round, so that
drift in machine load hits all alike; each visit starts with a 20 ms pause (the previous engine's
spinning threads go to sleep) and one untimed call (this engine's threads wake, its weights return
to cache), then a few timed calls. Each row reports the median, p10 and p90 of the per-call
times, images/s, the ratio to the fastest engine at that batch size, and the fraction of the FLOP
floor it reaches: ``2 x mult-adds x batch / peak``, with the peak measured by a large matmul in
the row's precision (:func:`matmul_peak`).

``profile`` splits a forward pass into layer types (first conv, depthwise, pointwise, BN+act,
pool, FC, other) and sets the measured time share beside the analytical mult-add share: the
paper's claim that 1x1 convolutions take ~95 % of the time, checked. Eager PyTorch is timed with
forward hooks; ONNX Runtime with its own profiler (per-node kernel times, classified by the
node's weights in the optimized graph).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mobilenets.cost.count import analytical_cost
from mobilenets.models.config import MobileNetConfig
from mobilenets.models.mobilenet import MobileNet
from mobilenets.utils.tf import import_tf

# --------------------------------------------------------------------------- engines

OURS = ("torch-eager", "torch-compile", "torch-fast", "torch-fast-bf16", "onnxruntime", "onnxruntime-int8", "tflite", "tflite-int8",
        "executorch", "executorch-int8")
PEERS = ("timm-eager", "keras-tflite", "timm-onnxruntime-int8")
EXPORTED = ("onnxruntime", "onnxruntime-int8", "tflite", "tflite-int8", "executorch", "executorch-int8")
PRECISION = {"torch-eager": "fp32", "torch-compile": "fp32", "torch-fast": "fp32", "torch-fast-bf16": "bf16", "onnxruntime": "fp32",
             "onnxruntime-int8": "int8", "tflite": "fp32", "tflite-int8": "int8", "executorch": "fp32", "executorch-int8": "int8",
             "timm-eager": "fp32", "keras-tflite": "fp32", "timm-onnxruntime-int8": "int8"}
DESCRIPTION = {
    "torch-eager": "MobileNet module, inference_mode",
    "torch-compile": "torch.compile (Inductor, freezing, channels_last)",
    "torch-fast": "BN folded, channels_last, torch.compile (freezing, C++ wrapper)",
    "torch-fast-bf16": "BN folded, channels_last, bfloat16, torch.compile (freezing, C++ wrapper)",
    "onnxruntime": "mobilenet export onnx; ORT CPU, graph optimisation ALL",
    "onnxruntime-int8": "mobilenet export onnx --int8 (QDQ, per-channel); ORT CPU",
    "tflite": "mobilenet export tflite; TFLite interpreter (XNNPACK)",
    "tflite-int8": "mobilenet export tflite --int8 (full integer); TFLite interpreter (XNNPACK)",
    "executorch": "mobilenet export executorch (XNNPACK delegate)",
    "executorch-int8": "mobilenet export executorch --int8 (PT2E XNNPACKQuantizer, per-channel); XNNPACK delegate",
    "timm-eager": "timm mobilenetv1_100, eager, inference_mode",
    "keras-tflite": "keras.applications.MobileNet -> TFLiteConverter fp32; TFLite interpreter (XNNPACK)",
    "timm-onnxruntime-int8": "timm mobilenetv1_100 -> torch.onnx -> ORT quantize_static (QDQ, per-channel)",
}
# The fast default for --all-models: one engine of each kind that builds in seconds.
ALL_MODELS_ENGINES = ("torch-eager", "torch-fast", "onnxruntime")


class EngineUnavailable(Exception):
    """An engine cannot be built here (not installed, export failed, ...): reported as a row."""


@dataclass
class BenchSettings:
    threads: int = 2
    batch: int = 8
    rounds: int = 10
    unit_seconds: float = 0.25  # time per (engine, batch) unit per round; sets the calls per round
    warmup: int = 3
    calibration_size: int = 64  # images for the int8 exports' calibration
    matmul_size: int = 4096

    @classmethod
    def quick(cls, threads: int = 2, batch: int = 4) -> BenchSettings:
        return cls(threads=threads, batch=batch, rounds=3, unit_seconds=0.03, warmup=1, calibration_size=16,
                   matmul_size=2048)


def _check_int(name: str, value: Any, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


def realistic_batchnorm(model: MobileNet, seed: int = 0, images: int = 16) -> MobileNet:
    """A copy of an untrained ``model`` whose BatchNorm running statistics come from random
    images (as after training), so activations keep a realistic scale through the network: with
    the initial statistics (mean 0, variance 1) they shrink towards denormal numbers, which some
    kernels run much slower than normal ones, and a benchmark of such a model would mislead."""
    m = copy.deepcopy(model).float()
    res = m.config.resolution
    gen = torch.Generator().manual_seed(seed)
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.reset_running_stats()
            mod.momentum = None  # cumulative average over the batches below
    m.train()
    with torch.no_grad():
        for _ in range(2):
            m(torch.randn(images // 2, 3, res, res, generator=gen))
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.momentum = model.config.bn_momentum
    return m.eval()


def _compiled(net: nn.Module, example: torch.Tensor, cast: torch.dtype | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """``net`` through ``torch.compile`` (Inductor) for the shape of ``example``, with weight
    freezing (constant-folded, prepacked weights) and the C++ wrapper (no Python between
    kernels), as PyTorch's CPU inference guidance recommends; compiled here, by one call."""
    compiled = torch.compile(net, dynamic=False)

    def run(x: torch.Tensor) -> torch.Tensor:
        # The settings go with every call, not only the first: whatever calls
        # ``torch._dynamo.reset()`` (ExecuTorch's XNNPACK lowering does) makes the next call compile
        # again, and without them that compile is unfrozen and ~1.5x slower. Costs ~20 us a call.
        with _inductor_inference_config():
            if cast is not None:
                return compiled(x.to(cast, memory_format=torch.channels_last)).float()
            return compiled(x.contiguous(memory_format=torch.channels_last))

    with torch.inference_mode():
        run(example)
    return run


def _inductor_inference_config():
    import torch._inductor.config as inductor_config

    return inductor_config.patch(freezing=True, cpp_wrapper=True)


def _torchscript_fast(net: nn.Module, example: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    import warnings

    example = example.contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(net, example, check_trace=False)
        module = torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))
    return lambda x: module(x.contiguous(memory_format=torch.channels_last))


def fast_inference(model: MobileNet, example: torch.Tensor) -> tuple[Callable[[torch.Tensor], torch.Tensor], str]:
    """Our fastest PyTorch-native fp32 inference form of ``model``, and how it was made.

    BatchNorm folded into the convolutions (:func:`mobilenets.deploy.export.inference_network`),
    channels_last weights, then ``torch.compile`` with Inductor's freezing and C++ wrapper,
    compiled for the shape of ``example`` (another shape recompiles, without those settings: make
    one per batch size). Where Inductor cannot run (no C++ compiler), TorchScript trace + freeze +
    ``optimize_for_inference`` (oneDNN convolutions), the next fastest measured. Call the result
    on float32 NCHW batches inside ``torch.inference_mode``; it returns float32 logits."""
    from mobilenets.deploy.fold import inference_network

    net = inference_network(model).eval().to(memory_format=torch.channels_last)
    try:
        return _compiled(net, example), "torch.compile (Inductor, freezing, C++ wrapper)"
    except Exception as exc:  # Inductor's failures (no compiler, ...) come in many types
        reason = _first_line(exc)
    return _torchscript_fast(net, example), f"TorchScript optimize_for_inference (torch.compile failed: {reason})"


def fast_inference_model(model: MobileNet, example: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """:func:`fast_inference`'s callable alone."""
    return fast_inference(model, example)[0]


class _Context:
    """What engines are built from: the model, settings, a work folder for exports."""

    def __init__(self, model: MobileNet, settings: BenchSettings, workdir: str) -> None:
        self.model = model
        self.cfg: MobileNetConfig = model.config
        self.settings = settings
        self.workdir = workdir
        self._exports: dict[tuple[str, bool], str] = {}
        self._timm: nn.Module | None = None
        self._timm_int8: str | None = None
        self.notes: dict[str, str] = {}

    def images(self, batch: int) -> np.ndarray:
        res = self.cfg.resolution
        return np.random.default_rng(batch).standard_normal((batch, 3, res, res)).astype(np.float32)

    def export(self, fmt: str, int8: bool) -> str:
        key = (fmt, int8)
        if key not in self._exports:
            from mobilenets.deploy.export import export_model

            ext = {"onnx": "onnx", "tflite": "tflite", "executorch": "pte"}[fmt]
            path = os.path.join(self.workdir, f"model{'-int8' if int8 else ''}.{ext}")
            try:
                export_model(self.model, path, fmt, int8=int8, threads=self.settings.threads,
                             calibration_size=self.settings.calibration_size)
            except (ImportError, ValueError, RuntimeError, OSError) as exc:
                raise EngineUnavailable(f"export to {fmt}{' int8' if int8 else ''} failed: "
                                        f"{_first_line(exc)}") from None
            self._exports[key] = path
        return self._exports[key]

    def timm_model(self) -> nn.Module:
        if self._timm is None:
            try:
                import timm
            except ImportError:
                raise EngineUnavailable("timm is not installed") from None
            torch.manual_seed(0)
            self._timm = timm.create_model("mobilenetv1_100", num_classes=self.cfg.num_classes or 1000).eval()
        return self._timm


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def _torch_runner(fn: Callable[[torch.Tensor], Any], x: torch.Tensor, channels_last: bool = False) -> Callable[[], Any]:
    def run() -> Any:
        with torch.inference_mode():
            inp = x.contiguous(memory_format=torch.channels_last) if channels_last else x
            return fn(inp)

    return run


def _build_torch_eager(ctx: _Context, batch: int) -> Callable[[], Any]:
    return _torch_runner(ctx.model, torch.from_numpy(ctx.images(batch)))


def _build_torch_compile(ctx: _Context, batch: int) -> Callable[[], Any]:
    import torch._inductor.config as inductor_config

    m = copy.deepcopy(ctx.model).to(memory_format=torch.channels_last)
    compiled = torch.compile(m, dynamic=False)

    def frozen(x: torch.Tensor) -> torch.Tensor:
        with inductor_config.patch(freezing=True):  # on every call: see _compiled
            return compiled(x)

    run = _torch_runner(frozen, torch.from_numpy(ctx.images(batch)), channels_last=True)
    try:
        run()  # compiles here, with weight freezing
    except Exception as exc:  # Inductor needs a C++ compiler; its errors are of many types
        raise EngineUnavailable(f"torch.compile failed: {_first_line(exc)}") from None
    return run


def _build_torch_fast(ctx: _Context, batch: int) -> Callable[[], Any]:
    x = torch.from_numpy(ctx.images(batch))
    fn, how = fast_inference(ctx.model, x)
    ctx.notes["torch-fast"] = how
    return _torch_runner(fn, x)


def fast_bf16_inference_model(model: MobileNet, example: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """The bfloat16 form of :func:`fast_inference`, for CPUs with native bf16 matmul
    (AVX512-BF16, AMX): BatchNorm folded, channels_last, bf16 weights and activations,
    ``torch.compile`` with freezing and the C++ wrapper. Takes float32 NCHW, returns float32
    logits; bf16 keeps 8 bits of mantissa, so logits differ from eager by ~1e-2 relative."""
    from mobilenets.deploy.fold import inference_network

    net = inference_network(model).eval().to(torch.bfloat16).to(memory_format=torch.channels_last)
    return _compiled(net, example, cast=torch.bfloat16)


def _build_torch_fast_bf16(ctx: _Context, batch: int) -> Callable[[], Any]:
    x = torch.from_numpy(ctx.images(batch))
    try:
        fn = fast_bf16_inference_model(ctx.model, x)
    except Exception as exc:  # Inductor needs a C++ compiler; its errors are of many types
        raise EngineUnavailable(f"torch.compile failed: {_first_line(exc)}") from None
    return _torch_runner(fn, x)


def _export_builder(fmt: str, int8: bool) -> Callable[[_Context, int], Callable[[], Any]]:
    def build(ctx: _Context, batch: int) -> Callable[[], Any]:
        if fmt == "executorch":
            import importlib.util

            try:
                found = importlib.util.find_spec("executorch.runtime") is not None
            except ImportError:
                found = False
            if not found:
                raise EngineUnavailable("ExecuTorch is not installed (pip install executorch)")
        from mobilenets.deploy.runtime import load_runner

        runner = load_runner(ctx.export(fmt, int8), threads=ctx.settings.threads)
        x = ctx.images(batch)
        if runner.layout == "NHWC":  # each engine gets its own layout, untimed (as the Keras peer)
            x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        try:
            runner.native(x)
        except Exception as exc:  # the engine's own error types
            raise EngineUnavailable(f"{fmt} runner failed at batch {batch}: {_first_line(exc)}") from None
        return lambda: runner.native(x)

    return build


def _build_timm_eager(ctx: _Context, batch: int) -> Callable[[], Any]:
    return _torch_runner(ctx.timm_model(), torch.from_numpy(ctx.images(batch)))


def _keras_alpha(alpha: float) -> float:
    """Keras's MobileNet comes in widths 0.25, 0.5, 0.75, 1.0: the nearest one."""
    return min((0.25, 0.5, 0.75, 1.0), key=lambda a: abs(a - alpha))


def _build_keras_tflite(ctx: _Context, batch: int) -> Callable[[], Any]:
    try:
        tf = import_tf()
    except ImportError:
        raise EngineUnavailable("TensorFlow is not installed") from None
    res = ctx.cfg.resolution
    path = os.path.join(ctx.workdir, "keras-mobilenet.tflite")
    if not os.path.exists(path):
        import keras

        keras.utils.set_random_seed(0)
        km = keras.applications.MobileNet(input_shape=(res, res, 3), alpha=_keras_alpha(ctx.cfg.alpha),
                                          weights=None, classes=ctx.cfg.num_classes or 1000)
        try:
            with _quiet_stderr():
                content = tf.lite.TFLiteConverter.from_keras_model(km).convert()
        except Exception as exc:  # the converter raises many types
            raise EngineUnavailable(f"TFLite conversion of Keras MobileNet failed: {_first_line(exc)}") from None
        Path(path).write_bytes(content)
    interp = tf.lite.Interpreter(model_path=path, num_threads=ctx.settings.threads)
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]
    interp.resize_tensor_input(inp["index"], [batch, res, res, 3], strict=False)
    interp.allocate_tensors()
    x = np.ascontiguousarray(ctx.images(batch).transpose(0, 2, 3, 1))  # TFLite's layout, untimed

    def run() -> Any:
        interp.set_tensor(inp["index"], x)
        interp.invoke()
        return interp.get_tensor(out["index"])

    return run


class _Reader:
    def __init__(self, images: np.ndarray, name: str) -> None:
        self.items = [{name: images[i:i + 8]} for i in range(0, len(images), 8)]
        self.i = 0

    def get_next(self):
        self.i += 1
        return self.items[self.i - 1] if self.i <= len(self.items) else None

    def rewind(self) -> None:
        self.i = 0


def _build_timm_ort_int8(ctx: _Context, batch: int) -> Callable[[], Any]:
    try:
        import onnxruntime as ort
        from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError:
        raise EngineUnavailable("onnxruntime is not installed") from None
    if ctx._timm_int8 is None:
        import warnings

        res = ctx.cfg.resolution
        fp32, pre = os.path.join(ctx.workdir, "timm.onnx"), os.path.join(ctx.workdir, "timm-pre.onnx")
        q = os.path.join(ctx.workdir, "timm-int8.onnx")
        try:
            with warnings.catch_warnings(), _quiet_stderr():
                warnings.simplefilter("ignore")
                torch.onnx.export(ctx.timm_model(), (torch.randn(2, 3, res, res),), fp32, dynamo=True,
                                  external_data=False, input_names=["input"], output_names=["logits"],
                                  dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1, max=4096)}})
                # as ONNX Runtime's quantization guide recommends: pre-process, then QDQ static
                quant_pre_process(fp32, pre, skip_symbolic_shape=True)
                calib = np.random.default_rng(1).standard_normal((ctx.settings.calibration_size, 3, res, res))
                quantize_static(pre, q, _Reader(calib.astype(np.float32), "input"), quant_format=QuantFormat.QDQ,
                                per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        except Exception as exc:  # the exporter and the quantizer raise many types
            raise EngineUnavailable(f"ONNX export / quantization of timm failed: {_first_line(exc)}") from None
        ctx._timm_int8 = q
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = ctx.settings.threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(ctx._timm_int8, sess_options=opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    x = ctx.images(batch)
    return lambda: sess.run(None, {name: x})


_BUILDERS: dict[str, Callable[[_Context, int], Callable[[], Any]]] = {
    "torch-eager": _build_torch_eager,
    "torch-compile": _build_torch_compile,
    "torch-fast": _build_torch_fast,
    "torch-fast-bf16": _build_torch_fast_bf16,
    "onnxruntime": _export_builder("onnx", False),
    "onnxruntime-int8": _export_builder("onnx", True),
    "tflite": _export_builder("tflite", False),
    "tflite-int8": _export_builder("tflite", True),
    "executorch": _export_builder("executorch", False),
    "executorch-int8": _export_builder("executorch", True),
    "timm-eager": _build_timm_eager,
    "keras-tflite": _build_keras_tflite,
    "timm-onnxruntime-int8": _build_timm_ort_int8,
}


@contextlib.contextmanager
def _quiet_stderr():
    """Silence what TFLite's converter and the ONNX exporter print, from Python and from C++
    (file descriptors 1 and 2), so that ``--json`` output stays JSON."""
    streams = []
    for stream in (sys.stdout, sys.stderr):
        try:
            streams.append((stream, stream.fileno()))
        except (AttributeError, OSError, ValueError):  # captured streams (pytest) have no descriptor
            pass
    saved = []
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), contextlib.redirect_stderr(null):
        try:
            for stream, fd in streams:
                stream.flush()
                saved.append((fd, os.dup(fd)))
                os.dup2(null.fileno(), fd)
            yield
        finally:
            for fd, copy_fd in saved:
                os.dup2(copy_fd, fd)
                os.close(copy_fd)


# --------------------------------------------------------------------------- matmul peak

_PEAK_CACHE: dict[tuple[str, int, int], float] = {}


def _restores_torch_threads(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` sets torch's (process-wide) thread count for its timing; give the caller's back."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        saved = torch.get_num_threads()
        try:
            return fn(*args, **kwargs)
        finally:
            torch.set_num_threads(saved)

    return wrapper


@_restores_torch_threads
def matmul_peak(precision: str, threads: int = 2, size: int = 4096, repeats: int = 3, refresh: bool = False) -> float:
    """Measured matmul throughput (operations per second, 2 per multiply-add) of a ``size``²
    square matmul in ``precision``: fp32 and bf16 by ``torch.mm`` (oneDNN), int8 by
    ``torch._int_mm`` (int8 x int8 -> int32). The best of ``repeats`` runs, and of every earlier
    measurement in this process (``refresh`` measures again; a busy machine only lowers it)."""
    key = (precision, threads, size)
    if key in _PEAK_CACHE and not refresh:
        return _PEAK_CACHE[key]
    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    if precision in ("fp32", "bf16"):
        dtype = torch.float32 if precision == "fp32" else torch.bfloat16
        a = torch.randn(size, size, generator=gen).to(dtype)
        b = torch.randn(size, size, generator=gen).to(dtype)
        op = torch.mm
    elif precision == "int8":
        a = torch.randint(-128, 128, (size, size), generator=gen, dtype=torch.int8)
        b = torch.randint(-128, 128, (size, size), generator=gen, dtype=torch.int8)
        op = torch._int_mm
    else:
        raise ValueError(f"unknown precision {precision!r}; choose fp32, bf16 or int8")
    with torch.inference_mode():
        op(a, b)
        best = math.inf
        for _ in range(repeats):
            t = time.perf_counter()
            op(a, b)
            best = min(best, time.perf_counter() - t)
    _PEAK_CACHE[key] = max(2 * size ** 3 / best, _PEAK_CACHE.get(key, 0.0))
    return _PEAK_CACHE[key]


# --------------------------------------------------------------------------- timing


def round_order(units: Sequence[Any], round_index: int) -> list[Any]:
    """The order of the units in round ``round_index``: all of them, the start rotated by one
    each round, so every unit runs first, second, ... equally often."""
    if not units:
        return []
    k = round_index % len(units)
    return list(units[k:]) + list(units[:k])


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def _progress(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="step", disable=not enabled, file=sys.stderr, leave=False)


def _mult_adds(engine: str, cfg: MobileNetConfig) -> int:
    if engine in ("timm-eager", "timm-onnxruntime-int8"):
        cfg = MobileNetConfig(alpha=1.0, resolution=cfg.resolution, num_classes=cfg.num_classes or 1000)
    elif engine == "keras-tflite":
        cfg = MobileNetConfig(alpha=_keras_alpha(cfg.alpha), resolution=cfg.resolution,
                              num_classes=cfg.num_classes or 1000)
    return analytical_cost(cfg).mult_adds


def resolve_engines(engines: Iterable[str] | None, peers: bool) -> list[str]:
    names = list(OURS) if engines is None else [e.strip() for e in engines if e.strip()]
    unknown = [e for e in names if e not in _BUILDERS]
    if unknown:
        raise ValueError(f"unknown engine(s) {', '.join(unknown)}; choose from {', '.join(_BUILDERS)}")
    if peers:
        names += [p for p in PEERS if p not in names]
    if not names:
        raise ValueError("no engines to run")
    return list(dict.fromkeys(names))


def _load_model(model: str | MobileNet | None, checkpoint: str | None) -> MobileNet:
    if isinstance(model, MobileNet):
        return model.float().eval()
    if checkpoint:
        from mobilenets.deploy.export import resolve_source

        return resolve_source(checkpoint, expect_model=model).model.float().eval()
    from mobilenets.models.registry import create_model

    return realistic_batchnorm(create_model(model or "mobilenet_v1_1.0_224"))


@_restores_torch_threads
def bench(model: str | MobileNet | None = "mobilenet_v1_1.0_224", *, engines: Iterable[str] | None = None,
          peers: bool = False, settings: BenchSettings | None = None, checkpoint: str | None = None,
          progress: bool = True, check: bool = True) -> list[dict[str, Any]]:
    """Time ``model`` (a registry name, a MobileNet, or the architecture of ``checkpoint``) in
    every engine of ``engines`` (default: all of ours; ``peers`` adds timm's and Keras's), at
    batch 1 and ``settings.batch``. Returns one row per (engine, batch); see the module doc."""
    s = settings or BenchSettings()
    for name in ("threads", "batch", "rounds", "warmup", "calibration_size", "matmul_size"):
        _check_int(name, getattr(s, name), 0 if name == "warmup" else 1)
    names = resolve_engines(engines, peers)
    net = _load_model(model, checkpoint)
    torch.set_num_threads(s.threads)
    # Compiled engines of an earlier call are not reused: drop them, so that Dynamo's limit on
    # compilations per function is never reached (beyond it, it would silently run eager).
    torch._dynamo.reset()
    batches = [1] if s.batch == 1 else [1, s.batch]
    label = _model_label(net)
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    runs: dict[tuple[str, int], Callable[[], Any]] = {}
    with tempfile.TemporaryDirectory(prefix="mobilenet-bench-") as workdir:
        ctx = _Context(net, s, workdir)
        bar = _progress(len(names) * len(batches), "building engines", progress)
        for name in names:
            for b in batches:
                row = {"model": label, "alpha": net.config.alpha, "resolution": net.config.resolution,
                       "engine": name, "precision": PRECISION[name], "batch": b,
                       "peer": name in PEERS, "threads": s.threads, "description": DESCRIPTION[name],
                       "status": "ok", "note": None}
                rows[(name, b)] = row
                try:
                    run = _BUILDERS[name](ctx, b)
                    t = time.perf_counter()
                    for _ in range(max(s.warmup, 1)):
                        run()
                    row["_warm_s"] = (time.perf_counter() - t) / max(s.warmup, 1)
                    runs[(name, b)] = run
                except EngineUnavailable as exc:
                    row.update(status="unavailable", note=str(exc))
                bar.update()
        bar.close()
        if check and ("torch-fast", 1) in runs:
            try:
                diff = _fast_vs_eager(net, runs[("torch-fast", 1)], ctx.images(1))
                note = f"{ctx.notes.get('torch-fast')}; max abs diff vs eager {diff:.1e}"
            except RuntimeError as exc:  # a wrong fast path is not timed
                note = str(exc)
                for b in batches:
                    runs.pop(("torch-fast", b), None)
                    rows[("torch-fast", b)]["status"] = "failed"
            for b in batches:
                rows[("torch-fast", b)]["note"] = note
        if check and ("torch-fast-bf16", 1) in runs:
            with torch.inference_mode():
                ref = net(torch.from_numpy(ctx.images(1)))
                diff = float((runs[("torch-fast-bf16", 1)]() - ref).abs().max())
            for b in batches:
                rows[("torch-fast-bf16", b)]["note"] = (f"max abs diff vs eager {diff:.1e} (bf16; largest logit "
                                                        f"{float(ref.abs().max()):.2g})")
        precisions = sorted({r["precision"] for r in rows.values()})
        for p in precisions:  # the peak is measured before and after the timing: the best counts
            matmul_peak(p, s.threads, s.matmul_size, refresh=True)
        samples = _interleave(runs, rows, s, progress)
    peaks = {p: matmul_peak(p, s.threads, s.matmul_size, refresh=True) for p in precisions}
    out = []
    for (name, b), row in rows.items():
        row.pop("_warm_s", None)
        ma = _mult_adds(name, net.config)
        row["mult_adds"] = ma
        ts = samples.get((name, b))
        if ts:
            med = statistics.median(ts) * 1e3
            p10, p90 = percentile(ts, 10) * 1e3, percentile(ts, 90) * 1e3
            floor_ms = 2 * ma * b / peaks[row["precision"]] * 1e3
            row.update(median_ms=round(med, 4), p10_ms=round(p10, 4), p90_ms=round(p90, 4),
                       spread_pct=round(100 * (p90 - p10) / med, 1), images_per_s=round(1e3 * b / med, 2),
                       samples=len(ts), floor_ms=round(floor_ms, 4), floor_fraction=round(floor_ms / med, 4),
                       peak_gops=round(peaks[row["precision"]] / 1e9, 1))
        else:
            row.update(median_ms=None, p10_ms=None, p90_ms=None, spread_pct=None, images_per_s=None, samples=0,
                       floor_ms=None, floor_fraction=None, peak_gops=None)
        out.append(row)
    for b in batches:
        meds = [r["median_ms"] for r in out if r["batch"] == b and r["median_ms"] is not None]
        for r in out:
            if r["batch"] == b:
                r["vs_fastest"] = round(r["median_ms"] / min(meds), 3) if r["median_ms"] is not None else None
    if not any(r["median_ms"] is not None for r in out):
        notes = "; ".join(dict.fromkeys(f"{r['engine']}: {r['note']}" for r in out))
        raise ValueError(f"no engine could run: {notes}")
    return out


def _model_label(net: MobileNet) -> str:
    from mobilenets.models.registry import get_config, list_models

    for name in list_models():
        if get_config(name) == net.config:
            return name
    return f"mobilenet alpha={net.config.alpha:g} res={net.config.resolution}"


def _fast_vs_eager(net: MobileNet, fast: Callable[[], torch.Tensor], x: np.ndarray) -> float:
    """Max abs difference of the torch-fast runner's logits (on ``x``) from eager's."""
    with torch.inference_mode():
        ref = net(torch.from_numpy(x))
        diff = float((fast() - ref).abs().max())
    # 1e-4 absolute on logits of order 1; relative to the largest logit beyond that
    if not diff <= 1e-4 * max(1.0, float(ref.abs().max())):
        raise RuntimeError(f"torch-fast differs from eager by {diff:.3g} (> 1e-4 of the logit scale)")
    return diff


def _interleave(runs: dict, rows: dict, s: BenchSettings, progress: bool) -> dict[Any, list[float]]:
    units = list(runs)
    calls = {u: max(1, min(50, int(s.unit_seconds / max(rows[u].get("_warm_s", 1e-3), 1e-6)))) for u in units}
    samples: dict[Any, list[float]] = {u: [] for u in units}
    bar = _progress(s.rounds * sum(calls.values()), "timing", progress)
    for r in range(s.rounds):
        for u in round_order(units, r):
            run = runs[u]
            time.sleep(0.02)  # let the previous engine's spinning worker threads go to sleep
            run()  # untimed: wakes this engine's threads and refills caches after the previous engine
            for _ in range(calls[u]):
                t = time.perf_counter()
                run()
                samples[u].append(time.perf_counter() - t)
            bar.update(calls[u])
    bar.close()
    return samples


def time_interleaved(runs: dict[str, Callable[[], Any]], settings: BenchSettings | None = None,
                     progress: bool = False) -> dict[str, dict[str, float]]:
    """Time ready-made callables the way :func:`bench` times its engines (warm-up, then
    interleaved rounds); returns ``{name: {"median_ms", "p10_ms", "p90_ms", "samples"}}``."""
    s = settings or BenchSettings()
    rows: dict[str, dict[str, Any]] = {}
    for name, run in runs.items():
        t = time.perf_counter()
        for _ in range(max(s.warmup, 1)):
            run()
        rows[name] = {"_warm_s": (time.perf_counter() - t) / max(s.warmup, 1)}
    samples = _interleave(runs, rows, s, progress)
    return {name: {"median_ms": statistics.median(ts) * 1e3, "p10_ms": percentile(ts, 10) * 1e3,
                   "p90_ms": percentile(ts, 90) * 1e3, "samples": len(ts)} for name, ts in samples.items()}


# --------------------------------------------------------------------------- all models


def bench_all_models(models: Sequence[str] | None = None, *, engines: Iterable[str] | None = None,
                     settings: BenchSettings | None = None, plot: str | os.PathLike | None = None,
                     progress: bool = True) -> list[dict[str, Any]]:
    """Batch-1 latency of each of ``models`` (default: the paper's 16) in ``engines`` (default
    torch-eager, torch-fast, onnxruntime), and a PNG of latency against mult-adds at ``plot``."""
    from mobilenets.models.registry import PAPER_ALPHAS, PAPER_RESOLUTIONS, model_name

    models = list(models) if models is not None else [model_name(a, r) for a in PAPER_ALPHAS for r in PAPER_RESOLUTIONS]
    if not models:
        raise ValueError("no models to run")
    names = resolve_engines(engines if engines is not None else ALL_MODELS_ENGINES, False)
    base = settings or BenchSettings()
    s = BenchSettings(**{**base.__dict__, "batch": 1})
    if plot is not None:
        _check_plot_path(plot)
    rows: list[dict[str, Any]] = []
    bar = _progress(len(models), "models", progress)
    for name in models:
        rows += bench(name, engines=names, settings=s, progress=False, check=False)
        bar.update()
    bar.close()
    if plot is not None:
        plot_latency(rows, plot)
    return rows


def _check_plot_path(path: str | os.PathLike) -> None:
    p = Path(path)
    if p.suffix.lower() != ".png":
        raise ValueError(f"the plot is a PNG file: {p} does not end in .png")
    if not p.parent.is_dir():
        raise FileNotFoundError(f"folder not found: {p.parent}")


def scaling_fit(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Per engine, the slope k of log(latency) against log(mult-adds) over the models: latency
    grows as mult-adds^k (1.0: exactly as the paper's α² and ρ² cost claims predict)."""
    out = {}
    for engine in dict.fromkeys(r["engine"] for r in rows):
        pts = [(math.log(r["mult_adds"]), math.log(r["median_ms"])) for r in rows
               if r["engine"] == engine and r.get("median_ms")]
        if len({p[0] for p in pts}) >= 2:
            out[engine] = float(np.polyfit([p[0] for p in pts], [p[1] for p in pts], 1)[0])
    return out


def plot_latency(rows: Sequence[dict[str, Any]], path: str | os.PathLike) -> Path:
    """A PNG of batch-1 median latency against mult-adds, one series per engine, log-log."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ValueError("the plot needs matplotlib: pip install matplotlib") from None
    _check_plot_path(path)
    fits = scaling_fit(rows)
    fig, ax = plt.subplots(figsize=(9, 6.5), dpi=100)
    guide_done = False
    for engine in dict.fromkeys(r["engine"] for r in rows):
        er = [r for r in rows if r["engine"] == engine and r.get("median_ms")]
        if not er:
            continue
        k = fits.get(engine)
        color = ax.plot([r["mult_adds"] / 1e6 for r in er], [r["median_ms"] for r in er], "o",
                        label=f"{engine}" + (f" (slope {k:.2f})" if k else ""))[0].get_color()
        for alpha in dict.fromkeys(r.get("alpha") for r in er):  # one thin line per width: the rho series
            line = sorted((r["mult_adds"] / 1e6, r["median_ms"]) for r in er if r.get("alpha") == alpha)
            if alpha is not None and len(line) > 1:
                ax.plot([p[0] for p in line], [p[1] for p in line], "-", color=color, alpha=0.35, linewidth=1)
        for r in er:
            ax.annotate(r["model"].replace("mobilenet_v1_", ""), (r["mult_adds"] / 1e6, r["median_ms"]), fontsize=6,
                        xytext=(3, 2), textcoords="offset points")
        if not guide_done:  # latency proportional to mult-adds, through this engine's largest model
            top = max(er, key=lambda r: r["mult_adds"])
            xs = sorted({r["mult_adds"] / 1e6 for r in rows})
            scale = top["median_ms"] / (top["mult_adds"] / 1e6)
            ax.plot(xs, [x * scale for x in xs], "--", color="gray", linewidth=1, label="latency proportional to mult-adds")
            guide_done = True
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("mult-adds (millions)")
    ax.set_ylabel("batch-1 median latency (ms)")
    ax.set_title("MobileNet batch-1 latency vs mult-adds (lines join the resolutions of one width)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
    return Path(path)


# --------------------------------------------------------------------------- profile

GROUPS = ("first conv", "depthwise", "pointwise", "full conv", "BN+act", "pool", "FC", "other")


def _cost_group(layer_name: str, kind: str) -> str:
    if layer_name.startswith("stem"):
        return "first conv"
    return {"dw3x3": "depthwise", "conv1x1": "pointwise", "conv3x3": "full conv", "pool": "pool",
            "fc": "FC"}.get(kind, "other")


def _mult_add_shares(cfg: MobileNetConfig) -> dict[str, tuple[int, float]]:
    report = analytical_cost(cfg)
    total = report.mult_adds or 1
    out: dict[str, int] = {}
    for layer in report.layers:
        g = _cost_group(layer.name, layer.kind)
        out[g] = out.get(g, 0) + layer.mult_adds
    return {g: (v, v / total) for g, v in out.items()}


def _eager_group(name: str, module: nn.Module) -> str | None:
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


@_restores_torch_threads
def profile_eager(net: MobileNet, batch: int = 1, runs: int = 20, threads: int = 2,
                  progress: bool = False) -> tuple[dict[str, float], float]:
    """Mean time per layer group (ms) of an eager forward pass, from forward hooks on every
    conv, BatchNorm, activation, pool and linear module; and the mean total (ms). What the hooks
    do not cover (flatten, dropout, Python dispatch) is the group "other"."""
    torch.set_num_threads(threads)
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
        g = _eager_group(name, module)
        if g is not None:
            handles.append(module.register_forward_pre_hook(pre))
            handles.append(module.register_forward_hook(post_for(g)))
    x = torch.from_numpy(np.random.default_rng(0).standard_normal(
        (batch, 3, net.config.resolution, net.config.resolution)).astype(np.float32))
    total = 0.0
    try:
        with torch.inference_mode():
            for _ in range(3):
                net(x)
            for g in times:
                times[g] = 0.0
            bar = _progress(runs, "profiling eager", progress)
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


def _onnx_node_groups(optimized_path: str) -> dict[str, str]:
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
    node of the optimized graph, grouped by :func:`_onnx_node_groups`; "other" is the rest of
    each run (quantize/dequantize and layout nodes, framework overhead). Also the mean run (ms)."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="mobilenet-profile-") as tmp:
        optimized = os.path.join(tmp, "optimized.onnx")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.optimized_model_filepath = optimized  # to classify the nodes the profile names
        opts.log_severity_level = 3  # not the warning that the saved graph is machine-specific
        opts.enable_profiling = True
        opts.profile_file_prefix = os.path.join(tmp, "ort-profile")
        sess = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        x = np.random.default_rng(0).standard_normal((batch, 3, resolution, resolution)).astype(np.float32)
        warm = 3
        for _ in range(warm + runs):
            sess.run(None, {name: x})
        trace = sess.end_profiling()
        events = json.loads(Path(trace).read_text())
        groups = _onnx_node_groups(optimized)
    run_events = sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
                        key=lambda e: e["ts"])[warm:]
    if not run_events:
        raise ValueError("ONNX Runtime's profile holds no model runs")
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


PROFILE_ENGINES = ("torch-eager", "onnxruntime", "onnxruntime-int8")


def profile(model: str | MobileNet | None = "mobilenet_v1_1.0_224", *, engines: Iterable[str] | None = None,
            batch: int = 1, runs: int = 20, threads: int = 2, checkpoint: str | None = None,
            calibration_size: int = 64, progress: bool = True) -> list[dict[str, Any]]:
    """Per layer group: measured time and share, beside the analytical mult-add share, for each
    of ``engines`` (torch-eager, onnxruntime, onnxruntime-int8; default all three). One row per
    (engine, group); the groups of an engine sum to its ``total_ms``."""
    _check_int("batch", batch)
    _check_int("runs", runs)
    _check_int("threads", threads)
    names = list(PROFILE_ENGINES) if engines is None else [e.strip() for e in engines if e.strip()]
    bad = [e for e in names if e not in PROFILE_ENGINES]
    if bad or not names:
        raise ValueError(f"cannot profile {', '.join(bad) or 'no engine'}; choose from {', '.join(PROFILE_ENGINES)}")
    net = _load_model(model, checkpoint)
    shares = _mult_add_shares(net.config)
    label = _model_label(net)
    rows = []
    with tempfile.TemporaryDirectory(prefix="mobilenet-profile-") as workdir:
        ctx = _Context(net, BenchSettings(threads=threads, calibration_size=calibration_size), workdir)
        bar = _progress(len(names), "profiling", progress)
        for engine in names:
            note = None
            if engine == "torch-eager":
                per, total = profile_eager(net, batch, runs, threads)
            else:
                try:
                    path = ctx.export("onnx", engine.endswith("int8"))
                except EngineUnavailable as exc:
                    rows.append({"model": label, "engine": engine, "group": None, "status": "unavailable",
                                 "note": str(exc)})
                    bar.update()
                    continue
                per, total = profile_onnxruntime(path, batch, runs, threads, net.config.resolution)
            for g in GROUPS:
                ma, share = shares.get(g, (0, 0.0))
                if per.get(g, 0.0) == 0.0 and ma == 0 and g in ("full conv",):
                    continue
                rows.append({"model": label, "engine": engine, "precision": PRECISION[engine], "batch": batch,
                             "threads": threads, "group": g, "time_ms": round(per.get(g, 0.0), 4),
                             "time_share": round(per.get(g, 0.0) / total, 4) if total else 0.0,
                             "mult_adds": ma, "mult_adds_share": round(share, 4), "total_ms": round(total, 4),
                             "status": "ok", "note": note})
            bar.update()
        bar.close()
    return rows


# --------------------------------------------------------------------------- text


def machine_info(threads: int) -> dict[str, Any]:
    from importlib import metadata

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def version(pkg: str) -> str | None:
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return None

    return {"cpu": cpu, "cores": os.cpu_count(), "threads": threads, "python": platform.python_version(),
            "torch": torch.__version__, "onnxruntime": version("onnxruntime"),
            "tensorflow": version("tensorflow-cpu") or version("tensorflow"), "timm": version("timm"),
            "executorch": version("executorch"),
            "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
            "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}


def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def bench_text(rows: Sequence[dict[str, Any]]) -> str:
    """The bench table, then the speed comparisons the rows allow."""
    lines = [(f"{'engine':<24} {'prec':<5} {'batch':>5} {'median ms':>10} {'p10-p90 ms':>16} {'spread':>7} "
              f"{'img/s':>9} {'x fastest':>9} {'% floor':>8}")]
    for r in rows:
        name = r["engine"] + (" *" if r["peer"] else "")
        if r["median_ms"] is None:
            lines.append(f"{name:<24} {r['precision']:<5} {r['batch']:>5}   {r['status']}: {r['note']}")
            continue
        lines.append(f"{name:<24} {r['precision']:<5} {r['batch']:>5} {r['median_ms']:>10.2f} "
                     f"{r['p10_ms']:>7.2f}-{r['p90_ms']:<8.2f} {r['spread_pct']:>6.0f}% {r['images_per_s']:>9.1f} "
                     f"{r['vs_fastest']:>9.2f} {100 * r['floor_fraction']:>7.1f}%")
    lines.append("* peer (not ours). x fastest: median / fastest median at that batch size. % floor: the FLOP "
                 "floor (2 x mult-adds x batch at the measured matmul peak of that precision) / median.")
    peaks = {r["precision"]: r["peak_gops"] for r in rows if r.get("peak_gops")}
    if peaks:
        lines.append("matmul peak: " + ", ".join(f"{p} {v:g} GOP/s" for p, v in sorted(peaks.items())))
    notes = [f"{r['engine']}: {r['note']}" for r in rows if r["status"] == "ok" and r["note"] and r["batch"] == 1]
    lines += notes
    lines += [f"goal: {g}" for g in speed_goals(rows)]
    return "\n".join(lines)


def speed_goals(rows: Sequence[dict[str, Any]], batch: int = 1) -> list[str]:
    """The issue's speed goals at ``batch``, where the rows hold both sides of a comparison."""
    med = {r["engine"]: r["median_ms"] for r in rows if r["batch"] == batch and r["median_ms"] is not None}

    def best(names: Iterable[str]) -> tuple[str, float] | None:
        c = [(med[n], n) for n in names if n in med]
        return (min(c)[1], min(c)[0]) if c else None

    out = []
    ours32 = best(e for e in EXPORTED if PRECISION[e] == "fp32")
    peer32 = best(e for e in PEERS if PRECISION[e] == "fp32")
    if ours32 and peer32:
        ratio = ours32[1] / peer32[1]
        out.append(f"fastest fp32 export {ours32[0]} {ours32[1]:.2f} ms / fastest fp32 peer {peer32[0]} "
                   f"{peer32[1]:.2f} ms = {ratio:.2f}x (goal <= 1.0: {'met' if ratio <= 1 else 'NOT met'})")
    ours8 = best(e for e in EXPORTED if PRECISION[e] == "int8")
    if ours8 and "timm-onnxruntime-int8" in med:
        ratio = ours8[1] / med["timm-onnxruntime-int8"]
        out.append(f"fastest int8 export {ours8[0]} {ours8[1]:.2f} ms / timm-onnxruntime-int8 "
                   f"{med['timm-onnxruntime-int8']:.2f} ms = {ratio:.2f}x (goal <= 1.0: {'met' if ratio <= 1 else 'NOT met'})")
    if "torch-fast" in med and "timm-eager" in med and min(
            (med[n], n) for n in ("torch-fast", "torch-fast-bf16", "torch-compile", "torch-eager") if n in med)[1] != "torch-fast":
        fp32 = med["timm-eager"] / med["torch-fast"]
        out.append(f"fp32 only: timm-eager {med['timm-eager']:.2f} ms / torch-fast {med['torch-fast']:.2f} ms = "
                   f"{fp32:.2f}x faster (goal >= 1.5: {'met' if fp32 >= 1.5 else 'NOT met'})")
    native = best(("torch-fast", "torch-fast-bf16", "torch-compile", "torch-eager"))
    if native and "timm-eager" in med:
        speedup = med["timm-eager"] / native[1]
        out.append(f"timm-eager {med['timm-eager']:.2f} ms / {native[0]} {native[1]:.2f} ms = {speedup:.2f}x faster "
                   f"(goal >= 1.5: {'met' if speedup >= 1.5 else 'NOT met'})")
    return out


def all_models_text(rows: Sequence[dict[str, Any]]) -> str:
    engines = list(dict.fromkeys(r["engine"] for r in rows))
    models = list(dict.fromkeys(r["model"] for r in rows))
    ma = {r["model"]: r["mult_adds"] for r in rows}
    med = {(r["model"], r["engine"]): r["median_ms"] for r in rows}
    lines = [f"{'model':<24} {'M mult-adds':>11} " + " ".join(f"{e + ' ms':>18}" for e in engines)]
    for m in models:
        lines.append(f"{m:<24} {ma[m] / 1e6:>11.1f} " + " ".join(f"{_fmt(med.get((m, e)), '.2f'):>18}" for e in engines))
    fits = scaling_fit(rows)
    if fits:
        lines.append("latency ~ mult-adds^k (k = 1: time falls with alpha^2 and rho^2 as the cost does): "
                     + ", ".join(f"{e} k = {k:.2f}" for e, k in fits.items()))
    return "\n".join(lines)


def profile_text(rows: Sequence[dict[str, Any]]) -> str:
    lines = []
    for engine in dict.fromkeys(r["engine"] for r in rows):
        er = [r for r in rows if r["engine"] == engine]
        if er[0]["status"] != "ok":
            lines.append(f"{engine}: {er[0]['status']}: {er[0]['note']}")
            continue
        lines.append(f"{engine} ({er[0]['precision']}, batch {er[0]['batch']}, {er[0]['threads']} threads): "
                     f"{er[0]['total_ms']:.2f} ms per forward")
        lines.append(f"  {'layer type':<12} {'ms':>9} {'time %':>8} {'mult-adds %':>12}")
        for r in er:
            lines.append(f"  {r['group']:<12} {r['time_ms']:>9.3f} {100 * r['time_share']:>7.1f}% "
                         f"{100 * r['mult_adds_share']:>11.1f}%")
    return "\n".join(lines)


# --------------------------------------------------------------------------- CLI


def _csv(text: str) -> list[str]:
    return [t for t in (p.strip() for p in text.split(",")) if t]


def add_cli(subparsers) -> None:
    p = subparsers.add_parser("bench", help="inference latency across engines (eager, compiled, ONNX Runtime, "
                                            "TFLite, ExecuTorch; --peers adds timm and Keras)")
    p.add_argument("--model", help="a registry name (default mobilenet_v1_1.0_224); with --checkpoint, the "
                                   "architecture it must have")
    p.add_argument("--checkpoint", help="a run folder or checkpoint file (default: untrained weights, BatchNorm statistics from random images)")
    p.add_argument("--engines", type=_csv, help=f"comma-separated (default: {','.join(OURS)})")
    p.add_argument("--peers", action="store_true", help=f"add {', '.join(PEERS)}")
    p.add_argument("--threads", type=int, default=2, help="CPU threads of every engine (default 2)")
    p.add_argument("--batch", type=int, help="the batch-N size (default 8; 4 with --quick)")
    p.add_argument("--rounds", type=int, help="interleaved timing rounds (default 10; 3 with --quick)")
    p.add_argument("--quick", action="store_true", help="a short smoke run: few rounds, small matmul, small calibration")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.add_argument("--all-models", action="store_true",
                   help=f"batch-1 latency of the 16 paper models (default engines {','.join(ALL_MODELS_ENGINES)})")
    p.add_argument("--plot", help="with --all-models: write a PNG of latency against mult-adds here")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_bench)

    p = subparsers.add_parser("profile", help="measured time per layer type beside the mult-add share")
    p.add_argument("--model", help="a registry name (default mobilenet_v1_1.0_224)")
    p.add_argument("--checkpoint", help="a run folder or checkpoint file (default: untrained weights, BatchNorm statistics from random images)")
    p.add_argument("--engines", type=_csv, help=f"comma-separated from {','.join(PROFILE_ENGINES)} (default all)")
    p.add_argument("--batch", type=int, default=1, help="default 1")
    p.add_argument("--runs", type=int, default=20, help="timed forward passes (default 20)")
    p.add_argument("--threads", type=int, default=2, help="default 2")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_profile)


def settings_from_args(args: argparse.Namespace) -> BenchSettings:
    _check_int("threads", args.threads)
    s = BenchSettings.quick(args.threads) if args.quick else BenchSettings(threads=args.threads)
    if args.batch is not None:
        s.batch = _check_int("batch", args.batch)
    if args.rounds is not None:
        s.rounds = _check_int("rounds", args.rounds)
    return s


def _cmd_bench(args: argparse.Namespace) -> None:
    s = settings_from_args(args)
    if args.plot and not args.all_models:
        raise ValueError("--plot needs --all-models")
    if args.all_models:
        if args.checkpoint or args.model or args.peers:
            raise ValueError("--all-models runs the 16 paper models: drop --model/--checkpoint/--peers")
        rows = bench_all_models(engines=args.engines, settings=s, plot=args.plot, progress=not args.no_progress)
        print(json.dumps(rows, indent=2) if args.json else all_models_text(rows))
        if args.plot and not args.json:
            print(f"wrote {args.plot}")
        return
    rows = bench(args.model, engines=args.engines, peers=args.peers, settings=s, checkpoint=args.checkpoint,
                 progress=not args.no_progress)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    info = machine_info(s.threads)
    print(f"{rows[0]['model']}: {info['cpu']}, {s.threads} threads, torch {info['torch']}, "
          f"onnxruntime {info['onnxruntime']}, tensorflow {info['tensorflow']}; {s.rounds} interleaved rounds")
    print(bench_text(rows))


def _cmd_profile(args: argparse.Namespace) -> None:
    rows = profile(args.model, engines=args.engines, batch=args.batch, runs=args.runs, threads=args.threads,
                   checkpoint=args.checkpoint, progress=not args.no_progress)
    print(json.dumps(rows, indent=2) if args.json else profile_text(rows))
