"""The one description of a model's input preprocessing, in timm's terms.

``mean``, ``std``, ``crop_pct``, ``interpolation`` and ``input_size`` are the keys of timm's
``pretrained_cfg`` (so ``timm.data.resolve_data_config(model=m)`` reads our models), plus the
``input_range`` the network sees after normalisation. Pixels are scaled to [0, 1] first; the
eval transform resizes the shorter side to ``floor(size / crop_pct)`` and centre-crops ``size``.
The same object is used by the data pipeline, training runs (recorded in ``config.json``), model
folders, export sidecars, converters, ``predict`` and ``eval``. Older files that wrote
``eval_crop`` or ``crop_fraction`` for ``crop_pct`` are read too.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from mobilenets.errors import MobileNetsError
from mobilenets.utils.serial import JsonDataclass

INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "lanczos", "box", "hamming")  # timm's names
# Names older files used for crop_pct (run metadata: eval_crop; model folders: crop_fraction).
_CROP_ALIASES = ("eval_crop", "crop_fraction")


@dataclass(frozen=True)
class Preprocessing(JsonDataclass):
    # Per-channel mean and std of pixels in [0, 1]. (0.5, 0.5) maps [0, 1] to [-1, 1], the input
    # range of the TF/Keras MobileNets, so weights converted from them work unchanged.
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    # Eval: the centre crop's share of the resized shorter side (Inception/TF-slim: 224 of 256).
    crop_pct: float = 0.875
    interpolation: str = "bilinear"
    # (channels, height, width) the model is meant for.
    input_size: tuple[int, int, int] = (3, 224, 224)

    def __post_init__(self) -> None:
        for name in ("mean", "std"):
            value = getattr(self, name)
            try:
                value = tuple(float(v) for v in value)
            except (TypeError, ValueError):
                raise MobileNetsError(f"preprocessing {name} must be 3 numbers, got {value!r}") from None
            if len(value) != 3:
                raise MobileNetsError(f"preprocessing {name} must be 3 numbers, got {value!r}")
            object.__setattr__(self, name, value)
        if any(not s > 0 for s in self.std):
            raise MobileNetsError(f"preprocessing std must be > 0, got {self.std!r}")
        if not isinstance(self.crop_pct, (int, float)) or not 0 < self.crop_pct <= 1:
            raise MobileNetsError(f"preprocessing crop_pct must be in (0, 1], got {self.crop_pct!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise MobileNetsError(f"preprocessing interpolation must be one of {', '.join(INTERPOLATIONS)}, "
                                  f"got {self.interpolation!r}")
        try:
            size = tuple(int(v) for v in self.input_size)
        except (TypeError, ValueError):
            raise MobileNetsError(f"preprocessing input_size must be (3, H, W), got {self.input_size!r}") from None
        if len(size) != 3 or size[0] != 3 or min(size) < 1:
            raise MobileNetsError(f"preprocessing input_size must be (3, H, W), got {self.input_size!r}")
        object.__setattr__(self, "input_size", size)
        object.__setattr__(self, "crop_pct", float(self.crop_pct))

    @property
    def resolution(self) -> int:
        return self.input_size[1]

    @property
    def input_range(self) -> tuple[float, float]:
        """The smallest and largest value the network sees (pixels 0 and 1, normalised)."""
        lows = [(0.0 - m) / s for m, s in zip(self.mean, self.std)]
        highs = [(1.0 - m) / s for m, s in zip(self.mean, self.std)]
        return round(min(lows), 6), round(max(highs), 6)

    @property
    def resize(self) -> int:
        """The shorter side before the centre crop; the epsilon keeps 224 / 0.875 at 256, not 255."""
        return max(self.resolution, int(math.floor(self.resolution / self.crop_pct + 1e-6)))

    def at(self, resolution: int) -> Preprocessing:
        """The same preprocessing for a ``resolution`` px input."""
        return dataclasses.replace(self, input_size=(3, int(resolution), int(resolution)))

    def to_dict(self) -> dict[str, Any]:
        """timm's keys (and ``crop_mode`` "center"), plus ``input_range`` and ``resize``."""
        return {"input_size": list(self.input_size), "mean": list(self.mean), "std": list(self.std),
                "crop_pct": self.crop_pct, "crop_mode": "center", "interpolation": self.interpolation,
                "input_range": list(self.input_range), "resize": self.resize}

    def to_timm(self) -> dict[str, Any]:
        """The keys of a timm ``pretrained_cfg`` that ``resolve_data_config`` reads."""
        return {"input_size": self.input_size, "mean": self.mean, "std": self.std, "crop_pct": self.crop_pct,
                "crop_mode": "center", "interpolation": self.interpolation}

    @classmethod
    def from_dict(cls, data: dict[str, Any], resolution: int | None = None) -> Preprocessing:
        """Read our own dict, timm's, or an older file's (``eval_crop`` / ``crop_fraction``);
        unknown keys are ignored. ``resolution`` fills ``input_size`` where the dict has none."""
        if not isinstance(data, dict):
            raise MobileNetsError(f"preprocessing must be a JSON object, got {type(data).__name__}")
        kwargs: dict[str, Any] = {}
        for key in ("mean", "std", "interpolation", "input_size"):
            if data.get(key) is not None:
                kwargs[key] = data[key]
        crop = data.get("crop_pct")
        for alias in _CROP_ALIASES:
            crop = data.get(alias) if crop is None else crop
        if crop is not None:
            kwargs["crop_pct"] = crop
        if "input_size" not in kwargs and resolution is not None:
            kwargs["input_size"] = (3, int(resolution), int(resolution))
        return cls(**kwargs)


DEFAULT = Preprocessing()
