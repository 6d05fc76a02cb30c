"""mobilenets: the MobileNets family (Howard et al., 2017) for PyTorch, with its exact cost model."""

from .config import MobileNetConfig, scale_channels
from .cost import CostReport, LayerCost, analytical_cost, measure_cost, model_cost, single_layer_rows
from .model import MobileNet, layer_plan
from .registry import create_model, get_config, list_models, model_name

__version__ = "0.1.0"

__all__ = [
    "CostReport",
    "LayerCost",
    "MobileNet",
    "MobileNetConfig",
    "analytical_cost",
    "create_model",
    "get_config",
    "layer_plan",
    "list_models",
    "measure_cost",
    "model_cost",
    "model_name",
    "scale_channels",
    "single_layer_rows",
]
