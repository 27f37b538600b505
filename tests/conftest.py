"""Shared fixtures for the tft_lab tests.

The helpers themselves live in :mod:`tft_lab.testing` (they ship with the
library); this file only wires them into pytest.
"""
from __future__ import annotations

import gc
import os
import shutil
import tempfile
import time

import pytest

from tft_lab._build import example
from tft_lab.testing import adopt_orphans, build_program, current_pids, run_cli


_SESSION_TMP: str | None = None


def pytest_configure(config) -> None:
    """Give this session (its tests, the tft processes they start, the notebook kernels) a
    temporary directory of its own, so that what it leaves there is its own doing: other runs
    on the machine share /tmp.  pytest's own ``tmp_path`` folders stay where they were."""
    global _SESSION_TMP
    if _SESSION_TMP is not None:
        return
    os.environ.setdefault("PYTEST_DEBUG_TEMPROOT", tempfile.gettempdir())
    _SESSION_TMP = tempfile.mkdtemp(prefix="tft-suite-tmp-")
    os.environ["TMPDIR"] = _SESSION_TMP
    tempfile.tempdir = None   # gettempdir() reads TMPDIR again


def pytest_unconfigure(config) -> None:
    if _SESSION_TMP is not None:
        shutil.rmtree(_SESSION_TMP, ignore_errors=True)


def leftovers(folder: str) -> list[str]:
    """The ``tft*`` entries in ``folder``: what tft_lab, its notebooks or its tests left there."""
    return sorted(n for n in os.listdir(folder) if n.startswith("tft"))


@pytest.fixture(scope="session", autouse=True)
def nothing_left_in_the_temporary_directory():
    """Fails the run (an error at the last test's teardown) if the suite leaves a ``tft*``
    entry in the temporary directory: a run's work folder, a notebook's scratch folder, a
    session's log.  Objects nobody holds any more are collected first: what they clean up
    when collected (a :class:`tft_lab.session.Run`'s log, a dropped live session's folder
    once its run ends, waited for up to 30 s) is not a leftover, nor what tft_lab removes at
    exit (``tests/test_nothing_left_behind.py`` checks that it does)."""
    from tft_lab import _scratch

    yield
    gc.collect()
    deadline = time.monotonic() + 30   # a dropped live session's run may still be finishing
    while (left := leftovers(_SESSION_TMP)) and time.monotonic() < deadline:
        time.sleep(0.2)
    # What tft_lab removes when this process exits (a widget still holds its live session:
    # ipywidgets keeps every widget until it is closed) is not left behind.
    at_exit = {os.path.basename(p) for p in _scratch.pending() if os.path.dirname(p) == _SESSION_TMP}
    left = [n for n in left if n not in at_exit]
    assert not left, f"the test suite left {', '.join(left)} in the temporary directory"


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


@pytest.fixture
def key(tmp_path):
    """A fresh shared key file (``tft keygen``) for the two ends of a TCP channel."""
    path = tmp_path / "shared.key"
    assert run_cli(["keygen", path]).returncode == 0
    return path
