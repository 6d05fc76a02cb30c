"""The MobileNet family: its config, its layers, the network built from paper Table 1, the
registry of named members, and the feature taps that downstream systems consume."""

from mobilenets.utils.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    ".config": ["MobileNetConfig", "scale_channels", "VARIANTS", "ACTIVATIONS", "PADDINGS", "MIN_RESOLUTION"],
    ".layers": ["ConvBNAct", "Conv2dSame", "tf_same_pad", "same_padding"],
    ".plan": ["BLOCKS", "ConvSpec", "layer_plan"],
    ".mobilenet": ["MobileNet", "FeatureInfo"],
    ".registry": ["create_model", "get_config", "list_models", "model_name", "paper_name", "PAPER_ALPHAS", "PAPER_RESOLUTIONS"],
    ".features": ["MobileNetFeatures", "feature_extractor"],
})
