"""Every command's help tells the truth: the defaults it states are the parser's, every command has
a description and examples, and every example parses with the real parser.

The convention the checker reads: ``default X`` (a space, then the value) states the parser's
default value; ``default: words`` (a colon) describes in words what happens when the flag is not
given (the library decides: "default: the model's", "default: torch's"). An option whose parser
default is a real value (not None, False or SUPPRESS) must state it as ``default X``; an option
whose help says ``default X`` must have X as its parser default.
"""

from __future__ import annotations

import argparse
import re
import shlex

import pytest

from mobilenets.cli.common import Parser, UsageError
from mobilenets.cli.main import build_parser

# "default X": X up to a space, comma, semicolon, colon or closing parenthesis; not "by default".
STATED = re.compile(r"(?<!by )\bdefault ([^\s,;:)]+)")
SKIPPED_ACTIONS = (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)


def leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """``(command path, parser)`` of every subcommand that has no subcommands, recursively."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
        return
    for action in subs:
        for name, child in action.choices.items():
            yield from leaves(child, (*path, name))


def _same(stated: str, default) -> bool:
    stated = stated.rstrip(".") or stated  # a sentence's full stop, unless the value is "."
    if isinstance(default, (list, tuple)):
        return stated == " ".join(map(str, default)) or (len(default) == 1 and stated == str(default[0]))
    if isinstance(default, bool):
        return stated.lower() in (str(default).lower(), "off" if not default else "on")
    if isinstance(default, (int, float)):
        try:
            return float(stated) == float(default)
        except ValueError:
            return False
    return stated == str(default)


def help_lies(parser: argparse.ArgumentParser) -> list[str]:
    """What the help of ``parser``'s options says wrongly about their defaults (empty: nothing)."""
    problems = []
    for action in parser._actions:
        if isinstance(action, SKIPPED_ACTIONS) or not action.option_strings:
            continue
        flag = action.option_strings[-1]
        text = " ".join((action.help or "").split()).replace("%%", "%")
        default = parser.get_default(action.dest)
        stated = STATED.findall(text)
        if default is not None and default is not False and default is not argparse.SUPPRESS:
            if not any(_same(s, default) for s in stated):
                problems.append(f"{flag}: parser default {default!r}, help does not state it: {text!r}")
        for s in stated:
            if not _same(s, default):
                problems.append(f"{flag}: help says 'default {s}', the parser's default is {default!r}")
    return problems


def example_lines(epilog: str | None) -> list[str]:
    return [line.strip() for line in (epilog or "").splitlines() if line.strip().startswith("mobilenet ")]


COMMANDS = sorted(leaves(build_parser()), key=lambda item: item[0])
IDS = [" ".join(path) for path, _ in COMMANDS]


def test_the_walk_finds_every_command():
    """The walk reaches nested commands (detect, geo, faces) and the top-level ones."""
    assert {"eval", "predict", "bench", "detect eval", "detect anchors", "geo cells", "faces crop", "pick",
            "train", "export"} <= set(IDS)


@pytest.mark.parametrize("path, parser", COMMANDS, ids=IDS)
def test_help_states_the_true_defaults(path, parser):
    assert help_lies(parser) == []


@pytest.mark.parametrize("path, parser", COMMANDS, ids=IDS)
def test_description_and_examples(path, parser):
    assert parser.description and len(parser.description.split()) >= 5, f"{' '.join(path)}: no description"
    epilog = parser.epilog or ""
    assert epilog.startswith(("example:", "examples:")), f"{' '.join(path)}: the epilog must start with example(s):"
    lines = example_lines(epilog)
    assert lines, f"{' '.join(path)}: no `mobilenet ...` example line"
    assert all(shlex.split(line)[1:len(path) + 1] == list(path) for line in lines), lines


@pytest.mark.parametrize("path, parser", COMMANDS, ids=IDS)
def test_examples_parse(path, parser):
    for line in example_lines(parser.epilog):
        try:
            build_parser().parse_args(shlex.split(line, comments=True)[1:])  # a trailing "# ..." is a shell comment
        except UsageError as exc:
            pytest.fail(f"{line}: {exc}")


def test_help_shows_the_examples_as_written(capsys):
    """RawDescriptionHelpFormatter: the example lines are not re-wrapped into one paragraph."""
    with pytest.raises(SystemExit):
        build_parser().parse_args(["predict", "--help"])
    out = capsys.readouterr().out
    assert "\n  mobilenet predict --checkpoint" in out


def _parser(help_text: str, default) -> argparse.ArgumentParser:
    p = Parser(prog="toy")
    p.add_argument("--size", type=int, default=default, help=help_text)
    return p


@pytest.mark.parametrize("help_text, default", [
    ("side in pixels (default 32)", 64),  # states a value that is not the parser's
    ("side in pixels", 64),  # does not state a real default
    ("side in pixels (default: none)", 64),  # states it in words only
    ("side in pixels (default 64)", None),  # states a value the parser does not have
])
def test_the_checker_catches_a_lying_help(help_text, default):
    """Negative control: a hand-made parser whose help lies fails the check."""
    assert help_lies(_parser(help_text, default))


@pytest.mark.parametrize("help_text, default", [
    ("side in pixels (default 64)", 64),
    ("side in pixels (default 64: the usual)", 64),
    ("side in pixels (default: the model's)", None),
    ("side in pixels", None),
])
def test_the_checker_passes_a_true_help(help_text, default):
    assert help_lies(_parser(help_text, default)) == []


def test_a_bad_example_fails_to_parse():
    """Negative control for the example check: an example with a wrong flag raises UsageError."""
    with pytest.raises(UsageError):
        build_parser().parse_args(shlex.split("mobilenet predict --checkpoint x --no-such-flag a.jpg")[1:])


def test_version(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as done:
        build_parser().parse_args(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"mobilenet {version('mobilenets')}"
