"""The register-only arithmetic peak of this CPU, beside the GEMM peak that ``mobilenet bench`` uses.

What it measures
----------------
``peak_kernels.c`` (beside this script) is compiled here with the machine's C compiler (``$CC``,
else ``cc``, ``gcc`` or ``clang``) and ``-O2 -march=native``, so it holds the kernels of exactly
the instructions this CPU has: AVX-512 / AVX2 FMA for fp32, VNNI ``vpdpbusd`` and AMX ``tdpbusd``
for int8, AVX512_BF16 ``vdpbf16ps`` and AMX ``tdpbf16ps`` for bf16. Each is a loop of independent
multiply-add chains that never touches memory: the rate the CPU reaches when nothing but
arithmetic limits it. Each kind runs ``--seconds`` on ``--threads`` threads in a process of its
own: AMX needs a permission request (``arch_prctl``) that would otherwise stay with this process,
and an instruction the CPU refuses kills the helper, not this script.

A kind's rate is each thread's operations over its own CPU time, summed over the threads (while
threads <= usable CPUs): other processes' load slows the wall clock, not the arithmetic. The
helper is compiled into a temporary folder each run and nothing is kept on disk.

Beside each precision it prints the package's peak (:func:`mobilenets.bench.roofline.
hardware_peaks`: the best GEMM library on a ``--size``² matmul, on the same threads), which is
what the bench table's "% floor" divides by, and the ratio of the two: how far a large GEMM gets
to the hardware's rate, so how much higher "% floor" reads than a fraction of the true peak.

Usage::

    .venv/bin/python benchmarks/peak_kernels.py [--threads 2] [--precisions fp32,int8,bf16]
        [--seconds 0.2] [--size 4096] [--no-gemm] [--json]

No compiler, a failed build or no kernel for this CPU is said in a note, not an error.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from _cli import ScriptParser, positive_int

SOURCE = Path(__file__).with_name("peak_kernels.c")
FLAGS = ("-O2", "-march=native", "-pthread")
PRECISIONS = ("fp32", "int8", "bf16")
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


def compile_helper(compiler: str, folder: Path) -> Path:
    """Compile :data:`SOURCE` to ``folder/peak``."""
    out = folder / "peak"
    try:
        done = subprocess.run([compiler, *FLAGS, "-o", str(out), str(SOURCE)], capture_output=True, text=True,
                              timeout=120)
    except (OSError, subprocess.SubprocessError) as exc:
        raise KernelUnavailable(f"cannot compile the peak helper: {type(exc).__name__}: {exc}") from None
    if done.returncode != 0:
        err = (done.stderr.strip().splitlines() or ["no message"])[0]
        raise KernelUnavailable(f"{os.path.basename(compiler)} {' '.join(FLAGS)} failed: {err}")
    return out


@contextlib.contextmanager
def helper() -> Iterator[Path]:
    """The helper, compiled into a temporary folder that lasts the ``with`` block."""
    compiler = find_compiler()
    if compiler is None:
        given = os.environ.get("CC")
        raise KernelUnavailable(f"no C compiler (CC={given!r} is not an executable)" if given
                                else "no C compiler (cc, gcc or clang) found")
    with tempfile.TemporaryDirectory(prefix="mobilenets-peak-") as tmp:
        yield compile_helper(compiler, Path(tmp))


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
    ``precisions`` measured on ``threads`` threads; the notes say what could not be measured."""
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
    except (KernelUnavailable, OSError, subprocess.SubprocessError) as exc:
        return out, {p: [str(exc)] for p in wanted}
    for p in wanted:
        if not any(KIND_PRECISION[k] == p for k in kinds):
            notes[p].append(f"the helper has no {p} kernel for this CPU's instructions")
    return out, notes


def main(argv: list[str] | None = None) -> int:
    parser = ScriptParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=positive_int, default=2, help="threads of each kernel and GEMM (default 2)")
    parser.add_argument("--precisions", default=",".join(PRECISIONS),
                        help="comma-separated, of fp32, int8, bf16 (default all)")
    parser.add_argument("--seconds", type=float, default=SECONDS, help=f"seconds a kind runs (default {SECONDS})")
    parser.add_argument("--size", type=positive_int, default=4096, help="the GEMMs' square size (default 4096)")
    parser.add_argument("--no-gemm", action="store_true", help="measure the kernels only")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    bad = sorted(set(precisions) - set(PRECISIONS))
    if bad or not precisions:
        parser.error(f"--precisions: unknown {', '.join(bad) or 'empty list'}; choose of {', '.join(PRECISIONS)}")
    if not args.seconds > 0:
        parser.error(f"--seconds must be > 0, got {args.seconds}")

    measured, notes = kernel_peaks(precisions, args.threads, args.seconds)
    gemm = {}
    if not args.no_gemm:
        from mobilenets.bench.roofline import hardware_peaks

        gemm = hardware_peaks(precisions, args.threads, args.size)
    result = {}
    for p in precisions:
        best = max(measured[p].values(), default=None)
        row = {"kernels_gops": {k: round(v / 1e9, 1) for k, v in measured[p].items()}, "notes": notes[p]}
        if p in gemm:
            row["gemm"] = gemm[p].to_dict()
            row["gemm_over_kernel"] = round(gemm[p].ops_per_s / best, 3) if best else None
        result[p] = row
    if args.json:
        print(json.dumps({"threads": args.threads, "peaks": result}, indent=2))
        return 0
    print(f"peaks on {args.threads} thread{'s' if args.threads != 1 else ''} (GOP/s; a multiply-add is 2 operations)")
    for p in precisions:
        for kind, rate in measured[p].items():
            print(f"  {p:<5} {rate / 1e9:9.0f}  {KIND_TEXT[kind]}")
        for note in notes[p]:
            print(f"  {p:<5} {'-':>9}  {note}")
        if p in gemm:
            ratio = result[p]["gemm_over_kernel"]
            beside = f"  = {100 * ratio:.0f} % of the best kernel" if ratio else ""
            print(f"  {p:<5} {gemm[p].ops_per_s / 1e9:9.0f}  bench's peak: {gemm[p].describe()}{beside}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
