"""The MobileNet family (Howard et al., 2017, arXiv:1704.04861), built from paper Table 1.

The architecture is declared once, in :mod:`mobilenets.models.plan` (torch-free): its
:func:`~mobilenets.models.plan.layer_plan` turns a :class:`~mobilenets.models.config.MobileNetConfig`
into the list of convolutions, and both the network (:class:`MobileNet`) and the analytical cost
model (:mod:`mobilenets.cost.count`) are built from that one list, so the two can never disagree
about the architecture.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from mobilenets.errors import MobileNetsError
from mobilenets.models.config import MobileNetConfig
from mobilenets.models.layers import ConvBNAct
from mobilenets.models.plan import BLOCKS, SHALLOW_REMOVED, STEM_CHANNELS, STEM_STRIDE, ConvSpec, layer_plan


@dataclass(frozen=True)
class FeatureInfo:
    """A point where features can be tapped: the output of the stem or of a block."""

    name: str  # "stem" or "block<i>" with the paper's block number
    stride: int  # input pixels per feature-map pixel
    channels: int


Tap = str | int


def default_pretrained_cfg(cfg: MobileNetConfig) -> dict:
    """What a freshly built model says about its input and classes (our training defaults:
    mean/std 0.5, so the network sees [-1, 1] like the TF/Keras MobileNets; crop 0.875)."""
    from mobilenets.data.preprocess import Preprocessing

    pre = Preprocessing(input_size=(3, cfg.resolution, cfg.resolution))
    return {**pre.to_timm(), "num_classes": cfg.num_classes, "label_names": None,
            "source": {"framework": "mobilenets"}}


def _block(spec: ConvSpec, cfg: MobileNetConfig) -> ConvBNAct:
    return ConvBNAct(spec.in_channels, spec.out_channels, spec.kernel, spec.stride, spec.depthwise, cfg)


class MobileNet(nn.Module):
    """A member of the MobileNet family, described completely by its :class:`MobileNetConfig`.

    Downstream interface (as in timm): :meth:`forward_features` gives the last feature map,
    :meth:`forward_head` pools and classifies it, :meth:`reset_classifier` changes the class
    count, :meth:`forward_taps` returns intermediate feature maps by name or stride, and
    :meth:`blocks_after` the blocks that follow a tap.
    """

    __jit_unused_properties__ = ["num_classes"]  # TorchScript compiles forward() only

    def __init__(self, config: MobileNetConfig | None = None, **overrides) -> None:
        super().__init__()
        cfg = config if config is not None else MobileNetConfig()
        if overrides:
            cfg = cfg.replace(**overrides)
        self.config = cfg
        plan = layer_plan(cfg)
        self.stem = _block(plan[0], cfg)
        blocks = OrderedDict()
        infos = [FeatureInfo("stem", STEM_STRIDE, plan[0].out_channels)]
        stride = STEM_STRIDE
        for spec in plan[1:]:
            key = str(spec.block)
            part = spec.name.rsplit(".", 1)[1]  # "dw", "pw" or "conv"
            blocks.setdefault(key, nn.Sequential())
            blocks[key].add_module(part, _block(spec, cfg))
            stride *= spec.stride
            if part != "dw":
                infos.append(FeatureInfo(f"block{spec.block}", stride, spec.out_channels))
        # Keys are the paper's block numbers, so state-dict names stay stable across variants.
        self.blocks = nn.Sequential(blocks)
        self.feature_info = infos
        self.num_features = plan[-1].out_channels
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(cfg.dropout)
        self.classifier = self._make_classifier(cfg.num_classes)
        # timm-style metadata: the input preprocessing (so timm.data.resolve_data_config(model=m)
        # works), class count and names, and where the weights came from. Loaders and converters
        # replace it with what the weights' source says.
        self.pretrained_cfg = default_pretrained_cfg(cfg)
        self._init_weights()

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    def _make_classifier(self, num_classes: int) -> nn.Module:
        if num_classes == 0:
            return nn.Identity()
        fc = nn.Linear(self.num_features, num_classes)
        nn.init.normal_(fc.weight, 0.0, 0.01)
        nn.init.zeros_(fc.bias)
        return fc

    def _init_weights(self) -> None:
        # He init for convs (as torchvision's MobileNets); TF-slim's truncated normal with σ = 0.09
        # is too large for the 1x1 convs at α > 0.5 without BN warm-up, so it is not used.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier with a freshly initialised one for ``num_classes`` (0: none)."""
        self.config = self.config.replace(num_classes=num_classes)
        self.classifier = self._make_classifier(num_classes)
        self.pretrained_cfg = {**self.pretrained_cfg, "num_classes": num_classes, "label_names": None}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.pool(x), 1)
        if pre_logits:
            return x
        return self.classifier(self.dropout(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    # --- feature taps -------------------------------------------------------------------------

    def resolve_taps(self, taps: Sequence[Tap]) -> list[str]:
        """Names of the taps asked for: a name ("stem", "block11") or an output stride (8, 16, 32),
        which means the last block whose output has that stride."""
        by_name = {f.name: f for f in self.feature_info}
        names = []
        for tap in taps:
            if isinstance(tap, bool) or not isinstance(tap, (str, int)):
                raise MobileNetsError(f"a tap is a name or a stride, got {tap!r}")
            if isinstance(tap, str):
                if tap not in by_name:
                    raise MobileNetsError(
                        f"unknown tap {tap!r}; this model has {', '.join(by_name)}"
                    )
                names.append(tap)
            else:
                matches = [f.name for f in self.feature_info if f.stride == tap]
                if not matches:
                    strides = sorted({f.stride for f in self.feature_info})
                    raise MobileNetsError(f"no feature map at stride {tap}; strides are {strides}")
                names.append(matches[-1])
        return names

    def forward_taps(self, x: torch.Tensor, taps: Sequence[Tap] = (8, 16, 32)) -> list[torch.Tensor]:
        """The feature maps at ``taps`` (names or strides), in the order asked. For SSD use
        ``("block11", "block13")``: the pointwise outputs at strides 16 and 32."""
        wanted = self.resolve_taps(taps)
        found: dict[str, torch.Tensor] = {}
        x = self.stem(x)
        found["stem"] = x
        last = max((self._tap_index(n) for n in wanted), default=0)
        for i, (key, block) in enumerate(self.blocks.named_children(), start=1):
            if i > last:
                break
            x = block(x)
            found[f"block{key}"] = x
        return [found[n] for n in wanted]

    def blocks_after(self, tap: Tap) -> list[nn.Module]:
        """The model's own blocks that run after ``tap`` (a name or a stride), in order: what a
        head that crops the tap's feature map runs next (Faster R-CNN's second stage on
        ``"block11"``: blocks 12 and 13; in the shallow variant too, whose stride-16 tap is
        block 6). Empty after the last block."""
        (name,) = self.resolve_taps([tap])
        return list(self.blocks.children())[self._tap_index(name):]

    def _tap_index(self, name: str) -> int:
        """0 for the stem, i for the i-th block present (= how many blocks run up to the tap)."""
        return [f.name for f in self.feature_info].index(name)


# The plan's names stay importable from here too (``from mobilenets.models.mobilenet import layer_plan``).
__all__ = ["BLOCKS", "SHALLOW_REMOVED", "STEM_CHANNELS", "STEM_STRIDE", "ConvSpec", "FeatureInfo", "MobileNet", "Tap",
           "default_pretrained_cfg", "layer_plan"]
