"""Which torch device a ``device`` argument names, with one clear error for each wrong value."""

from __future__ import annotations

import re

from mobilenets.errors import MobileNetsError

DEVICE_HELP = "auto (default: the GPU if there is one, else the CPU), cpu, cuda or cuda:N"


def resolve_device(name: str = "auto", local_rank: int = 0):
    """The ``torch.device`` for ``name``: "auto", "cpu", "cuda" (the process's GPU under torchrun)
    or "cuda:N". Raises :class:`MobileNetsError` for an unknown name or a GPU that is not there."""
    import torch

    text = str(name).strip().lower()
    if text == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    match = re.fullmatch(r"cuda(?::(\d+))?", text)
    if not match:
        raise MobileNetsError(f"unknown device {name!r}; use {DEVICE_HELP}")
    if not torch.cuda.is_available():
        raise MobileNetsError(f"device {name!r} asked for, but torch sees no CUDA GPU on this machine "
                              f"(use device 'cpu' or 'auto')")
    index = int(match.group(1)) if match.group(1) is not None else local_rank
    if index >= torch.cuda.device_count():
        raise MobileNetsError(f"device {name!r} asked for, but this machine has {torch.cuda.device_count()} GPU(s)")
    return torch.device(f"cuda:{index}")
