"""How a training run is run (not what it learns: that is the recipe). Imports no torch."""

from __future__ import annotations

from dataclasses import dataclass


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class TrainOptions:
    """How to run a training job; every field is a ``mobilenet train`` flag of the same name."""

    # Run folder; default: a new folder under runs/.
    output: str | None = None
    # Continue the run in `output` from its newest checkpoint (its saved recipe and data are used).
    resume: bool = False
    # DataLoader worker processes (0: load in the training process). Results do not depend on it.
    workers: int = 0
    # Seed of the data order, the augmentations and the initial weights.
    seed: int = 0
    # "auto", "cpu", "cuda", "cuda:N".
    device: str = "auto"
    # torch CPU threads inside the run (None: torch's default); the caller's count is restored after.
    threads: int | None = None
    # bfloat16 autocast (CPU and GPU).
    amp: bool = False
    # Model and data in float64: slow, for numerical checks such as DDP equivalence.
    float64: bool = False
    # channels_last memory format (faster on CPU and on tensor-core GPUs).
    channels_last: bool = False
    # torch.compile the training model.
    compile: bool = False
    # Synchronise BatchNorm statistics across processes under DDP.
    sync_bn: bool = False
    # Step checkpoints kept in checkpoints/.
    keep_last: int = 3
    # Also checkpoint every N optimizer steps inside an epoch (0: at epoch ends only).
    checkpoint_every: int = 0
    # torch.use_deterministic_algorithms inside the run (bit-exact resume); restored after.
    deterministic: bool = False
    # Stop after this many optimizer steps in total (0: no limit).
    max_steps: int = 0
    # Progress bars and the per-epoch line.
    progress: bool = True
    # Batch size of the validation passes (None: the task's, Task.eval_batch_size).
    eval_batch_size: int | None = None
