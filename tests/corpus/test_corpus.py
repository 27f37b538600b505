"""Everyday programs, unmodified, under tft: one test per (workload, check).

A module fixture judges every selected workload once, two at a time (each in its
own harness process, see :mod:`.harness`); each check is then its own test, so a
failure names the workload and the check, with the harness's detail.  Known
failures (:mod:`.known`) are strict xfails (unless marked flaky): a fix shows up
as XPASS and its entry must be removed.  ``TFT_CORPUS_RESULTS=FILE`` also saves the raw results, which
``python -m tests.corpus.report --results FILE`` turns into the compatibility table.
"""
from __future__ import annotations

import json
import os
import time
from fnmatch import fnmatchcase

import pytest

from .harness import checks_of, one_duplicate_at_most, run_many, without_tft_lines
from .known import KNOWN, is_strict, known_reason
from .workload import REGISTRY, digits

WORKERS = int(os.environ.get("TFT_CORPUS_WORKERS", "2"))   # the CI runner has two cores


def _cases():
    for name, w in REGISTRY.items():
        for check in checks_of(w):
            reason = known_reason(name, check)
            marks = [pytest.mark.xfail(strict=is_strict(reason), reason=reason)] if reason else []
            yield pytest.param(name, check, marks=marks, id=f"{name}:{check}")


@pytest.fixture(scope="module")
def results(request):
    names = list(dict.fromkeys(item.callspec.params["name"] for item in request.session.items
                               if hasattr(item, "callspec") and item.module.__name__ == __name__
                               and "name" in item.callspec.params))
    t0 = time.monotonic()
    out = run_many(names, WORKERS)
    elapsed = time.monotonic() - t0
    if os.environ.get("TFT_CORPUS_RESULTS"):
        with open(os.environ["TFT_CORPUS_RESULTS"], "w") as f:
            json.dump(out, f, indent=1)
    print(f"\ncorpus: {len(names)} workloads in {elapsed:.0f} s")
    return out


@pytest.mark.parametrize("name,check", list(_cases()))
def test_workload(results, name, check):
    r = results[name]["checks"][check]
    assert r["status"] in ("pass", "refused"), f"{name} {check}: {r['detail']}"


# --- the instrument itself: it must be able to fail --------------------------------------------------

def test_the_corpus_is_large_enough_and_lists_threaded_programs():
    single = [w for w in REGISTRY.values() if not w.threaded]
    assert len(single) >= 60
    assert {w.kind for w in single} >= {"shell", "coreutils", "archive", "git", "build", "db", "script",
                                         "python", "server"}
    assert sum(w.threaded for w in REGISTRY.values()) >= 4


def test_every_known_failure_names_a_workload_a_check_and_a_class():
    for (name, check), reason in KNOWN.items():
        matched = [w for w in REGISTRY.values() if fnmatchcase(w.name, name)]
        assert matched, f"{name}: no such workload"
        assert any(fnmatchcase(c, check) for w in matched for c in checks_of(w)), (name, check)
        assert reason.startswith(("class ", "new class ")), reason
        # a reason that says the failure is flaky is not held to it (an XPASS must not fail CI)
        assert is_strict(reason) == ("flaky" not in reason), reason


def test_one_duplicated_output_is_allowed_and_nothing_else():
    want = b"one\ntwo\nthree\n"
    assert one_duplicate_at_most(want, want)
    assert one_duplicate_at_most(b"one\ntwo\ntwo\nthree\n", want)
    assert one_duplicate_at_most(b"one\none\ntwo\nthree\n", want)
    assert not one_duplicate_at_most(b"one\ntwo\ntwo\nthree\nthree\n", want)   # two repeats
    assert not one_duplicate_at_most(b"\0\0\0one\ntwo\nthree\n", want)         # corruption
    assert not one_duplicate_at_most(b"one\nthree\n", want)                     # a loss
    assert not one_duplicate_at_most(b"one\ntwo\nthree\nfour\n", want)          # not a repeat


def test_tft_lines_are_ignored_in_stderr_but_nothing_else():
    assert without_tft_lines(b"tft: failover: ...\nwarning\n") == b"warning\n"
    assert digits(b"pid=123 t=4.5") == b"pid=N t=N.N"


def test_the_report_turns_results_into_rows_and_a_table():
    from .report import COLUMNS, markdown, rows

    single = next(w for w in REGISTRY.values() if not w.threaded)
    threaded = next(w for w in REGISTRY.values() if w.threaded)
    results = {
        single.name: {"workload": single.name, "times": {"native": 0.01, "record": 0.5, "strace": 0.02},
                      "checks": {c: {"status": "pass", "detail": ""} for c in checks_of(single)}},
        threaded.name: {"workload": threaded.name, "times": {},
                        "checks": {c: {"status": "pass", "detail": ""} for c in checks_of(threaded)}},
    }
    results[single.name]["checks"]["fault-50"] = {"status": "fail", "detail": "stdout 'x', expected 'y'"}
    table = rows(results)
    assert [r["workload"] for r in table] == [single.name, threaded.name]
    assert all(set(r) == set(COLUMNS) for r in table)
    assert table[0]["fault-50"] == "fail" and table[0]["record_s"] == "0.500"
    assert table[1]["threaded"] and table[1]["fault-50"] == "pass"
    md = markdown(table)
    assert f"| {single.name} |" in md and "**FAIL**" in md and "stdout 'x', expected 'y'" in md
    assert "0 of 1 single-threaded workloads pass every check" in md
