"""The exercise mutation test: every exercise's check rejects plausible wrong answers.

``notebooks/checks/`` holds each exercise's check and, beside it, wrong answers
(off by one, the other replica, the other workload or mode, a hard-coded value,
the placeholder ``None``). Here each notebook is executed with a cell
``checks.mutate("X.Y")`` after every check cell: it runs the check again on the
shipped solution (which must pass) and on each wrong answer, with the data the
notebook computed (which must be rejected), and fails if a wrong answer passes or
fewer than three are caught. Once on the canned data (``TFT_CANNED=1``, no ptrace
needed), once live where ptrace works.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
sys.path.insert(0, str(ROOT / "notebooks"))
try:
    import checks
finally:
    sys.path.pop(0)


def _source(cell) -> str:
    return "".join(cell["source"])


def _exercise_numbers(nb: Path) -> list[str]:
    cells = json.loads(nb.read_text())["cells"]
    return [m.group(1) for c in cells if c["cell_type"] == "code"
            for m in [re.match(r"# Check ([\d.]+)", _source(c))] if m]


def _ptrace_works() -> bool:
    p = subprocess.run([sys.executable, "-m", "tft_lab.cli", "trace", "-o", os.devnull, "--", "/bin/true"],
                       capture_output=True, timeout=60)
    return p.returncode == 0


def test_every_exercise_of_the_notebooks_has_a_check_and_wrong_answers():
    numbers = [n for nb in NOTEBOOKS for n in _exercise_numbers(nb)]
    assert sorted(numbers) == sorted(checks.EXERCISES), "checks/ and the notebooks' check cells disagree"
    for number, ex in checks.EXERCISES.items():
        labels = [label for label, _ in ex.wrongs]
        assert len(labels) >= 3, f"exercise {number}: only {len(labels)} wrong answers"
        assert any("None" in label for label in labels), f"exercise {number}: the placeholder None is not tried"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_check_cell_calls_its_check_in_checks_py(nb):
    cells = json.loads(nb.read_text())["cells"]
    for c in cells:
        m = re.match(r"# Check ([\d.]+)", _source(c))
        if m:
            call = f"checks.ex_{m.group(1).replace('.', '_')}("
            assert call in _source(c), f"{nb.name}: check {m.group(1)} does not call {call}...)"


def test_a_check_compares_with_the_data_not_with_the_answer():
    # A wrong answer that equals the solution on some run is not counted as caught;
    # one that passes the check fails mutate().
    import pandas as pd

    ex = checks.EXERCISES["1.3"]
    trace = pd.DataFrame({"syscall": ["clock_gettime"] * 12 + ["write"]})
    checks.ex_1_3(12, trace)
    with pytest.raises(AssertionError):
        checks.ex_1_3(13, trace)
    with pytest.raises(AssertionError):
        checks.ex_1_3(None, trace)
    assert ex.last[0] == 12, "mutate() starts from the last answer that passed"
    result = checks.mutate("1.3")
    assert len(result["caught"]) >= 3


def test_mutate_fails_when_a_check_lets_a_wrong_answer_through():
    # the mutation test can fail: a lax check, like the ones it replaced, is caught
    def lax(answer, trace):
        assert answer is not None and answer > 0

    checks.EXERCISES["0.lax"] = checks.Exercise("0.lax", lax, 1, list(checks.EXERCISES["1.3"].wrongs))
    try:
        import pandas as pd

        checks.EXERCISES["0.lax"].last = (12, pd.DataFrame({"syscall": ["clock_gettime"] * 12}))
        with pytest.raises(AssertionError, match="passed the check"):
            checks.mutate("0.lax")
    finally:
        del checks.EXERCISES["0.lax"]


#: Data a notebook needs that is made outside this suite (the corpus table is
#: written by ``python -m tests.corpus.report``).
NEEDS = {"08_everyday_programs": ROOT / "datasets" / "compatibility.csv"}


def _run_with_mutations(nb: Path, canned: bool):
    nbclient = pytest.importorskip("nbclient")
    if nb.stem in NEEDS and not NEEDS[nb.stem].exists():
        pytest.skip(f"{NEEDS[nb.stem].relative_to(ROOT)} is missing (made by python -m tests.corpus.report)")
    import nbformat

    notebook = nbformat.read(nb, as_version=4)
    numbers = []
    cells = []
    for cell in notebook.cells:
        cells.append(cell)
        m = re.match(r"# Check ([\d.]+)", cell.source) if cell.cell_type == "code" else None
        if m:
            numbers.append(m.group(1))
            cells.append(nbformat.v4.new_code_cell(f'checks.mutate("{m.group(1)}")'))
    notebook.cells = cells
    env_before = os.environ.get("TFT_CANNED")
    if canned:
        os.environ["TFT_CANNED"] = "1"     # the kernel inherits it
    else:
        os.environ.pop("TFT_CANNED", None)
    try:
        nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                resources={"metadata": {"path": str(nb.parent)}}).execute()
    finally:
        os.environ.pop("TFT_CANNED", None)
        if env_before is not None:
            os.environ["TFT_CANNED"] = env_before
    out = "".join(o.get("text", "") for c in notebook.cells for o in c.get("outputs", []) if o.get("name") == "stdout")
    for number in numbers:
        assert f"✓ exercise {number} passed" in out, number
        m = re.search(rf"mutation {re.escape(number)}: (\d+) wrong answers caught", out)
        assert m and int(m.group(1)) >= 3, f"exercise {number}: {m and m.group(0)}"
    print("\n".join(line for line in out.splitlines() if line.startswith("mutation ")))   # shown by pytest -rP
    return notebook, out


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_wrong_answers_are_rejected_on_the_canned_data(nb):
    notebook, _ = _run_with_mutations(nb, canned=True)
    shown = "".join(str(o.get("data", {}).get("text/markdown", "")) for c in notebook.cells[:3]
                    for o in c.get("outputs", []))
    assert "Canned data" in shown


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_wrong_answers_are_rejected_live(nb):
    if not _ptrace_works():
        pytest.skip("ptrace is not allowed here")
    _run_with_mutations(nb, canned=False)
