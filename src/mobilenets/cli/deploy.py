"""Temporary: the old add_cli of mobilenets.deploy.export; being replaced by this file's own register()."""

from mobilenets.deploy.export import add_cli as register  # noqa: F401
