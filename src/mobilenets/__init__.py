"""mobilenets: the MobileNets family (Howard et al., 2017) for PyTorch, with its exact cost model.

The names below are loaded on first use, so ``import mobilenets`` (and ``mobilenet --help``)
stays fast; see ``README.md`` (Architecture) for where each concern lives.
"""

from mobilenets.utils.lazy import lazy_exports

__version__ = "0.2.0"

_EXPORTS = {
    "mobilenets.errors": ["MobileNetsError"],
    "mobilenets.models": ["MobileNet", "MobileNetConfig", "scale_channels", "layer_plan", "get_config",
                          "list_models", "model_name", "feature_extractor"],
    # create_model with pretrained=...: the registry's builder plus the pretrained weights
    "mobilenets.weights.pretrained.create": ["create_model"],
    "mobilenets.weights.pretrained": ["load_pretrained", "pretrained_path"],
    "mobilenets.cost": ["CostReport", "LayerCost", "analytical_cost", "measure_cost", "model_cost",
                        "single_layer_rows"],
    "mobilenets.weights": ["load_model", "save_model", "from_hf", "from_keras", "from_tf_slim", "from_tf_frozen",
                           "from_tflite", "from_timm", "to_keras", "to_timm", "detect_format"],
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(name for names in _EXPORTS.values() for name in names)
