"""The import graph holds the layers: no circle, `model` below `streamer`, `clients` on the wire schema.

Read from the source (ast), so TYPE_CHECKING imports count: a circle for the type checker is
a circle for the reader too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("wire", "captions", "model", "streamer", "clients", "benchmarks")


def _modules() -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = path
    return modules


def _imported(module: str, path: Path, known: dict[str, Path]) -> Iterator[str]:
    """The project modules `module` imports (a `from package import name` of a submodule counts as it)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]  # `import a.b.c` of a name inside a module
            if target and target != module:
                yield target


def import_graph() -> dict[str, set[str]]:
    known = _modules()
    return {module: set(_imported(module, path, known)) for module, path in known.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph.get(successor, ())))))
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(sorted(component))
    return components


def _collapse(graph: dict[str, set[str]], depth: int) -> dict[str, set[str]]:
    """The graph between packages `depth` names deep (streamer.server, streamer.interfaces, ...)."""
    def group(module: str) -> str:
        return ".".join(module.split(".")[:depth])

    collapsed: dict[str, set[str]] = {}
    for module, targets in graph.items():
        collapsed.setdefault(group(module), set()).update(group(t) for t in targets if group(t) != group(module))
    return collapsed


def test_no_import_circle_between_modules() -> None:
    assert _cycles(import_graph()) == []


def test_no_import_circle_between_layers() -> None:
    """Between the top packages and between streamer's folders (stream, engine, state, server, interfaces)."""
    graph = import_graph()
    assert _cycles(_collapse(graph, 1)) == []
    assert _cycles(_collapse(graph, 2)) == []


def test_the_layers_import_downwards_only() -> None:
    graph = import_graph()

    def reaches(prefix: str, forbidden: tuple[str, ...]) -> list[str]:
        return sorted(
            f"{module} -> {target}"
            for module, targets in graph.items()
            if module == prefix or module.startswith(prefix + ".")
            for target in targets
            if target.split(".")[0] in forbidden
        )

    assert reaches("wire", ("captions", "model", "streamer", "clients", "benchmarks")) == []
    assert reaches("captions", ("model", "streamer", "clients", "benchmarks")) == []
    assert reaches("model", ("streamer", "clients", "benchmarks")) == []
    assert reaches("clients", ("streamer", "benchmarks", "model")) == []
    assert reaches("streamer", ("clients", "benchmarks")) == []


def test_the_graph_sees_a_circle() -> None:
    """The checks above could not pass on a graph they cannot read."""
    graph = import_graph()
    assert "streamer.engine.scheduler" in graph["streamer.server.registry"]
    assert "streamer.server.host" in graph["streamer.interfaces.v1"]  # a relative import, resolved
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
