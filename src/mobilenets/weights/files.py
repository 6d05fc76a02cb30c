"""Weight files written atomically and read without ever executing code from them.

* Model weights: safetensors (``*.safetensors``), with the model's config in the file's metadata.
* Full training state (model, optimizer, scheduler, EMA, RNG states, position in the epoch):
  ``torch.save`` of plain tensors/numbers/strings, read back only with
  ``torch.load(weights_only=True)``, which refuses any pickle that would run code.
* Every write goes to a temporary file in the same folder, is flushed to disk, then renamed over
  the target, so a crash never leaves a half-written checkpoint under the real name.
* Every read of a file that is not what it should be (empty, text, a zip that is not a torch file,
  garbage where a safetensors header should be) is one :class:`MobileNetsError` naming the file
  and what was expected, never a traceback from deep inside torch or safetensors.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from mobilenets.errors import DataNotFoundError, MobileNetsError
from mobilenets.models.config import MobileNetConfig

TORCH_EXPECTED = "expected a file written by torch.save (a zip archive holding data.pkl)"
SAFETENSORS_EXPECTED = "expected a safetensors file (an 8-byte header length, a JSON header, then the tensors)"


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)``, fsync, then rename the temporary file to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def save_weights(model: nn.Module, path: str | os.PathLike, config: MobileNetConfig | None = None,
                 extra: dict[str, str] | None = None) -> Path:
    """Model weights (parameters and buffers) to a safetensors file, config in its metadata."""
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    meta = dict(extra or {})
    cfg = config if config is not None else getattr(model, "config", None)
    if isinstance(cfg, MobileNetConfig):
        meta["mobilenet_config"] = cfg.to_json()
    return atomic_write(path, lambda tmp: save_file(state, tmp, metadata=meta))


def save_state(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """A full training state (plain tensors and numbers only) with ``torch.save``, atomically."""
    return atomic_write(path, lambda tmp: torch.save(state, tmp))


def _require_file(path: Path, what: str) -> None:
    if not path.exists():
        raise DataNotFoundError(f"{what} not found: {path}")
    if not path.is_file():
        raise MobileNetsError(f"{what} {path} is not a file")


def _head(path: Path, n: int = 64) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(n)


def _looks_like_text(head: bytes) -> bool:
    # a multi-byte character cut by the end of the sample is replaced, not a sign of binary data
    text = head.decode("utf-8", errors="replace").rstrip("\ufffd")
    return bool(text) and all((c.isprintable() and c != "\ufffd") or c in "\r\n\t" for c in text)


def _torch_file_problem(path: Path) -> str | None:
    """Why ``path`` cannot be a ``torch.save`` file, or None if it may be one. torch itself answers
    a text file with ``KeyError: 101`` and an empty one with a bare ``EOFError``."""
    head = _head(path)
    if not head:
        return "the file is empty"
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError) as exc:
            return f"it is a damaged zip archive ({exc})"
        if not any(name.endswith("/data.pkl") or name == "data.pkl" for name in names):
            return "it is a zip archive but not a torch file (no data.pkl in it)"
        return None
    if head[:1] == b"\x80":  # pickle protocol >= 2: torch.save's legacy (pre-zip) format
        return None
    if _looks_like_text(head):
        return "it is a text file"
    return "it is neither a zip archive nor a pickle"


def load_state(path: str | os.PathLike) -> dict[str, Any]:
    """Read a training state written by :func:`save_state` (or any ``torch.save`` file of plain
    tensors); never runs code from the file."""
    path = Path(path)
    _require_file(path, "checkpoint")
    problem = _torch_file_problem(path)
    if problem is not None:
        raise MobileNetsError(f"cannot read checkpoint {path}: {problem}; {TORCH_EXPECTED}")
    try:
        with warnings.catch_warnings():
            # torch warns (on stderr) about pickle protocols it did not write; the load below is
            # still weights-only, and a bad file gets one clear error line instead
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        why = next((ln for ln in lines if ln.startswith("Unsupported")), "torch's weights-only unpickler refused it")
        raise MobileNetsError(f"refusing to load {path}: it is not a plain weights file and only plain tensors "
                              f"are read, never code ({why})") from None
    except Exception as exc:  # torch raises many types for a damaged file (KeyError, EOFError, RuntimeError)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MobileNetsError(f"cannot read checkpoint {path}: {first}; {TORCH_EXPECTED}") from None
    if not isinstance(state, dict):
        raise MobileNetsError(f"cannot read checkpoint {path}: expected a dict of tensors, got {type(state).__name__}")
    return state


def read_safetensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and the metadata of a ``.safetensors`` file."""
    path = Path(path)
    _require_file(path, "weights file")
    if not _head(path, 1):
        raise MobileNetsError(f"cannot read weights {path}: the file is empty; {SAFETENSORS_EXPECTED}")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        return load_file(str(path)), meta
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise MobileNetsError(f"cannot read weights {path}: {exc}; {SAFETENSORS_EXPECTED}") from None


def unwrap_state(obj: Any, what: str) -> dict[str, torch.Tensor]:
    """The state dict inside a training checkpoint's usual wrappers (``state_dict_ema``,
    ``state_dict``, ``model``), without DDP's ``module.`` prefix."""
    for key in ("state_dict_ema", "state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise MobileNetsError(f"{what} is not a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def read_weights_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a .safetensors or .pt/.pth/.bin file (the latter only via weights_only loading)."""
    path = Path(path)
    _require_file(path, "weights file")
    if path.suffix == ".safetensors":
        return read_safetensors(path)[0]
    if path.suffix in (".pt", ".pth", ".bin"):
        return unwrap_state(load_state(path), str(path))
    raise MobileNetsError(f"unknown weights format {path.suffix or path.name!r} for {path}; expected .safetensors, "
                          f".pt, .pth or .bin")


def read_json_object(path: str | os.PathLike) -> dict[str, Any]:
    """A JSON file that must hold an object; anything else is one clear MobileNetsError."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MobileNetsError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise MobileNetsError(f"{path} is not a JSON object")
    return doc
