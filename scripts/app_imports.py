"""Which top-level package imports which, reading every import (also inside functions).

    python scripts/app_imports.py            # edges and cycles between first-party packages
    python scripts/app_imports.py --files    # also the file and line of every edge

Why a script and not only import-linter: it also reads imports inside functions and prints the
file and line, which is what one needs when a contract fails.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKIP = {"tests", "bench", "scripts", ".venv", "var", "migrations", "locale", "static", "templates"}


def first_party() -> set[str]:
    return {
        p.name
        for p in ROOT.iterdir()
        if p.is_dir() and (p / "__init__.py").exists() and p.name not in SKIP
    }


def edges(packages: set[str]) -> dict[tuple[str, str], list[str]]:
    found: dict[tuple[str, str], list[str]] = defaultdict(list)
    for package in packages:
        for path in (ROOT / package).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            for node in ast.walk(tree):
                names: list[str] = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                for name in names:
                    target = name.split(".")[0]
                    if target in packages and target != package:
                        where = f"{path.relative_to(ROOT)}:{node.lineno}"
                        found[(package, target)].append(where)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one package (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    result: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                result.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return result


def main() -> int:
    packages = first_party()
    found = edges(packages)
    graph: dict[str, set[str]] = defaultdict(set)
    for (src, dst), places in sorted(found.items()):
        graph[src].add(dst)
        print(f"{src} -> {dst} ({len(places)})")
        if "--files" in sys.argv:
            for place in places:
                print(f"    {place}")
    loops = cycles(graph)
    for loop in loops:
        print("CYCLE:", " <-> ".join(loop))
    return 1 if loops else 0


if __name__ == "__main__":
    raise SystemExit(main())
