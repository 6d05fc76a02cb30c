"""The one place the package keeps files between runs.

Every on-disk cache (``pick``'s timings, the detection stand-in dataset, ...) lives under
:func:`cache_dir`: ``$MOBILENETS_CACHE`` if set, else ``$XDG_CACHE_HOME/mobilenets`` (the XDG base
directory convention), else ``~/.cache/mobilenets``. The variables are read on every call, so a test
or a script that sets them sees its own folder. Nothing is created here: a cache makes its folder
when it first writes.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$MOBILENETS_CACHE``, else ``$XDG_CACHE_HOME/mobilenets``, else ``~/.cache/mobilenets``
    (an empty variable counts as unset, as the XDG specification says)."""
    own = os.environ.get("MOBILENETS_CACHE")
    if own:
        return Path(own).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "mobilenets"


def torch_hub_checkpoints() -> Path:
    """torch.hub's download folder, as torch.hub computes it: ``$TORCH_HOME/hub/checkpoints``,
    ``$TORCH_HOME`` defaulting to ``$XDG_CACHE_HOME/torch``, else ``~/.cache/torch``. Published
    weights are cached there (beside torch.hub's own), unless ``$MOBILENETS_HOME`` names a folder."""
    torch_home = os.environ.get("TORCH_HOME")
    if not torch_home:
        xdg = os.environ.get("XDG_CACHE_HOME")
        torch_home = str(Path(xdg) / "torch") if xdg else str(Path.home() / ".cache" / "torch")
    return Path(torch_home).expanduser() / "hub" / "checkpoints"


def cache_dir(*parts: str) -> Path:
    """A folder under :func:`cache_root`, e.g. ``cache_dir("pick")`` (not created)."""
    return cache_root().joinpath(*parts)


__all__ = ["cache_dir", "cache_root", "torch_hub_checkpoints"]
