"""A narrower MobileNet from a wider one's weights: :func:`narrow` keeps, in every full and pointwise
conv, the output channels whose BatchNorm scale ``|gamma|`` is largest (the channel-importance
criterion of network slimming, Liu et al., 2017), and carries that choice through the following
depthwise conv, BatchNorm and the next conv's input channels, down to the classifier's columns.

A distillation student starts from its teacher this way (as DistilBERT starts from its teacher's
layers): ``mobilenet distill --init TEACHER --alpha 0.25``. The narrowed network is not accurate by
itself (three quarters of every layer are gone); it is a starting point that already holds the
teacher's filters. Torch-Pruning (``torch-pruning`` on PyPI) does the same network-slimming BN-|γ|
pruning through its dependency graph, depthwise convs included; it is not worth a dependency for
what is here a few index selections over :func:`~mobilenets.models.plan.layer_plan`, the one
description of the architecture (torch.nn.utils.prune only masks weights in place).
"""

from __future__ import annotations

import torch

from mobilenets.errors import MobileNetsError
from mobilenets.models.config import MobileNetConfig
from mobilenets.models.mobilenet import MobileNet, layer_plan

BN_KEYS = ("weight", "bias", "running_mean", "running_var")


def channel_choice(gamma: torch.Tensor, keep: int) -> torch.Tensor:
    """Indices (ascending) of the ``keep`` channels with the largest ``|gamma|``; ties go to the
    lower index, so the choice is deterministic."""
    order = torch.argsort(-gamma.detach().abs(), stable=True)  # stable: equal |gamma| keep index order
    return order[:keep].sort().values


def check_narrowing(source: MobileNetConfig, config: MobileNetConfig) -> None:
    """Refuse (:class:`MobileNetsError`) a ``config`` that :func:`narrow` cannot make from ``source``."""
    if config.variant != source.variant:
        raise MobileNetsError(f"cannot narrow a {source.variant!r} MobileNet into a {config.variant!r} one")
    grown = [t.name for w, t in zip(layer_plan(source), layer_plan(config)) if t.out_channels > w.out_channels]
    if grown:
        raise MobileNetsError(f"alpha {config.alpha:g} is wider than the source's {source.alpha:g} "
                              f"(at {grown[0]}): narrowing only removes channels")


def narrow(model: MobileNet, config: MobileNetConfig) -> MobileNet:
    """A :class:`MobileNet` of ``config`` (narrower or as wide as ``model``, the same variant and
    layer count) whose weights are ``model``'s most important channels, in eval mode. Fields that
    do not shape a weight (resolution, BN momentum, dropout) are ``config``'s; the classifier is
    kept when the class counts agree and left freshly initialised otherwise."""
    src = model.config
    check_narrowing(src, config)
    wide, thin = layer_plan(src), layer_plan(config)
    state = model.state_dict()
    out = MobileNet(config)
    new = out.state_dict()
    kept_in = torch.arange(3)
    for w, t in zip(wide, thin):
        kept = kept_in if w.depthwise else channel_choice(state[f"{w.name}.bn.weight"], t.out_channels)
        weight = state[f"{w.name}.conv.weight"][kept]
        new[f"{t.name}.conv.weight"] = weight if w.depthwise else weight[:, kept_in]
        for key in BN_KEYS:
            new[f"{t.name}.bn.{key}"] = state[f"{w.name}.bn.{key}"][kept]
        kept_in = kept
    if config.num_classes and config.num_classes == src.num_classes:
        new["classifier.weight"] = state["classifier.weight"][:, kept_in]
        new["classifier.bias"] = state["classifier.bias"]
    out.load_state_dict({k: v.clone() for k, v in new.items()})
    return out.eval()


def narrow_config(source: MobileNetConfig, student: MobileNetConfig) -> MobileNetConfig:
    """The config a student of ``student``'s width, resolution and training settings has when it
    starts from weights of ``source``: the source's padding, activation and BN epsilon (what its
    filters were trained with), the student's alpha, variant, resolution, classes, dropout and BN
    momentum (a converted TF model's momentum, 0.0003, would freeze the student's running statistics)."""
    return source.replace(alpha=student.alpha, variant=student.variant, resolution=student.resolution,
                          num_classes=student.num_classes, dropout=student.dropout, bn_momentum=student.bn_momentum,
                          min_channels=student.min_channels, channel_divisor=student.channel_divisor)


__all__ = ["channel_choice", "check_narrowing", "narrow", "narrow_config"]
