"""Print every import loop between payments_api's sub-packages, with an example import
for each arrow; exit 1 if there is one.

The gate is import-linter's ``acyclic_siblings`` contract in ``pyproject.toml`` (run by
``lint-imports``); it names the imports that would break the loops but not the loops.
This shows them: CI runs it just before ``lint-imports``.

A node is a sub-package (``events/``) or a top-level module (``main.py``). Every import
counts, wherever it is: one inside a function (a lazy import is still a dependency, it
only moves the failure to run time) and one under ``TYPE_CHECKING`` (the package still
needs the other to be understood), as import-linter counts them.
"""

from __future__ import annotations

import ast
import itertools
import sys
from collections import defaultdict, deque
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "payments_api"
ROOT = PACKAGE.name

Edges = dict[tuple[str, str], list[str]]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def node_of(module: str) -> str | None:
    """``payments_api.events.outbox`` -> ``events/``, ``payments_api.main`` -> ``main.py``."""
    parts = module.split(".")
    if parts[0] != ROOT:
        return None
    if len(parts) == 1:
        return "__init__.py"
    return f"{parts[1]}/" if (PACKAGE / parts[1]).is_dir() else f"{parts[1]}.py"


def imported_modules(
    node: ast.Import | ast.ImportFrom, importer: str, is_package: bool
) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:  # relative: resolved against the importing module's package
        base = importer.split(".") if is_package else importer.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join([*base, node.module] if node.module else base)
    else:
        target = node.module or ""
    # ``from payments_api import ledger`` imports the sub-package it names.
    return [f"{target}.{alias.name}" for alias in node.names] if target == ROOT else [target]


def import_edges() -> Edges:
    edges: Edges = defaultdict(list)
    for path in sorted(PACKAGE.rglob("*.py")):
        importer = module_name(path)
        source = node_of(importer)
        for statement in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(statement, ast.Import | ast.ImportFrom):
                continue
            for module in imported_modules(statement, importer, path.name == "__init__.py"):
                target = node_of(module)
                if source and target and target != source and target != "__init__.py":
                    where = path.relative_to(PACKAGE.parents[1])
                    edges[(source, target)].append(f"{where}:{statement.lineno} imports {module}")
    return edges


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph[successor]))))
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
                    components.append(sorted(component))
    return components


def shortest_cycle(graph: dict[str, set[str]], start: str, within: set[str]) -> list[str]:
    """The shortest loop from ``start`` back to it inside one component (breadth first)."""
    previous: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for successor in sorted(graph[node] & within):
            if successor == start:
                path = [node]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                return [*reversed(path), start]
            if successor not in previous:
                previous[successor] = node
                queue.append(successor)
    return []  # pragma: no cover - every member of a component lies on a loop


def say(line: str) -> None:
    print(line)  # noqa: T201 - a command-line report


def main() -> int:
    edges = import_edges()
    graph: dict[str, set[str]] = defaultdict(set)
    for source, target in edges:
        graph[source].add(target)
        graph.setdefault(target, set())
    loops = [c for c in strongly_connected(graph) if len(c) > 1]
    if not loops:
        say(f"no import loops between the {len(graph)} parts of {ROOT}")
        return 0
    for component in loops:
        members = set(component)
        say(f"import loop through {len(component)} parts: {' '.join(component)}")
        seen: set[tuple[str, ...]] = set()
        for start in component:  # one shortest loop per member, each printed once
            cycle = shortest_cycle(graph, start, members)
            rotation = cycle.index(min(cycle[:-1]))
            key = tuple(cycle[rotation:-1] + cycle[:rotation])
            if key in seen:
                continue
            seen.add(key)
            say("  " + " -> ".join(cycle))
            for source, target in itertools.pairwise(cycle):
                examples = edges[(source, target)]
                more = f" (+{len(examples) - 1} more)" if len(examples) > 1 else ""
                say(f"    {source} -> {target}: {examples[0]}{more}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
