"""Temporary: the old add_cli of mobilenets.bench.engines; being replaced by this file's own register()."""

from mobilenets.bench.engines import add_cli as register  # noqa: F401
