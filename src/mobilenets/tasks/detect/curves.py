"""``curves.png`` of a detection run: training loss and validation AP per epoch, from its
``metrics.jsonl`` (written at the end of every run, and by hand for any run folder)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from mobilenets.utils.scoped import matplotlib_backend


def plot_curves(run: str | os.PathLike) -> Path:
    """``curves.png`` of a run: training loss and validation AP / AP50 per epoch."""
    run = Path(run)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    epochs = [r["epoch"] for r in rows]
    with matplotlib_backend("Agg") as plt:
        fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
        a.plot(epochs, [r["train_loss"] for r in rows], marker=".")
        a.set(title="training loss", xlabel="epoch")
        for key in ("val_AP", "val_AP50", "val_AP75"):
            if any(key in r for r in rows):
                b.plot(epochs, [r.get(key, float("nan")) for r in rows], marker=".", label=key[4:])
        b.set(title="validation (COCO)", xlabel="epoch", ylim=(0, 1))
        b.legend()
        for ax in (a, b):
            ax.grid(alpha=0.3)
        minutes = rows[-1]["time_s"] / 60 if rows else 0
        fig.suptitle(f"{run.name}: {len(rows)} epochs, {minutes:.1f} min")
        fig.tight_layout()
        fig.savefig(run / "curves.png", dpi=110)
        plt.close(fig)
    return run / "curves.png"


__all__ = ["plot_curves"]
