"""Augmentation settings of a training run, and the eval preprocessing they imply."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mobilenets.data.preprocess import Preprocessing
from mobilenets.errors import MobileNetsError


@dataclass(frozen=True)
class Augment:
    """Augmentation and preprocessing settings; ``dataclasses.asdict`` gives plain JSON."""

    # RandomResizedCrop scale=(crop_min_area, 1.0). The paper (§4) trains MobileNets with "less
    # regularization and data augmentation techniques because small models have less trouble with
    # overfitting" and reduce distortions "by limiting the size of small crops that are used in
    # large Inception training" (Inception samples 8-100% of the image area), but gives no
    # number. 0.35 is our choice: about 4x Inception's minimum, a value common in ImageNet recipes
    # for small networks; lower it for the largest models.
    crop_min_area: float = 0.35
    hflip: bool = True
    # Brightness/contrast/saturation strength; 0 disables. Hue is left alone: it changes class
    # evidence for some ImageNet classes (e.g. fruit) more than it regularises.
    color_jitter: float = 0.1
    # A timm RandAugment string such as "rand-m9-mstd0.5", or None. timm turns colour jitter off
    # when RandAugment is on; here both apply if both are set, so set color_jitter=0 to match timm.
    randaugment: str | None = None
    # Eval: resize the shorter side to resolution / eval_crop, then centre-crop resolution
    # (Inception/TF-slim: 224 -> 256 -> 224).
    eval_crop: float = 0.875
    # (0.5, 0.5) maps [0, 1] to [-1, 1], the input range of the TF/Keras MobileNets, so weights
    # converted from them work unchanged.
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    # Eval resize filter (timm's names); a converted timm model may want "bicubic".
    interpolation: str = "bilinear"

    @classmethod
    def for_eval(cls, meta: dict[str, Any]) -> Augment:
        """The evaluation preprocessing a run or model folder recorded: its ``preprocessing``
        (timm's keys), or the mean/std/eval_crop keys that 0.1.x runs wrote."""
        pre = Preprocessing.from_dict(meta.get("preprocessing") or meta)
        return cls(mean=pre.mean, std=pre.std, eval_crop=pre.crop_pct, interpolation=pre.interpolation)

    def preprocessing(self, resolution: int) -> Preprocessing:
        """The eval preprocessing of a model trained with these settings at ``resolution`` px."""
        return Preprocessing(mean=self.mean, std=self.std, crop_pct=self.eval_crop, interpolation=self.interpolation,
                             input_size=(3, int(resolution), int(resolution)))

    def __post_init__(self) -> None:
        """Validate, and turn JSON lists back into tuples so the object stays hashable."""
        # mean, std, eval crop and interpolation are the eval Preprocessing's: validated there, once
        if not isinstance(self.eval_crop, (int, float)) or not 0 < self.eval_crop <= 1:
            raise MobileNetsError(f"Augment.eval_crop must be in (0, 1], got {self.eval_crop!r}")
        try:
            pre = Preprocessing(mean=self.mean, std=self.std, crop_pct=self.eval_crop,
                                interpolation=self.interpolation)
        except MobileNetsError as exc:
            raise MobileNetsError(f"Augment: {exc}") from None
        object.__setattr__(self, "mean", pre.mean)
        object.__setattr__(self, "std", pre.std)
        if not 0 < self.crop_min_area <= 1:
            raise MobileNetsError(f"Augment.crop_min_area must be in (0, 1], got {self.crop_min_area!r}")
        if not self.color_jitter >= 0:
            raise MobileNetsError(f"Augment.color_jitter must be >= 0, got {self.color_jitter!r}")
        if self.randaugment is not None and not str(self.randaugment).startswith("rand"):
            raise MobileNetsError(f"Augment.randaugment must be a timm string like 'rand-m9-mstd0.5', "
                             f"got {self.randaugment!r}")
