"""The suite's own rules: every Redis key it writes is under this session's prefix, and test
modules share helpers through tests/support/, never by importing one another."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from tests import conftest
from tests.conftest import TEST_PREFIX

TESTS = Path(__file__).resolve().parent


def test_test_modules_share_the_conftest_pytest_loaded():
    # One module, so one session prefix: the leftover check at the end covers every test's keys.
    loaded = [m for m in sys.modules.values() if getattr(m, "__file__", None) == conftest.__file__]
    assert len(loaded) == 1 and loaded[0].TEST_PREFIX == TEST_PREFIX


def test_no_test_writes_under_a_prefix_of_its_own_making():
    literal = "tally-" + "test-"  # spelt in two, or this file would match itself
    offenders = [
        str(path.relative_to(TESTS))
        for path in TESTS.rglob("*.py")
        if path.name != "conftest.py" and literal in path.read_text()
    ]
    assert offenders == [], f"build prefixes from tests.conftest.TEST_PREFIX in: {offenders}"


def imported_modules(tree: ast.Module) -> set[str]:
    """Every module an ``import`` or ``from ... import`` names, and ``from package import name`` as package.name."""
    found: set[str] = set()
    for node in ast.walk(tree):  # nested imports too: a helper imported inside a fixture counts
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def test_no_test_module_imports_another():
    # A helper two test modules need lives in tests/support/; importing a test module would
    # also collect its tests a second time under the importer's name when run from there.
    offenders = {
        path.name: sorted(m for m in imported_modules(ast.parse(path.read_text())) if m.startswith("tests.test_"))
        for path in sorted(TESTS.glob("test_*.py"))
    }
    offenders = {name: modules for name, modules in offenders.items() if modules}
    assert offenders == {}, f"move what they share to tests/support/: {offenders}"


def test_the_rule_sees_every_spelling_of_such_an_import():
    spellings = ["from tests.test_e2e import free_port", "import tests.test_e2e", "from tests import test_e2e"]
    for source in spellings:
        assert "tests.test_e2e" in imported_modules(ast.parse(f"def f():\n    {source}\n")), source
    assert not any(m.startswith("tests.test_") for m in imported_modules(ast.parse("from tests.support import net")))
