"""Pretrained MobileNet weights from TensorFlow (TF-slim checkpoints, TF1 frozen graphs, TFLite),
Keras, timm and Hugging Face, and back.

Each ``from_*`` function reads the source's weights (never executing code from a file, nor the
model itself), infers the width multiplier α, the resolution and the class count where the source
records them, and returns a :class:`~mobilenets.models.mobilenet.MobileNet` in eval mode whose
config reproduces the source's outputs:

=========== ============= ========== ========== ==========================================
source      padding       activation BN eps     channel rule
=========== ============= ========== ========== ==========================================
TF-slim     tf_same       relu6      1e-3       max(int(c·α), 8)
TF frozen   tf_same       relu6      from graph max(int(c·α), 8)
TFLite      from file***  from file  folded**** from the widths (TF-slim, Keras or timm rule)
Keras       tf_same*      relu6      1e-3       int(c·α)
timm        symmetric     relu6      1e-5       round to a multiple of 8
HF          tf_same**     from cfg   from cfg   max(int(c·α), min_depth)
=========== ============= ========== ========== ==========================================

\\* Keras pads (0, 1) before each stride-2 depthwise conv, which is TF "SAME" only while that
conv's input is even: true at every resolution divisible by 32, so a fixed Keras input shape must
be. \\** HF: ``tf_padding=False`` means symmetric padding. \\*** TFLite: SAME, or explicit PAD
ops equal to it (tf_same) or to 1 on each side (symmetric). \\**** TFLite's converter folds
BatchNorm into the convs: our BatchNorm is the identity plus the conv's bias.

The converted model carries a timm-style ``pretrained_cfg`` (its input preprocessing in timm's
keys, ``label_names``, ``source``), which :func:`mobilenets.save_model` writes into the folder's
``config.json`` and ``timm.data.resolve_data_config(model=m)`` reads. Weights trained on ImageNet
(every source's 1000- or 1001-way classifier) carry ImageNet's class names
(:mod:`mobilenets.weights.imagenet`).

``to_timm`` and ``to_keras`` go back where the architecture maps, and refuse (naming the option)
where it does not. A different BatchNorm epsilon is folded exactly into the running variance:
``var' = var + eps_ours - eps_theirs`` keeps ``var' + eps_theirs == var + eps_ours``.

:func:`convert` is the one call (what ``mobilenet convert`` runs); without ``source_format`` it
asks :func:`detect_format`, which looks at the suffix and, where that is ambiguous or missing, at
the content (TFLite's ``TFL3`` identifier, HDF5's signature, a safetensors header, a folder's
``config.json``).

One module per framework (:mod:`.keras`, :mod:`.tf_slim`, :mod:`.tf_frozen`, :mod:`.tflite`,
:mod:`.timm`, :mod:`.hf`), what they share in :mod:`.common`. Importing this package loads nothing
heavy; torch, TensorFlow, Keras and timm are imported when a converter is first used.
"""

from __future__ import annotations

import json
import os
import re
import struct
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mobilenets.errors import DataNotFoundError, MobileNetsError, arg
from mobilenets.utils.lazy import lazy_exports

if TYPE_CHECKING:  # the model class imports torch: only for annotations here
    from mobilenets.models.mobilenet import MobileNet

FORMATS = ("keras", "tf-slim", "tf-frozen", "tflite", "timm", "hf", "mobilenets")
TARGETS = ("mobilenets", "timm", "keras")
BACKGROUND_FORMATS = ("tf-slim", "tf-frozen", "tflite")  # sources with TF-slim's 1001-way ImageNet classifier
RESOLUTION_FORMATS = ("tf-slim", "tf-frozen")  # sources that may not record their input size
FORMAT_CHOICES = ("keras (.keras/.h5), tf-slim (a TF checkpoint), tf-frozen (a .pb frozen graph), tflite (.tflite), "
                  "timm (a .safetensors/.pth state dict), hf (a Hugging Face model folder), mobilenets (a model "
                  "folder, run folder or checkpoint of this package)")

__getattr__, __dir__ = lazy_exports(__name__, {
    ".keras": ["from_keras", "to_keras"],
    ".tf_slim": ["from_tf_slim"],
    ".tf_frozen": ["from_tf_frozen"],
    ".tflite": ["from_tflite"],
    ".timm": ["from_timm", "to_timm", "timm_model_name"],
    ".hf": ["from_hf"],
})
__all__ = ["FORMATS", "TARGETS", "convert", "detect_format", "from_hf", "from_keras", "from_tf_frozen",
           "from_tf_slim", "from_tflite", "from_timm", "timm_model_name", "to_keras", "to_timm"]

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_TFLITE_IDENTIFIER = b"TFL3"  # bytes 4..8 of every TFLite FlatBuffer


def _saved_model() -> str:
    return (f"a TensorFlow SavedModel, which convert does not read: freeze it to a GraphDef (.pb, "
            f"{_fmt('tf-frozen')}) or convert it to .tflite first")


def _fmt(value: str | None = None) -> str:
    """The source format argument in the caller's words (``--from X`` / ``source_format='X'``)."""
    return arg("source_format", value, flag="--from") if value is not None else arg("source_format", flag="--from")


def _cannot_tell(what: Any, why: str) -> MobileNetsError:
    return MobileNetsError(f"cannot tell the format of {what} ({why}); give {_fmt()}, one of: {FORMAT_CHOICES}")


def _head(path: Path, n: int = 16) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(n)


def _safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a .safetensors file (tensor names and ``__metadata__``), without reading
    the tensors."""
    with open(path, "rb") as fh:
        size = fh.read(8)
        if len(size) < 8:
            raise MobileNetsError(f"{path} is not a safetensors file (shorter than its 8-byte header size)")
        n = struct.unpack("<Q", size)[0]
        try:
            header = json.loads(fh.read(min(n, 100_000_000)))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise MobileNetsError(f"{path} is not a safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise MobileNetsError(f"{path} is not a safetensors file (its header is not a JSON object)")
    return header


def _weights_format(path: Path, keys: set[str], ours: bool) -> str:
    """timm / hf / mobilenets from a weights file's tensor names (``ours``: it records our config)."""
    if ours:
        return "mobilenets"
    if "conv_stem.weight" in keys:
        return "timm"
    if any(k.startswith(("mobilenet_v1.", "conv_stem.convolution.")) for k in keys):
        raise MobileNetsError(f"{path} holds Hugging Face MobileNetV1 weights: give the model folder (with its "
                              f"config.json) as the source ({_fmt('hf')})")
    if "stem.conv.weight" in keys:
        raise _cannot_tell(path, "it holds this package's layer names but no model config: save it with "
                                 "mobilenets.save_model, or give it as timm weights only if it is timm's")
    sample = ", ".join(sorted(keys)[:3]) or "no tensors"
    raise _cannot_tell(path, f"its tensors ({sample}, ...) are neither timm's nor this package's")


def _file_format(path: Path) -> str:
    head = _head(path)
    suffix = path.suffix.lower()
    if head[4:8] == _TFLITE_IDENTIFIER or suffix == ".tflite":
        return "tflite"
    if path.name == "saved_model.pb":
        raise MobileNetsError(f"{path} is {_saved_model()}")
    if suffix == ".pb":
        return "tf-frozen"
    if suffix in (".keras", ".h5", ".hdf5") or head[:8] == _HDF5_SIGNATURE:
        return "keras"
    if suffix == ".index" or re.search(r"\.data-\d+-of-\d+$", path.name):
        return "tf-slim"
    if suffix == ".safetensors":
        from mobilenets.weights.folder import MODEL_WEIGHTS_FILE, folder_config

        header = _safetensors_header(path)
        meta = header.get("__metadata__") or {}
        beside = path.name == MODEL_WEIGHTS_FILE and folder_config(path.parent) is not None
        return _weights_format(path, set(header) - {"__metadata__"}, "mobilenet_config" in meta or beside)
    if suffix in (".pt", ".pth", ".bin"):
        from mobilenets.weights.files import load_state, unwrap_state

        state = load_state(path)  # weights only: never runs code from the file
        if "model" in state and "model_config" in state:  # our training state
            return "mobilenets"
        return _weights_format(path, set(unwrap_state(state, str(path))), False)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
        if {"config.json", "model.weights.h5"} <= names:  # a .keras archive under another name
            return "keras"
    raise _cannot_tell(path, f"the suffix {suffix or '(none)'} and the content say nothing known")


def _folder_format(path: Path) -> str:
    from mobilenets.weights.files import read_json_object
    from mobilenets.weights.folder import MODEL_FORMAT

    doc = read_json_object(path / "config.json") if (path / "config.json").is_file() else {}
    if doc.get("format") == MODEL_FORMAT:
        return "mobilenets"
    if any((path / n).is_file() for n in ("best.safetensors", "last.safetensors")) or \
            any((path / "checkpoints").glob("step-*.pt")):
        return "mobilenets"  # a training run's folder
    if "model_type" in doc:
        return "hf"  # from_hf names a model_type other than mobilenet_v1
    if (path / "checkpoint").is_file() or any(path.glob("*.index")):
        return "tf-slim"
    if (path / "saved_model.pb").is_file():
        raise MobileNetsError(f"{path} is {_saved_model()}")
    raise _cannot_tell(path, "a folder with no config.json, TF checkpoint or run checkpoints in it")


def _object_format(src: Any) -> str:
    if isinstance(src, dict):
        return "timm"  # a state dict
    if getattr(getattr(src, "config", None), "model_type", None) is not None:
        return "hf"  # a transformers model; from_hf checks it is mobilenet_v1
    if hasattr(src, "get_layer") and hasattr(src, "layers"):
        return "keras"
    if hasattr(src, "conv_stem"):
        return "timm"
    raise _cannot_tell(f"an object of type {type(src).__name__}",
                       "not a Keras, timm or transformers model nor a state dict")


def detect_format(src: Any) -> str:
    """The ``source_format`` of ``src`` (one of :data:`FORMATS`): from a path's suffix, and from
    the content where the suffix is ambiguous or missing (``.tflite`` or the ``TFL3`` identifier:
    tflite; ``.pb``: tf-frozen; ``.h5``/``.keras``: keras; a TF checkpoint prefix, ``.index`` or a
    folder with ``checkpoint``: tf-slim; ``.safetensors``/``.pth`` by their tensor names and
    metadata: timm or mobilenets; a folder's ``config.json``: hf or mobilenets), or from a live
    object's type (Keras, timm or transformers model, state dict). One MobileNetsError naming the
    choices when it cannot tell."""
    if not isinstance(src, (str, os.PathLike)):
        return _object_format(src)
    path = Path(src)
    if path.is_dir():
        return _folder_format(path)
    if path.is_file():
        return _file_format(path)
    if Path(f"{path}.index").is_file():
        return "tf-slim"  # a checkpoint prefix, e.g. mobilenet_v1_1.0_224.ckpt
    raise DataNotFoundError(f"source not found: {path}")


def _read(src: Any, source_format: str, keep_background: bool, resolution: int | None) -> MobileNet:
    if source_format == "keras":
        from mobilenets.weights.convert.keras import from_keras

        return from_keras(src)
    if source_format == "tf-slim":
        from mobilenets.weights.convert.tf_slim import from_tf_slim

        return from_tf_slim(src, keep_background, resolution)
    if source_format == "tf-frozen":
        from mobilenets.weights.convert.tf_frozen import from_tf_frozen

        return from_tf_frozen(src, keep_background, resolution)
    if source_format == "tflite":
        from mobilenets.weights.convert.tflite import from_tflite

        return from_tflite(src, keep_background)
    if source_format == "timm":
        from mobilenets.weights.convert.timm import from_timm

        return from_timm(src)
    if source_format == "hf":
        from mobilenets.weights.convert.hf import from_hf

        return from_hf(src)
    from mobilenets.weights.checkpoint import load_model

    return load_model(src)


def convert(src: Any, source_format: str | None = None, output_dir: str | os.PathLike | None = None,
            to: str = "mobilenets", keep_background: bool = False, resolution: int | None = None,
            overwrite: bool = False) -> tuple[MobileNet, Path]:
    """Read ``src`` as ``source_format`` (one of :data:`FORMATS`; None: :func:`detect_format`)
    and write it to the folder ``output_dir`` as ``to``: ``mobilenets`` (config.json +
    model.safetensors), ``timm`` (``<timm name>.safetensors``) or ``keras`` (``model.keras``).
    ``keep_background`` (tf-slim, tf-frozen, tflite) keeps a 1001-way classifier's background
    class; ``resolution`` (tf-slim, tf-frozen) sets the input size the source does not record. A
    folder that exists and is not empty is refused unless ``overwrite`` (then the files of the
    same names are replaced; nothing else in it is touched). Returns the model and the path written."""
    if source_format is not None and source_format not in FORMATS:
        raise MobileNetsError(f"unknown {_fmt()} {source_format!r}; choose one of {', '.join(FORMATS)}")
    if to not in TARGETS:
        raise MobileNetsError(f"unknown target format {arg('to', to)}; choose one of {', '.join(TARGETS)}")
    if output_dir is None:
        raise MobileNetsError(f"{arg('output_dir', flag='--output')} is required: the folder to write the converted "
                              f"model to")
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise MobileNetsError(f"{arg('output_dir', flag='--output')} {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise MobileNetsError(f"{arg('output_dir', flag='--output')} {out} exists and is not empty; give "
                              f"{arg('overwrite', True, flag='--force')} to write into it")
    if source_format is None:
        source_format = detect_format(src)
    if keep_background and source_format not in BACKGROUND_FORMATS:
        raise MobileNetsError(f"{arg('keep_background')} applies to TF-slim checkpoints, TF frozen graphs and TFLite "
                              f"files only ({_fmt()} {' / '.join(BACKGROUND_FORMATS)}), not {source_format}")
    if resolution is not None and source_format not in RESOLUTION_FORMATS:
        raise MobileNetsError(f"{arg('resolution')} applies to TF-slim checkpoints and TF frozen graphs only ({_fmt()} "
                              f"{' / '.join(RESOLUTION_FORMATS)}); {source_format} sources record it")
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
