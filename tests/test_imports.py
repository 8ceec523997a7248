"""The import graph of negd has no circles (issue 11) and runs only downward through the floors.

Every import statement counts, including the late ones inside functions (a late import still
ties two modules together); ``from package import module`` is an edge to that module. A package's
``__init__`` is a module like any other. Imports under ``if TYPE_CHECKING:`` are for annotations only
and tie nothing at run time: they are not edges.

The floors (README, "How the code is laid out"), lowest first: a module may import its own floor and
the floors below it, never one above. Every module of negd belongs to exactly one floor, so a new
top-level module or folder must be placed here before its tests pass.
"""

from __future__ import annotations

import ast
from pathlib import Path

import negd

ROOT = Path(negd.__file__).resolve().parents[1]


def _modules() -> dict[str, Path]:
    out = {}
    for path in (ROOT / "negd").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


FLOORS: list[tuple[str, tuple[str, ...]]] = [
    ("ground", ("negd.validation", "negd.state", "negd.dtypes", "negd.rng", "negd.runfiles", "negd.sealed",
                "negd.kernels", "negd.version", "negd.progress", "negd.callbacks")),
    ("theory", ("negd.theory",)),
    ("losses and tasks", ("negd.losses", "negd.tasks", "negd.envs")),
    ("twins", ("negd.twins",)),
    ("rules", ("negd.rules",)),
    ("diagnostics", ("negd.diagnostics",)),
    ("engine and optimizers", ("negd.engine", "negd.optim")),
    ("analysis", ("negd.analysis",)),
    ("experiments", ("negd.experiments",)),
    ("commands", ("negd.bench", "negd.cli", "negd.info", "negd._compat", "negd")),
]


def floor_of(module: str) -> int:
    """Index in FLOORS of the longest prefix naming ``module``'s place; KeyError if it has none."""
    best = None
    for i, (_, prefixes) in enumerate(FLOORS):
        for prefix in prefixes:
            named = module == prefix or module.startswith(prefix + ".")
            if named and (best is None or len(prefix) > best[1]):
                best = (i, len(prefix))
    if best is None:
        raise KeyError(module)
    return best[0]


TYPE_CHECKING_TESTS = ("TYPE_CHECKING", "typing.TYPE_CHECKING")


def _runtime_nodes(tree: ast.AST):
    """Every node of ``tree`` except those under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and ast.unparse(child.test) in TYPE_CHECKING_TESTS:
                stack.extend(child.orelse)
                continue
            stack.append(child)


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in _runtime_nodes(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in mods:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of the graph (depth-first search), or None."""
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(v: str) -> list[str] | None:
        state[v] = 1
        path.append(v)
        for w in sorted(graph[v]):
            if state.get(w) == 1:
                return path[path.index(w):] + [w]
            if w not in state and (found := visit(w)):
                return found
        state[v] = 2
        path.pop()
        return None

    for v in sorted(graph):
        if v not in state and (found := visit(v)):
            return found
    return None


def test_the_graph_is_read():
    graph = _graph()
    assert "negd.engine" in graph and "negd.kernels" in graph["negd.engine"]
    assert graph["negd.kernels"] <= {"negd.kernels.build", "negd.validation"}  # the kernels are a leaf


def test_no_import_circles():
    assert _cycle(_graph()) is None, " -> ".join(_cycle(_graph()))


def test_a_circle_would_be_found():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Each edge that goes to a higher floor, as 'a (floor) -> b (floor)'."""
    out = []
    for a, targets in sorted(graph.items()):
        for b in sorted(targets):
            if floor_of(b) > floor_of(a):
                out.append(f"{a} ({FLOORS[floor_of(a)][0]}) -> {b} ({FLOORS[floor_of(b)][0]})")
    return out


def test_every_module_has_a_floor():
    unplaced = []
    for module in _graph():
        try:
            floor_of(module)
        except KeyError:
            unplaced.append(module)
    assert not unplaced, f"place these modules in FLOORS: {unplaced}"


def test_no_import_runs_upward():
    assert upward_imports(_graph()) == []


def test_an_upward_import_would_be_found():
    graph = {"negd.theory.one_step": {"negd.rules.neuroevolution"}, "negd.rules.neuroevolution": {"negd.rng"}}
    assert upward_imports(graph) == ["negd.theory.one_step (theory) -> negd.rules.neuroevolution (rules)"]


def test_type_checking_imports_are_not_edges():
    tree = ast.parse("from typing import TYPE_CHECKING\n"
                     "if TYPE_CHECKING:\n    import a\nelse:\n    import b\n")
    names = {a.name for node in _runtime_nodes(tree) if isinstance(node, ast.Import) for a in node.names}
    assert names == {"b"}


def test_floors_match_the_layout():
    """Each floor prefix names a module or package that exists (a renamed folder must be renamed here)."""
    mods = _modules()
    missing = [p for _, prefixes in FLOORS for p in prefixes if p not in mods and p != "negd.envs"]
    assert not missing, missing


def test_old_module_paths_still_import_with_a_warning():
    import importlib
    import sys
    import warnings

    from negd._compat import MOVED

    for old, new in MOVED.items():
        sys.modules.pop(old, None)  # an earlier import of the old path would not warn again
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            module = importlib.import_module(old)
        warned = [w for w in caught if w.category is DeprecationWarning and new[0] in str(w.message)]
        assert warned, old
        public = [k for k in vars(importlib.import_module(new[0])) if not k.startswith("_")]
        assert all(getattr(module, k) is getattr(importlib.import_module(new[0]), k) for k in public), old
