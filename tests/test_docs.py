"""The docs cannot go stale: every documented command line parses with the real parser, the generated
CLI reference is current, the README stays short and starts with the two set-up commands, every dated
results page has its numbers beside it, and the site builds strictly."""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
import time
from functools import cache
from pathlib import Path

import pytest

from mobilenets.cli.common import UsageError
from mobilenets.cli.main import build_parser
from mobilenets.cli.reference import cli_reference

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
FENCE = re.compile(r"^\s*(```|~~~)")
# How a documented line runs the command: `mobilenet ...`, `python -m mobilenets ...`,
# `torchrun ... -m mobilenets ...`, `.venv/bin/mobilenet ...`.
PREFIX = re.compile(r"^(?:\$\s+)?(?:\S*/)?(?:mobilenet\s|(?:python3?|torchrun)\s.*?-m\s+mobilenets\s)")


def documented_pages() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def command_lines(text: str) -> list[tuple[int, str]]:
    """``(line number, command)`` of every ``mobilenet ...`` line inside a fenced code block, with
    ``\\`` continuations joined (the number is the first line's)."""
    out, in_code, pending, start = [], False, None, 0
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            in_code, pending = not in_code, None
            continue
        if not in_code:
            continue
        stripped = line.strip()
        if pending is not None:
            pending += " " + stripped.rstrip("\\").strip()
            if not stripped.endswith("\\"):
                out.append((start, pending))
                pending = None
            continue
        if PREFIX.match(stripped):
            if stripped.endswith("\\"):
                pending, start = stripped[:-1].strip(), number
            else:
                out.append((number, stripped))
    return out


@cache
def parser():
    return build_parser()


def parse_error(command: str) -> str | None:
    """None when ``command`` parses with the real parser, else why not."""
    try:
        words = shlex.split(command, comments=True)
    except ValueError as exc:
        return f"cannot be split: {exc}"
    words = [w for w in words if w != "$"]
    if "mobilenets" in words and "-m" in words:  # python -m mobilenets / torchrun ... -m mobilenets
        argv = words[words.index("mobilenets") + 1:]
    else:
        argv = words[next(i for i, w in enumerate(words) if w.endswith("mobilenet")) + 1:]
    try:
        parser().parse_args(argv)
    except UsageError as exc:
        return str(exc)
    except SystemExit as exc:  # --help / --version exit 0; anything else is an error
        if exc.code not in (0, None):
            return f"exit status {exc.code}"
    return None


def all_command_lines() -> list[tuple[str, int, str]]:
    found = []
    for page in documented_pages():
        for number, command in command_lines(page.read_text(encoding="utf-8")):
            found.append((str(page.relative_to(ROOT)), number, command))
    return found


def test_every_documented_command_line_parses(capsys):
    lines = all_command_lines()
    assert len(lines) > 50, "the extractor found almost no command lines: is it broken?"
    assert any(where == "README.md" for where, _, _ in lines)
    bad = [f"{where}:{number}: {command}\n    -> {why}"
           for where, number, command in lines if (why := parse_error(command)) is not None]
    capsys.readouterr()  # argparse's --help output, if a page shows one
    assert not bad, "documented command lines the parser refuses:\n" + "\n".join(bad)


def test_the_checker_fails_on_a_bad_line(tmp_path):
    """Negative control: the same extraction and parsing flag a wrong flag, a wrong value, a missing
    subcommand and a continued line whose second half is wrong."""
    page = "\n".join([
        "text mobilenet --not-parsed-outside-code",
        "```sh",
        "mobilenet train --epochs 3                  # fine",
        "mobilenet train --no-such-flag",
        "mobilenet cost --alpha -1",
        "mobilenet detect",
        "mobilenet train --epochs 3 \\",
        "    --batch-size zero",
        "```",
    ])
    found = command_lines(page)
    assert [n for n, _ in found] == [3, 4, 5, 6, 7]
    assert found[-1][1] == "mobilenet train --epochs 3 --batch-size zero"
    verdicts = [parse_error(c) for _, c in found]
    assert verdicts[0] is None
    assert all(v is not None for v in verdicts[1:]), verdicts
    assert "--no-such-flag" in verdicts[1]


def test_prefixes_recognised():
    text = "```\npython -m mobilenets cost --json\ntorchrun --nproc-per-node 2 -m mobilenets train --sync-bn\n" \
           ".venv/bin/mobilenet models\nmobilenetv1 is not a command\n```\n"
    assert [c for _, c in command_lines(text)] == ["python -m mobilenets cost --json",
                                                  "torchrun --nproc-per-node 2 -m mobilenets train --sync-bn",
                                                  ".venv/bin/mobilenet models"]
    assert all(parse_error(c) is None for _, c in command_lines(text))


def test_cli_reference_is_current():
    assert (DOCS / "cli.md").read_text(encoding="utf-8") == cli_reference(), (
        "docs/cli.md is stale: run `make docs` or python -m mobilenets.cli.reference > docs/cli.md")


def test_cli_reference_covers_every_command_and_flag():
    text = cli_reference()
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, command in sub.choices.items():
        assert f"### mobilenet {name}\n" in text
        for action in command._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help"):
                    assert f"`{flag}" in text or f", {flag}" in text, (name, flag)


def test_cli_reference_does_not_depend_on_the_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "40")
    narrow = cli_reference()
    monkeypatch.setenv("COLUMNS", "250")
    assert cli_reference() == narrow


def test_readme_is_short_and_starts_with_the_two_commands():
    data = README.read_bytes()
    assert len(data) <= 10_240, f"README.md is {len(data)} bytes; at most 10,240 (move detail into docs/)"
    lines = [line for line in data.decode("utf-8").splitlines() if line.strip()]
    assert lines[0].startswith("# ")
    assert lines[1].startswith("```")
    assert lines[2].startswith("make demo") and lines[3].startswith("make test"), lines[:4]


def test_every_results_page_is_dated_with_numbers_beside_it():
    pages = [p for p in sorted((DOCS / "results").glob("*.md")) if p.name != "index.md"]
    assert pages
    index = (DOCS / "results" / "index.md").read_text(encoding="utf-8")
    for page in pages:
        assert re.match(r"\d{4}-\d{2}-\d{2}-", page.name), page.name
        text = page.read_text(encoding="utf-8")
        for field in ("| date |", "| machine |", "| command |", "| numbers |"):
            assert field in text, (page.name, field)
        assert page.with_suffix(".csv").exists() or page.with_suffix(".json").exists(), page.name
        assert f"({page.name})" in index, f"{page.name} is not listed in docs/results/index.md"


MKDOCS = importlib.util.find_spec("mkdocs") is not None and importlib.util.find_spec("mkdocstrings") is not None


@pytest.mark.skipif(not MKDOCS, reason="mkdocs/mkdocstrings not installed (the `docs` extra; `make test` installs it)")
def test_site_builds_strictly(tmp_path):
    """`mkdocs build --strict`: a broken link, a missing page or a docstring mkdocstrings cannot
    render fails the build (about 5 s)."""
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "WARNING" not in result.stderr, result.stderr[-3000:]
    assert (tmp_path / "site" / "cli" / "index.html").exists()
    assert (tmp_path / "site" / "api" / "models" / "index.html").exists()
    assert time.perf_counter() - start < 120
