"""``mobilenet distill ...``: commands of :mod:`mobilenets.tasks.distill` (being written)."""

from __future__ import annotations


def register(sub) -> None:
    """No subcommands yet."""
