"""Inference speed across engines and where the time goes (``mobilenet bench`` / ``profile``).

``catalog`` names the engines, ``timing`` times callables interleaved, ``roofline`` measures the
peak the FLOP floor uses (GEMM libraries; ``benchmarks/peak_kernels.py`` measures the register-only
peak for comparison), ``engines`` and ``peers`` build our engines and the peers', ``exported`` opens
an exported file to time, ``run`` benchmarks one model or the whole family, ``profiling`` splits
a forward pass by layer type, ``report`` prints and plots. The names below load on first use
(nothing heavy is imported with the package).
"""

from mobilenets.utils.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    ".catalog": ["OURS", "PEERS", "ENGINES", "EXPORTED", "PRECISION", "DESCRIPTION", "ALL_MODELS_ENGINES",
                 "QUICK_ENGINES", "PROFILE_ENGINES", "resolve_engines"],
    ".timing": ["BenchSettings", "time_interleaved", "round_order", "percentile"],
    ".roofline": ["matmul_peak", "hardware_peaks", "gemm_peaks", "Peak", "forget_peaks"],
    ".engines": ["EngineUnavailable", "BenchContext", "load_model"],
    ".exported": ["ExportedFile", "open_exported", "exported_format"],
    ".run": ["bench", "bench_all_models", "machine_info", "BUILDERS"],
    ".profiling": ["profile", "profile_eager", "profile_onnxruntime", "GROUPS"],
    ".report": ["bench_text", "speed_goals", "all_models_text", "profile_text", "scaling_fit", "plot_latency"],
})
