"""The project's layout holds: the lab, the demo and the benchmarks import nothing from
tests/ and edit no import path; the helpers in tests/ are only for tests."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TEST_HELPERS = {path.stem for path in (REPO / "tests").glob("*.py")}
OUTSIDE_TESTS = sorted(path for top in ("lab", "bench", "demo", "soak", "ocf_lib", "agents")
                       for path in (REPO / top).rglob("*.py"))


def imported_names(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def path_edits(tree: ast.AST) -> list[int]:
    """Lines that change sys.path (insert, append, slices, assignment)."""
    lines = []
    for node in ast.walk(tree):
        target = None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            target = node.func.value
        elif isinstance(node, (ast.Assign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            target = next((t.value if isinstance(t, ast.Subscript) else t for t in targets), None)
        if (isinstance(target, ast.Attribute) and target.attr == "path"
                and isinstance(target.value, ast.Name) and target.value.id == "sys"):
            lines.append(node.lineno)
    return sorted(lines)


@pytest.mark.parametrize("path", OUTSIDE_TESTS, ids=lambda p: str(p.relative_to(REPO)))
def test_code_outside_tests_imports_no_test_helper(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    assert not imported_names(tree) & (TEST_HELPERS | {"tests"})


@pytest.mark.parametrize("top", ["lab", "bench", "demo", "soak"])
def test_lab_demo_and_benchmarks_edit_no_import_path(top: str) -> None:
    edits = {str(path.relative_to(REPO)): path_edits(ast.parse(path.read_text()))
             for path in sorted((REPO / top).rglob("*.py"))}
    assert {name: lines for name, lines in edits.items() if lines} == {}


def test_the_path_edit_finder_sees_the_usual_forms() -> None:
    code = "import sys\nsys.path.insert(0, 'x')\nsys.path[:0] = ['y']\nsys.path.append('z')\n"
    assert path_edits(ast.parse(code)) == [2, 3, 4]
