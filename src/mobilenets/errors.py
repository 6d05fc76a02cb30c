"""The library's one exception for bad input, and how its messages name what the user typed.

Every check of a value a user gave (a model name, an α, a folder, a file, a flag's value) raises
:class:`MobileNetsError` with one line saying what was wrong and with which value. The ``mobilenet``
command turns it into one line on stderr and exit status 2. It is a ``ValueError``, so code that
catches ``ValueError`` keeps working.

A message names an argument the way its caller typed it: ``--val-data`` and ``--task embedding``
under the ``mobilenet`` command, ``val_data`` and ``task='embedding'`` from Python. The one
mechanism for this is a context variable that :func:`mobilenets.cli.main.main` sets for the
duration of a command (:func:`cli_call`); library code builds the words with :func:`arg` (an
argument, optionally with a value) and :func:`resume_hint` (how to continue or restart a run).
"""

from __future__ import annotations

import contextlib
import shlex
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from typing import Any


class MobileNetsError(ValueError):
    """Bad input to a mobilenets function: the message says what was wrong and with which value."""


class DataNotFoundError(MobileNetsError, FileNotFoundError):
    """A file or folder the caller named does not exist (also a ``FileNotFoundError``)."""


_UNSET: Any = object()
# The command line being run (program name first), or None when called from Python.
COMMAND_LINE: ContextVar[tuple[str, ...] | None] = ContextVar("mobilenets_command_line", default=None)


@contextlib.contextmanager
def cli_call(argv: Sequence[str], prog: str = "mobilenet") -> Iterator[None]:
    """Inside this block messages name arguments as command-line flags (``argv``: the command's
    arguments, without the program name)."""
    token = COMMAND_LINE.set((prog, *argv))
    try:
        yield
    finally:
        COMMAND_LINE.reset(token)


def from_cli() -> bool:
    """True while a ``mobilenet`` command runs (see :func:`cli_call`)."""
    return COMMAND_LINE.get() is not None


def arg(name: str, value: Any = _UNSET, *, flag: str | None = None) -> str:
    """Argument ``name`` (its Python name), with ``value`` if given, in the caller's words:
    ``--min-per-cell`` / ``--task embedding`` from the command line (``flag`` when the flag is not
    ``--`` + the name with dashes), ``min_per_cell`` / ``task='embedding'`` from Python."""
    if from_cli():
        words = flag or "--" + name.replace("_", "-")
        if value is _UNSET:
            return words
        if value is True:
            return words
        return f"{words} {value}"
    if value is _UNSET:
        return name
    return f"{name}={value!r}"


def resume_hint(out: Any) -> tuple[str, str]:
    """(how to continue the run in folder ``out``, how to start over), in the caller's words:
    the exact command line with ``--resume`` / ``--output OUT`` from the ``mobilenet`` command,
    ``resume=True`` with ``output=...`` from Python."""
    line = COMMAND_LINE.get()
    if line is None:
        return (f"call again with resume=True and output={str(out)!r}",
                f"give another output folder, or delete {out}")
    words = list(line)
    if "--resume" not in words:
        words.append("--resume")
    if not any(w == "--output" or w.startswith("--output=") for w in words):
        words += ["--output", str(out)]
    return f"run `{shlex.join(words)}`", f"choose another --output, or delete {out}"


__all__ = ["COMMAND_LINE", "DataNotFoundError", "MobileNetsError", "arg", "cli_call", "from_cli", "resume_hint"]
