"""The machine's matmul peak, per precision: the FLOP floor a benchmark row is measured against.

A row's "% floor" is ``2 x mult-adds x batch / peak`` over its median time: the fraction of this
CPU's dense-matmul throughput (in the row's precision) that the engine reaches.
"""

from __future__ import annotations

import math
import time

import torch

from mobilenets.errors import MobileNetsError
from mobilenets.utils.scoped import torch_threads

PRECISIONS = ("fp32", "bf16", "int8")

# The best measurement so far in this process, per (precision, threads, size): a busy machine
# only lowers a measurement, so the highest one is the closest to the peak.
_PEAK_CACHE: dict[tuple[str, int, int], float] = {}


def matmul_peak(precision: str, threads: int = 2, size: int = 4096, repeats: int = 3, refresh: bool = False) -> float:
    """Measured matmul throughput (operations per second, 2 per multiply-add) of a ``size``²
    square matmul in ``precision``: fp32 and bf16 by ``torch.mm`` (oneDNN), int8 by
    ``torch._int_mm`` (int8 x int8 -> int32), on ``threads`` torch threads (the caller's count
    is restored after). The best of ``repeats`` runs, and of every earlier measurement in this
    process (``refresh`` measures again; a busy machine only lowers it)."""
    if precision not in PRECISIONS:
        raise MobileNetsError(f"unknown precision {precision!r}; choose fp32, bf16 or int8")
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
        op(a, b)
        best = math.inf
        for _ in range(repeats):
            t = time.perf_counter()
            op(a, b)
            best = min(best, time.perf_counter() - t)
    _PEAK_CACHE[key] = max(2 * size ** 3 / best, _PEAK_CACHE.get(key, 0.0))
    return _PEAK_CACHE[key]
