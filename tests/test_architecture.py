"""The package's shape: data flows one way, and each concern has one home.

Read from the source with ``ast`` (imports inside functions included), so a
lazy import cannot hide a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "mixcli"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, ast.Module]:
    return {_module_name(p): ast.parse(p.read_text()) for p in sorted(PACKAGE.rglob("*.py"))}


MODULES = _modules()


def _is_package(name: str) -> bool:
    return (ROOT / Path(*name.split(".")) / "__init__.py").exists()


def _imports(name: str, tree: ast.Module) -> set[str]:
    """The mixcli modules ``name`` imports, anywhere in its source."""
    package = name if _is_package(name) else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("mixcli"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("mixcli"):
                continue
            for a in node.names:  # `from . import linalg` imports a module
                sub = f"{target}.{a.name}"
                out.add(sub if sub in MODULES else target)
    out.discard(name)
    return {m for m in out if m in MODULES}


def _external(tree: ast.Module) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            out.add(node.module)
    return out


def test_no_import_cycles():
    graph = {name: _imports(name, tree) for name, tree in MODULES.items()}
    # a package's __init__ may re-export its submodules: that edge is not a dependency of theirs
    for name in graph:
        graph[name] = {m for m in graph[name] if not (_is_package(m) and name.startswith(m + "."))}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)


def test_one_module_drives_the_optimiser():
    users = sorted(name for name, tree in MODULES.items() if "nlopt" in _external(tree))
    assert users == ["mixcli.engine.optimize"]


def test_one_module_parses_delimited_text():
    parsers = sorted(
        name for name, tree in MODULES.items()
        if any(isinstance(node, ast.Attribute) and node.attr in ("read_csv", "reader", "DictReader")
               for node in ast.walk(tree))
    )
    assert parsers == ["mixcli.io"]


def test_one_atomic_writer():
    writers = sorted(
        name for name, tree in MODULES.items()
        if any(isinstance(node, ast.Attribute) and node.attr in ("mkstemp", "replace") and
               isinstance(node.value, ast.Name) and node.value.id in ("tempfile", "os")
               for node in ast.walk(tree))
    )
    assert writers == ["mixcli.output"]


def test_the_api_only_names_the_entry_points():
    assert _imports("mixcli.api", MODULES["mixcli.api"]) <= {"mixcli.model", "mixcli.glmm", "mixcli.compare", "mixcli.errors",
                                                                  "mixcli.io"}
