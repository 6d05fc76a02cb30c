"""TorchScript export: the folded network traced and frozen (float32 only).

The runner (:mod:`mobilenets.deploy.runtime`) applies ``torch.jit.optimize_for_inference`` when
it loads the file.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from mobilenets.errors import MobileNetsError


def write(net: nn.Module, path: str, resolution: int, calibration: None = None) -> None:
    if calibration is not None:  # also refused by mobilenets.deploy.formats.write
        raise MobileNetsError("int8=True is not offered for torchscript (float32 only)")
    with warnings.catch_warnings():  # the tracer's notices about the traced shapes
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(net, torch.randn(2, 3, resolution, resolution), check_trace=False)
        frozen = torch.jit.freeze(traced.eval())
        frozen.save(path)
