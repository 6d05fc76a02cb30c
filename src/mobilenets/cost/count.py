"""What a network costs: mult-adds and parameters, per layer, by the paper's conventions.

Two counts that tests hold equal on every MobileNet:

* :func:`analytical_cost` computes the cost of a :class:`MobileNetConfig` from the paper's
  formulas (§3.1-3.4), layer by layer, without building a network (and without importing torch:
  the plan of Table 1 is :mod:`mobilenets.models.plan`);
* :func:`measure_cost` runs a real forward pass of any ``torch.nn.Module`` and counts what its
  convolution, linear and pooling layers did, so it counts torchvision's reference networks too.

Conventions (paper §2 and Table 2, see ``PAPER_FACTS.md`` §2):

* ``mult_adds``: multiply-accumulates of convolutions and fully connected layers, per image.
  BatchNorm, activations, pooling, softmax and biases are not counted.
* ``params``: weights of convolutions and fully connected layers. BatchNorm's γ/β and biases are
  not counted; they are in ``params_total``, which equals ``sum(p.numel() for p in
  model.parameters())``. BatchNorm running statistics are buffers and counted nowhere.
* ``other_ops``: the additions/comparisons of pooling layers, reported apart from mult-adds.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from mobilenets.errors import MobileNetsError, arg
from mobilenets.models.config import MobileNetConfig
from mobilenets.models.plan import layer_plan

if TYPE_CHECKING:
    from torch import nn

# Layer kinds, as in paper Table 2 ("Conv 1x1", "Conv DW 3x3", "Conv 3x3", "Fully Connected").
KIND_LABELS = {
    "conv1x1": "Conv 1x1",
    "dw3x3": "Conv DW 3x3",
    "conv3x3": "Conv 3x3",
    "fc": "Fully Connected",
    "pool": "Pooling",
}


def conv_kind(kernel: tuple[int, int], groups: int, in_channels: int) -> str:
    kh, kw = kernel
    if groups == 1:
        return f"conv{kh}x{kw}"
    if groups == in_channels:
        return f"dw{kh}x{kw}"
    return f"gconv{kh}x{kw}"


# The paper's formulas (§3.1), D_K kernel, M input channels, N output channels, D_F output size.
def standard_conv_cost(k: int, m: int, n: int, hw: int) -> tuple[int, int]:
    """(mult-adds, params) of a standard k x k conv producing an hw x hw x n map."""
    return k * k * m * n * hw * hw, k * k * m * n


def depthwise_conv_cost(k: int, m: int, hw: int) -> tuple[int, int]:
    return k * k * m * hw * hw, k * k * m


def pointwise_conv_cost(m: int, n: int, hw: int) -> tuple[int, int]:
    return m * n * hw * hw, m * n


@dataclass(frozen=True)
class LayerCost:
    name: str  # module path, e.g. "blocks.3.dw"
    kind: str  # "conv3x3", "dw3x3", "conv1x1", "fc", "pool", ...
    in_shape: tuple[int, ...]  # (C, H, W) or (features,)
    out_shape: tuple[int, ...]
    kernel: tuple[int, int] | None  # None for fc and global pools
    stride: int
    mult_adds: int
    params: int  # paper convention: conv / fc weights only
    extra_params: int  # biases and BatchNorm γ/β that belong to this layer
    other_ops: int = 0  # pooling work

    @property
    def label(self) -> str:
        return KIND_LABELS.get(self.kind, self.kind)


@dataclass
class CostReport:
    model: str
    resolution: tuple[int, int]
    layers: list[LayerCost]
    source: str  # "analytical" or "measured"
    config: dict[str, Any] | None = None
    # Parameters not attached to any counted layer (e.g. BatchNorm after a functional op).
    unattached_params: int = 0
    by_type: dict[str, dict[str, float]] = field(init=False)

    def __post_init__(self) -> None:
        self.by_type = self._by_type()

    @property
    def mult_adds(self) -> int:
        return sum(layer.mult_adds for layer in self.layers)

    @property
    def params(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def params_total(self) -> int:
        return self.params + sum(layer.extra_params for layer in self.layers) + self.unattached_params

    @property
    def other_ops(self) -> int:
        return sum(layer.other_ops for layer in self.layers)

    def _by_type(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for layer in self.layers:
            row = out.setdefault(layer.kind, {"mult_adds": 0, "params": 0})
            row["mult_adds"] += layer.mult_adds
            row["params"] += layer.params
        total_ma, total_p = self.mult_adds or 1, self.params or 1
        for row in out.values():
            row["mult_adds_share"] = row["mult_adds"] / total_ma
            row["params_share"] = row["params"] / total_p
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "source": self.source,
            "resolution": list(self.resolution),
            "config": self.config,
            "mult_adds": self.mult_adds,
            "params": self.params,
            "params_total": self.params_total,
            "other_ops": self.other_ops,
            "layers": [asdict(layer) | {"label": layer.label} for layer in self.layers],
            "by_type": self.by_type,
        }


def analytical_cost(cfg: MobileNetConfig, name: str | None = None) -> CostReport:
    """The cost of the network ``cfg`` describes, from the paper's formulas, at ``cfg.resolution``."""
    size = cfg.resolution
    layers: list[LayerCost] = []
    for spec in layer_plan(cfg):
        out = math.ceil(size / spec.stride)  # symmetric and TF-SAME padding agree on this
        if spec.depthwise:
            ma, p = depthwise_conv_cost(spec.kernel, spec.in_channels, out)
        elif spec.kernel == 1:
            ma, p = pointwise_conv_cost(spec.in_channels, spec.out_channels, out)
        else:
            ma, p = standard_conv_cost(spec.kernel, spec.in_channels, spec.out_channels, out)
        layers.append(
            LayerCost(
                name=f"{spec.name}.conv",  # the Conv2d's path inside the ConvBNAct module
                kind=conv_kind((spec.kernel, spec.kernel), spec.in_channels if spec.depthwise else 1, spec.in_channels),
                in_shape=(spec.in_channels, size, size),
                out_shape=(spec.out_channels, out, out),
                kernel=(spec.kernel, spec.kernel),
                stride=spec.stride,
                mult_adds=ma,
                params=p,
                extra_params=2 * spec.out_channels,  # BatchNorm γ and β
            )
        )
        size = out
    channels = layers[-1].out_shape[0]
    layers.append(
        LayerCost("pool", "pool", (channels, size, size), (channels, 1, 1), None, 1, 0, 0, 0,
                  other_ops=channels * size * size)
    )
    if cfg.num_classes:
        layers.append(
            LayerCost("classifier", "fc", (channels,), (cfg.num_classes,), None, 1,
                      channels * cfg.num_classes, channels * cfg.num_classes, cfg.num_classes)
        )
    return CostReport(
        model=name or describe(cfg),
        resolution=(cfg.resolution, cfg.resolution),
        layers=layers,
        source="analytical",
        config=cfg.to_dict(),
    )


def describe(cfg: MobileNetConfig) -> str:
    prefix = {"separable": "", "conv": "conv ", "shallow": "shallow "}[cfg.variant]
    return f"{prefix}MobileNet alpha={cfg.alpha:g} resolution={cfg.resolution}"


def _own_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters(recurse=False))


def measure_cost(
    model: nn.Module,
    input_size: tuple[int, int, int] = (3, 224, 224),
    name: str | None = None,
) -> CostReport:
    """Count a real forward pass of ``model`` on one image of ``input_size`` (C, H, W).

    Hooks on every ``Conv2d``, ``Linear`` and pooling module record what each call did, so a
    module called twice is counted twice. Weights are counted once per module. Parameters of
    other modules (BatchNorm, ...) are attributed to the conv/linear layer that ran just before
    them, or else reported as unattached, so that ``params_total`` always equals the model's.
    """
    import torch
    from torch import nn

    pools = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.AvgPool2d, nn.MaxPool2d)
    records: list[dict[str, Any]] = []
    weights_seen: set[int] = set()
    names = {m: n for n, m in model.named_modules()}

    def hook(module: nn.Module, inputs: tuple, output: Any) -> None:
        x = inputs[0]
        mname = names[module]
        first_call = id(module) not in weights_seen
        weights_seen.add(id(module))
        if isinstance(module, nn.Conv2d):
            out_c, out_h, out_w = output.shape[1:]
            kh, kw = module.kernel_size
            per_out = (module.in_channels // module.groups) * kh * kw
            records.append(dict(
                name=mname,
                kind=conv_kind((kh, kw), module.groups, module.in_channels),
                in_shape=tuple(x.shape[1:]), out_shape=tuple(output.shape[1:]),
                kernel=(kh, kw), stride=module.stride[0],
                mult_adds=out_c * out_h * out_w * per_out,
                params=module.weight.numel() if first_call else 0,
                extra_params=(_own_params(module) - module.weight.numel()) if first_call else 0,
            ))
        elif isinstance(module, nn.Linear):
            rows = output.numel() // output.shape[0] // module.out_features
            records.append(dict(
                name=mname, kind="fc", in_shape=tuple(x.shape[1:]), out_shape=tuple(output.shape[1:]),
                kernel=None, stride=1,
                mult_adds=rows * module.in_features * module.out_features,
                params=module.weight.numel() if first_call else 0,
                extra_params=(_own_params(module) - module.weight.numel()) if first_call else 0,
            ))
        else:  # pooling: each output element reads a window of inputs
            window = (x[0].numel() // x.shape[1]) // max(output[0].numel() // output.shape[1], 1)
            if isinstance(module, (nn.AvgPool2d, nn.MaxPool2d)):
                k = module.kernel_size
                window = k * k if isinstance(k, int) else k[0] * k[1]
            stride = module.stride if isinstance(module, (nn.AvgPool2d, nn.MaxPool2d)) else 1
            records.append(dict(
                name=mname, kind="pool", in_shape=tuple(x.shape[1:]), out_shape=tuple(output.shape[1:]),
                kernel=None, stride=stride if isinstance(stride, int) else stride[0],
                mult_adds=0, params=0, extra_params=0, other_ops=output[0].numel() * window,
            ))

    # Which other parameterised modules follow which counted layer (BatchNorm after its conv).
    handles = []
    owners: dict[int, int] = {}  # id(other module) -> index of the record before it
    other_seen: set[int] = set()

    def other_hook(module: nn.Module, inputs: tuple, output: Any) -> None:
        if id(module) not in other_seen and records:
            owners[id(module)] = len(records) - 1
        other_seen.add(id(module))

    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear) + pools):
            handles.append(module.register_forward_hook(hook))
        elif _own_params(module):
            handles.append(module.register_forward_hook(other_hook))

    was_training = model.training
    model.eval()
    try:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        with torch.no_grad():
            model(torch.zeros((1, *input_size), device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)

    unattached = 0
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear) + pools) or not _own_params(module):
            continue
        if id(module) in owners:
            records[owners[id(module)]]["extra_params"] += _own_params(module)
        else:
            unattached += _own_params(module)
    # Counted layers that never ran (e.g. an aux head in eval mode) still hold parameters.
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)) and id(module) not in weights_seen:
            unattached += _own_params(module)

    layers = [LayerCost(**r) for r in records]
    return CostReport(
        model=name or type(model).__name__,
        resolution=tuple(input_size[1:]),
        layers=layers,
        source="measured",
        config=model.config.to_dict() if isinstance(getattr(model, "config", None), MobileNetConfig) else None,
        unattached_params=unattached,
    )


# --- paper Table 3: one 14x14 layer, M = N = 512, 3x3 ---------------------------------------------

def single_layer_rows() -> list[dict[str, Any]]:
    """Paper Table 3: the cost of one layer as each idea of the paper is applied in turn."""
    m = n = 512
    a = 0.75
    rows = []
    ma, p = standard_conv_cost(3, m, n, 14)
    rows.append(dict(layer="Convolution", mult_adds=ma, params=p))
    dw, pw = depthwise_conv_cost(3, m, 14), pointwise_conv_cost(m, n, 14)
    rows.append(dict(layer="Depthwise Separable Conv", mult_adds=dw[0] + pw[0], params=dw[1] + pw[1]))
    ma_, na_ = int(m * a), int(n * a)
    dw, pw = depthwise_conv_cost(3, ma_, 14), pointwise_conv_cost(ma_, na_, 14)
    rows.append(dict(layer="alpha = 0.75", mult_adds=dw[0] + pw[0], params=dw[1] + pw[1]))
    hw = round(14 * 0.714)  # rho = 0.714 (160 / 224) turns 14x14 into 10x10
    dw, pw = depthwise_conv_cost(3, ma_, hw), pointwise_conv_cost(ma_, na_, hw)
    rows.append(dict(layer="rho = 0.714", mult_adds=dw[0] + pw[0], params=dw[1] + pw[1]))
    return rows


# --- one entry point for "what does this model cost?" ------------------------------------------

TORCHVISION_PREFIX = "torchvision:"


def build_torchvision(name: str) -> tuple[nn.Module, int]:
    """A torchvision reference network (random weights) and its usual input size."""
    import torchvision

    arch = name[len(TORCHVISION_PREFIX):] if name.startswith(TORCHVISION_PREFIX) else name
    if arch not in torchvision.models.list_models(module=torchvision.models):
        raise MobileNetsError(f"unknown torchvision model {arch!r}")
    kwargs: dict[str, Any] = {"weights": None}
    if arch in ("googlenet", "inception_v3"):
        kwargs["init_weights"] = False  # scipy-free, faster; weights do not change the count
    model = torchvision.models.get_model(arch, **kwargs)
    return model, 299 if arch == "inception_v3" else 224


def model_cost(
    model: str | None = None,
    *,
    alpha: float | None = None,
    resolution: int | None = None,
    variant: str = "separable",
    num_classes: int = 1000,
    measure: bool = False,
) -> CostReport:
    """The cost report behind ``mobilenet cost``.

    ``model`` is a registry name or ``"torchvision:NAME"``; without it, ``alpha``/``resolution``/
    ``variant`` describe a MobileNet. MobileNets are counted analytically unless ``measure``;
    torchvision networks are always measured on a real forward pass.
    """
    from mobilenets.models.registry import create_model, get_config

    if model is not None and model.startswith(TORCHVISION_PREFIX):
        net, default_res = build_torchvision(model)
        if num_classes != 1000 and hasattr(net, "fc"):
            raise MobileNetsError(f"{arg('num_classes', num_classes)}: only MobileNets can be counted with another class count")
        res = resolution or default_res
        if res < 32:
            raise MobileNetsError(f"resolution must be >= 32 px, got {res}")
        return measure_cost(net, (3, res, res), name=model)
    overrides: dict[str, Any] = {"num_classes": num_classes}
    if model is not None:
        if alpha is not None:
            overrides["alpha"] = alpha
        if resolution is not None:
            overrides["resolution"] = resolution
        if variant != "separable":
            overrides["variant"] = variant
        cfg = get_config(model, **overrides)
        changed = {k: v for k, v in overrides.items() if k != "num_classes"}
        name = model + "".join(f" {k}={v}" for k, v in changed.items())
    else:
        cfg = MobileNetConfig(
            alpha=1.0 if alpha is None else alpha,
            resolution=224 if resolution is None else resolution,
            variant=variant,
            num_classes=num_classes,
        )
        name = describe(cfg)
    if measure:
        net = create_model(cfg)
        return measure_cost(net, (3, cfg.resolution, cfg.resolution), name=name)
    return analytical_cost(cfg, name=name)
