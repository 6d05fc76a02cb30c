"""Narrowing a MobileNet: the kept channels are the largest-|gamma| ones, and where the dropped
channels are dead (gamma = beta = 0) the narrow network computes exactly what the wide one does."""

from __future__ import annotations

import pytest
import torch

from mobilenets.errors import MobileNetsError
from mobilenets.models.config import MobileNetConfig
from mobilenets.models.mobilenet import MobileNet, layer_plan
from mobilenets.weights.narrow import channel_choice, narrow, narrow_config

WIDE = MobileNetConfig(alpha=1.0, resolution=32, num_classes=7, activation="relu6", padding="tf_same",
                       bn_momentum=0.0003)


def test_channel_choice_by_hand():
    gamma = torch.tensor([0.1, -3.0, 0.5, 3.0, 0.0])
    assert channel_choice(gamma, 2).tolist() == [1, 3]  # |gamma| ties: both kept; order ascending
    assert channel_choice(gamma, 3).tolist() == [1, 2, 3]
    assert channel_choice(torch.tensor([1.0, 1.0, 1.0]), 2).tolist() == [0, 1]  # ties go to the lower index


def kill_all_but(model: MobileNet, thin: MobileNetConfig, seed: int = 0) -> dict[str, list[int]]:
    """Zero gamma and beta of all but a random ``thin``-sized set of channels in every full and
    pointwise conv (and of the depthwise conv that reads them): those channels output exactly 0."""
    g = torch.Generator().manual_seed(seed)
    modules = dict(model.named_modules())
    live = {}
    prev = None
    for w, t in zip(layer_plan(model.config), layer_plan(thin)):
        bn = modules[w.name].bn
        with torch.no_grad():
            bn.weight.copy_(torch.randn(w.out_channels, generator=g).abs() + 0.5)
            bn.bias.copy_(torch.randn(w.out_channels, generator=g) * 0.1)
            bn.running_mean.copy_(torch.randn(w.out_channels, generator=g) * 0.1)
            bn.running_var.copy_(torch.rand(w.out_channels, generator=g) + 0.5)
        keep = prev if w.depthwise else sorted(torch.randperm(w.out_channels, generator=g)[:t.out_channels].tolist())
        dead = [c for c in range(w.out_channels) if c not in set(keep)]
        with torch.no_grad():
            bn.weight[dead] = 0.0
            bn.bias[dead] = 0.0
        live[w.name] = keep
        prev = keep
    return live


def test_narrow_equals_the_wide_network_when_the_dropped_channels_are_dead():
    torch.manual_seed(0)
    wide = MobileNet(WIDE).eval()
    thin_cfg = narrow_config(wide.config, MobileNetConfig(alpha=0.25, resolution=32, num_classes=7))
    live = kill_all_but(wide, thin_cfg)
    thin = narrow(wide, thin_cfg)
    modules = dict(thin.named_modules())
    for name, keep in live.items():  # the choice found exactly the live channels
        assert modules[name].conv.out_channels == len(keep)
        assert torch.equal(modules[name].bn.weight, dict(wide.named_modules())[name].bn.weight[keep])
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(thin(x), wide(x), rtol=1e-5, atol=1e-5)
    # the source's padding and activation, the student's momentum (not TF's 0.0003)
    assert (thin.config.padding, thin.config.activation, thin.config.bn_momentum) == ("tf_same", "relu6", 0.1)
    assert thin.stem.bn.momentum == 0.1 and sum(p.numel() for p in thin.parameters()) < 0.1 * sum(
        p.numel() for p in wide.parameters())


def test_narrow_refusals_and_a_new_classifier():
    wide = MobileNet(WIDE.replace(alpha=0.5))
    with pytest.raises(MobileNetsError, match="wider than the source"):
        narrow(wide, wide.config.replace(alpha=0.75))
    with pytest.raises(MobileNetsError, match="shallow"):
        narrow(wide, wide.config.replace(alpha=0.25, variant="shallow"))
    other = narrow(wide, wide.config.replace(alpha=0.25, num_classes=3))  # other classes: a fresh classifier
    assert other.classifier.weight.shape == (3, other.num_features)
    same = narrow(wide, wide.config.replace(alpha=0.5))  # as wide: the very same network
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(same(x), wide.eval()(x))
