"""No import cycle in the package, function-local imports included.

Every module of ``src/mobilenets`` is parsed with :mod:`ast` (nothing is imported). Each ``import``
and ``from ... import`` anywhere in a module (top level, in functions, under ``if TYPE_CHECKING``)
is an edge; ``from mobilenets.x import y`` goes to the submodule ``mobilenets.x.y`` when that is a
module, else to ``mobilenets.x``; relative imports are resolved against the importing module's
package. A package's ``__init__`` is a module (``mobilenets.x``), and the modules its
``lazy_exports`` table names count as its imports, since a lazy name loads them on first use.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "mobilenets"
ROOT = Path(__file__).resolve().parents[1] / "src" / PACKAGE


def module_names(root: Path, package: str) -> dict[str, Path]:
    """Dotted name -> file for every ``.py`` under ``root`` (``pkg/__init__.py`` is ``pkg``)."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    assert package in names, f"no {package}/__init__.py under {root.parent}"
    return names


def _resolve_relative(name: str, is_package: bool, level: int, module: str | None) -> str:
    base = name.split(".") if is_package else name.split(".")[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def _lazy_targets(call: ast.Call, name: str, is_package: bool) -> list[str]:
    """The modules a ``lazy_exports(__name__, {".mod": [...], "pkg.mod": [...]})`` table names."""
    if len(call.args) < 2 or not isinstance(call.args[1], ast.Dict):
        return []
    targets = []
    for key in call.args[1].keys:
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            text = key.value
            if text.startswith("."):
                level = len(text) - len(text.lstrip("."))
                targets.append(_resolve_relative(name, is_package, level, text.lstrip(".") or None))
            else:
                targets.append(text)
    return targets


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that module ``name`` (at ``path``) imports, anywhere in its body."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()

    def add(target: str) -> None:
        # the longest prefix that is one of our modules (``import a.b.c`` where c is a function's
        # name never happens; a missing module is reported by the import itself, not here)
        parts = target.split(".")
        while parts and ".".join(parts) not in modules:
            parts.pop()
        if parts:
            found.add(".".join(parts))

    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = (_resolve_relative(name, is_package, node.level, node.module) if node.level
                    else node.module or "")
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                add(sub if sub in modules else base)
        elif isinstance(node, ast.Call):
            func = node.func
            called = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            if called == "lazy_exports":
                for target in _lazy_targets(node, name, is_package):
                    add(target)
    found.discard(name)  # a module naming itself (``from . import x`` in its own __init__) is no cycle
    return found


def import_graph(root: Path = ROOT, package: str = PACKAGE) -> dict[str, set[str]]:
    modules = module_names(root, package)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or None (iterative depth-first search)."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = dict.fromkeys(graph, WHITE)
    for start in sorted(graph):
        if colour[start] != WHITE:
            continue
        path = [start]
        stack = [iter(sorted(graph[start]))]
        colour[start] = GREY
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                colour[path.pop()] = BLACK
                stack.pop()
            elif colour.get(nxt, BLACK) == GREY:
                return path[path.index(nxt):] + [nxt]
            elif colour.get(nxt, BLACK) == WHITE:
                colour[nxt] = GREY
                path.append(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return None


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 100  # the scan saw the package, not an empty folder
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_scan_sees_function_local_and_relative_imports():
    graph = import_graph()
    # cli modules import their library only inside command functions (so --help needs no torch)
    assert "mobilenets.cost.report" in graph["mobilenets.cli.cost"] or "mobilenets.cost" in graph["mobilenets.cli.cost"]
    # a lazy_exports table with relative keys resolves against the package
    assert "mobilenets.tasks.detect.ssd" in graph["mobilenets.tasks.detect"]
    # ``from mobilenets.models import mobilenet``-style names resolve to the submodule
    assert "mobilenets.models.mobilenet" in graph["mobilenets.tasks.detect.ssd"]


@pytest.mark.parametrize("graph, cycle", [
    ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
    ({"a": {"b", "c"}, "b": {"c"}, "c": set()}, None),  # a diamond is not a cycle
    ({"a": {"a"}}, ["a", "a"]),
    ({"a": {"b"}, "b": {"a"}}, ["a", "b", "a"]),
    ({"a": {"b"}, "b": {"c"}, "c": {"d"}, "d": {"b"}}, ["b", "c", "d", "b"]),
    ({"x": set(), "y": {"z"}, "z": {"y"}}, ["y", "z", "y"]),
])
def test_find_cycle_on_hand_made_graphs(graph, cycle):
    assert find_cycle(graph) == cycle


def test_a_cycle_written_to_disk_is_found(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "config.py").write_text("def build():\n    from .model import Model\n    return Model()\n")
    (pkg / "sub" / "model.py").write_text("from pkg.sub import config\n")
    (pkg / "other.py").write_text("import pkg.sub.model\nfrom pkg.sub.config import build\n")
    graph = import_graph(pkg, "pkg")
    assert graph["pkg.other"] == {"pkg.sub.model", "pkg.sub.config"}
    assert find_cycle(graph) == ["pkg.sub.config", "pkg.sub.model", "pkg.sub.config"]
    # the same files with the function-local import moved out: no cycle
    (pkg / "sub" / "config.py").write_text("X = 1\n")
    assert find_cycle(import_graph(pkg, "pkg")) is None
