"""The package's shape: no import circles, and the demo's files found inside the package."""

from __future__ import annotations

import ast
from importlib import resources
from pathlib import Path

from importer.demo import demo_files

PACKAGE = Path(__file__).resolve().parent.parent / "importer"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """The importer modules `path` imports at run time (imports under TYPE_CHECKING are not)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(child) for stmt in node.body for child in ast.walk(stmt))
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            # `from importer import datetimes` imports a module; `from importer import x` a name of one
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {module for module in found if module in known and module != name}


def _graph() -> dict[str, set[str]]:
    paths = {_module_name(path): path for path in PACKAGE.rglob("*.py") if "sample_data" not in path.parts}
    known = set(paths)
    return {name: _imports(path, name, known) for name, path in paths.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return [*stack[stack.index(target) :], target]
            if target not in state and (found := visit(target)):
                return found
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_import_graph_finds_a_planted_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_importer_has_no_import_cycle():
    graph = _graph()
    assert "importer.runner" in graph
    assert "importer.account" in graph["importer.runner"]  # the graph sees real edges
    assert _cycle(graph) is None


def test_demo_files_are_package_resources():
    package = resources.files("importer")
    assert package.joinpath("sample_data", "activities.csv").is_file()
    assert package.joinpath("mappings", "example.yaml").is_file()
    with demo_files() as (sample, mapping):
        assert sample.read_text(encoding="utf-8").startswith(
            package.joinpath("sample_data", "activities.csv").read_text(encoding="utf-8")[:200]
        )
        assert mapping.name == "example.yaml"
        assert mapping.is_file()
