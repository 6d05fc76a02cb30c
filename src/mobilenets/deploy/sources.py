"""What an export starts from: a model, a checkpoint or a config, with what is known about it.

:func:`resolve_source` turns any of them into a :class:`Source`: the eval-mode model, its
preprocessing (:class:`~mobilenets.data.preprocess.Preprocessing`), its class names, the data it
was trained on and whether its weights are trained at all (random weights are useful for speed
measurements only).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mobilenets.data.datasets import DIGITS_SOURCE
from mobilenets.data.preprocess import Preprocessing
from mobilenets.errors import DataNotFoundError, MobileNetsError
from mobilenets.models.config import MobileNetConfig
from mobilenets.models.mobilenet import MobileNet

DIGITS = DIGITS_SOURCE  # "digits": Source.data of a model trained on the built-in digits


def recorded_data(meta: Mapping[str, Any]) -> str | None:
    """The training data a checkpoint's metadata records: a training run's ``data`` (None there
    means the built-in digits: :data:`DIGITS`), made absolute where it exists from here; None
    for metadata that records no data (a converted model folder's)."""
    if "data" not in meta:  # a training run's metadata always has the key (None for the digits)
        return None
    data = meta["data"]
    if data is None:
        return DIGITS
    return os.path.abspath(data) if os.path.exists(data) else str(data)


@dataclass
class Source:
    """The model to export and what is known about it."""

    model: MobileNet
    description: str  # "checkpoint PATH", "registry model NAME (untrained weights)", "model object"
    preprocessing: Preprocessing
    classes: list[str] | None
    # The data it was trained on: an image folder's path, DIGITS for the built-in digits, or None
    # where nothing is recorded (a converted model, a model object, random weights).
    data: str | None
    trained: bool


def _from_model(model: MobileNet) -> Source:
    # A loaded or converted model carries its preprocessing and class names in a timm-style
    # pretrained_cfg: flat timm keys and "label_names" (older: nested "preprocessing", "classes").
    carried = dict(getattr(model, "pretrained_cfg", None) or {})
    pre = Preprocessing.from_dict(carried.get("preprocessing") or carried).at(model.config.resolution)
    classes = carried.get("label_names") or carried.get("classes")
    return Source(model.eval(), "model object", pre, list(classes) if classes else None, None, True)


def _from_config(config: MobileNetConfig) -> Source:
    from mobilenets.models.registry import get_config, list_models, model_name

    name = model_name(config.alpha, config.resolution, config.variant)
    if name in list_models() and get_config(name) == config:
        what = f"registry model {name}"
    else:
        shown = [f"{config.num_classes} classes"] + [config.activation] * (config.activation != "relu") \
            + [f"{config.padding} padding"] * (config.padding != "symmetric")
        what = f"model {name} ({', '.join(shown)})"
    pre = Preprocessing().at(config.resolution)
    return Source(MobileNet(config).eval(), f"{what} (untrained weights)", pre, None, None, False)


def _from_checkpoint(path: str) -> Source:
    from mobilenets.weights.checkpoint import load_checkpoint

    model, meta = load_checkpoint(path)
    # A run's metadata has mean/std/eval_crop at its top level; a model folder's, "preprocessing".
    pre = Preprocessing.from_dict(meta.get("preprocessing") or meta).at(model.config.resolution)
    return Source(model.eval(), f"checkpoint {path}", pre, meta.get("classes"), recorded_data(meta), True)


def resolve_source(model_or_checkpoint: Any, expect_model: str | Mapping[str, Any] | None = None) -> Source:
    """A :class:`Source` from a MobileNet, a :class:`MobileNetConfig` or a registry name (random
    weights), or a checkpoint path (file or run/model folder).

    ``expect_model`` is the architecture the model must have: a registry name (its
    :data:`~mobilenets.models.registry.ARCHITECTURE_FIELDS` are compared) or a mapping of config fields to values. A model of
    another architecture is refused with a :class:`~mobilenets.errors.MobileNetsError`."""
    from mobilenets.models.registry import config_differences, expected_fields, get_config, list_models

    if isinstance(model_or_checkpoint, MobileNet):
        src = _from_model(model_or_checkpoint)
    elif isinstance(model_or_checkpoint, MobileNetConfig):
        src = _from_config(model_or_checkpoint)
    elif isinstance(model_or_checkpoint, (str, os.PathLike)):
        text = os.fspath(model_or_checkpoint)
        if text in list_models() and not os.path.exists(text):
            src = _from_config(get_config(text))
        elif not os.path.exists(text):
            raise DataNotFoundError(f"{text} is neither a registry model (see `mobilenet models`) "
                                    f"nor an existing checkpoint")
        else:
            src = _from_checkpoint(text)
    else:
        raise TypeError(f"expected a MobileNet, a MobileNetConfig, a checkpoint path or a registry name, "
                        f"got {type(model_or_checkpoint).__name__}")
    if expect_model is not None:
        named = isinstance(expect_model, str)
        expected = expected_fields(expect_model) if named else expected_fields(**expect_model)
        diff = config_differences(src.model.config, expected)
        if diff:
            label = expect_model if named else "the expected model"
            raise MobileNetsError(f"{src.description} is a different architecture from {label}: {', '.join(diff)}")
    return src
