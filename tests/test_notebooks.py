"""The course notebooks and their canned data.

The notebooks themselves run live under nbval (``pytest --nbval-lax notebooks/``)
and in a browser (``tests/browser``). Here: every notebook is a course (its
exercises each have a filled-in solution, a check cell that calls its check in
``notebooks/checks/``, and a solution note), and every canned run of
``datasets/`` loads with this tft_lab. That every notebook runs green on the
canned data alone (``TFT_CANNED=1``, as on a machine without ptrace), and that its
checks reject wrong answers, is ``tests/test_exercises.py``.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pandas as pd
import pytest

from tft_lab.log import read_log
from tft_lab.trace import COLUMNS

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
DATASETS = ROOT / "datasets"
MANIFEST = json.loads((DATASETS / "manifest.json").read_text())


def _cells(nb: Path) -> list[dict]:
    return json.loads(nb.read_text())["cells"]


def _source(cell: dict) -> str:
    return "".join(cell["source"])


def test_there_are_the_nine_course_notebooks():
    names = [n.stem for n in NOTEBOOKS]
    assert names == ["01_syscalls_and_nondeterminism", "02_record_and_replay", "03_epochs_and_signals",
                     "04_output_commit", "05_failover_and_crash_sweeps", "06_os_objects",
                     "07_measuring_overhead", "08_everyday_programs", "09_threads"]


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_exercise_has_a_solution_a_check_and_a_note(nb):
    cells = _cells(nb)
    exercises = [i for i, c in enumerate(cells)
                 if c["cell_type"] == "markdown" and _source(c).startswith("### Exercise")]
    assert len(exercises) >= 3, f"{nb.name}: only {len(exercises)} exercises"
    for i in exercises:
        number = re.match(r"### Exercise ([\d.]+)", _source(cells[i])).group(1)
        solution, check, note = cells[i + 1], cells[i + 2], cells[i + 3]
        assert solution["cell_type"] == "code" and "solution is filled in" in _source(solution), number
        assert check["cell_type"] == "code" and _source(check).startswith(f"# Check {number}"), number
        assert f"checks.ex_{number.replace('.', '_')}(" in _source(check), number
        assert note["cell_type"] == "markdown" and f"Solution {number}" in _source(note), number


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_decides_live_or_canned_and_saves_no_outputs(nb):
    cells = _cells(nb)
    code = [c for c in cells if c["cell_type"] == "code"]
    assert "LIVE = course.setup()" in _source(code[0])
    assert all(not c.get("outputs") for c in code), f"{nb.name} was saved with outputs"


def test_the_live_stepper_and_the_trace_stepper_are_both_used():
    text = "".join(_source(c) for nb in NOTEBOOKS for c in _cells(nb))
    assert text.count("%tft step") >= 3
    assert text.count("TraceStepper(") >= 5


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_every_canned_run_loads_with_this_tft_lab(name):
    sys.path.insert(0, str(ROOT / "notebooks"))
    try:
        import course
    finally:
        sys.path.pop(0)
    meta = MANIFEST[name]
    if meta["kind"] == "table":
        t = course.canned_table(name)
        assert len(t) == meta["rows"]
        assert "seconds" in t.columns or "point" in t.columns   # a benchmark or a tft sweep table
        return
    r = course.canned(name)
    assert list(r.trace.columns) == list(COLUMNS)
    assert len(r.trace) == meta["rows"] > 0
    assert isinstance(r.trace["cls"].dtype, pd.CategoricalDtype)
    assert r.returncode == 0 or meta["extra"].get("refused"), r.stderr   # (a run tft refuses, on purpose)
    if meta.get("log"):
        assert read_log(DATASETS / meta["log"])[0].type == "header"


def test_the_datasets_stay_small():
    total = sum(p.stat().st_size for p in DATASETS.iterdir() if p.is_file())
    assert total < 5_000_000
