"""Our counter's mult-adds and parameters of a config, cached on disk.

Counting needs the model package (and so torch, seconds to import on a busy machine); a cached
``pick`` query must answer in a few seconds, so the counts of every config met are kept in
``$MOBILENETS_CACHE/pick/costs.json`` (they depend on the config alone, not on the machine).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from mobilenets.models.config import MobileNetConfig


def cache_root() -> Path:
    """``$MOBILENETS_CACHE/pick`` if set, else ``~/.cache/mobilenets/pick``."""
    root = os.environ.get("MOBILENETS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "mobilenets")
    return Path(root) / "pick"


class CostCache:
    """``cost(cfg) -> (mult_adds, params, params_total)``, counted once per config and kept."""

    def __init__(self, folder: str | os.PathLike | None = None) -> None:
        self.path = Path(folder or cache_root()) / "costs.json"
        try:
            self.known = json.loads(self.path.read_text()) if self.path.is_file() else {}
        except ValueError:
            self.known = {}  # damaged: count again
        self.dirty = False

    def cost(self, cfg: MobileNetConfig) -> tuple[int, int, int]:
        key = cfg.to_json(sort_keys=True)
        if key not in self.known:
            from mobilenets.cost.count import analytical_cost

            rep = analytical_cost(cfg)
            self.known[key] = [rep.mult_adds, rep.params, rep.params_total]
            self.dirty = True
        return tuple(self.known[key])  # type: ignore[return-value]

    def save(self) -> None:
        if not self.dirty:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.known))
            os.replace(tmp, self.path)
        except OSError:
            pass  # an unwritable cache only costs time
        self.dirty = False

