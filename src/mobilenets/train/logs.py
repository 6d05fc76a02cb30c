"""What a run writes as it goes: ``metrics.jsonl``, TensorBoard events, unreadable-file reports."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from mobilenets.utils.scoped import stub_module


class BadFileLog:
    """Unreadable images: each reported once (the first time it is met, not every epoch) and
    listed in ``bad_files.txt`` in the run folder, rewritten atomically at each checkpoint so a
    killed run keeps its list. ``known`` is the run state's list (resumed runs carry it on)."""

    def __init__(self, path: Path, known: list[list[str]], report: Callable[[str], None] | None) -> None:
        self.path, self.known, self.report = path, known, report
        self.seen = {p for p, _ in known}
        self.dirty = False

    def add(self, bad: Iterable[tuple[str, str]]) -> None:
        for path, reason in bad:
            if path in self.seen:
                continue
            self.seen.add(path)
            self.known.append([path, reason])
            self.dirty = True
            if self.report is not None:
                self.report(f"skipped unreadable image {path}: {reason} (listed in {self.path})")

    def flush(self) -> None:
        if not self.dirty or not self.known:
            return
        from mobilenets.weights.checkpoint import atomic_write

        text = "".join(f"{p}\t{r}\n" for p, r in self.known)
        atomic_write(self.path, lambda tmp: Path(tmp).write_text(text))
        self.dirty = False


class RunLog:
    """``metrics.jsonl`` (one JSON object per epoch) and TensorBoard scalars, on the main rank."""

    def __init__(self, out: Path, enabled: bool = True) -> None:
        self.out, self.enabled = out, enabled
        self.writer = self._tensorboard() if enabled else None

    def _tensorboard(self) -> Any:
        # TensorBoard imports TensorFlow when it is installed (it is, for `mobilenet convert/export`)
        # unless `tensorboard.compat.notf` exists, its documented switch to the built-in TF stub.
        # Writing event files needs only the stub; loading TF here would cost seconds, print TF's
        # log lines, and crash a later torch.compile (triton loaded after TF segfaults). The stub
        # stays in sys.modules only while the writer is set up.
        with stub_module("tensorboard.compat.notf"):
            try:
                import tensorboard.compat
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is a dependency, but a broken install should not stop training
                return None
            _ = tensorboard.compat.tf.__name__  # resolve TensorBoard's lazy `tf` now, to the stub
            return SummaryWriter(str(self.out / "tensorboard"))

    def epoch(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.out / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for k, v in record.items():
                if k not in ("epoch", "step", "time_s") and isinstance(v, (int, float)):
                    self.writer.add_scalar(k, v, record["epoch"])
            self.writer.flush()

    def step(self, step: int, losses: dict[str, float]) -> None:
        if self.writer is not None:
            for k, v in losses.items():
                self.writer.add_scalar(f"train_{k}_step", v, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
