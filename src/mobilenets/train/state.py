"""What a training checkpoint holds and how a run folder is laid out.

A run folder: ``config.json`` (what was trained: model, recipe, data, task metadata),
``metrics.jsonl`` (one line per epoch), ``best.safetensors`` / ``last.safetensors`` (weights),
``checkpoints/step-*.pt`` (full training states: model, optimizer, scheduler, EMA, RNG states and
the position inside the epoch), ``bad_files.txt`` (unreadable images, if any) and
``tensorboard/``. States are read back only with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mobilenets.weights.checkpoint import save_state


@dataclass
class RunState:
    epoch: int = 0  # epoch in progress (0-based)
    step_in_epoch: int = 0  # optimizer steps done inside it
    global_step: int = 0
    best: float | None = None  # best value of the task's monitored metric so far
    bad_files: list[list[str]] = field(default_factory=list)

    @classmethod
    def from_json(cls, text: str) -> RunState:
        data = json.loads(text)
        if "best_top1" in data:  # written by 0.1.x
            best = data.pop("best_top1")
            data["best"] = None if best is None or best < 0 else best
        return cls(**data)


def rng_state() -> dict[str, Any]:
    """Every global RNG the loop draws from (torch CPU and CUDA, Python, NumPy), as plain data."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "python": json.dumps(random.getstate()),
        "numpy": json.dumps([np_state[0], np_state[1].tolist(), *np_state[2:]]),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    py = json.loads(state["python"])
    random.setstate((py[0], tuple(py[1]), py[2]))
    npv = json.loads(state["numpy"])
    np.random.set_state((npv[0], np.array(npv[1], dtype=np.uint32), *npv[2:]))
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def new_run_dir(root: str | Path = "runs") -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(root) / stamp
    i = 1
    while path.exists():
        path, i = Path(root) / f"{stamp}-{i}", i + 1
    return path


def latest_state(out: Path) -> Path | None:
    states = sorted((out / "checkpoints").glob("step-*.pt"))
    return states[-1] if states else None


def save_checkpoint(out: Path, st: RunState, *, model: torch.nn.Module, optimizer, scheduler, ema,
                    model_config_json: str, run_meta: dict[str, Any], keep_last: int) -> Path:
    """A full training state as ``checkpoints/step-<global step>.pt``; older ones beyond
    ``keep_last`` are removed (after the new one is safely written)."""
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "ema": ema.module.state_dict() if ema is not None else None,
        "rng": rng_state(),
        "run_state": json.dumps(dataclasses.asdict(st)),
        "model_config": model_config_json,
        "run": json.dumps(run_meta),
    }
    path = save_state(state, out / "checkpoints" / f"step-{st.global_step:09d}.pt")
    for old in sorted((out / "checkpoints").glob("step-*.pt"))[:-keep_last]:
        old.unlink(missing_ok=True)
    return path
