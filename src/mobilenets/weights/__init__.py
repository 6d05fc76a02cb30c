"""Weights in and out: checkpoints and model folders, and converters from/to other frameworks."""

from mobilenets.utils.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    ".checkpoint": ["load_model", "save_model", "load_checkpoint", "save_weights", "atomic_write"],
    ".convert": ["from_hf", "from_keras", "from_tf_slim", "from_timm", "to_keras", "to_timm", "convert"],
})
