"""``mobilenet detect ...``: commands of :mod:`mobilenets.tasks.detect` (being written)."""

from __future__ import annotations


def register(sub) -> None:
    """No subcommands yet."""
