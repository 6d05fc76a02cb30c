"""Importing TensorFlow safely beside PyTorch."""

from __future__ import annotations

import importlib
from typing import Any


def import_tf(name: str = "tensorflow") -> Any:
    """Import TensorFlow, Keras or a module of theirs. torch._dynamo (which loads triton) is
    imported first: loading triton after TensorFlow crashes the process (segmentation fault) with
    these wheels, and timm, torchvision, torch.onnx and torch.compile all load it later. Every
    TensorFlow import in the package goes through here."""
    import torch._dynamo  # noqa: F401

    return importlib.import_module(name)
