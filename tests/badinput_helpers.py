"""The bad-input suite's one check: a CLI command run in-process is refused cleanly.

``refused(argv, watch=[...])`` runs ``mobilenet ARGV`` through :func:`mobilenets.cli.main.main`
(in this process: no interpreter start per case) and asserts what every bad input must give:
a non-zero exit status, exactly one line on stderr (``mobilenet: error: ...``), no traceback,
no Python keyword-argument form (``name=``) in that line, and nothing written under the
``watch`` folders (every file's path, size and modification time compared before and after).
It returns the line, for the case's own assertions on its wording.

``skipped(argv, ...)`` is the other documented outcome: the command succeeds (exit 0) and says in
one line what it skipped and counted. Import it from any test module (``tests/`` is on
``sys.path``: pytest puts the root conftest's folder there)::

    from badinput_helpers import refused
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

# A Python keyword-argument form (`resume=True`, `val_data=...`): never in a message to a CLI user.
KEYWORD_FORM = re.compile(r"\b\w+=")
# Every line refused() saw in this process: a suite's last test checks them all again.
SEEN: list[str] = []


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    @property
    def stderr_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


def snapshot(folders: Iterable[str | os.PathLike]) -> dict[str, tuple[int, int]]:
    """``{path: (size, mtime_ns)}`` of every file and folder under ``folders`` (missing ones: nothing)."""
    seen: dict[str, tuple[int, int]] = {}
    for folder in folders:
        folder = Path(folder)
        if not folder.exists():
            continue
        for path in [folder, *folder.rglob("*")]:
            st = path.stat()
            seen[str(path)] = (0 if path.is_dir() else st.st_size, 0 if path.is_dir() else st.st_mtime_ns)
    return seen


def run_cli(argv: Sequence[str]) -> CliResult:
    """``mobilenet ARGV`` in this process: exit status, stdout, stderr. An exception that escapes
    ``main`` (a traceback for the user) fails the test with that traceback."""
    from mobilenets.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # noqa: BLE001 - any escape is the traceback a user would see
            raise AssertionError(f"mobilenet {' '.join(map(str, argv))} raised (a traceback for the user):\n"
                                 f"{traceback.format_exc()}") from None
    return CliResult(code, out.getvalue(), err.getvalue())


def check_message(line: str) -> str:
    """``line`` if it is in the user's words: no ``name=`` keyword form, no traceback."""
    assert not KEYWORD_FORM.search(line), f"Python keyword form in the message: {line!r}"
    assert "Traceback" not in line, line
    return line


def refused(argv: Sequence[str], watch: Iterable[str | os.PathLike] = (), *, match: str | None = None) -> str:
    """Assert ``mobilenet ARGV`` is refused cleanly (see the module docstring); its one stderr line."""
    folders = list(watch)
    before = snapshot(folders)
    result = run_cli(argv)
    after = snapshot(folders)
    shown = f"mobilenet {' '.join(map(str, argv))}"
    assert result.code != 0, f"{shown} exited 0; stdout: {result.stdout[-500:]!r}; stderr: {result.stderr[-500:]!r}"
    lines = result.stderr_lines
    assert len(lines) == 1, f"{shown}: {len(lines)} stderr lines, expected exactly one:\n{result.stderr}"
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result.stderr
    written = sorted(set(after) - set(before)) + sorted(p for p in before if p in after and after[p] != before[p])
    removed = sorted(set(before) - set(after))
    assert not written and not removed, f"{shown} changed files: written {written[:5]}, removed {removed[:5]}"
    SEEN.append(lines[0])
    if match is not None:
        assert re.search(match, lines[0]), f"{shown}: {lines[0]!r} does not match {match!r}"
    return check_message(lines[0])


def skipped(argv: Sequence[str], *, match: str) -> CliResult:
    """Assert ``mobilenet ARGV`` succeeds and says (stdout or stderr) a line matching ``match``
    (what it skipped and counted); no traceback, no keyword form in that line."""
    result = run_cli(argv)
    shown = f"mobilenet {' '.join(map(str, argv))}"
    assert result.code == 0, f"{shown} exited {result.code}: {result.stderr[-800:]}"
    assert "Traceback" not in result.stderr, result.stderr
    found = [line for line in (result.stdout + "\n" + result.stderr).splitlines() if re.search(match, line)]
    assert found, f"{shown}: no line matches {match!r}:\n{result.stdout[-800:]}\n{result.stderr[-800:]}"
    for line in found:
        check_message(line)
    return result


def renamed_categories(src: str | os.PathLike, dst: str | os.PathLike, names: dict[str, str]) -> Path:
    """A copy ``dst`` of the COCO folder ``src`` (both splits) with its categories renamed (``names``
    by old name; others kept) and their ids reversed (``100 - id``): the same data under other ids,
    to check that evaluation matches categories by name."""
    dst = Path(dst)
    shutil.copytree(src, dst)
    for split in ("train", "val"):
        path = dst / "annotations" / f"instances_{split}.json"
        doc = json.loads(path.read_text())
        new_id = {c["id"]: 100 - c["id"] for c in doc["categories"]}
        doc["categories"] = [{"id": new_id[c["id"]], "name": names.get(c["name"], c["name"])}
                             for c in doc["categories"]]
        for a in doc["annotations"]:
            a["category_id"] = new_id[a["category_id"]]
        path.write_text(json.dumps(doc))
    return dst


__all__ = ["SEEN", "CliResult", "KEYWORD_FORM", "check_message", "refused", "renamed_categories", "run_cli", "skipped", "snapshot"]
