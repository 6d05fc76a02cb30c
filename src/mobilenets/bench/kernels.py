"""The arithmetic peak of this CPU, measured by a tiny C helper compiled here at run time.

The helper (:data:`mobilenets.bench.kernel_source.SOURCE`) is compiled with the machine's C
compiler (``$CC``, else ``cc``, ``gcc`` or ``clang``) and ``-O2 -march=native``, so it holds the
kernels of exactly the instructions this CPU has: AVX-512 / AVX2 FMA for fp32, VNNI ``vpdpbusd``
and AMX ``tdpbusd`` for int8, AVX512_BF16 ``vdpbf16ps`` and AMX ``tdpbf16ps`` for bf16. Each
kind runs ~0.2 s on the bench's threads, in a separate process: AMX needs a permission request
(``arch_prctl``) that would otherwise stay with the caller's process, and an instruction the CPU
refuses kills the helper, not the caller.

The rate is each thread's operations over its own CPU time, summed over the threads (while
threads <= usable CPUs): other processes' load on a shared machine slows the wall clock, not the
arithmetic. The compiled helper is cached on disk (``$XDG_CACHE_HOME/mobilenets/bench``, else
``~/.cache/...``; a temporary folder when that is not writable), keyed by the source, the
compiler and the CPU; beside it ``peaks.json`` keeps each kind's best rate so far per thread
count (a disturbed measurement is only ever lower, so the best one is the closest to the
hardware's rate, and a floor from it is never beaten). No compiler, a failed build or no kernel
for this CPU is a :class:`KernelUnavailable` with the reason; the caller falls back on GEMM
libraries.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from mobilenets.bench.kernel_source import SOURCE

FLAGS = ("-O2", "-march=native", "-pthread")
KIND_PRECISION = {"fp32-avx512-fma": "fp32", "fp32-avx2-fma": "fp32", "int8-avx512-vnni": "int8",
                  "int8-avx-vnni": "int8", "int8-amx": "int8", "bf16-avx512": "bf16", "bf16-amx": "bf16"}
KIND_TEXT = {"fp32-avx512-fma": "AVX-512 FMA loop, 16 chains", "fp32-avx2-fma": "AVX2 FMA loop, 12 chains",
             "int8-avx512-vnni": "AVX-512 VNNI vpdpbusd loop, 16 chains",
             "int8-avx-vnni": "AVX-VNNI vpdpbusd loop, 12 chains", "int8-amx": "AMX tdpbusd tile loop",
             "bf16-avx512": "AVX512_BF16 vdpbf16ps loop, 16 chains", "bf16-amx": "AMX tdpbf16ps tile loop"}
# A narrower kind runs only where its wider one is not compiled in or fails (it cannot be faster).
NARROWER = {"fp32-avx2-fma": "fp32-avx512-fma", "int8-avx-vnni": "int8-avx512-vnni"}
SECONDS = 0.2  # per kind: one warm-up window and four timed ones


class KernelUnavailable(Exception):
    """The helper cannot be built or run here; the message says why."""


def find_compiler() -> str | None:
    """``$CC`` if set (None when it is not an executable), else the first of cc, gcc, clang."""
    if os.environ.get("CC"):
        return shutil.which(os.environ["CC"])
    return next((p for p in map(shutil.which, ("cc", "gcc", "clang")) if p), None)


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mobilenets" / "bench"


def cpu_signature() -> str:
    """The CPU model and instruction flags (what ``-march=native`` compiles for)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return ""
    keep = [ln for ln in lines if ln.startswith(("model name", "flags", "Features", "CPU part"))]
    return "\n".join(dict.fromkeys(keep))


def helper_key(compiler: str) -> str:
    try:
        version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        version = ""
    text = "\0".join([SOURCE, os.path.realpath(compiler), version, " ".join(FLAGS), cpu_signature()])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def compile_helper(compiler: str, folder: Path, name: str) -> Path:
    """Compile :data:`SOURCE` to ``folder/name`` (written under a temporary name, then renamed)."""
    out = folder / name
    src = folder / f"{name}.{os.getpid()}.c"
    tmp = folder / f"{name}.{os.getpid()}.tmp"
    try:
        src.write_text(SOURCE)
        done = subprocess.run([compiler, *FLAGS, "-o", str(tmp), str(src)], capture_output=True, text=True,
                              timeout=120)
        if done.returncode != 0:
            err = (done.stderr.strip().splitlines() or ["no message"])[0]
            raise KernelUnavailable(f"{os.path.basename(compiler)} {' '.join(FLAGS)} failed: {err}")
        os.replace(tmp, out)
    except (OSError, subprocess.SubprocessError) as exc:
        raise KernelUnavailable(f"cannot compile the peak helper: {type(exc).__name__}: {exc}") from None
    finally:
        for p in (src, tmp):
            with contextlib.suppress(OSError):
                p.unlink()
    return out


PEAKS_FILE = "peaks.json"


def remember(path: Path, threads: int, measured: dict[str, float]) -> dict[str, float]:
    """``measured`` (kind -> ops/s) merged with the best rates recorded beside the helper
    ``path`` for ``threads`` threads (the record is updated; an unreadable or unwritable one is
    left alone): the best of each kind so far."""
    record = path.parent / PEAKS_FILE
    key = f"{path.name}:{threads}"
    try:
        doc = json.loads(record.read_text()) if record.is_file() else {}
        doc = doc if isinstance(doc, dict) else {}
    except (OSError, ValueError):
        doc = {}
    best = {k: float(v) for k, v in (doc.get(key) or {}).items() if k in measured and isinstance(v, (int, float))}
    best = {k: max(v, best.get(k, 0.0)) for k, v in measured.items()}
    if best and best != doc.get(key):
        tmp = record.with_name(f"{PEAKS_FILE}.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps({**doc, key: best}, indent=1, sort_keys=True))
            os.replace(tmp, record)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
    return best


@contextlib.contextmanager
def helper() -> Iterator[Path]:
    """The compiled helper: from the disk cache, compiled into it, or (cache not writable)
    compiled into a temporary folder that lasts the ``with`` block."""
    compiler = find_compiler()
    if compiler is None:
        given = os.environ.get("CC")
        raise KernelUnavailable(f"no C compiler (CC={given!r} is not an executable)" if given
                                else "no C compiler (cc, gcc or clang) found")
    name = f"peak-{helper_key(compiler)}"
    cached = cache_dir() / name
    if cached.is_file() and os.access(cached, os.X_OK):
        yield cached
        return
    try:
        cache_dir().mkdir(parents=True, exist_ok=True)
        writable = os.access(cache_dir(), os.W_OK)
    except OSError:
        writable = False
    if writable:
        yield compile_helper(compiler, cache_dir(), name)
        return
    with tempfile.TemporaryDirectory(prefix="mobilenet-peak-") as tmp:
        yield compile_helper(compiler, Path(tmp), name)


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def run_kind(path: Path, kind: str, threads: int, seconds: float = SECONDS) -> float:
    """Operations per second of ``kind`` on ``threads`` threads (see the module doc)."""
    try:
        done = subprocess.run([str(path), "run", kind, str(threads), f"{seconds:g}"], capture_output=True,
                              text=True, timeout=30 + 2 * seconds)
    except (OSError, subprocess.SubprocessError) as exc:
        raise KernelUnavailable(f"{kind}: {type(exc).__name__}: {exc}") from None
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or [""])[0]
        if done.returncode < 0:
            why = f"killed by signal {-done.returncode} (the CPU or the OS refused its instructions)"
        raise KernelUnavailable(f"{kind}: {why or f'exit status {done.returncode}'}")
    try:
        result = json.loads(done.stdout)
        wall, cpu = float(result["ops_per_s"]), float(result["ops_per_cpu_s"])
    except (ValueError, KeyError, TypeError):
        raise KernelUnavailable(f"{kind}: unreadable output {done.stdout[:80]!r}") from None
    # CPU time per thread is the load-proof measure while each thread can have a CPU of its own
    return cpu if threads <= usable_cpus() else wall


def kernel_peaks(precisions: Iterable[str], threads: int,
                 seconds: float = SECONDS) -> tuple[dict[str, dict[str, float]], dict[str, list[str]]]:
    """``({precision: {kind: ops/s}}, {precision: notes})``: every kind of the helper for
    ``precisions`` measured on ``threads`` threads, each the best of now and the rates recorded
    on this machine before (see :func:`remember`); the notes say what could not be measured."""
    wanted = list(dict.fromkeys(precisions))
    out: dict[str, dict[str, float]] = {p: {} for p in wanted}
    notes: dict[str, list[str]] = {p: [] for p in wanted}
    try:
        with helper() as path:
            listed = subprocess.run([str(path), "list"], capture_output=True, text=True, timeout=30)
            kinds = [k for k in listed.stdout.split() if KIND_PRECISION.get(k) in out]
            for kind in kinds:
                p = KIND_PRECISION[kind]
                if NARROWER.get(kind) in out[p]:
                    continue  # its wider kind ran
                try:
                    out[p][kind] = run_kind(path, kind, threads, seconds)
                except KernelUnavailable as exc:
                    notes[p].append(str(exc))
            best = remember(path, threads, {k: v for p in out for k, v in out[p].items()})
            out = {p: {k: best[k] for k in kinds_of} for p, kinds_of in out.items()}
    except (KernelUnavailable, OSError, subprocess.SubprocessError) as exc:
        return out, {p: [str(exc)] for p in wanted}
    for p in wanted:
        if not any(KIND_PRECISION[k] == p for k in kinds):
            notes[p].append(f"the helper has no {p} kernel for this CPU's instructions")
    return out, notes
