"""Command group for the paper's studies: finetune, pick, reproduce, figures (issue 15; in progress)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Placeholder: the commands are added as they are built."""
