"""The package's import graph: layers that import one way, no circles, no hidden imports inside functions.

The layers, lowest first (a module may import its own layer and the layers below it, never one above):
base (errors, runtime, version) -> model -> weights / data -> tasks -> inference -> loop -> evaluation -> training
-> app -> cli.
The package root ``cldyn`` is the public API on top; it resolves names lazily and imports nothing itself.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("cldyn.errors", "cldyn.runtime", "cldyn.version")),
    ("model", ("cldyn.model",)),
    ("weights/data", ("cldyn.weights", "cldyn.data")),
    ("tasks", ("cldyn.tasks",)),
    ("inference", ("cldyn.inference",)),
    ("loop", ("cldyn.loop",)),
    ("evaluation", ("cldyn.evaluation",)),
    ("training", ("cldyn.training",)),
    ("app", ("cldyn.app",)),
    ("cli", ("cldyn.cli",)),
]
MAX_LINES = 400


def module_name(path: Path, root: Path = SRC) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    """Index of the layer that holds ``module``; the package root ``cldyn`` sits above every layer."""
    if module == "cldyn":
        return len(LAYERS)
    for i, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return i
    raise AssertionError(f"{module} is in no layer; add it to LAYERS")


def resolve(target: str, modules: set[str]) -> str:
    """The module an import names: ``from cldyn.a.b import c`` is module ``cldyn.a.b.c`` when that exists."""
    return target if target in modules else target.rsplit(".", 1)[0]


def import_edges(root: Path = SRC) -> tuple[dict[str, set[str]], list[str]]:
    """``{module: imported cldyn modules}`` (every import, at any depth) and the function-level problems."""
    files = {module_name(p, root): p for p in sorted((root / "cldyn").rglob("*.py"))}
    modules = set(files)
    edges: dict[str, set[str]] = {m: set() for m in files}
    problems: list[str] = []
    for mod, path in files.items():
        text = path.read_text()
        lines = text.splitlines()
        tree = ast.parse(text)
        top = {id(n) for n in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    problems.append(f"{path}:{node.lineno}: relative import")
                    continue
                names = [resolve(f"{node.module}.{a.name}", modules) for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            ours = [n for n in names if n == "cldyn" or n.startswith("cldyn.")]
            edges[mod].update(n for n in ours if n != mod)
            if id(node) in top or _inside_type_checking(tree, node):
                continue
            where = f"{path.relative_to(root)}:{node.lineno}"
            if ours:
                problems.append(f"{where}: imports {ours} inside a function (import it at the top)")
            elif not _commented(lines, node.lineno):
                problems.append(f"{where}: function-level import without a comment that says why")
    return edges, problems


def _inside_type_checking(tree: ast.Module, node: ast.AST) -> bool:
    return any(isinstance(stmt, ast.If) and "TYPE_CHECKING" in ast.unparse(stmt.test)
               and any(n is node for n in ast.walk(stmt)) for stmt in tree.body)


def _commented(lines: list[str], lineno: int) -> bool:
    """A ``#`` comment on the import's line or on the line just above it."""
    return "#" in lines[lineno - 1] or lines[lineno - 2].strip().startswith("#")


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import circle (as a path that ends where it starts), or ``None``."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(edges.get(m, ())):
            if state.get(n) == 1:
                return [*stack[stack.index(n):], n]
            if n not in state and (found := visit(n)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(edges):
        if m not in state and (found := visit(m)):
            return found
    return None


def upward_imports(edges: dict[str, set[str]]) -> list[str]:
    return [f"{m} ({LAYERS[layer_of(m)][0]}) imports {n} ({LAYERS[layer_of(n)][0]})"
            for m, ns in sorted(edges.items()) if m != "cldyn" for n in sorted(ns)
            if n == "cldyn" or layer_of(n) > layer_of(m)]


def test_no_import_circle():
    edges, _ = import_edges()
    assert find_cycle(edges) is None


def test_imports_run_down_the_layers():
    edges, _ = import_edges()
    assert upward_imports(edges) == []


def test_no_hidden_imports_inside_functions():
    _, problems = import_edges()
    assert problems == []


def test_no_module_over_400_lines():
    long = {str(p.relative_to(SRC)): n for p in (SRC / "cldyn").rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_checks_catch_what_they_should(tmp_path):
    """The checks fail on a circle, an upward import and a function-level import of a cldyn module."""
    pkg = tmp_path / "cldyn"
    for sub in ("model", "data", "cli"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "model" / "a.py").write_text("from cldyn.data.b import x\n")  # model -> data: upward
    (pkg / "data" / "b.py").write_text("from cldyn.data.c import y\nx = 1\n")
    (pkg / "data" / "c.py").write_text("from cldyn.data.b import x\ny = 2\n")  # b <-> c: a circle
    (pkg / "cli" / "d.py").write_text("def f():\n    from cldyn.model import a\n    import json\n")
    edges, problems = import_edges(tmp_path)
    assert find_cycle(edges) in (["cldyn.data.b", "cldyn.data.c", "cldyn.data.b"],)
    assert upward_imports(edges) == ["cldyn.model.a (model) imports cldyn.data.b (weights/data)"]
    assert len(problems) == 2 and "inside a function" in problems[0] and "without a comment" in problems[1]


def test_public_api_resolves_lazily():
    import cldyn

    for name in cldyn.__all__:
        assert getattr(cldyn, name) is not None, name
    with pytest.raises(AttributeError):
        _ = cldyn.no_such_name
    # ``import cldyn`` alone is cheap: the API modules (and torch) load on first use.
    code = "import sys, cldyn; print('torch' in sys.modules, cldyn.__version__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "False" and out[1] == cldyn.__version__


def test_the_architecture_page_names_every_module():
    import re

    doc = (SRC.parent / "docs" / "architecture.md").read_text()
    missing = [str(p.relative_to(SRC)) for p in sorted((SRC / "cldyn").rglob("*.py"))
               if p.stem != "__init__" and not re.search(rf"\b{re.escape(p.stem)}\b", doc)]
    assert not missing, f"docs/architecture.md does not name {missing}"


def test_the_architecture_page_names_every_command():
    import re

    doc = (SRC.parent / "docs" / "architecture.md").read_text()
    commands = sorted({m for p in (SRC / "cldyn" / "cli").glob("*.py")
                       for m in re.findall(r'add_parser\(\s*"([a-z-]+)"', p.read_text())})
    assert len(commands) >= 16
    assert [c for c in commands if not re.search(rf"(?<![\w-]){re.escape(c)}(?![\w-])", doc)] == []
