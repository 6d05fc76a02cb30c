"""Small helpers shared by every concern: JSON dataclasses, lazy exports, safe TensorFlow
imports, the cache folder (``cache.cache_dir``), one set of value checks for configs, and context
managers that put process-wide state back."""
