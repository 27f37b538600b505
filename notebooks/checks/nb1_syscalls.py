"""Checks of notebook 01 System calls and non-determinism."""
from __future__ import annotations

import pandas as pd

from ._core import NOT_APPLICABLE, _exercise, _wrong, _expect, _is_number, _close


@_exercise("1.1")
def ex_1_1(differing, run_a: dict, run_b: dict) -> None:
    """``differing``: the names whose values differ between the two native runs."""
    _expect(isinstance(differing, set), "differing should be a set of names")
    right = {n for n in run_a if run_a[n] != run_b[n]}
    _expect(not (differing - set(run_a)), f"not names of values: {sorted(differing - set(run_a))}")
    _expect(not (right - differing), f"these differ too: {sorted(right - differing)} (compare run_a and run_b)")
    _expect(not (differing - right), f"these are equal in both runs: {sorted(differing - right)}")


_wrong("1.1", "placeholder None")(lambda c: None)
_wrong("1.1", "the equal ones")(lambda c: {n for n in c.data[0] if c.data[0][n] == c.data[1][n]})
_wrong("1.1", "hard-coded three names")(lambda c: {"libc_realtime", "sys_monotonic", "checksum"})
_wrong("1.1", "all but the checksum")(lambda c: c.answer - {"checksum"})
_wrong("1.1", "every name")(lambda c: set(c.data[0]))


@_exercise("1.2")
def ex_1_2(inputs, trace: pd.DataFrame) -> None:
    """``inputs``: the ``syscall`` names of every event of class ``input``."""
    _expect(isinstance(inputs, set), "inputs should be a set of names")
    right = set(trace.loc[trace["cls"] == "input", "syscall"].astype(str))
    _expect(not (right - inputs), f"these events are inputs too: {sorted(right - inputs)}")
    _expect(not (inputs - right), f"these are not inputs here: {sorted(inputs - right)}")


_wrong("1.2", "placeholder None")(lambda c: None)
_wrong("1.2", "system calls only (no rdtsc)")(lambda c: c.answer - {"rdtsc"})
_wrong("1.2", "hard-coded clock calls")(lambda c: {"clock_gettime", "gettimeofday"})
_wrong("1.2", "the local class")(lambda c: set(c.data[0].loc[c.data[0]["cls"] == "local", "syscall"].astype(str)))


@_exercise("1.3")
def ex_1_3(n_clock_gettime, trace: pd.DataFrame) -> None:
    """``n_clock_gettime``: how many ``clock_gettime`` calls the trace holds."""
    _expect(_is_number(n_clock_gettime), "n_clock_gettime should be a number")
    right = int((trace["syscall"] == "clock_gettime").sum())
    _expect(n_clock_gettime == right, f"{n_clock_gettime} is not the number of clock_gettime rows: count them")


_wrong("1.3", "placeholder None")(lambda c: None)
_wrong("1.3", "hard-coded 6 (one per clock)")(lambda c: 6)
_wrong("1.3", "off by one")(lambda c: c.answer + 1)
_wrong("1.3", "gettimeofday too")(
    lambda c: int(c.data[0]["syscall"].isin(["clock_gettime", "gettimeofday"]).sum()))


@_exercise("1.4")
def ex_1_4(input_fraction, p_trace: pd.DataFrame, c_trace: pd.DataFrame) -> None:
    """``input_fraction``: of the Python recording's system calls, the fraction of class input."""
    _expect(_is_number(input_fraction), "input_fraction should be a number (a float)")
    _expect(0 <= input_fraction <= 1, "a fraction is between 0 and 1")
    calls = p_trace[p_trace["kind"] == "syscall"]
    right = float((calls["cls"] == "input").mean())
    _expect(_close(input_fraction, right), f"{input_fraction:.4f} is not the input fraction of the Python "
                                           "program's syscall rows")


_wrong("1.4", "placeholder None")(lambda c: None)
_wrong("1.4", "the other classes")(lambda c: 1 - c.answer)
_wrong("1.4", "the C program's")(
    lambda c: float((c.data[1].loc[c.data[1]["kind"] == "syscall", "cls"] == "input").mean()))
_wrong("1.4", "over every row, rdtsc and exec too")(lambda c: float((c.data[0]["cls"] == "input").mean()))
_wrong("1.4", "a count, not a fraction")(
    lambda c: int((c.data[0].loc[c.data[0]["kind"] == "syscall", "cls"] == "input").sum()))


def _getrandom_sizes(trace):
    return [int(x) for x in trace.loc[trace["syscall"] == "getrandom", "result"]]


@_exercise("1.5")
def ex_1_5(random_sizes, p_trace: pd.DataFrame, c_trace: pd.DataFrame) -> None:
    """``random_sizes``: the results of the Python program's ``getrandom`` calls, in order."""
    _expect(isinstance(random_sizes, list), "random_sizes should be a list")
    right = _getrandom_sizes(p_trace)
    _expect(len(random_sizes) == len(right), f"there are {len(right)} getrandom calls, not {len(random_sizes)}")
    _expect(random_sizes == right, "the sizes are right but not in call order" if sorted(random_sizes) == sorted(right)
            else "those are not the results of the getrandom rows")


_wrong("1.5", "placeholder None")(lambda c: None)
_wrong("1.5", "hard-coded [8, 16]")(lambda c: [8, 16])
_wrong("1.5", "in reverse order")(lambda c: c.answer[::-1])
_wrong("1.5", "sorted")(lambda c: sorted(c.answer))
_wrong("1.5", "the C program's")(lambda c: _getrandom_sizes(c.data[1]))
_wrong("1.5", "the first left out")(lambda c: c.answer[1:])


def _first_clock(trace, replica="primary", nth=0):
    rows = trace[(trace["replica"] == replica) & (trace["syscall"] == "clock_gettime")]
    return rows.iloc[nth].to_dict() if len(rows) > nth else NOT_APPLICABLE


@_exercise("1.6")
def ex_1_6(first_clock, stepped_trace: pd.DataFrame, recording_trace: pd.DataFrame) -> None:
    """``first_clock``: the stepped run's first ``clock_gettime`` event (the primary's), as a dict."""
    _expect(isinstance(first_clock, dict), "first_clock should be a dict (s.current)")
    right = _first_clock(stepped_trace)
    _expect(first_clock.get("syscall") == "clock_gettime", f"that is a {first_clock.get('syscall')}, not a clock read")
    _expect(first_clock.get("replica") == "primary", "the stepper pauses the primary: keep its event")
    _expect(first_clock.get("cls") == "input", "a clock read is an input")
    _expect(first_clock.get("seq") == right["seq"], f"seq {first_clock.get('seq')}: not the first clock_gettime "
                                                    "(stop at the first one)")
    # A clock read's result is 0 on every run; the time the supervisor saw it tells runs apart.
    _expect(first_clock.get("t_ns") == right["t_ns"] and first_clock.get("args") == right["args"],
            "that event is not from the stepped run (another run's clock read?)")


_wrong("1.6", "placeholder None")(lambda c: None)
_wrong("1.6", "the second clock read")(lambda c: _first_clock(c.data[0], nth=1))
_wrong("1.6", "the recording's, not the stepper's")(lambda c: _first_clock(c.data[1]))
_wrong("1.6", "the backup's row")(lambda c: _first_clock(c.data[0], "backup"))
_wrong("1.6", "the first input of any kind")(
    lambda c: c.data[0][(c.data[0]["replica"] == "primary") & (c.data[0]["cls"] == "input")].iloc[0].to_dict())
