"""The FLOP floor's peak: the GEMM libraries, the best one counting, and that no engine of a quick
bench beats its floor; and the register-only peak kernels of ``benchmarks/peak_kernels.py`` (FMA,
VNNI, AMX, BF16 loops compiled at run time), their fallbacks (no compiler, a failed build), and
that the GEMM peak stays below them."""

import importlib.util
import platform
from pathlib import Path

import pytest

from mobilenets.bench import run as R
from mobilenets.bench.report import bench_text
from mobilenets.bench.roofline import Peak, forget_peaks, gemm_peaks, hardware_peaks
from mobilenets.bench.timing import BenchSettings

SMALL = "mobilenet_v1_0.25_128"
BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
FLAGS = set(next((ln.split(":", 1)[1].split() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                  if ln.startswith("flags")), [])) if Path("/proc/cpuinfo").exists() else set()
X86 = platform.machine() in ("x86_64", "AMD64", "i686")


def load_script():
    """``benchmarks/peak_kernels.py`` as a module (it imports ``_cli`` from its own folder)."""
    spec = importlib.util.spec_from_file_location("peak_kernels", BENCHMARKS / "peak_kernels.py")
    module = importlib.util.module_from_spec(spec)
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(BENCHMARKS))
        spec.loader.exec_module(module)
    return module


K = load_script()
HAVE_CC = K.find_compiler() is not None


@pytest.fixture
def fresh_peaks():
    """No measurement of earlier tests counts here, and none of this test's counts after."""
    forget_peaks()
    yield
    forget_peaks()


@pytest.mark.skipif(not (HAVE_CC and X86), reason="needs a C compiler and an x86 CPU")
def test_kernels_measure_what_this_cpu_has():
    measured, notes = K.kernel_peaks(["fp32", "int8", "bf16"], threads=1, seconds=0.05)
    if "avx512f" in FLAGS:
        assert "fp32-avx512-fma" in measured["fp32"] and "fp32-avx2-fma" not in measured["fp32"]  # the wider one only
    elif {"avx2", "fma"} <= FLAGS:
        assert "fp32-avx2-fma" in measured["fp32"]
    if "avx512_vnni" in FLAGS:
        assert "int8-avx512-vnni" in measured["int8"]
    if "amx_int8" in FLAGS:  # measured, or the reason it could not be (the OS refused AMX, ...)
        assert "int8-amx" in measured["int8"] or any("int8-amx" in n for n in notes["int8"])
    if "avx512_bf16" in FLAGS:
        assert "bf16-avx512" in measured["bf16"]
    for p, kinds in measured.items():
        for kind, rate in kinds.items():
            assert K.KIND_PRECISION[kind] == p
            assert 1e9 < rate < 1e14, (kind, rate)  # one thread: above a slow core, below any chip
    if measured["int8"].get("int8-amx") and measured["int8"].get("int8-avx512-vnni"):
        assert measured["int8"]["int8-amx"] > measured["int8"]["int8-avx512-vnni"]  # tiles beat vectors


def test_the_peak_is_the_best_gemm(fresh_peaks):
    peaks = hardware_peaks(["fp32", "int8"], threads=1, size=256)
    for p in ("fp32", "int8"):
        peak = peaks[p]
        assert isinstance(peak, Peak) and peak.precision == p and peak.threads == 1 and peak.size == 256
        assert {"torch", "onnxruntime"} <= set(peak.gemms) and ("numpy" in peak.gemms) == (p == "fp32")
        assert peak.ops_per_s == max(peak.gemms.values()) and peak.gemms[peak.source] == peak.ops_per_s
        others = [lib for lib in peak.gemms if lib != peak.source]
        assert peak.describe().startswith(f"{p} {peak.ops_per_s / 1e9:.0f} GOP/s: {peak.source} matmul 256² (")
        assert all(f"{lib} {peak.gemms[lib] / 1e9:.0f}" in peak.describe() for lib in others)
    # kept per process, the best so far: without refresh nothing is measured again
    again = hardware_peaks(["fp32"], threads=1, size=256)
    assert again["fp32"].ops_per_s == peaks["fp32"].ops_per_s and again["fp32"].gemms == peaks["fp32"].gemms


def test_without_a_compiler_the_kernels_say_so(monkeypatch):
    monkeypatch.setenv("CC", "/no/such/cc")
    measured, notes = K.kernel_peaks(["fp32"], threads=1, seconds=0.05)
    assert measured == {"fp32": {}} and notes["fp32"] == ["no C compiler (CC='/no/such/cc' is not an executable)"]


def test_a_failing_build_is_a_note_not_an_error(monkeypatch, tmp_path):
    fake = tmp_path / "bad-cc"
    fake.write_text("#!/bin/sh\necho 'bad-cc: error: this compiler refuses everything' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("CC", str(fake))
    measured, notes = K.kernel_peaks(["fp32", "int8"], threads=1)
    assert measured == {"fp32": {}, "int8": {}}
    assert all("this compiler refuses everything" in n[0] for n in notes.values())


def test_gemm_peaks_name_each_library():
    found, notes = gemm_peaks("bf16", threads=1, size=128)
    assert set(found) == {"torch"} and notes == []  # numpy and ONNX Runtime have no bf16 matmul here
    assert found["torch"] > 1e8


def test_no_engine_beats_its_floor_on_a_quick_bench():
    """(The exported fp32 and int8 files of tests/bench/test_bench_files.py are held to it too.)"""
    rows = R.bench(SMALL, engines=["torch-eager", "timm-eager"], progress=False,
                   settings=BenchSettings.quick(threads=1, batch=2, rounds=2))
    assert len(rows) == 4 and {r["status"] for r in rows} == {"ok"}
    for r in rows:
        assert 0 < r["floor_fraction"] <= 1, r
        achieved = 2 * r["mult_adds"] * r["batch"] / (r["median_ms"] / 1e3)
        assert achieved <= r["peak_gops"] * 1e9 * 1.001
        assert r["peak_how"].startswith("fp32 ") and " matmul 1024²" in r["peak_how"]
    text = bench_text(rows)
    assert "warning" not in text
    assert text.splitlines()[0].startswith("peaks on 1 thread (FLOP floor = 2 x mult-adds x batch / peak")
    assert text.splitlines()[1] == f"  {rows[0]['peak_how']}" and text.splitlines()[2].startswith("engine ")


def test_an_engine_above_the_peak_is_flagged_not_reported():
    rows = [{"engine": "e", "precision": "fp32", "batch": 1, "peer": False, "median_ms": 1.0, "p10_ms": 1.0,
             "p90_ms": 1.0, "spread_pct": 0.0, "images_per_s": 1e3, "vs_fastest": 1.0, "floor_fraction": 1.2,
             "peak_gops": 1.0, "threads": 1, "status": "ok", "note": None}]
    assert "warning: e ran above the measured peak" in bench_text(rows)


AMX_CHECK = """
import ctypes, json, sys
sys.path.insert(0, sys.argv[1])
from peak_kernels import kernel_peaks

def permitted():  # Linux arch_prctl(ARCH_GET_XCOMP_PERM): the extended CPU state this process may use
    mask = ctypes.c_uint64(0)
    assert ctypes.CDLL(None).syscall(158, 0x1022, ctypes.byref(mask)) == 0  # SYS_arch_prctl, x86-64
    return mask.value

before = permitted()
measured, notes = kernel_peaks(["int8"], threads=1, seconds=0.05)
print(json.dumps({"before": before, "after": permitted(), "kinds": sorted(measured["int8"]), "notes": notes}))
"""


@pytest.mark.skipif(not (HAVE_CC and platform.machine() == "x86_64" and "amx_int8" in FLAGS
                         and platform.system() == "Linux"), reason="needs Linux on an x86-64 CPU with AMX")
def test_the_amx_request_stays_in_the_helpers_process():
    """AMX tile data needs a permission request that lasts the process: the helper, a process of
    its own, asks; a fresh Python that measures the AMX peak has still not asked after."""
    import json
    import subprocess
    import sys

    out = json.loads(subprocess.run([sys.executable, "-c", AMX_CHECK, str(BENCHMARKS)], capture_output=True,
                                    text=True, check=True).stdout)
    assert "int8-amx" in out["kinds"], out["notes"]  # the helper asked for AMX, got it, and ran
    tile_data = 1 << 18  # XFEATURE_XTILEDATA
    assert not out["before"] & tile_data and not out["after"] & tile_data


@pytest.mark.skipif(not (HAVE_CC and X86), reason="needs a C compiler and an x86 CPU")
def test_the_script_puts_the_bench_peak_below_the_kernels(capsys, fresh_peaks):
    """``benchmarks/peak_kernels.py --json``: the kernels and, beside them, the peak the bench's
    "% floor" uses; a matmul (memory, packing) cannot outrun a register-only FMA loop."""
    import json

    assert K.main(["--threads", "1", "--precisions", "fp32", "--seconds", "0.05", "--size", "256", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)["peaks"]["fp32"]
    assert out["kernels_gops"] and out["gemm"]["source"] in ("torch", "numpy", "onnxruntime")
    assert 0 < out["gemm_over_kernel"] < 1.05  # 5 %: the GEMM is rated by the wall clock, the kernel by CPU time


def test_the_script_refuses_bad_arguments_in_one_line(capsys):
    with pytest.raises(SystemExit) as exit_:
        K.main(["--precisions", "fp64"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and "unknown fp64" in err
