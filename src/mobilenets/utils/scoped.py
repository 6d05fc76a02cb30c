"""Context managers that change process-wide state and always put it back.

Library functions never leave the caller's process changed: torch's thread count, dynamo's
caches, deterministic mode, the matplotlib backend, ``sys.modules``, ``sys.stdout``/``sys.stderr``
and the output file descriptors are each set inside one of these and restored on exit, error or not.
"""

from __future__ import annotations

import contextlib
import os
import sys
import types
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """``torch.set_num_threads(threads)`` inside the block (None: leave it); the caller's count
    is restored after."""
    import torch

    saved = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(saved)


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool) -> Iterator[None]:
    """``torch.use_deterministic_algorithms(enabled)`` inside the block; the caller's setting
    (and its ``warn_only`` flag) is restored after."""
    import torch

    saved = torch.are_deterministic_algorithms_enabled()
    saved_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    if enabled:
        torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved, warn_only=saved_warn)


@contextlib.contextmanager
def fresh_dynamo() -> Iterator[None]:
    """Compile inside the block from empty dynamo caches, and leave none of the block's compiled
    code behind: ``torch._dynamo.reset()`` on entry and on exit. (Dynamo's caches are global;
    a reset drops the caller's compiled code too, so callers that compile should not hold
    compiled functions across a call into this block: they recompile on next use.)"""
    import torch._dynamo

    torch._dynamo.reset()
    try:
        yield
    finally:
        torch._dynamo.reset()


@contextlib.contextmanager
def matplotlib_backend(name: str = "Agg") -> Iterator[Any]:
    """``pyplot`` with backend ``name`` inside the block; the caller's backend is restored after.
    Yields the ``matplotlib.pyplot`` module."""
    import matplotlib

    saved = matplotlib.get_backend()
    import matplotlib.pyplot as plt

    plt.switch_backend(name)
    try:
        yield plt
    finally:
        plt.switch_backend(saved)


@contextlib.contextmanager
def stub_module(name: str) -> Iterator[None]:
    """An empty module under ``sys.modules[name]`` inside the block, unless one is there already;
    removed after (only if this block put it there)."""
    added = name not in sys.modules
    if added:
        sys.modules[name] = types.ModuleType(name)
    try:
        yield
    finally:
        if added:
            sys.modules.pop(name, None)


class _Discard:
    """A text stream that drops what is written (``contextlib`` redirection target)."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


@contextlib.contextmanager
def quiet_prints(enabled: bool = True) -> Iterator[None]:
    """Drop what Python code prints to ``sys.stdout`` / ``sys.stderr`` inside the block
    (``contextlib.redirect_stdout`` / ``redirect_stderr``; with ``enabled=False`` nothing is
    dropped). The file descriptors are left alone: what C code writes to them, and what processes
    started inside the block (DataLoader workers) write, still reaches the terminal. ``sys.stdout``
    is one object for all threads, so keep the block around the noisy call only. This is the one
    to use while a model trains or evaluates (COCO evaluation's progress lines)."""
    if not enabled:
        yield
        return
    null = _Discard()
    with contextlib.redirect_stdout(null), contextlib.redirect_stderr(null):
        yield


@contextlib.contextmanager
def quiet_native_output(enabled: bool = True) -> Iterator[None]:
    """Silence what third-party code prints inside the block, from Python *and from C/C++*, by
    pointing file descriptors 1 and 2 at ``/dev/null``: TensorFlow's and TFLite's converter lines
    (written by C++ straight to the descriptors, where ``contextlib`` cannot reach), the ONNX
    exporter's and ExecuTorch's. With ``enabled=False`` nothing is silenced (``--verbose``).

    Process-wide: while it runs, *every* thread's output vanishes, tracebacks included. So it is
    for converting, exporting and loading exported files, never around training or evaluation in a
    training run (use :func:`quiet_prints` there)."""
    if not enabled:
        yield
        return
    streams = []
    for stream in (sys.stdout, sys.stderr):
        try:
            streams.append((stream, stream.fileno()))
        except (AttributeError, OSError, ValueError):  # captured streams (pytest) have no descriptor
            pass
    saved: list[tuple[int, int]] = []
    saved_tf_level = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), contextlib.redirect_stderr(null):
        try:
            for stream, fd in streams:
                stream.flush()
                saved.append((fd, os.dup(fd)))
                os.dup2(null.fileno(), fd)
            yield
        finally:
            for fd, copy_fd in saved:
                os.dup2(copy_fd, fd)
                os.close(copy_fd)
            if saved_tf_level is None:
                os.environ.pop("TF_CPP_MIN_LOG_LEVEL", None)
            else:
                os.environ["TF_CPP_MIN_LOG_LEVEL"] = saved_tf_level


# The name the exporters and converters (deploy/, bench/, cli/weights.py) call it by.
quiet_output = quiet_native_output
