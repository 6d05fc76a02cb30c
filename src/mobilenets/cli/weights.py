"""Temporary: the old add_cli of mobilenets.weights.convert; being replaced by this file's own register()."""

from mobilenets.weights.convert import add_cli as register  # noqa: F401
