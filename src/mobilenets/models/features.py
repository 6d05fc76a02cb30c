"""Feature taps for downstream systems: the backbone as torchvision's detection models want it.

:class:`MobileNetFeatures` runs a MobileNet's stem and blocks up to the deepest tap asked for and
returns an ``OrderedDict[str, Tensor]`` of the named feature maps, with ``out_channels``: the
contract of ``torchvision.models.detection`` (``FasterRCNN`` reads ``backbone.out_channels``,
``SSD`` takes a backbone that returns an ``OrderedDict``, ``BackboneWithFPN`` takes the channel
list). Taps are names (``"stem"``, ``"block1"`` ... ``"block13"``: the outputs of the blocks'
pointwise convs) or output strides (2, 4, 8, 16, 32: the last block with that stride).

The modules are the model's own, not copies: training the extractor trains the model, and a
checkpoint of the model initialises the extractor. What runs after a tap is
``model.blocks_after(tap)`` (:meth:`~mobilenets.models.mobilenet.MobileNet.blocks_after`: the
model's remaining blocks, e.g. Faster R-CNN's second stage), so no head parses block names. ``torchvision.models.feature_extraction.
create_feature_extractor`` also works on a :class:`~mobilenets.models.mobilenet.MobileNet`
(it traces with ``torch.fx``); its node names are module paths such as ``"blocks.11"``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from mobilenets.errors import MobileNetsError
from mobilenets.models.mobilenet import MobileNet, Tap


class MobileNetFeatures(nn.Module):
    """The feature maps of ``model`` at ``taps``, as an ``OrderedDict`` keyed by tap name.

    ``out_channels`` is an ``int`` for a single tap (so the extractor can be given to
    ``FasterRCNN`` as it is) and the list of channels, in tap order, for several;
    ``channels`` always maps tap name -> channels, ``strides`` tap name -> output stride."""

    def __init__(self, model: MobileNet, taps: Sequence[Tap] = ("block11", "block13")) -> None:
        super().__init__()
        if not isinstance(model, MobileNet):
            raise TypeError(f"expected a mobilenets.MobileNet, got {type(model).__name__}")
        names = model.resolve_taps(taps)
        if len(set(names)) != len(names):
            raise MobileNetsError(f"taps {list(taps)} name the same feature map twice ({names})")
        order = [f.name for f in model.feature_info]
        self.taps = sorted(names, key=order.index)  # feature maps come out shallow to deep
        info = {f.name: f for f in model.feature_info}
        self.channels = OrderedDict((n, info[n].channels) for n in self.taps)
        self.strides = OrderedDict((n, info[n].stride) for n in self.taps)
        self.out_channels: int | list[int] = (next(iter(self.channels.values())) if len(self.taps) == 1
                                              else list(self.channels.values()))
        self.stem = model.stem
        deepest = order.index(self.taps[-1])  # 0 = stem, i = the i-th block present
        self.blocks = nn.ModuleDict((f"block{key}", block) for key, block in
                                    list(model.blocks.named_children())[:deepest])

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        out: OrderedDict[str, torch.Tensor] = OrderedDict()
        x = self.stem(x)
        if "stem" in self.channels:
            out["stem"] = x
        for name, block in self.blocks.items():
            x = block(x)
            if name in self.channels:
                out[name] = x
        return out


def feature_extractor(model: MobileNet, taps: Sequence[Tap] = ("block11", "block13")) -> MobileNetFeatures:
    """``MobileNetFeatures(model, taps)``: e.g. ``(8, 16, 32)`` for an FPN, ``("block11",
    "block13")`` for SSD, ``("block11",)`` for Faster R-CNN's first stage."""
    return MobileNetFeatures(model, taps)
