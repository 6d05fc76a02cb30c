"""Named members of the MobileNet family: the paper's 16 models and its two baselines.

Torch-free (the network is imported by :func:`create_model` only), so naming and counting a
model (``mobilenet cost``, ``pick``) does not load torch.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any

from mobilenets.errors import MobileNetsError
from mobilenets.models.config import MobileNetConfig

if TYPE_CHECKING:
    from mobilenets.models.mobilenet import MobileNet

PAPER_ALPHAS = (1.0, 0.75, 0.5, 0.25)
PAPER_RESOLUTIONS = (224, 192, 160, 128)


def width_text(alpha: float) -> str:
    """The width multiplier as the paper and TF-slim print it: ``1.0``, ``0.75``, ``2.0``."""
    return f"{alpha:g}" if "." in f"{alpha:g}" else f"{alpha:g}.0"


def model_name(alpha: float, resolution: int, variant: str = "separable") -> str:
    """TF-slim's naming: ``mobilenet_v1_<alpha>_<resolution>``, with the variant after ``v1``."""
    kind = "" if variant == "separable" else f"{variant}_"
    return f"mobilenet_v1_{kind}{width_text(alpha)}_{resolution}"


def paper_name(alpha: float, resolution: int) -> str:
    """The paper's naming in its tables: ``1.0 MobileNet-224``, ``0.75 MobileNet-160``."""
    return f"{width_text(alpha)} MobileNet-{resolution}"


def _build_registry() -> dict[str, MobileNetConfig]:
    reg = {}
    for alpha in PAPER_ALPHAS:
        for res in PAPER_RESOLUTIONS:
            reg[model_name(alpha, res)] = MobileNetConfig(alpha=alpha, resolution=res)
    # The baselines of paper Tables 4 and 5, both at alpha = 1, 224 px.
    for variant in ("conv", "shallow"):
        reg[model_name(1.0, 224, variant)] = MobileNetConfig(variant=variant)
    return reg


_REGISTRY = _build_registry()


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names, optionally only those containing ``pattern``."""
    return [n for n in _REGISTRY if pattern is None or pattern in n]


def get_config(name: str, **overrides: Any) -> MobileNetConfig:
    """The config of a registered model, with ``overrides`` applied (and validated)."""
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else "; see `mobilenet models`"
        raise MobileNetsError(f"unknown model {name!r}{hint}")
    cfg = _REGISTRY[name]
    return cfg.replace(**overrides) if overrides else cfg


def create_model(name: str | MobileNetConfig, **overrides: Any) -> MobileNet:
    """Build a registered model by name (or from a config), e.g.
    ``create_model("mobilenet_v1_0.5_160", num_classes=10, activation="relu6")``."""
    from mobilenets.models.mobilenet import MobileNet

    if isinstance(name, MobileNetConfig):
        cfg = name.replace(**overrides) if overrides else name
    else:
        cfg = get_config(name, **overrides)
    return MobileNet(cfg)


def resolve_config(model: str | MobileNetConfig | None = None, *, alpha: float | None = None,
                   resolution: int | None = None, variant: str | None = None, num_classes: int | None = None,
                   default: str | MobileNetConfig = "mobilenet_v1_1.0_224", **overrides: Any) -> MobileNetConfig:
    """The config a command's model arguments name: a registry ``model`` (or config) with
    ``alpha``/``resolution``/``variant``/``num_classes`` applied over it, or, without ``model``,
    those over ``default``. ``None`` means "keep". Every value is validated."""
    base = model if model is not None else default
    cfg = base if isinstance(base, MobileNetConfig) else get_config(base)
    changes = {k: v for k, v in dict(alpha=alpha, resolution=resolution, variant=variant,
                                     num_classes=num_classes, **overrides).items() if v is not None}
    return cfg.replace(**changes) if changes else cfg


# The config fields that make two networks different architectures (resolution and classes do
# not: the same weights run at any input size, and a checkpoint's classifier is what it is).
ARCHITECTURE_FIELDS = ("alpha", "variant", "activation", "padding", "min_channels", "channel_divisor")


def expected_fields(model: str | None = None, **fields: Any) -> dict[str, Any]:
    """What a model named by a command's flags must have: the :data:`ARCHITECTURE_FIELDS` of the
    registry ``model`` (if given), then each of ``fields`` that is not None, e.g. ``alpha=0.5``."""
    expected = {}
    if model is not None:
        named = get_config(model)
        expected = {f: getattr(named, f) for f in ARCHITECTURE_FIELDS}
    unknown = sorted(set(fields) - set(MobileNetConfig.__dataclass_fields__))
    if unknown:
        raise MobileNetsError(f"unknown config field(s): {', '.join(unknown)}")
    return {**expected, **{k: v for k, v in fields.items() if v is not None}}


def config_differences(config: MobileNetConfig, expected: dict[str, Any]) -> list[str]:
    """``"field have (expected want)"`` for each field of ``expected`` that ``config`` differs in."""
    return [f"{f} {getattr(config, f)!r} (expected {want!r})" for f, want in expected.items()
            if getattr(config, f) != want]
