"""What a network costs (mult-adds, parameters) by the paper's conventions, and its text reports."""

from mobilenets.utils.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    ".count": ["CostReport", "LayerCost", "analytical_cost", "measure_cost", "model_cost", "single_layer_rows",
               "describe", "build_torchvision", "TORCHVISION_PREFIX", "KIND_LABELS"],
    ".report": ["cost_text", "models_rows", "models_text", "format_table"],
})
