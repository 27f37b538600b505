"""Every notebook, opened in JupyterLab in headless Chromium: runs, renders, and its stepper steps.

Needs Debian's ``chromium`` package and the ``playwright``, ``jupyterlab`` and
``ipykernel`` packages (``TFT_BROWSER=1 bash scripts/setup.sh``); skipped
otherwise. All notebooks share one JupyterLab server and one browser; the
work is done by ``scripts/browser_check.py``, which can also be run by hand
(``--screenshots DIR`` to look at the pages).
"""
import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEMO = Path(__file__).with_name("demo.ipynb")
NOTEBOOKS = [DEMO, *sorted((ROOT / "notebooks").glob("*.ipynb"))]

_spec = importlib.util.spec_from_file_location("browser_check", ROOT / "scripts" / "browser_check.py")
browser_check = sys.modules.setdefault("browser_check", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(browser_check)

pytestmark = pytest.mark.browser
_missing = browser_check.missing_requirements()
if _missing:
    pytest.skip(f"browser check cannot run here: {_missing}", allow_module_level=True)


@pytest.fixture(scope="module")
def results():
    """Check all notebooks once; ``TFT_BROWSER_SCREENSHOTS=DIR`` keeps a screenshot of each."""
    shots = os.environ.get("TFT_BROWSER_SCREENSHOTS")
    found = browser_check.check_notebooks(NOTEBOOKS, Path(shots) if shots else None)
    return {r.notebook: r for r in found}


def _result(results, notebook: Path):
    rel = notebook.resolve().relative_to(ROOT).as_posix()
    # check_notebooks names notebooks relative to their common parent (the repo root).
    return next(r for name, r in results.items() if rel.endswith(name))


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_without_error_and_renders(results, notebook):
    r = _result(results, notebook)
    assert r.ok, r.summary()


def test_demo_shows_its_figures_and_stepper_and_next_advances(results):
    r = _result(results, DEMO)
    assert r.figures_expected == r.figures_rendered == 2
    assert r.widgets_expected == r.widgets_rendered == 1
    assert r.stepper_before.startswith("1 of ")
    assert r.stepper_after.startswith("2 of ")
