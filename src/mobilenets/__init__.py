"""mobilenets: the MobileNets family (Howard et al., 2017) for PyTorch, with its exact cost model."""

from .checkpoint import load_model, save_model
from .config import MobileNetConfig, scale_channels
from .convert import from_hf, from_keras, from_tf_slim, from_timm, to_keras, to_timm
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
    "from_hf",
    "from_keras",
    "from_tf_slim",
    "from_timm",
    "get_config",
    "layer_plan",
    "list_models",
    "load_model",
    "measure_cost",
    "model_cost",
    "model_name",
    "save_model",
    "scale_channels",
    "single_layer_rows",
    "to_keras",
    "to_timm",
]
