"""Checks of notebook 08 Everyday programs (the corpus table, ``datasets/compatibility.csv``)."""
from __future__ import annotations

import pandas as pd

from ._core import _exercise, _expect, _wrong


def _single(corpus: pd.DataFrame) -> pd.DataFrame:
    return corpus[~corpus["threaded"].astype(bool)]


def _transparent(corpus, checks, rows=None):
    rows = _single(corpus) if rows is None else rows
    return list(rows.loc[(rows[checks] == "pass").all(axis=1), "workload"])


@_exercise("8.1")
def ex_8_1(transparent, corpus: pd.DataFrame, checks: list) -> None:
    """``transparent``: the single-threaded workloads that pass every check."""
    _expect(isinstance(transparent, list) and all(isinstance(w, str) for w in transparent),
            "transparent should be a list of workload names")
    right = _transparent(corpus, checks)
    extra = sorted(set(transparent) - set(right))
    _expect(not extra, f"these do not pass every check (or are threaded): {extra[:5]}")
    missing = sorted(set(right) - set(transparent))
    _expect(not missing, f"these pass every check too: {missing[:5]}")
    _expect(len(transparent) == len(right), "each workload once")


_wrong("8.1", "placeholder None")(lambda c: None)
_wrong("8.1", "the first ten shown")(lambda c: c.answer[:10] if len(c.answer) > 10 else c.answer[:-1])
_wrong("8.1", "threaded ones too")(lambda c: _transparent(c.data[0], c.data[1], c.data[0]) + list(
    c.data[0].loc[c.data[0]["threaded"].astype(bool), "workload"]))
_wrong("8.1", "any check passing")(
    lambda c: list(_single(c.data[0]).loc[(_single(c.data[0])[c.data[1]] == "pass").any(axis=1), "workload"]))
_wrong("8.1", "the replay checks only")(
    lambda c: _transparent(c.data[0], [k for k in c.data[1] if k.startswith("replay")]))


def _threaded_results(corpus: pd.DataFrame, checks: list) -> dict:
    t = corpus[corpus["threaded"].astype(bool)]
    return {row["workload"]: [c for c in checks if row[c] != "pass"] for _, row in t.iterrows()}


@_exercise("8.2")
def ex_8_2(threaded_results, corpus: pd.DataFrame, checks: list) -> None:
    """``threaded_results``: threaded workload -> the checks (in ``checks``' order) it does not pass."""
    _expect(isinstance(threaded_results, dict), "threaded_results should be a dict: workload -> list of checks")
    right = _threaded_results(corpus, checks)
    _expect(set(threaded_results) == set(right), "one entry for each threaded workload (the threaded column), "
                                                 "and no other")
    bad = sorted(w for w in right if not isinstance(threaded_results[w], list) or threaded_results[w] != right[w])
    _expect(not bad, f"wrong for {bad}: list the checks whose cell is not 'pass', in CHECKS order")


_wrong("8.2", "placeholder None")(lambda c: None)
_wrong("8.2", "every workload")(lambda c: {**_threaded_results(c.data[0].assign(threaded=True), c.data[1])})
_wrong("8.2", "only the failing ones")(lambda c: {w: v for w, v in c.answer.items() if v})
_wrong("8.2", "the checks passed, not failed")(
    lambda c: {w: [k for k in c.data[1] if k not in v] for w, v in c.answer.items()})
_wrong("8.2", "the last check left out")(lambda c: _threaded_results(c.data[0], c.data[1][:-1]))


def _ratio(corpus, top="record_s", bottom="native_s"):
    t = _single(corpus).set_index("workload")
    return (pd.to_numeric(t[top], errors="coerce") / pd.to_numeric(t[bottom], errors="coerce")).dropna()


@_exercise("8.3")
def ex_8_3(overhead, corpus: pd.DataFrame) -> None:
    """``overhead``: ``record_s / native_s`` per single-threaded workload (a Series by workload)."""
    _expect(isinstance(overhead, pd.Series), "overhead should be a pandas Series indexed by workload")
    right = _ratio(corpus)
    _expect(set(overhead.dropna().index) == set(right.index), "one value per single-threaded workload with both "
                                                              "times")
    o = overhead.dropna().reindex(right.index)
    _expect(((o - right).abs() <= 1e-9 * right.abs().clip(lower=1)).all(), "record_s / native_s, per workload")


_wrong("8.3", "placeholder None")(lambda c: None)
_wrong("8.3", "upside down")(lambda c: 1 / c.answer)
_wrong("8.3", "strace, not record")(lambda c: _ratio(c.data[0], "strace_s"))
_wrong("8.3", "the difference")(lambda c: (lambda t: (pd.to_numeric(t["record_s"], errors="coerce")
                                                       - pd.to_numeric(t["native_s"], errors="coerce")).dropna())(
    _single(c.data[0]).set_index("workload")))
_wrong("8.3", "threaded workloads too")(lambda c: pd.concat([c.answer, (lambda t: pd.to_numeric(
    t["record_s"], errors="coerce") / pd.to_numeric(t["native_s"], errors="coerce"))(
    c.data[0][c.data[0]["threaded"].astype(bool)].set_index("workload")).fillna(1.0)]))
