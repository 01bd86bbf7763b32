"""The suite's own rules: every Redis key it writes is under this session's prefix."""

from __future__ import annotations

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
