"""``mobilenet geo ...``: commands of :mod:`mobilenets.tasks.geo` (being written)."""

from __future__ import annotations


def register(sub) -> None:
    """No subcommands yet."""
