"""The workshop's import rules, read from the source with ast: test modules stand alone (shared helpers
live in tests/ helper modules and tests/conftest.py), and nothing outside bench/ depends on a benchmark."""

import ast

from tests.stack import ROOT

SKIPPED = {".venv", ".git", "build", "data", "model_store", "run", "artifacts"}


def python_files():
    return [p for p in ROOT.rglob("*.py") if not SKIPPED & set(p.relative_to(ROOT).parts)]


def imported(path) -> set[str]:
    """Every module name an import in the file names (from a.b import c: a.b and a.b.c)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def test_no_test_module_imports_another():
    found = {
        str(path.relative_to(ROOT)): sorted(
            n for n in imported(path) if n.split(".")[-1].startswith("test_") and n.startswith("tests")
        )
        for path in (ROOT / "tests").glob("*.py")
    }
    assert {path: names for path, names in found.items() if names} == {}


def test_nothing_outside_bench_imports_bench():
    found = {
        str(path.relative_to(ROOT)): sorted(n for n in imported(path) if n.split(".")[0] == "bench")
        for path in python_files()
        if path.relative_to(ROOT).parts[0] != "bench"
    }
    assert {path: names for path, names in found.items() if names} == {}


def test_the_checks_see_an_import_of_each_kind(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("from tests import test_web\nfrom tests.test_fuzz import SPEC\nimport bench.soak\n")
    assert {"tests.test_web", "tests.test_fuzz", "bench.soak"} <= imported(sample)
