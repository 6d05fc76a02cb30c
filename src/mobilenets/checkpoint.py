"""Checkpoints that are written atomically and read without ever executing code from the file.

* Model weights: safetensors (``*.safetensors``), with the model's config in the file's metadata.
* Full training state (model, optimizer, scheduler, EMA, RNG states, position in the epoch):
  ``torch.save`` of plain tensors/numbers/strings, read back only with
  ``torch.load(weights_only=True)``, which refuses any pickle that would run code.
* Every write goes to a temporary file in the same folder, is flushed to disk, then renamed over
  the target, so a crash never leaves a half-written checkpoint under the real name.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .config import MobileNetConfig
from .model import MobileNet


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


def load_state(path: str | os.PathLike) -> dict[str, Any]:
    """Read a training state written by :func:`save_state`; never runs code from the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"refusing to load {path}: it is not a plain weights file ({first})") from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise ValueError(f"cannot read checkpoint {path}: {str(exc).splitlines()[0] if str(exc) else exc!r}") from None
    if not isinstance(state, dict):
        raise ValueError(f"cannot read checkpoint {path}: expected a dict of tensors, got {type(state).__name__}")
    return state


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        return load_file(str(path)), meta
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(f"cannot read weights {path}: {exc}") from None


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A run folder means its best weights (else its last); a file means itself."""
    path = Path(path)
    if path.is_dir():
        for name in ("best.safetensors", "last.safetensors", "model.safetensors"):
            if (path / name).is_file():
                return path / name
        states = sorted((path / "checkpoints").glob("step-*.pt"))
        if states:
            return states[-1]
        raise FileNotFoundError(f"no checkpoint in folder {path} (expected best.safetensors or checkpoints/)")
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return path


def load_model(path: str | os.PathLike) -> tuple[MobileNet, dict[str, Any]]:
    """The model a checkpoint describes, with its weights, in eval mode, and the run metadata
    (run config, classes) where the checkpoint has them."""
    file = resolve_checkpoint(path)
    meta: dict[str, Any] = {}
    if file.suffix == ".safetensors":
        state, header = _read_safetensors(file)
        if "mobilenet_config" not in header:
            raise ValueError(f"{file} has no mobilenet_config in its metadata: not a mobilenets checkpoint")
        cfg = MobileNetConfig.from_json(header["mobilenet_config"])
        if "run" in header:
            meta = json.loads(header["run"])
    elif file.suffix in (".pt", ".pth"):
        full = load_state(file)
        if "model" not in full or "model_config" not in full:
            raise ValueError(f"{file} is not a mobilenets training checkpoint (no model/model_config)")
        cfg = MobileNetConfig.from_json(full["model_config"])
        state = full["ema"] if full.get("ema") is not None else full["model"]
        meta = json.loads(full.get("run", "{}"))
    else:
        raise ValueError(f"unknown checkpoint format {file.suffix!r} for {file}; expected .safetensors or .pt")
    model = MobileNet(cfg)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"weights in {file} do not fit the model its config describes: "
                         f"{str(exc).splitlines()[0]}") from None
    return model.eval(), meta
