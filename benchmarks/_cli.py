"""Argument parsing shared by the benchmark scripts (run as ``python benchmarks/NAME.py``, so this
folder is on ``sys.path``)."""

from __future__ import annotations

import argparse
import sys

from mobilenets.cli.common import positive_int  # noqa: F401  (the one definition; scripts import it from here)


class ScriptParser(argparse.ArgumentParser):
    """argparse, but a bad argument gives one clear line (and exit status 2), not usage text."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)
