"""Training recipes: the paper's TF-style RMSprop recipe and a modern one, as frozen, validated,
JSON-serialisable :class:`Recipe` objects, plus the builders a training loop needs (optimizer with
the right weight-decay groups, a per-iteration LR schedule, weight EMA).

Two presets (:data:`PRESETS`):

``paper``
    What the MobileNet paper says it did ("RMSprop ... similar to Inception V3", less
    regularization and augmentation than for large models, no label smoothing, a smaller range of
    random-crop sizes, little or no weight decay on the depthwise filters), with the numbers the
    paper leaves out filled in from the TensorFlow references (see the comments on the preset).

``modern``
    SGD + Nesterov, linear warm-up then cosine, label smoothing, RandAugment and weight EMA: the
    "bag of tricks" recipe that trains small CNNs well today (see the comments on the preset).

The TF RMSprop trap. TensorFlow 1's ``tf.train.RMSPropOptimizer`` (the one Inception V3 and the
MobileNet paper used) does, per step::

    ms  <- decay * ms + (1 - decay) * g**2          # ms initialised to 1.0, not 0
    mom <- momentum * mom + lr * g / sqrt(ms + eps) # eps INSIDE the sqrt; lr inside the momentum
    p   <- p - mom

``torch.optim.RMSprop`` instead starts ``ms`` at 0, divides by ``sqrt(ms) + eps`` and multiplies
by ``lr`` outside the momentum buffer. With TF's eps = 1.0 the two behave very differently (ports
that used torch's RMSprop with eps 1.0 reported it "does not seem to work"). We use timm's
:class:`timm.optim.RMSpropTF`, which (read from timm 1.0.x's source, and checked against the rule
above in ``tests/test_recipes.py``) initialises ``square_avg`` to ones, adds eps inside the
square root, updates ``square_avg += (g**2 - square_avg) * (1 - alpha)`` (TF's order of ops), and,
with ``lr_in_momentum=True`` (its default, set explicitly here), accumulates ``lr * g / sqrt(.)``
in the momentum buffer and subtracts the buffer, so an LR change only affects new contributions,
as in TF. Its ``weight_decay`` with ``decoupled_decay=False`` is coupled L2 (``g + wd * p``),
which is what TF-slim's ``l2_regularizer(wd)`` (loss ``wd * sum(w**2) / 2``) gives.

Weight decay goes only on the weights of non-depthwise convs (stem, pointwise) and of Linear
layers; depthwise conv weights (paper: "very little or no weight decay"; TF-slim:
``regularize_depthwise=False``), BatchNorm (any norm) parameters and biases get none. See
:func:`param_groups`.

Schedules are stepped once per **iteration** (``scheduler.step()`` after every
``optimizer.step()``), so resuming mid-epoch from ``optimizer.state_dict()`` and
``scheduler.state_dict()`` continues the exact LR sequence.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from mobilenets.utils.serial import JsonDataclass

OPTIMIZERS = ("rmsprop_tf", "sgd", "adamw")
SCHEDULES = ("exponential", "cosine")


@dataclass(frozen=True)
class Recipe(JsonDataclass):
    # Short name of the recipe (free text; the presets are "paper" and "modern").
    name: str
    # Number of training epochs (the cosine schedule ends exactly at the last iteration).
    epochs: int
    # Global batch size (summed over all devices/processes).
    batch_size: int
    # "rmsprop_tf" (timm RMSpropTF, TensorFlow 1 semantics), "sgd" (torch SGD, Nesterov when
    # momentum > 0) or "adamw" (torch AdamW; ``momentum`` is its beta1, beta2 = 0.999).
    optimizer: str
    # Peak learning rate at ``base_batch_size``; the optimizer gets :func:`scaled_lr`.
    lr: float
    # Batch size ``lr`` is quoted for; lr is scaled linearly: lr * batch_size / base_batch_size.
    base_batch_size: int
    # Momentum (SGD / RMSprop momentum; AdamW's beta1).
    momentum: float
    # TF RMSprop "decay" (rho; timm's alpha): the mean-square EMA coefficient. Used by rmsprop_tf.
    rmsprop_decay: float
    # Optimizer epsilon. 1.0 for TF RMSprop (inside the sqrt, TF's semantics); AdamW's eps; SGD
    # ignores it.
    eps: float
    # L2 / weight decay on non-depthwise conv weights and Linear weights only (see param_groups).
    # Coupled L2 (added to the gradient) for rmsprop_tf and sgd, decoupled for adamw.
    weight_decay: float
    # "exponential" (staircase: lr *= decay_rate every decay_epochs) or "cosine".
    schedule: str
    # Exponential schedule: multiplicative decay applied every ``decay_epochs`` (staircase).
    decay_rate: float
    # Exponential schedule: epochs between decays (may be fractional, e.g. 2.5).
    decay_epochs: float
    # Linear warm-up length in epochs (0 = none); must be < epochs.
    warmup_epochs: float
    # Cosine schedule: final learning rate as a fraction of the peak (scaled) lr.
    min_lr_ratio: float
    # Label smoothing for the cross-entropy loss (0 = none).
    label_smoothing: float
    # Per-optimizer-step decay of the weight EMA (timm ModelEmaV3); None disables EMA.
    ema_decay: float | None
    # --- augmentation knobs, mirrored into mobilenets.data.datasets.Augment by the caller ---
    # Smallest random-resized-crop area as a fraction of the image (the largest is 1.0).
    crop_min_area: float
    # Random horizontal flip.
    hflip: bool
    # Colour-jitter strength (brightness/contrast/saturation); 0 = none.
    color_jitter: float
    # timm RandAugment config string (e.g. "rand-m9-mstd0.5"); None = no RandAugment.
    randaugment: str | None

    def __post_init__(self) -> None:
        validate(self)

    def replace(self, **changes: Any) -> Recipe:
        """A copy with ``changes`` applied, validated; unknown fields raise ``ValueError``."""
        _check_fields(changes)
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recipe:
        if not isinstance(data, dict):
            raise ValueError(f"a Recipe is built from a dict, got {type(data).__name__}")
        _check_fields(data)
        missing = sorted({f.name for f in dataclasses.fields(cls)} - set(data))
        if missing:
            raise ValueError(f"missing Recipe field(s): {', '.join(missing)}")
        return cls(**data)



_FIELDS = tuple(f.name for f in dataclasses.fields(Recipe))


def _check_fields(data: dict[str, Any]) -> None:
    unknown = sorted(set(data) - set(_FIELDS))
    if unknown:
        raise ValueError(
            f"unknown Recipe field(s): {', '.join(map(repr, unknown))}; "
            f"fields are {', '.join(_FIELDS)}"
        )


def _is_real(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def validate(r: Recipe) -> None:
    """Raise ``ValueError`` naming the bad field and echoing its value."""

    def need(ok: bool, field: str, rule: str) -> None:
        if not ok:
            raise ValueError(f"{field} must be {rule}, got {getattr(r, field)!r}")

    need(isinstance(r.name, str) and bool(r.name), "name", "a non-empty string")
    need(_is_int(r.epochs) and r.epochs >= 1, "epochs", "an integer >= 1")
    need(_is_int(r.batch_size) and r.batch_size >= 1, "batch_size", "an integer >= 1")
    need(
        _is_int(r.base_batch_size) and r.base_batch_size >= 1, "base_batch_size", "an integer >= 1"
    )
    if r.optimizer not in OPTIMIZERS:
        raise ValueError(
            f"unknown optimizer {r.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}"
        )
    if r.schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {r.schedule!r}; choose one of {', '.join(SCHEDULES)}")
    need(_is_real(r.lr) and r.lr > 0, "lr", "a number > 0")
    need(_is_real(r.momentum) and 0 <= r.momentum < 1, "momentum", "in [0, 1)")
    need(_is_real(r.rmsprop_decay) and 0 <= r.rmsprop_decay < 1, "rmsprop_decay", "in [0, 1)")
    need(_is_real(r.eps) and r.eps > 0, "eps", "a number > 0")
    need(_is_real(r.weight_decay) and r.weight_decay >= 0, "weight_decay", "a number >= 0")
    need(_is_real(r.decay_rate) and 0 < r.decay_rate <= 1, "decay_rate", "in (0, 1]")
    need(_is_real(r.decay_epochs) and r.decay_epochs > 0, "decay_epochs", "a number > 0")
    need(_is_real(r.warmup_epochs) and r.warmup_epochs >= 0, "warmup_epochs", "a number >= 0")
    if r.warmup_epochs > 0 and not r.warmup_epochs < r.epochs:
        raise ValueError(
            f"warmup_epochs must be < epochs, got warmup_epochs={r.warmup_epochs!r} "
            f"with epochs={r.epochs!r}"
        )
    need(_is_real(r.min_lr_ratio) and 0 <= r.min_lr_ratio <= 1, "min_lr_ratio", "in [0, 1]")
    need(_is_real(r.label_smoothing) and 0 <= r.label_smoothing < 1, "label_smoothing", "in [0, 1)")
    need(
        r.ema_decay is None or (_is_real(r.ema_decay) and 0 < r.ema_decay < 1),
        "ema_decay", "None or in (0, 1)",
    )
    need(_is_real(r.crop_min_area) and 0 < r.crop_min_area <= 1, "crop_min_area", "in (0, 1]")
    need(isinstance(r.hflip, bool), "hflip", "a bool")
    need(_is_real(r.color_jitter) and r.color_jitter >= 0, "color_jitter", "a number >= 0")
    if r.randaugment is not None:
        _check_randaugment(r.randaugment)


def _check_randaugment(spec: Any) -> None:
    bad = ValueError(
        "randaugment must be None or a timm RandAugment string like 'rand-m9-mstd0.5', "
        f"got {spec!r}"
    )
    if not isinstance(spec, str) or spec.split("-")[0] != "rand":
        raise bad
    from timm.data.auto_augment import rand_augment_transform

    try:  # timm's own parser is the authority on what the string means
        rand_augment_transform(spec, {})
    except Exception:  # timm signals bad sections with assert / ValueError / KeyError
        raise bad from None


# ------------------------------------------------------------------------------------------------
# Presets
# ------------------------------------------------------------------------------------------------

PRESETS: dict[str, Recipe] = {
    "paper": Recipe(
        name="paper",
        # The paper gives no epoch count. 100 epochs at ~0.94 per 2.5 epochs leaves the lr at
        # 0.94**40 ~ 8 % of its start, about where Inception-V3-style runs are stopped. A choice.
        epochs=100,
        # TF-slim's MobileNet training flags (the slim MobileNet README): batch 96 per clone.
        batch_size=96,
        # "RMSprop ... similar to Inception V3" (paper); TF1 semantics via timm's RMSpropTF.
        optimizer="rmsprop_tf",
        # Inception V3 / TF-slim: 0.045. Which batch it belongs to is the question: Inception V3
        # ran 50 asynchronous replicas of batch 32 (each applying its own update, so 0.045 per
        # 32 images read literally), TF-slim's MobileNet flags use 0.045 with batch 96 per clone
        # and scale the lr with the number of clones (clone losses are averaged), i.e. 0.045 per
        # 96 images. We take 96: it is the MobileNet reference, and gives 0.12 per 256 images
        # (0.48 at batch 1024), close to the TPU RMSprop ports' 0.165 per 256, whereas the
        # batch-32 reading (0.36 per 256, 1.44 at 1024) is too hot for synchronous training.
        lr=0.045,
        base_batch_size=96,
        momentum=0.9,  # Inception V3 RMSprop momentum
        rmsprop_decay=0.9,  # Inception V3 RMSprop decay (rho)
        eps=1.0,  # Inception V3 RMSprop epsilon, inside the sqrt (TF semantics)
        # TF-slim mobilenet_v1_arg_scope: 4e-5 L2 on conv weights, none on depthwise.
        weight_decay=4e-5,
        # Inception V3 / TF-slim: x0.94 every 2.5 epochs (slim's MobileNet flag), staircase as
        # TF-slim's exponential_decay(staircase=True).
        schedule="exponential",
        decay_rate=0.94,
        decay_epochs=2.5,
        warmup_epochs=0.0,  # none in the 2017 TF recipes
        min_lr_ratio=0.0,  # unused by the exponential schedule
        label_smoothing=0.0,  # paper: no label smoothing for MobileNets
        # The paper mentions no weight averaging (the later TPU port adds EMA 0.995; not used).
        ema_decay=None,
        # Paper: "a smaller range of random crop sizes" than Inception (which samples 0.08-1,
        # TF-slim 0.05-1). No number is given; 0.35 keeps at least ~1/3 of the image. A choice.
        crop_min_area=0.35,
        hflip=True,  # TF inception preprocessing flips
        color_jitter=0.1,  # "light colour distortion" (TF inception preprocessing, fast mode)
        randaugment=None,  # "less augmentation" for small models
    ),
    "modern": Recipe(
        name="modern",
        # Modern ImageNet runs for small CNNs are long (300-600 epochs; timm's 2024 MobileNetV1
        # went far longer). 300 is a common middle ground; override for small data.
        epochs=300,
        batch_size=512,
        # SGD + Nesterov momentum 0.9 with linear scaling 0.1 per 256 images, cosine with 5
        # warm-up epochs, label smoothing 0.1 and no decay on biases/BN: the "Bag of Tricks"
        # recipe (He et al., CVPR 2019), which they also applied to MobileNet. It is robust,
        # needs no eps tuning and its weight decay is plain coupled L2 like TF-slim's.
        optimizer="sgd",
        lr=0.1,
        base_batch_size=256,
        momentum=0.9,
        rmsprop_decay=0.9,  # unused by SGD
        eps=1e-8,  # unused by SGD (used if optimizer is switched to adamw)
        # Small models underfit rather than overfit: keep TF-slim's/MobileNetV2's 4e-5, and only
        # on conv (non-depthwise) and FC weights.
        weight_decay=4e-5,
        schedule="cosine",
        decay_rate=1.0,  # unused by the cosine schedule
        decay_epochs=1.0,  # unused by the cosine schedule
        warmup_epochs=5.0,  # avoids the early blow-up of large-batch linear scaling
        min_lr_ratio=1e-3,  # cosine floor: 0.1 % of the peak lr
        label_smoothing=0.1,
        # Weight EMA per optimizer step (timm-style recipes use 0.9998-0.9999); build_ema adds
        # timm's decay warm-up so short runs still get a useful average.
        ema_decay=0.9998,
        # timm/torchvision defaults: Inception crop 0.08-1 with RandAugment m9, std 0.5 (timm's
        # MobileNetV3/EfficientNet-B0 recipes). For alpha <= 0.5 on short schedules a weaker
        # policy (crop_min_area 0.25, "rand-m6-mstd0.5") may be better: small nets underfit.
        crop_min_area=0.08,
        hflip=True,
        color_jitter=0.0,  # RandAugment already covers colour (timm disables jitter with RA)
        randaugment="rand-m9-mstd0.5",
    ),
}


def get_recipe(name: str, **overrides: Any) -> Recipe:
    """The preset ``name`` with ``overrides`` applied (validated)."""
    if not isinstance(name, str) or name not in PRESETS:
        raise ValueError(f"unknown recipe {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name].replace(**overrides) if overrides else PRESETS[name]


# ------------------------------------------------------------------------------------------------
# Optimizer
# ------------------------------------------------------------------------------------------------


def _is_depthwise(conv: nn.Module) -> bool:
    return conv.groups > 1 and conv.groups == conv.in_channels


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two optimizer parameter groups: ``weight_decay`` on the weights of non-depthwise convs and
    of ``nn.Linear`` layers; 0 on depthwise conv weights (``groups == in_channels > 1``), on
    every norm layer's parameters, on biases and on anything else. Frozen parameters
    (``requires_grad=False``) are left out; shared parameters appear once. Each group carries a
    ``"group"`` key ("decay" / "no_decay") for logging; empty groups are omitted."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    seen: set[int] = set()
    for module in model.modules():
        for pname, p in module.named_parameters(recurse=False):
            if id(p) in seen or not p.requires_grad:
                continue
            seen.add(id(p))
            is_conv = isinstance(module, nn.modules.conv._ConvNd)
            wants_decay = pname == "weight" and (
                isinstance(module, nn.Linear) or (is_conv and not _is_depthwise(module))
            )
            (decay if wants_decay else no_decay).append(p)
    groups = [
        {"params": decay, "weight_decay": float(weight_decay), "group": "decay"},
        {"params": no_decay, "weight_decay": 0.0, "group": "no_decay"},
    ]
    return [g for g in groups if g["params"]]


def scaled_lr(recipe: Recipe) -> float:
    """The peak learning rate at the recipe's batch size: lr * batch_size / base_batch_size."""
    return recipe.lr * (recipe.batch_size / recipe.base_batch_size)  # exact when the ratio is 1


def build_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    """The recipe's optimizer over :func:`param_groups`, at :func:`scaled_lr`."""
    groups = param_groups(model, recipe.weight_decay)
    lr = scaled_lr(recipe)
    if recipe.optimizer == "rmsprop_tf":
        from timm.optim import RMSpropTF

        return RMSpropTF(
            groups,
            lr=lr,
            alpha=recipe.rmsprop_decay,
            eps=recipe.eps,
            momentum=recipe.momentum,
            decoupled_decay=False,  # coupled L2, as TF-slim's l2_regularizer
            lr_in_momentum=True,  # TF: lr accumulates inside the momentum buffer
        )
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(
            groups, lr=lr, momentum=recipe.momentum, nesterov=recipe.momentum > 0
        )
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=(recipe.momentum, 0.999), eps=recipe.eps)
    raise ValueError(f"unknown optimizer {recipe.optimizer!r}")  # unreachable: validated


# ------------------------------------------------------------------------------------------------
# Schedule
# ------------------------------------------------------------------------------------------------


class LRFactor:
    """The LR multiplier at iteration ``step`` (0-based), a picklable callable for ``LambdaLR``;
    its attributes are plain numbers, so ``LambdaLR.state_dict()`` saves and restores it.

    Warm-up (``warmup_steps`` > 0): ``(step + 1) / (warmup_steps + 1)`` for step < warmup_steps,
    linear from near 0, reaching the peak (1.0) at step ``warmup_steps``.
    After warm-up, with ``t = step - warmup_steps``:

    * exponential: ``decay_rate ** floor(t / decay_steps)`` (staircase, as TF-slim);
    * cosine: ``floor + (1 - floor) * (1 + cos(pi * p)) / 2`` with
      ``p = min(t / (total_steps - 1 - warmup_steps), 1)``: the peak at the first post-warm-up
      step, ``floor`` (= min_lr_ratio) at the last iteration ``total_steps - 1`` and after.
    """

    def __init__(
        self,
        schedule: str,
        total_steps: int,
        warmup_steps: int,
        decay_rate: float = 1.0,
        decay_steps: float = 1.0,
        floor: float = 0.0,
    ) -> None:
        self.schedule = schedule
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.decay_rate = float(decay_rate)
        self.decay_steps = float(decay_steps)
        self.floor = float(floor)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        t = step - self.warmup_steps
        if self.schedule == "exponential":
            return self.decay_rate ** math.floor(t / self.decay_steps)
        span = self.total_steps - 1 - self.warmup_steps
        p = min(t / span, 1.0) if span > 0 else 1.0
        return self.floor + (1.0 - self.floor) * 0.5 * (1.0 + math.cos(math.pi * p))

    def __repr__(self) -> str:
        return f"LRFactor({self.__dict__})"


def build_scheduler(
    optimizer: torch.optim.Optimizer, recipe: Recipe, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """A ``LambdaLR`` over the optimizer's current lr (the peak, :func:`scaled_lr` when built by
    :func:`build_optimizer`), to be stepped once per iteration, after ``optimizer.step()``.
    At construction it sets the lr of iteration 0. Warm-up lasts
    ``round(warmup_epochs * steps_per_epoch)`` iterations; the exponential decay interval is
    ``decay_epochs * steps_per_epoch`` iterations (may be fractional) counted after warm-up."""
    if not _is_int(steps_per_epoch) or steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be an integer >= 1, got {steps_per_epoch!r}")
    total = recipe.epochs * steps_per_epoch
    warmup = min(round(recipe.warmup_epochs * steps_per_epoch), total - 1)
    factor = LRFactor(
        recipe.schedule,
        total_steps=total,
        warmup_steps=warmup,
        decay_rate=recipe.decay_rate,
        decay_steps=recipe.decay_epochs * steps_per_epoch,
        floor=recipe.min_lr_ratio,
    )
    return LambdaLR(optimizer, factor)


# ------------------------------------------------------------------------------------------------
# EMA
# ------------------------------------------------------------------------------------------------


def build_ema(model: nn.Module, recipe: Recipe):
    """A :class:`timm.utils.ModelEmaV3` of ``model`` (parameters and buffers) with decay
    ``recipe.ema_decay``, or None when the recipe has no EMA. Build it after moving the model to
    its device. timm's decay warm-up is on (``1 - (1 + step) ** -0.75``, capped at ema_decay):
    call ``ema.update(model, step=global_step)`` after each optimizer step so short runs get a
    sensible average; ``ema.update(model)`` without ``step`` uses the plain decay."""
    if recipe.ema_decay is None:
        return None
    from timm.utils import ModelEmaV3

    return ModelEmaV3(model, decay=recipe.ema_decay, use_warmup=True, warmup_power=3 / 4)


__all__ = [
    "LRFactor",
    "OPTIMIZERS",
    "PRESETS",
    "Recipe",
    "SCHEDULES",
    "build_ema",
    "build_optimizer",
    "build_scheduler",
    "get_recipe",
    "param_groups",
    "scaled_lr",
    "validate",
]
