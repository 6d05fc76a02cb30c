"""The machine's peak rate per precision: the FLOP floor a benchmark row is measured against.

A row's "% floor" is ``floor / median`` with ``floor = 2 x mult-adds x batch / peak``: the
fraction of this CPU's arithmetic rate (in the row's precision) that the engine reaches. The peak
is the best of several GEMM libraries on a ``size``² square matmul, on the bench's threads: torch
(``torch.mm``; ``torch._int_mm`` for int8), numpy's BLAS (fp32) and ONNX Runtime (``MatMul`` fp32,
``MatMulInteger`` u8 x s8 int8). A large GEMM is the most arithmetic-bound work those libraries
do, so no engine built on them should beat it; it is still a measured rate, below the hardware's
register-only peak (``benchmarks/peak_kernels.py`` measures that one with compiled FMA, VNNI and
AMX loops, for comparison), so "% floor" errs high, never low.

On one thread each GEMM is timed by the calling thread's CPU time, so that other processes' load
on a shared machine does not lower the peak (on more threads, by the wall clock). Measurements
are kept per process, the best so far (a busy machine only lowers a measurement):
:func:`hardware_peaks` measures the GEMMs once per process unless ``refresh``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mobilenets.errors import MobileNetsError
from mobilenets.utils.scoped import torch_threads

PRECISIONS = ("fp32", "bf16", "int8")

# The best measurement so far in this process: a busy machine only lowers a measurement, so the
# highest one is the closest to the peak. torch's matmul by (precision, threads, size); the
# GEMMs by (precision, threads, size) -> {library: ops/s}.
_PEAK_CACHE: dict[tuple[str, int, int], float] = {}
_GEMMS: dict[tuple[str, int, int], dict[str, float]] = {}
_NOTES: dict[tuple[str, int, int], list[str]] = {}


@dataclass(frozen=True)
class Peak:
    """A precision's peak (operations per second, 2 per multiply-add) and how it was measured:
    every GEMM library's rate, and why any is missing."""

    precision: str
    ops_per_s: float
    source: str  # the GEMM library that measured the peak: "torch", "numpy" or "onnxruntime"
    gemms: dict[str, float] = field(default_factory=dict)
    size: int = 0
    threads: int = 0
    notes: tuple[str, ...] = ()

    def describe(self) -> str:
        """One line: the peak, the library that measured it, and the other libraries beside it."""
        gops = lambda v: f"{v / 1e9:.0f}"  # noqa: E731
        text = f"{self.precision} {gops(self.ops_per_s)} GOP/s: {self.source} matmul {self.size}²"
        others = ", ".join(f"{lib} {gops(v)}" for lib, v in self.gemms.items() if lib != self.source)
        if others:
            text += f" ({others})"
        if self.notes:
            text += f"; {'; '.join(self.notes)}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"precision": self.precision, "gops": round(self.ops_per_s / 1e9, 1), "source": self.source,
                "gemms_gops": {k: round(v / 1e9, 1) for k, v in self.gemms.items()}, "size": self.size,
                "threads": self.threads, "notes": list(self.notes), "how": self.describe()}


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise MobileNetsError(f"unknown precision {precision!r}; choose fp32, bf16 or int8")


def best_seconds(op: Callable[[], Any], repeats: int, threads: int | None = None) -> float:
    """The fastest of ``repeats`` timed calls of ``op``, after one untimed call. With
    ``threads=1`` each call is timed by the calling thread's CPU time, which is the whole call
    (every library here runs a one-thread GEMM in the caller): other processes' load on a shared
    machine then cannot lower the peak below what an engine reaches between interruptions. With
    more threads (or None) by the wall clock."""
    clock = time.thread_time if threads == 1 else time.perf_counter
    op()
    best = math.inf
    for _ in range(max(repeats, 1)):
        t = clock()
        op()
        best = min(best, clock() - t)
    return max(best, 1e-9)


def matmul_peak(precision: str, threads: int = 2, size: int = 4096, repeats: int = 3, refresh: bool = False) -> float:
    """Measured matmul throughput (operations per second, 2 per multiply-add) of a ``size``²
    square matmul in ``precision``: fp32 and bf16 by ``torch.mm`` (oneDNN), int8 by
    ``torch._int_mm`` (int8 x int8 -> int32), on ``threads`` torch threads (the caller's count
    is restored after). The best of ``repeats`` runs, and of every earlier measurement in this
    process (``refresh`` measures again; a busy machine only lowers it)."""
    check_precision(precision)
    key = (precision, threads, size)
    if key in _PEAK_CACHE and not refresh:
        return _PEAK_CACHE[key]
    gen = torch.Generator().manual_seed(0)
    if precision == "int8":
        a = torch.randint(-128, 128, (size, size), generator=gen, dtype=torch.int8)
        b = torch.randint(-128, 128, (size, size), generator=gen, dtype=torch.int8)
        op = torch._int_mm
    else:
        dtype = torch.float32 if precision == "fp32" else torch.bfloat16
        a = torch.randn(size, size, generator=gen).to(dtype)
        b = torch.randn(size, size, generator=gen).to(dtype)
        op = torch.mm
    with torch_threads(threads), torch.inference_mode():
        best = best_seconds(lambda: op(a, b), repeats, threads)
    _PEAK_CACHE[key] = max(2 * size ** 3 / best, _PEAK_CACHE.get(key, 0.0))
    return _PEAK_CACHE[key]


def numpy_gemm(threads: int, size: int, repeats: int = 3) -> float:
    """fp32 ``a @ b`` through numpy's BLAS, its thread pool limited to ``threads`` (by
    threadpoolctl; the caller's limit is restored after)."""
    from threadpoolctl import threadpool_limits  # ImportError: the caller says "not measured"

    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    with threadpool_limits(limits=threads, user_api="blas"):
        return 2 * size ** 3 / best_seconds(lambda: a @ b, repeats, threads)


def onnxruntime_gemm(precision: str, threads: int, size: int, repeats: int = 3) -> float:
    """ONNX Runtime's CPU ``MatMul`` (fp32) or ``MatMulInteger`` (u8 x s8 -> int32, int8) of a
    ``size``² input by a ``size``² constant, on ``threads`` intra-op threads."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from mobilenets.deploy.ort import session

    rng = np.random.default_rng(0)
    if precision == "int8":
        a = rng.integers(0, 256, (size, size), dtype=np.uint8)
        b = rng.integers(-128, 128, (size, size), dtype=np.int8)
        node, types, opset = helper.make_node("MatMulInteger", ["A", "B"], ["C"]), (TensorProto.UINT8, TensorProto.INT32), 10
    else:
        a = rng.standard_normal((size, size), dtype=np.float32)
        b = rng.standard_normal((size, size), dtype=np.float32)
        node, types, opset = helper.make_node("MatMul", ["A", "B"], ["C"]), (TensorProto.FLOAT, TensorProto.FLOAT), 13
    graph = helper.make_graph([node], "gemm", [helper.make_tensor_value_info("A", types[0], [size, size])],
                              [helper.make_tensor_value_info("C", types[1], [size, size])],
                              [numpy_helper.from_array(b, "B")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = min(model.ir_version, 8)  # an IR version every ONNX Runtime of ours reads
    onnx.checker.check_model(model)
    # no spinning threads left to slow what runs next
    sess = session(model.SerializeToString(), threads, spinning=False)
    return 2 * size ** 3 / best_seconds(lambda: sess.run(None, {"A": a}), repeats, threads)


def gemm_peaks(precision: str, threads: int, size: int, repeats: int = 3) -> tuple[dict[str, float], list[str]]:
    """``({library: ops/s}, notes)``: each GEMM library's rate on a ``size``² matmul in
    ``precision`` (numpy for fp32 only; no ONNX Runtime bf16), and why any is missing."""
    check_precision(precision)
    out = {"torch": matmul_peak(precision, threads, size, repeats, refresh=True)}
    notes = []
    others: dict[str, Callable[[], float]] = {}
    if precision == "fp32":
        others["numpy"] = lambda: numpy_gemm(threads, size, repeats)
    if precision in ("fp32", "int8"):
        others["onnxruntime"] = lambda: onnxruntime_gemm(precision, threads, size, repeats)
    for lib, measure in others.items():
        try:
            out[lib] = measure()
        except ImportError as exc:
            notes.append(f"{lib} GEMM not measured: {exc.name or exc} is not installed")
        except Exception as exc:  # noqa: BLE001 - a library's own errors: one estimate fewer, said in the notes
            notes.append(f"{lib} GEMM failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    return out, notes


def merge_best(store: dict, key: Any, measured: dict[str, float]) -> dict[str, float]:
    best = store.setdefault(key, {})
    for name, value in measured.items():
        best[name] = max(value, best.get(name, 0.0))
    return best


def hardware_peaks(precisions: Iterable[str], threads: int = 2, size: int = 4096,
                   refresh: bool = False) -> dict[str, Peak]:
    """The :class:`Peak` of each of ``precisions`` on ``threads`` threads: the best GEMM library
    on ``size``² matmuls. Kept per process, the best so far; ``refresh`` measures again."""
    wanted = list(dict.fromkeys(precisions))
    for p in wanted:
        check_precision(p)
    out = {}
    for p in wanted:
        key = (p, threads, size)
        if key not in _GEMMS or refresh:
            found, notes = gemm_peaks(p, threads, size)
            merge_best(_GEMMS, key, found)
            _NOTES[key] = list(dict.fromkeys(_NOTES.get(key, []) + notes))
        candidates = _GEMMS[key]
        source = max(candidates, key=candidates.get)
        out[p] = Peak(p, candidates[source], source, dict(candidates), size, threads, tuple(_NOTES.get(key, [])))
    return out


def forget_peaks() -> None:
    """Drop every measurement kept in this process (the next call measures afresh)."""
    for store in (_PEAK_CACHE, _GEMMS, _NOTES):
        store.clear()
