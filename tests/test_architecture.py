"""The import graph of lor2c_probe, built from the source with ast: no cycle, and no layer imports a layer above it.

Layers, top to bottom: cli -> commands -> {report, study, train, bench, recorder, integrations} -> compare -> {analysis, plots}
-> record -> config.
"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "lor2c_probe"
LAYERS = [("cli",), ("commands",), ("report", "study", "train", "bench", "recorder", "integrations"), ("compare",), ("analysis", "plots"),
          ("record",), ("config",)]


def _modules() -> dict[str, tuple[Path, bool]]:
    mods = {}
    for f in PKG.rglob("*.py"):
        parts = list(f.relative_to(PKG.parent).with_suffix("").parts)
        is_init = parts[-1] == "__init__"
        mods[".".join(parts[:-1] if is_init else parts)] = (f, is_init)
    return mods


def import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports at run time (imports under ``if TYPE_CHECKING`` excluded)."""
    mods = _modules()

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    edges: dict[str, set[str]] = {m: set() for m in mods}
    for m, (f, is_init) in mods.items():
        base = m if is_init else m.rpartition(".")[0]
        tree = ast.parse(f.read_text())
        typing_only = {id(n) for t in ast.walk(tree) if isinstance(t, ast.If) and "TYPE_CHECKING" in ast.unparse(t.test)
                       for b in t.body for n in ast.walk(b)}
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                b = node.module or ""
                if node.level:
                    up = base.split(".")[: len(base.split(".")) - (node.level - 1)]
                    b = ".".join(up + ([b] if b else []))
                targets = [f"{b}.{a.name}" for a in node.names] or [b]
            for t in targets:
                if t.split(".")[0] == PKG.name and (r := resolve(t)) and r != m:
                    edges[m].add(r)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def layer(module: str) -> int | None:
    top = module.split(".")[1] if "." in module else ""
    return next((i for i, names in enumerate(LAYERS) if top in names), None)


def test_the_import_graph_has_no_cycle():
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_no_layer_imports_a_layer_above_it():
    upward = [(a, b) for a, targets in import_graph().items() for b in targets
              if layer(a) is not None and layer(b) is not None and layer(b) < layer(a)]
    assert not upward, "upward imports: " + ", ".join(f"{a} -> {b}" for a, b in sorted(upward))


def test_the_checker_sees_a_cycle_and_an_upward_import():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]
    assert layer("lor2c_probe.record.store") > layer("lor2c_probe.compare.gradients") > layer("lor2c_probe.cli")
