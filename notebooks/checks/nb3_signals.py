"""Checks of notebook 03 Epochs and signals."""
from __future__ import annotations

import pandas as pd

from ._core import NOT_APPLICABLE, _exercise, _wrong, _expect, _is_number


def _signal_rows(trace, replica, what="delivered"):
    return trace[(trace["replica"] == replica) & (trace["kind"] == "signal") & (trace["signal"] == what)]


@_exercise("3.1")
def ex_3_1(delivery_seqs, trace: pd.DataFrame) -> None:
    """``delivery_seqs``: the seq of every delivery of the primary, in order."""
    _expect(isinstance(delivery_seqs, list), "delivery_seqs should be a list")
    right = [int(s) for s in _signal_rows(trace, "primary")["seq"]]
    _expect(len(delivery_seqs) == len(right), f"the primary made {len(right)} deliveries, not {len(delivery_seqs)} "
                                              "(only the primary's, only deliveries)")
    _expect(list(delivery_seqs) == right, "those are not the seqs of the primary's deliveries")


_wrong("3.1", "placeholder None")(lambda c: None)
_wrong("3.1", "both replicas")(
    lambda c: [int(s) for s in c.data[0][(c.data[0]["kind"] == "signal") & (c.data[0]["signal"] == "delivered")]["seq"]])
_wrong("3.1", "the arrivals")(lambda c: [int(s) for s in _signal_rows(c.data[0], "primary", "arrived")["seq"]])
_wrong("3.1", "the first call of the next epoch")(lambda c: [s + 1 for s in c.answer])


def _delivered(trace, replica):
    rows = _signal_rows(trace, replica)
    return list(zip(rows["seq"].astype(int), rows["syscall"].astype(str)))


@_exercise("3.2", answers=2)
def ex_3_2(same, backup_deliveries, trace: pd.DataFrame) -> None:
    """``backup_deliveries``: the backup's ``(seq, signal name)`` deliveries; ``same``: equal to the primary's?"""
    _expect(isinstance(same, bool), "same should be True or False")
    _expect(isinstance(backup_deliveries, list), "backup_deliveries should be a list of (seq, name) pairs")
    right = _delivered(trace, "backup")
    _expect([(int(s), str(n)) for s, n in backup_deliveries] == right if all(
        isinstance(p, tuple) and len(p) == 2 for p in backup_deliveries) else False,
        "those are not the backup's deliveries as (seq, signal name) pairs")
    _expect(same == (right == _delivered(trace, "primary")), "compare the two replicas' lists")


_wrong("3.2", "placeholder None")(lambda c: (None, None))
_wrong("3.2", "False")(lambda c: (False, c.answer[1]))
_wrong("3.2", "every signal row of the backup")(
    lambda c: (c.answer[0], [(int(s), str(n)) for s, n in c.data[0].loc[
        (c.data[0]["replica"] == "backup") & (c.data[0]["kind"] == "signal"), ["seq", "syscall"]].itertuples(index=False)]))
_wrong("3.2", "the signal column, not the name")(
    lambda c: (c.answer[0], [(s, "delivered") for s, _ in c.answer[1]]))
_wrong("3.2", "seqs off by one")(lambda c: (c.answer[0], [(s + 1, n) for s, n in c.answer[1]]))


def first_deferrals(runs: dict) -> dict:
    """Exercise 3.3: per epoch length, the deferral (calls) of the primary's first delivered signal."""
    from tft_lab.plots import deferrals

    out = {}
    for e, run in runs.items():
        p = deferrals(run.trace[run.trace["action"] != "dropped"]).query("replica == 'primary'")
        first = p.dropna(subset=["arrival_seq", "delivery_seq"]).sort_values("arrival_t_ns").iloc[0]
        out[e] = int(first["deferral_calls"])
    return out


@_exercise("3.3", answers=2)
def ex_3_3(first_deferral, medians, runs: dict, summary: pd.DataFrame) -> None:
    """``first_deferral``: epoch length -> the first signal's deferral; ``medians``: the summary's medians."""
    _expect(isinstance(first_deferral, dict), "first_deferral should be a dict: epoch length -> calls")
    _expect(set(first_deferral) == set(runs), f"one entry per epoch length: {sorted(runs)}")
    right = first_deferrals(runs)
    bad = {e: first_deferral[e] for e in right if first_deferral[e] != right[e]}
    _expect(not bad, f"wrong for epoch lengths {sorted(bad)}: take the primary's first signal with both an arrival "
                     "and a delivery, and its deferral in calls")
    _expect(isinstance(medians, list), "medians should be a list")
    _expect(medians == summary["median deferral (calls)"].tolist(), "medians: the summary's column, in EPOCHS order")


_wrong("3.3", "placeholder None")(lambda c: (None, None))
_wrong("3.3", "one epoch each")(lambda c: ({e: e for e in c.answer[0]}, c.answer[1]))
_wrong("3.3", "the medians as first deferrals")(lambda c: (dict(zip(c.data[0], c.answer[1])), c.answer[1]))
_wrong("3.3", "every value + 1")(lambda c: ({e: v + 1 for e, v in c.answer[0].items()}, c.answer[1]))
_wrong("3.3", "medians reversed")(lambda c: (c.answer[0], c.answer[1][::-1]))


@_exercise("3.4")
def ex_3_4(delivered_after, arrival: dict, trace: pd.DataFrame) -> None:
    """``delivered_after``: the seq of the primary's first delivery at or after ``arrival['seq']``."""
    _expect(_is_number(delivered_after), "delivered_after should be a seq (an int)")
    seqs = _signal_rows(trace, "primary")["seq"]
    right = int(seqs[seqs >= arrival["seq"]].min())
    _expect(delivered_after >= arrival["seq"], "a signal is delivered after it arrived")
    _expect(delivered_after == right, f"{delivered_after} is not the first delivery at or after call {arrival['seq']}")


def _second_delivery(c):
    seqs = _signal_rows(c.data[1], "primary")["seq"]
    later = seqs[seqs > c.answer]
    return int(later.min()) if len(later) else NOT_APPLICABLE


_wrong("3.4", "placeholder None")(lambda c: None)
_wrong("3.4", "the boundary after next")(lambda c: (c.data[0]["seq"] // 16 + 2) * 16 - 1)
_wrong("3.4", "the next delivery")(_second_delivery)
_wrong("3.4", "the arrival's call")(lambda c: int(c.data[0]["seq"]))
_wrong("3.4", "the first call of the next epoch")(lambda c: c.answer + 1)
