"""Fixtures shared by the test folders (one folder per package concern)."""

from __future__ import annotations

import pytest
import torch
from torch import nn


def randomize_batchnorm(model: nn.Module, seed: int = 0, *, classifier_std: float | None = None) -> nn.Module:
    """Give every BatchNorm2d of ``model`` non-trivial statistics and affine parameters (in place;
    returns the model in eval mode), so that eval-mode, folding and conversion mistakes show in the
    outputs. ``classifier_std`` re-draws a Linear classifier's weights at that scale (large logits
    make export differences visible)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=gen) * 0.4 - 0.2)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.rand(n, generator=gen) * 0.4 - 0.2)
            elif classifier_std is not None and isinstance(m, nn.Linear):
                m.weight.normal_(0, classifier_std, generator=gen)
    return model.eval()


@pytest.fixture
def randomized_bn():
    """:func:`randomize_batchnorm`, as a fixture (test folders are not importable packages)."""
    return randomize_batchnorm
