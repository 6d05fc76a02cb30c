"""Weights in and out: checkpoints and model folders, and converters from/to other frameworks.

:mod:`.files` (atomic writes, safe reads), :mod:`.folder` (the model folder and the timm-style
``pretrained_cfg``), :mod:`.checkpoint` (loading any checkpoint; the one place to import from),
:mod:`.convert` (one module per framework). The converter is ``mobilenets.weights.convert.convert``:
it is not exported here, where the name would be ambiguous with the ``convert`` subpackage.
"""

from mobilenets.utils.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    ".checkpoint": ["load_model", "save_model", "load_checkpoint", "save_weights", "save_state", "load_state",
                    "atomic_write"],
    ".convert": ["from_hf", "from_keras", "from_tf_slim", "from_tf_frozen", "from_tflite", "from_timm", "to_keras",
                 "to_timm", "timm_model_name", "detect_format"],
})
