"""``mobilenets.create_model(name, pretrained=...)``: the registry's builder, with pretrained
weights in one line, as ``timm.create_model(name, pretrained=True)``."""

from __future__ import annotations

from typing import Any

from mobilenets.errors import MobileNetsError


def create_model(name: Any, pretrained: bool | str = False, **overrides: Any):
    """Build a registered model by name (or from a config), e.g.
    ``create_model("mobilenet_v1_0.5_160", num_classes=10)``; with ``pretrained`` its published
    ImageNet weights, fetched once and cached (``docs/weights.md``):

    * ``pretrained=True``: the best available for that α and resolution (the highest published
      top-1 among the sources that publish it; tf-slim first on a tie);
    * ``pretrained="tf-slim" | "keras" | "timm" | "hf"``: that publisher's weights.

    ``name`` may also be an entry of ``mobilenet weights list`` (``"keras:mobilenet_1_0_224_tf"``).
    Pretrained weights fix the architecture (the publisher's padding, activation, channel rule),
    so the only override taken with them is ``num_classes``: a new classifier of that size."""
    from mobilenets.models.registry import create_model as build

    if pretrained is False or pretrained is None:
        return build(name, **overrides)
    if not isinstance(name, str):
        raise MobileNetsError("pretrained weights are named by a model name (e.g. mobilenet_v1_0.5_160), not a config")
    other = sorted(set(overrides) - {"num_classes"})
    if other:
        raise MobileNetsError(f"pretrained weights fix the architecture; {', '.join(other)} cannot be changed "
                              f"(only num_classes: a new classifier)")
    from mobilenets.weights.pretrained.fetch import load_pretrained

    model = load_pretrained(name, pretrained)
    classes = overrides.get("num_classes")
    if classes is not None and classes != model.config.num_classes:
        model.reset_classifier(classes)
    return model


__all__ = ["create_model"]
