"""The layers of docs/architecture.md, checked: every import of every module
(at the top or inside a function) is read with :mod:`ast`.

* ``adaptive`` (the engine) imports neither ``bridge``, ``models`` nor ``app``,
  and no socket library;
* ``bridge`` (transports) and ``models`` (the generator) import ``adaptive``
  and themselves only, never each other or ``app``;
* ``app`` (the composition root) may import all of them;
* no import cycle anywhere, between modules of any of them.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("app", "adaptive", "bridge", "models")
ALLOWED = {
    "adaptive": {"adaptive"},
    "bridge": {"adaptive", "bridge"},
    "models": {"adaptive", "models"},
    "app": {"app", "adaptive", "bridge", "models"},
}
"""Which of the project's packages each package may import."""
SOCKET_LIBRARIES = {"socket", "socketserver", "select", "selectors", "ssl", "asyncio", "zmq", "pythonosc", "http",
                    "urllib"}
"""What the engine may not import: I/O with the network lives in ``bridge``."""


def modules() -> dict[str, Path]:
    """Every module of the project's packages by dotted name."""
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Every module ``name`` imports: the project's modules by their full
    dotted name (``from pkg import sub`` counts as ``pkg.sub``), others by
    their top-level name."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in known else base)
    return {module if module.split(".")[0] in PACKAGES else module.split(".")[0] for module in found}


def import_graph() -> dict[str, set[str]]:
    known = modules()
    names = set(known)
    return {name: imports_of(name, path, names) for name, path in known.items()}


def test_each_package_imports_only_the_layers_it_may() -> None:
    problems = []
    for name, imported in import_graph().items():
        layer = name.split(".")[0]
        for module in sorted(imported):
            top = module.split(".")[0]
            if top in PACKAGES and top not in ALLOWED[layer]:
                problems.append(f"{name} imports {module} ({layer} may import: {', '.join(sorted(ALLOWED[layer]))})")
    assert problems == []


RAY_MODULES = {"app.cluster"}
"""The only modules that import Ray (the optional extra ``cluster``), and the
only modules that import them: ``app.cli`` (for ``adaptive cluster``)."""


def test_only_the_cluster_module_imports_ray_and_only_the_command_imports_it() -> None:
    graph = import_graph()
    assert {name for name, imported in graph.items() if "ray" in imported} == RAY_MODULES
    assert {name for name, imported in graph.items() if imported & RAY_MODULES} == {"app.cli"}


def test_the_engine_imports_no_socket_library() -> None:
    problems = [f"{name} imports {module}" for name, imported in import_graph().items()
                if name.split(".")[0] == "adaptive" for module in sorted(imported & SOCKET_LIBRARIES)]
    assert problems == []


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module (or a self-import)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in graph:
                continue
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def test_no_import_cycle_anywhere() -> None:
    graph = {name: {module for module in imported if module != name.rpartition(".")[0] or name == module}
             for name, imported in import_graph().items()}
    assert strongly_connected(graph) == []


def test_the_checks_see_a_cycle_and_a_forbidden_import() -> None:
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    graph = import_graph()
    assert "adaptive.clock" in graph["adaptive.session"]
    assert "bridge.protocol" in graph["bridge.osc_server"]
