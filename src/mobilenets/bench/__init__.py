"""Inference speed across engines and where the time goes (``mobilenet bench`` / ``profile``)."""

from mobilenets.utils.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    ".engines": ["BenchSettings", "time_interleaved", "bench", "bench_all_models", "profile"],
})
