"""Pretrained MobileNet weights from TensorFlow-slim, Keras, timm and Hugging Face, and back.

Each ``from_*`` function reads the source's weights (never executing code from a file), infers the
width multiplier α, the resolution and the class count where the source records them, and returns
a :class:`~mobilenets.models.mobilenet.MobileNet` in eval mode whose config reproduces the source's
outputs:

=========== ========== ========== ======== ==========================================
source      padding    activation BN eps   channel rule
=========== ========== ========== ======== ==========================================
TF-slim     tf_same    relu6      1e-3     max(int(c·α), 8)
Keras       tf_same*   relu6      1e-3     int(c·α)
timm        symmetric  relu6      1e-5     round to a multiple of 8
HF          tf_same**  from cfg   from cfg max(int(c·α), min_depth)
=========== ========== ========== ======== ==========================================

\\* Keras pads (0, 1) before each stride-2 depthwise conv, which is TF "SAME" only while that
conv's input is even: true at every resolution divisible by 32, so a fixed Keras input shape must
be. \\** HF: ``tf_padding=False`` means symmetric padding.

The converted model carries a timm-style ``pretrained_cfg`` (its input preprocessing in timm's
keys, ``label_names``, ``source``), which :func:`mobilenets.save_model` writes into the folder's
``config.json`` and ``timm.data.resolve_data_config(model=m)`` reads.

``to_timm`` and ``to_keras`` go back where the architecture maps, and refuse (naming the option)
where it does not. A different BatchNorm epsilon is folded exactly into the running variance:
``var' = var + eps_ours - eps_theirs`` keeps ``var' + eps_theirs == var + eps_ours``.

One module per framework (:mod:`.keras`, :mod:`.tf_slim`, :mod:`.timm`, :mod:`.hf`), what they
share in :mod:`.common`. Importing this package loads nothing heavy; torch, TensorFlow, Keras and
timm are imported when a converter is first used.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mobilenets.errors import MobileNetsError
from mobilenets.utils.lazy import lazy_exports

if TYPE_CHECKING:  # the model class imports torch: only for annotations here
    from mobilenets.models.mobilenet import MobileNet

FORMATS = ("keras", "tf-slim", "timm", "hf", "mobilenets")
TARGETS = ("mobilenets", "timm", "keras")

__getattr__, __dir__ = lazy_exports(__name__, {
    ".keras": ["from_keras", "to_keras"],
    ".tf_slim": ["from_tf_slim"],
    ".timm": ["from_timm", "to_timm", "timm_model_name"],
    ".hf": ["from_hf"],
})
__all__ = ["FORMATS", "TARGETS", "convert", "from_hf", "from_keras", "from_tf_slim", "from_timm", "timm_model_name",
           "to_keras", "to_timm"]


def _read(src: Any, source_format: str, keep_background: bool, resolution: int | None) -> MobileNet:
    if source_format == "keras":
        from mobilenets.weights.convert.keras import from_keras

        return from_keras(src)
    if source_format == "tf-slim":
        from mobilenets.weights.convert.tf_slim import from_tf_slim

        return from_tf_slim(src, keep_background, resolution)
    if source_format == "timm":
        from mobilenets.weights.convert.timm import from_timm

        return from_timm(src)
    if source_format == "hf":
        from mobilenets.weights.convert.hf import from_hf

        return from_hf(src)
    from mobilenets.weights.checkpoint import load_model

    return load_model(src)


def convert(src: Any, source_format: str, output_dir: str | os.PathLike, to: str = "mobilenets",
            keep_background: bool = False, resolution: int | None = None,
            overwrite: bool = False) -> tuple[MobileNet, Path]:
    """Read ``src`` as ``source_format`` (keras, tf-slim, timm, hf, mobilenets) and write it to the
    folder ``output_dir`` as ``to``: ``mobilenets`` (config.json + model.safetensors), ``timm``
    (``<timm name>.safetensors``) or ``keras`` (``model.keras``). A folder that exists and is not
    empty is refused unless ``overwrite`` (then the files of the same names are replaced; nothing
    else in it is touched). Returns the model and the path written."""
    if source_format not in FORMATS:
        raise MobileNetsError(f"unknown source_format {source_format!r}; choose one of {', '.join(FORMATS)}")
    if to not in TARGETS:
        raise MobileNetsError(f"unknown target format to={to!r}; choose one of {', '.join(TARGETS)}")
    if keep_background and source_format != "tf-slim":
        raise MobileNetsError("keep_background applies to TF-slim checkpoints only (source_format='tf-slim')")
    if resolution is not None and source_format != "tf-slim":
        raise MobileNetsError("resolution applies to TF-slim checkpoints only (the other formats record it)")
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise MobileNetsError(f"output_dir {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise MobileNetsError(f"output_dir {out} exists; pass overwrite=True to write into a folder that is not empty")
    model = _read(src, source_format, keep_background, resolution)
    if to == "mobilenets":
        from mobilenets.weights.checkpoint import save_model

        return model, save_model(model, out)
    if to == "timm":
        from mobilenets.weights.convert.timm import timm_model_name, to_timm

        return model, to_timm(model, out / f"{timm_model_name(model)}.safetensors")
    from mobilenets.weights.convert.keras import to_keras

    to_keras(model, out / "model.keras")
    return model, out / "model.keras"
