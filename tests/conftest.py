"""Shared fixtures for the tft_lab tests.

The helpers themselves live in :mod:`tft_lab.testing` (they ship with the
library); this file only wires them into pytest.
"""
from __future__ import annotations

import pytest

from tft_lab._build import example
from tft_lab.testing import adopt_orphans, build_program, current_pids


@pytest.fixture
def pids_before():
    """The pids that exist before the test runs anything.

    This process also becomes a child subreaper, so every process the test's
    supervisors leave behind (even an orphan) is one of its descendants; give
    the set to ``tft_lab.testing.assert_no_leftovers``.
    """
    adopt_orphans()
    return current_pids()


@pytest.fixture(scope="module")
def clocks():
    """The clocks guest program, built."""
    return str(build_program("clocks"))


@pytest.fixture(scope="module")
def counter():
    """The bundled counter example, built."""
    return str(example("counter"))
