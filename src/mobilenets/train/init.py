"""Starting a run from existing weights: ``--init`` as every training command understands it.

The weights may be any checkpoint, run folder or converted model folder
(:func:`mobilenets.weights.checkpoint.load_checkpoint`). They fix the architecture (an asked
architecture field that contradicts them is refused before any data is read); resolution and
the non-architecture fields (dropout, BatchNorm momentum) may change; the classifier is kept where
the classes are the same (rows reordered where only their order differs), else a new one is made.
Classification, fine-tuning and geolocation start the whole network from them; detection its
backbone; distillation narrows them to the student's width (:mod:`mobilenets.weights.narrow`).
"""

from __future__ import annotations

import os
from typing import Any

import torch

from mobilenets.errors import MobileNetsError
from mobilenets.models.config import MobileNetConfig
from mobilenets.models.registry import ARCHITECTURE_FIELDS, get_config

# What init weights fix: the architecture, and the BN epsilon their statistics were computed with.
INIT_FIXED_FIELDS = (*ARCHITECTURE_FIELDS, "bn_eps")


def load_init(init: str | os.PathLike):
    """``(model, preprocessing, class names or None)`` of the weights ``init`` names (a checkpoint,
    or ``pretrained:ENTRY`` / ``pretrained:[SOURCE:]MODEL``: :mod:`mobilenets.weights.pretrained`)."""
    from mobilenets.weights.checkpoint import load_checkpoint, pretrained_info

    if isinstance(init, str) and init.startswith("pretrained:"):  # published weights, fetched once and cached
        from mobilenets.weights.pretrained.fetch import pretrained_path

        init = pretrained_path(init)
    model, _ = load_checkpoint(init)
    pre, classes, _ = pretrained_info(model)
    return model, pre, classes


def init_config(base: MobileNetConfig, init: Any, model: str | None, resolution: int | None,
                asked: dict[str, Any]) -> MobileNetConfig:
    """The config of a run that starts from weights of config ``base``: theirs, at ``resolution``
    (or the registry ``model``'s, or theirs) with the non-architecture ``asked`` fields (dropout,
    bn_momentum) applied; an asked architecture field that differs from theirs is refused."""
    if model is not None:
        named = get_config(model)
        asked = {"alpha": named.alpha, "variant": named.variant, **{k: v for k, v in asked.items() if v is not None}}
        resolution = resolution or named.resolution
    differ = [f"{k}={v!r} (they have {getattr(base, k)!r})" for k, v in asked.items()
              if k in INIT_FIXED_FIELDS and v is not None and getattr(base, k) != v]
    if differ:
        raise MobileNetsError(f"the init weights {os.fspath(init)} fix the architecture, and {', '.join(differ)} "
                              f"contradict them; leave those out to use theirs")
    rest = {k: v for k, v in asked.items() if k not in INIT_FIXED_FIELDS and v is not None}
    return base.replace(resolution=resolution or base.resolution, **rest)


def init_weights(model, classes: list[str] | None, data_classes: list[str]) -> tuple[dict[str, torch.Tensor], str]:
    """The state dict a run over ``data_classes`` starts from, and what became of the classifier:
    kept where the classes are the same (rows reordered where only the order differs), else left
    out (a new one)."""
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    n = model.config.num_classes
    if n == len(data_classes) and (classes is None or list(classes) == list(data_classes)):
        return state, f"classifier kept ({n} classes)"
    if n == len(data_classes) and classes is not None and sorted(classes) == sorted(data_classes):
        rows = torch.tensor([list(classes).index(c) for c in data_classes])
        state["classifier.weight"] = state["classifier.weight"][rows]
        state["classifier.bias"] = state["classifier.bias"][rows]
        return state, f"classifier kept ({n} classes, rows put in the data's class order)"
    state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
    return state, f"new classifier: {n} -> {len(data_classes)} classes"


def load_into(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """``model`` with ``state`` loaded; only the classifier may be missing (a new one, initialised
    as in a fresh model)."""
    missing, unexpected = model.load_state_dict(state, strict=False)
    wrong = unexpected + [k for k in missing if not k.startswith("classifier.")]
    if wrong:
        raise MobileNetsError(f"the init weights do not fit the model: {', '.join(wrong[:3])}")
    return model


__all__ = ["INIT_FIXED_FIELDS", "init_config", "init_weights", "load_init", "load_into"]
