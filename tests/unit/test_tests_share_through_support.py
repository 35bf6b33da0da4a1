"""Tests share code through tests/support only: no test module and no
conftest is imported by another module, so that moving or deleting a test
never breaks a second one, and conftests only declare fixtures (a helper
they hold could not be imported, so it would be copied)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support.repository import ROOT

TESTS = ROOT / "tests"


def imported_modules(path: Path, top: Path) -> list[tuple[int, str]]:
    """(line, dotted name) of every module ``path`` imports, at any depth;
    relative imports are resolved against the package the file is in
    (``top`` is the directory the package names start from)."""
    package = path.relative_to(top).parent.parts
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = list(package[:len(package) - node.level + 1]) if node.level else []
            module = ".".join([*base, *(node.module or "").split(".")]).strip(".")
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def forbidden(name: str) -> bool:
    """Whether importing ``name`` reaches into tests outside tests/support."""
    parts = name.split(".")
    return parts[0] == "tests" and len(parts) > 1 and parts[1] != "support"


def cross_test_imports(root: Path) -> list[str]:
    return [f"{path.relative_to(root.parent)}:{line}: {name}"
            for path in sorted(root.rglob("*.py"))
            for line, name in imported_modules(path, root.parent) if forbidden(name)]


def is_fixture(node: ast.stmt) -> bool:
    return isinstance(node, ast.FunctionDef) and any(
        "fixture" in ast.unparse(decorator) for decorator in node.decorator_list)


def not_fixtures(conftest: Path) -> list[str]:
    """What a conftest holds besides imports, its docstring and fixtures."""
    body = ast.parse(conftest.read_text()).body
    return [f"{conftest.name}:{node.lineno}: {ast.unparse(node).splitlines()[0]}"
            for i, node in enumerate(body)
            if not (isinstance(node, (ast.Import, ast.ImportFrom)) or is_fixture(node)
                    or (i == 0 and isinstance(node, ast.Expr)))]


def test_conftests_only_declare_fixtures():
    assert [found for path in sorted(TESTS.rglob("conftest.py"))
            for found in not_fixtures(path)] == []


def test_the_conftest_check_finds_helpers_and_constants(tmp_path):
    conftest = tmp_path / "conftest.py"
    conftest.write_text('"""Fixtures."""\nimport pytest\n\nURL = "x"\n\n\n'
                        "@pytest.fixture\ndef made():\n    return helper()\n\n\n"
                        "def helper():\n    return 1\n")
    assert not_fixtures(conftest) == ["conftest.py:4: URL = 'x'",
                                      "conftest.py:12: def helper():"]


def test_tests_import_only_tests_support():
    assert cross_test_imports(TESTS) == []


def test_the_scan_finds_each_kind_of_cross_test_import(tmp_path):
    package = tmp_path / "tests" / "e2e"
    package.mkdir(parents=True)
    (package / "test_x.py").write_text(
        "from tests.conftest import unique\n"
        "import tests.e2e.test_other\n"
        "from tests.support.waiting import wait_for\n"
        "from . import conftest\n"
        "def f():\n    from tests.unit.test_y import CONSTANT\n")
    found = cross_test_imports(tmp_path / "tests")
    assert [line.split(": ")[1] for line in found] == [
        "tests.conftest.unique", "tests.e2e.test_other", "tests.e2e.conftest",
        "tests.unit.test_y.CONSTANT"]
