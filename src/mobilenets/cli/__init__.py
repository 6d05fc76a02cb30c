"""The ``mobilenet`` command: one file per command group, each a thin layer over library functions."""

from mobilenets.cli.main import main

__all__ = ["main"]
