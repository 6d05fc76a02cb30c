"""The check every bad input of the geo/distill/finetune/faces/convert/figures/runner suite must
pass (badin-detect's tests/badinput_helpers.py does the same for detection; the lead unifies them).

``refused(argv, watch)`` runs ``mobilenet ARGV`` in this process and asserts: exit status 2,
exactly one line on stderr (``mobilenet: error: ...``), no traceback, no Python keyword form
(``name=``), nothing written or changed under the ``watch`` paths. It returns that line.
Every line it saw is kept in :data:`SEEN` (the suite's last test checks them all again).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import traceback
from collections.abc import Iterable, Sequence
from pathlib import Path

KEYWORD_FORM = re.compile(r"\b\w+=")
SEEN: list[str] = []


def tree(paths: Iterable[str | os.PathLike]) -> dict[str, tuple[int, int]]:
    """``{path: (size, mtime_ns)}`` of everything under ``paths`` (folders as (0, 0))."""
    found: dict[str, tuple[int, int]] = {}
    for root in map(Path, paths):
        if not root.exists() and not root.is_symlink():
            continue
        for p in [root, *root.rglob("*")] if root.is_dir() else [root]:
            st = p.lstat()
            found[str(p)] = (0, 0) if p.is_dir() else (st.st_size, st.st_mtime_ns)
    return found


def run(argv: Sequence[str]) -> tuple[int, str, str]:
    """``(exit status, stdout, stderr)`` of ``mobilenet ARGV`` run in this process; anything that
    escapes ``main`` is the traceback a user would see, and fails the test."""
    from mobilenets.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([os.fspath(a) for a in argv])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # noqa: BLE001 - any escape is a traceback for the user
            raise AssertionError(f"mobilenet {' '.join(map(str, argv))}: traceback\n{traceback.format_exc()}") from None
    return code, out.getvalue(), err.getvalue()


def refused(argv: Sequence[str], watch: Iterable[str | os.PathLike] = (), *, match: str | None = None) -> str:
    """Assert that ``mobilenet ARGV`` is refused cleanly (see the module docstring); the line."""
    watch = list(watch)
    before = tree(watch)
    code, _, err = run(argv)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (code, err)
    assert len(lines) == 1 and lines[0].startswith("mobilenet: error: "), lines
    line = lines[0]
    SEEN.append(line)
    assert "Traceback" not in err and not KEYWORD_FORM.search(line), line
    assert tree(watch) == before, f"{line}\nwritten or changed: {set(tree(watch).items()) ^ set(before.items())}"
    if match is not None:
        assert re.search(match, line), (match, line)
    return line
