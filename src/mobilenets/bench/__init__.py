"""Inference speed across engines and where the time goes (``mobilenet bench`` / ``profile``).

``catalog`` names the engines, ``timing`` times callables interleaved, ``roofline`` measures the
matmul peak, ``engines`` and ``peers`` build our engines and the peers', ``run`` benchmarks one
model or the whole family, ``profiling`` splits a forward pass by layer type, ``report`` prints and
plots. The names below load on first use (nothing heavy is imported with the package).
"""

from mobilenets.utils.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    ".catalog": ["OURS", "PEERS", "ENGINES", "EXPORTED", "PRECISION", "DESCRIPTION", "ALL_MODELS_ENGINES",
                 "QUICK_ENGINES", "PROFILE_ENGINES", "resolve_engines"],
    ".timing": ["BenchSettings", "time_interleaved", "round_order", "percentile"],
    ".roofline": ["matmul_peak"],
    ".engines": ["EngineUnavailable", "BenchContext", "load_model"],
    ".run": ["bench", "bench_all_models", "machine_info", "BUILDERS"],
    ".profiling": ["profile", "profile_eager", "profile_onnxruntime", "GROUPS"],
    ".report": ["bench_text", "speed_goals", "all_models_text", "profile_text", "scaling_fit", "plot_latency"],
})
