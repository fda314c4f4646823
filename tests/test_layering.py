"""The package's layers and import graph, read from the source with `ast` (nothing is imported).

Layers, low to high: `errors` < `data` < `signal`, `filters` < `models` < `train`, `eval` < `cv`
< `tasks` < `cli`. A module imports only from lower layers and its own; `filters` imports
`errors` only (not `signal`, `data` or `models`); `eval` may import `train`, never the reverse.
Imports inside functions count, and no two modules may import each other, directly or round a
longer cycle. `cv`, `tasks` and `cli` need not exist.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import NamedTuple

import pytest

PACKAGE = "wearjax"
PACKAGE_DIR = Path(__file__).resolve().parents[1] / PACKAGE

RANK: dict[str, int] = {
    "errors": 0,
    "data": 1,
    "signal": 2,
    "filters": 2,
    "models": 3,
    "train": 4,
    "eval": 4,
    "sharding": 4,  # device meshes and processes, under the cross-validation runner
    "cv": 5,
    "tasks": 6,
    "cli": 7,
}
SAME_RANK_ALLOWED = {("eval", "train")}  # (importer, imported)
FORBIDDEN = {
    ("filters", "data"),  # filters are generic state-space maths: they know no data layout
    ("train", "eval"),  # the trainer takes its metrics from the task, not from eval
}


class Import(NamedTuple):
    """`importer` imports module `imported` at `line`, inside the function or class `scope`
    ("" at module level)."""

    importer: str
    imported: str
    line: int
    scope: str


def package_modules(package_dir: Path, package: str) -> dict[str, Path | None]:
    """Every module and package under `package_dir` by dotted name: its file, or None for a
    directory without `__init__.py` (a namespace package)."""
    modules: dict[str, Path | None] = {package: None}
    for path in sorted(package_dir.rglob("*.py")):
        parts = path.relative_to(package_dir).with_suffix("").parts
        for i in range(len(parts) - 1):  # the directories above it, as packages
            modules.setdefault(".".join((package, *parts[: i + 1])), None)
        if parts[-1] == "__init__":
            modules[".".join((package, *parts[:-1]))] = path
        else:
            modules[".".join((package, *parts))] = path
    return modules


class _ImportVisitor(ast.NodeVisitor):
    """Each import statement as `(line, scope, module, members)`: `import a.b` names module
    `a.b`; `from a.b import c` names module `a.b` and member `a.b.c` (a module or not)."""

    def __init__(self, module: str, is_package: bool):
        self.module = module
        self.is_package = is_package
        self.scopes: list[str] = []
        self.statements: list[tuple[int, str, str, list[str]]] = []

    def _nested(self, node) -> None:
        self.scopes.append(node.name)
        self.generic_visit(node)
        self.scopes.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _nested

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.statements.append((node.lineno, ".".join(self.scopes), alias.name, []))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.module.split(".")
            base = base if self.is_package else base[:-1]
            base = base[: len(base) - (node.level - 1)]
            module = ".".join(base + ([node.module] if node.module else []))
        else:
            module = node.module or ""
        members = [f"{module}.{a.name}" for a in node.names if a.name != "*"]
        self.statements.append((node.lineno, ".".join(self.scopes), module, members))


def package_imports(package_dir: Path, package: str) -> tuple[list[Import], list[Import]]:
    """All imports of the package's own modules, at module level and inside functions, and
    those that name a module the package does not have (`imported` is then that name).

    `from a.b import c, d` imports modules `a.b.c` and `a.b.d` where they exist, and `a.b` for
    any name that is not a module; relative imports are resolved against the importing module.
    """
    modules = package_modules(package_dir, package)
    found: set[Import] = set()
    missing: set[Import] = set()
    for module, path in modules.items():
        if path is None:
            continue
        visitor = _ImportVisitor(module, path.name == "__init__.py")
        visitor.visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        for line, scope, name, members in visitor.statements:
            if name != package and not name.startswith(package + "."):
                continue
            if name not in modules:
                missing.add(Import(module, name, line, scope))
                continue
            targets = {m for m in members if m in modules}
            if len(targets) < len(members) or not members:  # a name from `name` itself
                targets.add(name)
            found.update(Import(module, t, line, scope) for t in targets if t != module)
    return sorted(found), sorted(missing)


def layer(module: str) -> str | None:
    """The layer of a dotted module name: its first component below the package (None for the
    package itself)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def layer_violations(imports: list[Import]) -> list[tuple[Import, str]]:
    """The imports that break the layering, each with the reason."""
    out = []
    for imp in imports:
        a, b = layer(imp.importer), layer(imp.imported)
        if a is None or a == b:
            continue
        if b is None:
            out.append((imp, "imports the package root; import from the defining module"))
        elif a not in RANK or b not in RANK:
            unknown = a if a not in RANK else b
            out.append((imp, f"layer {unknown!r} is not in RANK; add it to tests/test_layering"))
        elif (a, b) in FORBIDDEN:
            out.append((imp, f"{a} must not import {b}"))
        elif (a, b) in SAME_RANK_ALLOWED:
            continue
        elif RANK[b] >= RANK[a]:
            relation = "in the same layer as" if RANK[b] == RANK[a] else "in a higher layer than"
            out.append((imp, f"{b} is {relation} {a}"))
    return out


def import_cycles(imports: list[Import]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    graph: dict[str, set[str]] = {}
    for imp in imports:
        graph.setdefault(imp.importer, set()).add(imp.imported)
        graph.setdefault(imp.imported, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return sorted(components)


def _where(imp: Import) -> str:
    scope = f", in {imp.scope}" if imp.scope else ""
    return f"{imp.importer} (line {imp.line}{scope}) imports {imp.imported}"


def _cycle_report(imports: list[Import], cycles: list[list[str]]) -> str:
    lines = []
    for component in cycles:
        members = set(component)
        lines.append("import cycle among " + ", ".join(component) + ":")
        lines += [
            "  " + _where(imp)
            for imp in imports
            if imp.importer in members and imp.imported in members
        ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# The walker itself, on a small package with known imports.

_SYNTHETIC = {
    "__init__.py": '__version__ = "0"\n',
    "errors.py": "class Error(Exception): ...\n",
    "data/__init__.py": "from pkg.data.types import Session\n",
    "data/types.py": "import numpy as np\nfrom pkg.errors import Error\n",
    "signal/features.py": "from pkg.data import types, Session\n",  # a module and a name
    "filters/__init__.py": "",
    "filters/linear.py": (
        "from ..data.types import Session\n"  # relative, and filters must not import data
        "from . import gain\n"
        "def f():\n"
        "    import pkg.models.net as net\n"  # a higher layer, inside a function
        "    return net\n"
    ),
    "filters/gain.py": "from pkg.errors import Error\n",
    "models/net.py": "from pkg.signal.features import types\nfrom pkg import filters\n",
    "train/fit.py": "from pkg.eval.metrics import mae\n",  # train must not import eval
    "eval/metrics.py": (
        "class Metrics:\n"
        "    def step(self):\n"
        "        from pkg.train import fit\n"  # allowed, but closes a cycle with train.fit
        "        return fit\n"
    ),
    "cli.py": "from pkg import __version__\nfrom pkg.tasks import *\n",  # no tasks yet: skipped
}


def _write_synthetic(tmp_path: Path) -> Path:
    root = tmp_path / "pkg"
    for name, text in _SYNTHETIC.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_walker_finds_every_import_of_a_synthetic_package(tmp_path):
    imports, missing = package_imports(_write_synthetic(tmp_path), "pkg")
    got = {(i.importer, i.imported, i.line, i.scope) for i in imports}
    assert got == {
        ("pkg.data", "pkg.data.types", 1, ""),
        ("pkg.data.types", "pkg.errors", 2, ""),
        ("pkg.signal.features", "pkg.data.types", 1, ""),
        ("pkg.signal.features", "pkg.data", 1, ""),
        ("pkg.filters.linear", "pkg.data.types", 1, ""),
        ("pkg.filters.linear", "pkg.filters.gain", 2, ""),
        ("pkg.filters.linear", "pkg.models.net", 4, "f"),
        ("pkg.filters.gain", "pkg.errors", 1, ""),
        ("pkg.models.net", "pkg.signal.features", 1, ""),
        ("pkg.models.net", "pkg.filters", 2, ""),
        ("pkg.train.fit", "pkg.eval.metrics", 1, ""),
        ("pkg.eval.metrics", "pkg.train.fit", 3, "Metrics.step"),
        ("pkg.cli", "pkg", 1, ""),
    }
    assert missing == [Import("pkg.cli", "pkg.tasks", 2, "")]


def test_walker_reports_the_synthetic_package_violations_and_cycles(tmp_path):
    imports, _ = package_imports(_write_synthetic(tmp_path), "pkg")
    violations = {(i.importer, i.imported): why for i, why in layer_violations(imports)}
    assert violations == {
        ("pkg.filters.linear", "pkg.data.types"): "filters must not import data",
        ("pkg.filters.linear", "pkg.models.net"): "models is in a higher layer than filters",
        ("pkg.train.fit", "pkg.eval.metrics"): "train must not import eval",
        ("pkg.cli", "pkg"): "imports the package root; import from the defining module",
    }
    cycles = import_cycles(imports)
    assert cycles == [["pkg.eval.metrics", "pkg.train.fit"]]
    report = _cycle_report(imports, cycles)
    assert "pkg.eval.metrics (line 3, in Metrics.step) imports pkg.train.fit" in report
    assert "pkg.train.fit (line 1) imports pkg.eval.metrics" in report


def test_a_longer_cycle_is_one_component(tmp_path):
    root = tmp_path / "pkg"
    root.mkdir()
    (root / "a.py").write_text("import pkg.b\n")
    (root / "b.py").write_text("def f():\n    from pkg import c\n")
    (root / "c.py").write_text("from pkg.a import x\n")
    (root / "d.py").write_text("import pkg.a\n")  # into the cycle, not part of it
    imports, _ = package_imports(root, "pkg")
    assert import_cycles(imports) == [["pkg.a", "pkg.b", "pkg.c"]]


# ---------------------------------------------------------------------------------------------
# The package.


def test_every_module_imports_only_from_lower_layers():
    imports, _ = package_imports(PACKAGE_DIR, PACKAGE)
    assert imports, f"no imports found under {PACKAGE_DIR}"
    violations = layer_violations(imports)
    if violations:
        pytest.fail(
            "imports against the layering:\n"
            + "\n".join(f"  {_where(imp)}: {why}" for imp, why in violations)
        )


def test_no_import_cycles():
    imports, _ = package_imports(PACKAGE_DIR, PACKAGE)
    cycles = import_cycles(imports)
    if cycles:
        pytest.fail(_cycle_report(imports, cycles))


def test_every_imported_module_exists():
    _, missing = package_imports(PACKAGE_DIR, PACKAGE)
    if missing:
        pytest.fail(
            "imports of modules the package does not have:\n"
            + "\n".join(f"  {_where(imp)}" for imp in missing)
        )
