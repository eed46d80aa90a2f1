"""The package's import graph: every import (top-level or inside a function) runs downwards
through the layers below, and no module imports itself back through others (no cycle)."""
import ast
from pathlib import Path

import advlab

PACKAGE = Path(advlab.__file__).parent
#: Lowest first; a module may import modules of its own layer or of a lower one.
LAYERS = [
    ["advlab", "advlab.config", "advlab.inputs", "advlab.resources"],
    ["advlab.cache", "advlab.download", "advlab.metrics", "advlab.native"],
    ["advlab.data", "advlab.inference"],
    ["advlab.models"],
    ["advlab.train"],
    ["advlab.training"],
    ["advlab.zoo"],
    ["advlab.attacks"],
    ["advlab.defences"],
    ["advlab.pixel_maps"],
    ["advlab.chapter", "advlab.report"],
    ["advlab.plots", "advlab.widgets"],
    ["advlab.experiments"],
    ["advlab.exercises"],
    ["advlab.cli"],
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> int:
    best = None
    for i, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and name != "advlab":
                if best is None or len(name) > best[1]:
                    best = (i, len(name))
    if best is None:
        assert module == "advlab", f"{module} is in no layer: add it to LAYERS"
        return 0
    return best[0]


def imports(path: Path) -> set[str]:
    """The advlab modules ``path`` imports (anywhere in the file), resolved to module names."""
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("advlab")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("advlab"):
                continue
            for alias in node.names:   # "from . import attacks" names a module
                sub = f"{target}.{alias.name}"
                found.add(sub if _exists(sub) else target)
    return {m for m in found if m != me}


def _exists(module: str) -> bool:
    rel = Path(*module.split(".")[1:])
    return (PACKAGE / rel).with_suffix(".py").exists() or (PACKAGE / rel / "__init__.py").exists()


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports(p) for p in PACKAGE.rglob("*.py")}


def test_every_import_runs_downwards():
    upward = [f"{a} (layer {layer(a)}) imports {b} (layer {layer(b)})"
              for a, targets in graph().items() for b in targets if layer(b) > layer(a)]
    assert not upward, "imports that run upward:\n" + "\n".join(sorted(upward))


def test_no_import_cycle():
    g = graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(g.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(path[path.index(nxt):] + [nxt]) if nxt in path
                              else f"{node} -> {nxt}")
            elif nxt in g and state.get(nxt) is None:
                visit(nxt, path + [nxt])
        state[node] = 2

    for n in sorted(g):
        if state.get(n) is None:
            visit(n, [n])
    # a package's __init__ re-exporting its own submodules is not a cycle between ideas
    real = [c for c in cycles if not _within_one_package(c)]
    assert not real, "import cycles:\n" + "\n".join(real)


def _within_one_package(cycle: str) -> bool:
    mods = cycle.split(" -> ")
    roots = {".".join(m.split(".")[:2]) for m in mods}
    return len(roots) == 1


def test_importing_the_package_changes_nothing():
    """``import advlab`` runs no code with side effects (the allocator tuning runs per chapter)."""
    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    assert all(isinstance(n, (ast.Expr, ast.Assign, ast.ImportFrom, ast.Import)) for n in tree.body)
    assert not any(isinstance(n, ast.Expr) and isinstance(n.value, ast.Call) for n in tree.body)
