"""Optimizer, LR schedule and weight EMA built from a :class:`~mobilenets.train.recipes.Recipe`.

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

import math

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from mobilenets.errors import MobileNetsError
from mobilenets.train.recipes import Recipe

# ------------------------------------------------------------------------------------------------
# Optimizer
# ------------------------------------------------------------------------------------------------


def _is_depthwise(conv: nn.Module) -> bool:
    return conv.groups > 1 and conv.groups == conv.in_channels


def param_groups(model: nn.Module, weight_decay: float, lr_scale=None) -> list[dict]:
    """Two optimizer parameter groups: ``weight_decay`` on the weights of non-depthwise convs and
    of ``nn.Linear`` layers; 0 on depthwise conv weights (``groups == in_channels > 1``), on
    every norm layer's parameters, on biases and on anything else. Frozen parameters
    (``requires_grad=False``) are left out; shared parameters appear once. Each group carries a
    ``"group"`` key ("decay" / "no_decay") for logging; empty groups are omitted.

    ``lr_scale`` (a function of the parameter's name in ``model``, e.g. ``"classifier.weight"``,
    returning a factor; default: 1 for all) splits each group by factor: groups whose factor is
    not 1 carry ``"lr_scale"`` and are named ``"decay@0.1"`` etc. (fine-tuning's lower
    learning rate for the pretrained body than for the new head)."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    names = {id(p): n for n, p in model.named_parameters()}
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
    groups = []
    for params, wd, label in ((decay, float(weight_decay), "decay"), (no_decay, 0.0, "no_decay")):
        by_scale: dict[float, list[nn.Parameter]] = {}
        for p in params:
            by_scale.setdefault(1.0 if lr_scale is None else float(lr_scale(names[id(p)])), []).append(p)
        for scale, ps in by_scale.items():
            group = {"params": ps, "weight_decay": wd, "group": label}
            if scale != 1.0:
                group.update(group=f"{label}@{scale:g}", lr_scale=scale)
            groups.append(group)
    return groups


def scaled_lr(recipe: Recipe) -> float:
    """The peak learning rate at the recipe's batch size: lr * batch_size / base_batch_size."""
    return recipe.lr * (recipe.batch_size / recipe.base_batch_size)  # exact when the ratio is 1


def build_optimizer(model: nn.Module, recipe: Recipe, lr_scale=None) -> torch.optim.Optimizer:
    """The recipe's optimizer over :func:`param_groups`, at :func:`scaled_lr` (times a group's
    ``lr_scale``, see :func:`param_groups`)."""
    groups = param_groups(model, recipe.weight_decay, lr_scale)
    lr = scaled_lr(recipe)
    for g in groups:
        if "lr_scale" in g:  # the schedule multiplies each group's own initial lr
            g["lr"] = lr * g["lr_scale"]
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
    raise MobileNetsError(f"unknown optimizer {recipe.optimizer!r}")  # unreachable: validated


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
    if not isinstance(steps_per_epoch, int) and not isinstance(steps_per_epoch, bool) or steps_per_epoch < 1:
        raise MobileNetsError(f"steps_per_epoch must be an integer >= 1, got {steps_per_epoch!r}")
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
