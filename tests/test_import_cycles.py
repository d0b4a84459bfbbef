"""The project's own modules import each other without a cycle.

A cycle works only while its modules happen to be imported in one order, and it ties their apps
into one. The graph is read from the source with `ast`: the imports a module runs when it is
imported (at its top level, under `if` and `try` too), not those inside functions, which run
later, nor those under `if TYPE_CHECKING:`, which never run.
"""

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("accounts", "credits", "separation", "webhooks", "demucs_service", "bench", "reliability", "tests")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports_run_at_import(body: list[ast.stmt]):
    """The import statements in a module's body that run when it is imported."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from _imports_run_at_import(node.body)
            yield from _imports_run_at_import(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, *(handler.body for handler in node.handlers), node.orelse, node.finalbody):
                yield from _imports_run_at_import(block)
        elif isinstance(node, ast.With | ast.ClassDef):
            yield from _imports_run_at_import(node.body)


def _imported_names(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """Every module name the statement may import: `from a.b import c` imports a.b, and a.b.c if c
    is a module."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, base] if base else package)
    return [base, *(f"{base}.{alias.name}" for alias in node.names)]


def import_graph() -> dict[str, set[str]]:
    files = {
        _module_name(path): path
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if "migrations" not in path.parts
    }
    known = set(files)
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        # A module's own packages run before it whatever it imports: reaching them only on the way
        # to a sibling (a package whose __init__ exports its submodules) is no cycle; naming them is.
        ancestors = {".".join(module.split(".")[:n]) for n in range(1, module.count(".") + 1)}
        targets = set()
        for node in _imports_run_at_import(tree.body):
            for name in _imported_names(node, module, path.name == "__init__.py"):
                # Importing a.b.c runs a and a.b first.
                parts = name.split(".")
                prefixes = {".".join(parts[:n]) for n in range(1, len(parts))} - ancestors
                targets.update(target for target in (*prefixes, name) if target in known)
        graph[module] = targets - {module}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle, as the modules along it back to the first, or None."""
    done: set[str] = set()
    path: list[str] = []
    on_path: set[str] = set()

    def visit(module: str) -> list[str] | None:
        path.append(module)
        on_path.add(module)
        for target in sorted(graph.get(module, ())):
            if target in on_path:
                return [*path[path.index(target) :], target]
            if target not in done and (cycle := visit(target)):
                return cycle
        path.pop()
        on_path.discard(module)
        done.add(module)
        return None

    for module in sorted(graph):
        if module not in done and (cycle := visit(module)):
            return cycle
    return None


def test_it_finds_a_cycle_when_there_is_one():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}

    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_it_reads_relative_and_nested_imports():
    source = (
        "from . import sibling\n"
        "from .models import Thing\n"
        "try:\n    import credits.models\nexcept ImportError:\n    pass\n"
        "if TYPE_CHECKING:\n    import separation.models\n"
        "def later():\n    import accounts.models\n"
    )
    tree = ast.parse(source)
    names = [name for node in _imports_run_at_import(tree.body) for name in _imported_names(node, "credits.api", False)]

    assert names == ["credits", "credits.sibling", "credits.models", "credits.models.Thing", "credits.models"]


def test_the_project_has_no_import_cycle():
    graph = import_graph()
    assert {"accounts.models", "credits.services", "separation.models", "tests.conftest"} <= set(graph)

    cycle = find_cycle(graph)

    assert cycle is None, "Import cycle: " + " -> ".join(cycle)
