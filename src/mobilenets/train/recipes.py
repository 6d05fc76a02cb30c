"""Training recipes: the paper's TF-style RMSprop recipe and a modern one, as frozen, validated,
JSON-serialisable :class:`Recipe` objects, plus the builders a training loop needs (optimizer with
the right weight-decay groups, a per-iteration LR schedule, weight EMA).

Four presets (:data:`PRESETS`):

``paper``
    What the MobileNet paper says it did ("RMSprop ... similar to Inception V3", less
    regularization and augmentation than for large models, no label smoothing, a smaller range of
    random-crop sizes, little or no weight decay on the depthwise filters), with the numbers the
    paper leaves out filled in from the TensorFlow references (see the comments on the preset).

``modern``
    SGD + Nesterov, linear warm-up then cosine, label smoothing, RandAugment and weight EMA: the
    "bag of tricks" recipe that trains small CNNs well today (see the comments on the preset).

``distill``
    Distillation from a teacher (paper Section 4): no weight decay, no label smoothing, a fixed
    number of epochs (see the comments on the preset).

``transfer``
    Fine-tuning from pretrained weights (paper Section 4.2): a short SGD + cosine schedule
    (``mobilenet finetune``'s default; see the comments on the preset).

This module imports no torch (the command line reads the presets and field types before any
training starts); the builders a training loop needs are in :mod:`mobilenets.train.optim`.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from mobilenets.errors import MobileNetsError, arg
from mobilenets.utils.serial import JsonDataclass
from mobilenets.utils.validate import is_int, is_real

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
            raise MobileNetsError(f"a Recipe is built from a dict, got {type(data).__name__}")
        _check_fields(data)
        missing = sorted({f.name for f in dataclasses.fields(cls)} - set(data))
        if missing:
            raise MobileNetsError(f"missing Recipe field(s): {', '.join(missing)}")
        return cls(**data)



_FIELDS = tuple(f.name for f in dataclasses.fields(Recipe))


def _check_fields(data: dict[str, Any]) -> None:
    unknown = sorted(set(data) - set(_FIELDS))
    if unknown:
        raise MobileNetsError(
            f"unknown Recipe field(s): {', '.join(map(repr, unknown))}; "
            f"fields are {', '.join(_FIELDS)}"
        )


def validate(r: Recipe) -> None:
    """Raise ``ValueError`` naming the bad field and echoing its value."""

    def need(ok: bool, field: str, rule: str) -> None:
        if not ok:
            raise MobileNetsError(f"{arg(field)} must be {rule}, got {getattr(r, field)!r}")

    need(isinstance(r.name, str) and bool(r.name), "name", "a non-empty string")
    need(is_int(r.epochs) and r.epochs >= 1, "epochs", "an integer >= 1")
    need(is_int(r.batch_size) and r.batch_size >= 1, "batch_size", "an integer >= 1")
    need(
        is_int(r.base_batch_size) and r.base_batch_size >= 1, "base_batch_size", "an integer >= 1"
    )
    if r.optimizer not in OPTIMIZERS:
        raise MobileNetsError(
            f"unknown optimizer {r.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}"
        )
    if r.schedule not in SCHEDULES:
        raise MobileNetsError(f"unknown schedule {r.schedule!r}; choose one of {', '.join(SCHEDULES)}")
    need(is_real(r.lr) and r.lr > 0, "lr", "a number > 0")
    need(is_real(r.momentum) and 0 <= r.momentum < 1, "momentum", "in [0, 1)")
    need(is_real(r.rmsprop_decay) and 0 <= r.rmsprop_decay < 1, "rmsprop_decay", "in [0, 1)")
    need(is_real(r.eps) and r.eps > 0, "eps", "a number > 0")
    need(is_real(r.weight_decay) and r.weight_decay >= 0, "weight_decay", "a number >= 0")
    need(is_real(r.decay_rate) and 0 < r.decay_rate <= 1, "decay_rate", "in (0, 1]")
    need(is_real(r.decay_epochs) and r.decay_epochs > 0, "decay_epochs", "a number > 0")
    need(is_real(r.warmup_epochs) and r.warmup_epochs >= 0, "warmup_epochs", "a number >= 0")
    if r.warmup_epochs > 0 and not r.warmup_epochs < r.epochs:
        raise MobileNetsError(
            f"{arg('warmup_epochs')} ({r.warmup_epochs:g}) must be less than {arg('epochs')} ({r.epochs}): "
            f"give more {arg('epochs')} or a smaller {arg('warmup_epochs')} (0: no warm-up)"
        )
    need(is_real(r.min_lr_ratio) and 0 <= r.min_lr_ratio <= 1, "min_lr_ratio", "in [0, 1]")
    need(is_real(r.label_smoothing) and 0 <= r.label_smoothing < 1, "label_smoothing", "in [0, 1)")
    need(
        r.ema_decay is None or (is_real(r.ema_decay) and 0 < r.ema_decay < 1),
        "ema_decay", "None or in (0, 1)",
    )
    need(is_real(r.crop_min_area) and 0 < r.crop_min_area <= 1, "crop_min_area", "in (0, 1]")
    need(isinstance(r.hflip, bool), "hflip", "a bool")
    need(is_real(r.color_jitter) and r.color_jitter >= 0, "color_jitter", "a number >= 0")
    if r.randaugment is not None:
        _check_randaugment(r.randaugment)


# timm's RandAugment string: "rand" then "-"-separated sections; "t<name>" picks the op set, the
# others are a key and a number (timm's rand_augment_transform skips sections without a digit).
_RA_SECTION = re.compile(r"t\w+|(mstd|mmax|inc|m|n|p)\d+(\.\d+)?|[a-z]*")


def _check_randaugment(spec: Any) -> None:
    """The grammar of timm's ``rand_augment_transform`` strings, checked without importing timm
    (presets are built at import time, and the command line must not load torch)."""
    bad = MobileNetsError(
        "randaugment must be None or a timm RandAugment string like 'rand-m9-mstd0.5', "
        f"got {spec!r}"
    )
    if not isinstance(spec, str) or spec.split("-")[0] != "rand":
        raise bad
    for section in spec.split("-")[1:]:
        if not _RA_SECTION.fullmatch(section) or (section.isalpha() and not section.startswith("t")):
            raise bad


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
    "distill": Recipe(
        name="distill",
        # Distillation (paper Section 4.4-4.5) "does not require regularization (weight decay and
        # early-stopping)": the teacher gives fresh targets for every crop. Runs stop on epochs.
        epochs=30,
        batch_size=32,
        # AdamW with cosine converges fast on the small unlabelled folders distillation is run
        # on, without warm-up (so one-epoch runs are valid); the paper gives no optimizer for it.
        optimizer="adamw",
        lr=1e-3,
        base_batch_size=32,
        momentum=0.9,  # AdamW beta1
        rmsprop_decay=0.9,  # unused by AdamW
        eps=1e-8,
        weight_decay=0.0,  # paper: no weight decay
        schedule="cosine",
        decay_rate=1.0,  # unused by the cosine schedule
        decay_epochs=1.0,  # unused by the cosine schedule
        warmup_epochs=0.0,
        min_lr_ratio=1e-2,
        label_smoothing=0.0,  # the teacher's soft targets replace labels: nothing to smooth
        ema_decay=None,
        # The student and the teacher see the same crop, so augmentation only widens the set of
        # inputs the student matches the teacher on; crops keep at least a third of the image.
        crop_min_area=0.35,
        hflip=True,
        color_jitter=0.1,
        randaugment=None,
    ),
    "transfer": Recipe(
        name="transfer",
        # Fine-tuning from pretrained weights (paper Section 4.2; the paper gives no recipe): SGD
        # with momentum and a short cosine schedule converge in a few epochs from ImageNet
        # weights; light regularisation, crops that keep most of the object (a dog breed is told
        # apart by details a tight crop would cut off). `mobilenet finetune`'s default.
        epochs=8,
        batch_size=32,
        optimizer="sgd",
        lr=0.01,
        base_batch_size=32,
        momentum=0.9,
        rmsprop_decay=0.9,  # unused by SGD
        eps=1e-8,  # unused by SGD
        weight_decay=4e-5,
        schedule="cosine",
        decay_rate=1.0,  # unused by the cosine schedule
        decay_epochs=1.0,  # unused by the cosine schedule
        warmup_epochs=0.0,
        min_lr_ratio=0.01,
        label_smoothing=0.1,
        ema_decay=None,
        crop_min_area=0.25,
        hflip=True,
        color_jitter=0.0,
        randaugment=None,
    ),
}


# One line per field, for `mobilenet train --help` (the comments on Recipe say more).
FIELD_HELP = {
    "epochs": "training epochs",
    "batch_size": "global batch size (summed over all processes)",
    "optimizer": f"one of {', '.join(OPTIMIZERS)}",
    "lr": "peak learning rate at base_batch_size (scaled linearly to batch_size)",
    "base_batch_size": "the batch size lr is quoted for",
    "momentum": "SGD/RMSprop momentum; AdamW's beta1",
    "rmsprop_decay": "TF RMSprop decay (rho) of the mean square",
    "eps": "optimizer epsilon (TF RMSprop: inside the square root)",
    "weight_decay": "L2 on conv (not depthwise) and FC weights",
    "schedule": f"one of {', '.join(SCHEDULES)}",
    "decay_rate": "exponential schedule: factor applied every decay_epochs",
    "decay_epochs": "exponential schedule: epochs between decays",
    "warmup_epochs": "linear warm-up epochs (0: none)",
    "min_lr_ratio": "cosine schedule: final lr as a fraction of the peak",
    "label_smoothing": "label smoothing of the cross-entropy (0: none)",
    "ema_decay": "per-step decay of the weight EMA (none: no EMA)",
    "crop_min_area": "smallest random-resized-crop area, as a fraction of the image",
    "hflip": "random horizontal flips",
    "color_jitter": "brightness/contrast/saturation jitter strength (0: none)",
    "randaugment": "timm RandAugment string such as rand-m9-mstd0.5 (none: off)",
}


# The Recipe fields only image classification uses: RandAugment (timm's policy on PIL images) and
# label smoothing of a cross-entropy to labels. Detection and distillation use all the others.
CLASSIFICATION_ONLY_FIELDS = ("label_smoothing", "randaugment")
NON_CLASSIFICATION_FIELDS = tuple(f for f in _FIELDS if f != "name" and f not in CLASSIFICATION_ONLY_FIELDS)


def get_recipe(name: str, **overrides: Any) -> Recipe:
    """The preset ``name`` with ``overrides`` applied (validated)."""
    if not isinstance(name, str) or name not in PRESETS:
        raise MobileNetsError(f"unknown recipe {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name].replace(**overrides) if overrides else PRESETS[name]


__all__ = ["CLASSIFICATION_ONLY_FIELDS", "FIELD_HELP", "NON_CLASSIFICATION_FIELDS", "OPTIMIZERS", "PRESETS", "Recipe", "SCHEDULES", "get_recipe", "validate"]
