"""One cache root for the package: $MOBILENETS_CACHE, else $XDG_CACHE_HOME/mobilenets, else ~/.cache/mobilenets."""

import ast
from pathlib import Path

import pytest

from mobilenets.utils.cache import cache_dir, cache_root

SRC = Path(__file__).resolve().parents[2] / "src" / "mobilenets"


@pytest.mark.parametrize("own, xdg, expected", [
    ("{tmp}/own", "{tmp}/xdg", "{tmp}/own"),  # the package's own variable wins
    (None, "{tmp}/xdg", "{tmp}/xdg/mobilenets"),
    ("", "{tmp}/xdg", "{tmp}/xdg/mobilenets"),  # empty counts as unset
    (None, None, "{home}/.cache/mobilenets"),
    (None, "", "{home}/.cache/mobilenets"),
])
def test_the_cache_root_follows_the_variables(tmp_path, monkeypatch, own, xdg, expected):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name, value in (("MOBILENETS_CACHE", own), ("XDG_CACHE_HOME", xdg)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value.format(tmp=tmp_path))
    want = Path(expected.format(tmp=tmp_path, home=tmp_path / "home"))
    assert cache_root() == want
    assert cache_dir("pick") == want / "pick" and cache_dir("a", "b") == want / "a" / "b"
    assert not want.exists()  # naming a folder creates nothing


def test_no_module_builds_a_cache_path_of_its_own():
    """Every cache goes through utils/cache.py: no other module reads the cache variables or
    spells ``.cache``."""
    offenders = []
    for path in SRC.rglob("*.py"):
        if path == SRC / "utils" / "cache.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in ("MOBILENETS_CACHE", "XDG_CACHE_HOME", ".cache"):
                offenders.append(f"{path.relative_to(SRC)}:{node.lineno} {node.value!r}")
    assert offenders == []
