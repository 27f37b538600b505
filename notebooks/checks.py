"""The course's exercise checks, and the wrong answers each one must reject.

Each notebook's check cell calls one function here, ``ex_1_2(inputs, r.trace)``:
the student's answer first, then the data the notebook computed. The check works
out the right answer from that same data (never from the student's own value)
and raises ``AssertionError`` with a hint if the answer is not it.

Beside each check are *wrong answers*, written as functions of the solution and
the data: off by one, the other replica, the other workload or mode, a
hard-coded value, the placeholder ``None``. :func:`mutate` substitutes each one
for the answer a check was last called with and asserts that the check rejects
it; ``tests/test_exercises.py`` runs it after every check cell of every
notebook, live and on the canned data.
"""
from __future__ import annotations

import math
import numbers
import os
import struct
import tempfile
from dataclasses import dataclass, field
from typing import Any, Callable

import pandas as pd

#: A wrong answer returns this when it does not apply to this run's data (e.g. "the
#: backup's row" of a recording, which has no backup).
NOT_APPLICABLE = object()


@dataclass
class Ctx:
    """What a wrong answer is made from: the solution's answer(s) and the check's data."""

    answer: Any
    data: tuple


@dataclass
class Exercise:
    number: str
    check: Callable
    answers: int
    wrongs: list[tuple[str, Callable[[Ctx], Any]]] = field(default_factory=list)
    last: tuple | None = None


EXERCISES: dict[str, Exercise] = {}


def _exercise(number: str, answers: int = 1):
    """Register a check: its first ``answers`` arguments are the student's answer(s)."""
    def wrap(fn):
        ex = Exercise(number, fn, answers)
        EXERCISES[number] = ex

        def check(*args):
            fn(*args)
            ex.last = args      # the arguments of the last call that passed: mutate() uses them
            print(f"✓ exercise {number} passed")
        check.__doc__, check.__name__ = fn.__doc__, fn.__name__
        return check
    return wrap


def _wrong(number: str, label: str):
    """Register a wrong answer for exercise ``number`` (a function of a :class:`Ctx`)."""
    def wrap(fn):
        EXERCISES[number].wrongs.append((label, fn))
        return fn
    return wrap


def _expect(cond, message: str) -> None:
    if not cond:
        raise AssertionError(message)


def _is_number(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and not math.isnan(float(x))


def _close(a, b, rel: float = 1e-6) -> bool:
    return _is_number(a) and math.isclose(float(a), float(b), rel_tol=rel, abs_tol=1e-9)


def _same(a, b) -> bool:
    """Is a wrong answer identical to the solution's on this data (then it is not wrong here)?"""
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if callable(a) or callable(b):
        return a is b
    if isinstance(a, (pd.DataFrame, pd.Series)) or isinstance(b, (pd.DataFrame, pd.Series)):
        return repr(a) == repr(b)
    try:
        eq = a == b
        return bool(eq) if isinstance(eq, bool) else False
    except Exception:  # noqa: BLE001 - incomparable: different
        return False


def mutate(number: str) -> dict:
    """Substitute every wrong answer of exercise ``number`` and assert its check rejects it.

    Uses the arguments the check was last called with (the shipped solution and the
    notebook's data); the solution must pass again. Returns ``{"caught": n,
    "coincided": [...], "not_applicable": [...]}``; raises AssertionError if a wrong
    answer passed, if the check failed in another way, or if fewer than three were caught.
    """
    ex = EXERCISES[number]
    _expect(ex.last is not None, f"exercise {number}: its check has not been run")
    answer = ex.last[:ex.answers] if ex.answers > 1 else ex.last[0]
    data = ex.last[ex.answers:]
    ex.check(*ex.last)   # the solution passes
    caught, coincided, na, passed = [], [], [], []
    for label, make in ex.wrongs:
        wrong = make(Ctx(answer, data))
        if wrong is NOT_APPLICABLE:
            na.append(label)
            continue
        if _same(wrong, answer):
            coincided.append(label)
            continue
        args = (*wrong, *data) if ex.answers > 1 else (wrong, *data)
        try:
            ex.check(*args)
        except AssertionError:
            caught.append(label)
            continue
        passed.append(label)
    _expect(not passed, f"exercise {number}: these wrong answers passed the check: {passed}")
    _expect(len(caught) >= 3, f"exercise {number}: only {len(caught)} wrong answers caught "
                               f"({caught}; same as the solution here: {coincided}; not applicable: {na})")
    print(f"mutation {number}: {len(caught)} wrong answers caught"
          + (f", {len(coincided)} equal to the solution on this data" if coincided else ""))
    return {"caught": caught, "coincided": coincided, "not_applicable": na}


def _rows(trace: pd.DataFrame, **eq) -> pd.DataFrame:
    mask = pd.Series(True, index=trace.index)
    for col, value in eq.items():
        mask &= trace[col].astype(str) == value
    return trace[mask]


# == Notebook 1 =================================================================================

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


# == Notebook 2 =================================================================================

GETRANDOM = 318   # x86-64


def _first_r(stdout: str) -> int:
    first = stdout.splitlines()[0]
    return int(dict(kv.split("=", 1) for kv in first.split() if "=" in kv)["r"])


@_exercise("2.1")
def ex_2_1(outputs, recorded_stdout: str) -> None:
    """``outputs``: the set of distinct outputs of three replays."""
    _expect(isinstance(outputs, set), "outputs should be a set (of the replays' stdout)")
    _expect(len(outputs) >= 1, "the set is empty: add each replay's stdout")
    _expect(all(isinstance(o, str) for o in outputs), "put each replay's whole stdout (a str) in the set")
    _expect(len(outputs) == 1, f"{len(outputs)} distinct outputs: every replay prints the same bytes")
    _expect(outputs == {recorded_stdout}, "the replays' output should be the recording's, byte for byte "
                                          "(each whole stdout, not its lines)")


_wrong("2.1", "placeholder None")(lambda c: None)
_wrong("2.1", "a list of the three")(lambda c: [c.data[0]] * 3)
_wrong("2.1", "the set of lines")(lambda c: set(c.data[0].splitlines()))
_wrong("2.1", "nothing added")(lambda c: set())
_wrong("2.1", "the replays' last lines")(lambda c: {c.data[0].splitlines()[-1]})


def _getrandom_records(records):
    return [x for x in records if x.type == "sys" and x["nr"] == GETRANDOM]


def _r_records(records):
    """The getrandom records of the program's r (4 bytes each; glibc's own draws are 8)."""
    return [x for x in _getrandom_records(records) if x.get("blobs") and len(x["blobs"][0]) == 4]


@_exercise("2.2", answers=2)
def ex_2_2(decode_r, r0, records, recorded_stdout: str) -> None:
    """``decode_r(blob)``: 4 bytes -> the unsigned little-endian number; ``r0``: the first line's r."""
    _expect(callable(decode_r), "decode_r should be a function of 4 bytes")
    for blob, want in [(b"\x01\x00\x00\x00", 1), (b"\x00\x00\x00\x01", 1 << 24),
                       (b"\xff\xff\xff\xff", 2 ** 32 - 1), (b"\x00\x00\x00\x80", 2 ** 31)]:
        got = decode_r(blob)
        _expect(got == want, f"decode_r({blob!r}) gave {got}, should be {want}: "
                             + ("read it as unsigned" if isinstance(got, int) and got < 0 else "little-endian, 4 bytes"))
    _expect(_is_number(r0), "r0 should be a number")
    right = _first_r(recorded_stdout)
    _expect(decode_r(_getrandom_records(records)[0]["blobs"][0]) == right, "decode_r does not give the first line's r")
    _expect(r0 == right, f"r0={r0}, but the first line says r={right}: decode the FIRST getrandom record")


_wrong("2.2", "placeholder None")(lambda c: (None, None))
_wrong("2.2", "read as signed")(lambda c: ((lambda b: struct.unpack("<i", b)[0]), c.answer[1]))
_wrong("2.2", "read big-endian")(lambda c: ((lambda b: struct.unpack(">I", b)[0]), c.answer[1]))
_wrong("2.2", "the second line's getrandom")(
    lambda c: (c.answer[0], c.answer[0](_r_records(c.data[0])[1]["blobs"][0])))
_wrong("2.2", "off by one")(lambda c: (c.answer[0], c.answer[1] + 1))


def lie_target(real: int) -> int:
    """Exercise 2.3's lie: ``real`` with its last digit moved five along (0->5, 7->2)."""
    return real - real % 10 + (real % 10 + 5) % 10


def _log_differences(a_path, b_path) -> list[tuple[int, str]]:
    from tft_lab.log import read_log

    a, b = read_log(a_path), read_log(b_path)
    if len(a) != len(b):
        return [(-1, f"{len(b)} records instead of {len(a)}")]
    out = []
    for i, (x, y) in enumerate(zip(a, b)):
        fx = {k: v for k, v in x.items() if k != "blobs"}
        fy = {k: v for k, v in y.items() if k != "blobs"}
        if x.type != y.type or fx != fy:
            out.append((i, "fields"))
        elif list(x.get("blobs", [])) != list(y.get("blobs", [])):
            out.append((i, "blobs"))
    return out


@_exercise("2.3", answers=2)
def ex_2_3(liar_log, liar, log, recorded_stdout: str, live: bool) -> None:
    """``liar_log``: a copy of ``log`` whose first getrandom gives :func:`lie_target` of r;
    ``liar``: its replay (None without ptrace)."""
    from tft_lab.log import read_log

    _expect(isinstance(liar_log, (str, os.PathLike)) and os.path.isfile(liar_log), "liar_log should be the path "
                                                                                    "of the log you wrote")
    _expect(os.path.abspath(liar_log) != os.path.abspath(log), "that is the original log: write a copy")
    real = _first_r(recorded_stdout)
    target = lie_target(real)
    diffs = _log_differences(log, liar_log)
    firsts = [i for i, x in enumerate(read_log(log)) if x.type == "sys" and x["nr"] == GETRANDOM]
    _expect(diffs, "the log is unchanged")
    _expect(diffs == [(firsts[0], "blobs")], f"change only the first getrandom's bytes (records changed: {diffs})")
    got = struct.unpack("<I", read_log(liar_log)[firsts[0]]["blobs"][0])[0]
    _expect(got == target, f"the log's first r is {got}; the lie should be {target} (the real {real} with its last "
                           "digit moved five along)")
    if live:
        _expect(liar is not None and hasattr(liar, "returncode"), "liar should be the replay of liar_log")
        _expect(liar.returncode == 0, f"the replay did not run to the end: {liar.stderr.strip()[-200:]}")
        _expect(_first_r(liar.stdout) == target, "the replay's first line does not show the lie")
        _expect(len(liar.stdout.splitlines()) == len(recorded_stdout.splitlines()), "the replay stopped early")
    else:
        _expect(liar is None, "without ptrace there is no replay: liar is None")


def _lying_log(c: Ctx, value_of, index: int = 0):
    """A wrong answer to 2.3: the log with the index-th getrandom's r set to value_of(real r)."""
    from tft_lab import session
    from tft_lab.log import MAGIC, encode, read_log

    log, stdout, live = c.data
    recs = read_log(log)
    rec = _r_records(recs)[index]
    real = struct.unpack("<I", rec["blobs"][0])[0]
    rec["blobs"][0] = struct.pack("<I", value_of(real) % 2 ** 32)
    path = os.path.join(tempfile.mkdtemp(prefix="tft-wrong-"), "liar.log")
    with open(path, "wb") as f:
        f.write(MAGIC)
        for x in recs:
            f.write(encode({k: v for k, v in x.items() if k != "blobs"}, x["blobs"]))
    return path, (session.replay(path, progress=False, timeout=60) if live else None)


_wrong("2.3", "placeholder None")(lambda c: (None, None))
_wrong("2.3", "the real r + 1")(lambda c: _lying_log(c, lambda r: r + 1))
_wrong("2.3", "hard-coded 1000000000")(lambda c: _lying_log(c, lambda r: 1000000000))
_wrong("2.3", "a 1 and zeros, as many digits")(lambda c: _lying_log(c, lambda r: 10 ** (len(str(r)) - 1)))
_wrong("2.3", "the second line's r changed")(lambda c: _lying_log(c, lie_target, index=1))
_wrong("2.3", "the original log")(lambda c: (c.data[0], c.answer[1]))


# == Notebook 3 =================================================================================

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


# == Notebook 4 =================================================================================

def primary_outputs(run) -> pd.DataFrame:
    t = run.trace
    return t[(t["replica"] == "primary") & (t["cls"] == "output")]


@_exercise("4.1")
def ex_4_1(wait_per_output_us, runs: dict) -> None:
    """``wait_per_output_us``: mean ``wait_ns`` of the primary's outputs under ``output``, in µs."""
    _expect(_is_number(wait_per_output_us), "wait_per_output_us should be a number")
    right = primary_outputs(runs["output"])["wait_ns"].mean() / 1e3
    _expect(_close(wait_per_output_us, right), f"{wait_per_output_us:.3f} µs: the mean over the primary's output "
                                               "rows of the `output` run, ns -> µs")


_wrong("4.1", "placeholder None")(lambda c: None)
_wrong("4.1", "milliseconds")(lambda c: c.answer / 1e3)
_wrong("4.1", "the total")(lambda c: primary_outputs(c.data[0]["output"])["wait_ns"].sum() / 1e3)
_wrong("4.1", "the none run")(lambda c: primary_outputs(c.data[0]["none"])["wait_ns"].mean() / 1e3)
_wrong("4.1", "both replicas' rows")(
    lambda c: (lambda t: t.loc[t["cls"] == "output", "wait_ns"].mean() / 1e3)(c.data[0]["output"].trace))


def _best(bench, how="min"):
    return bench[bench["mode"] == "run"].groupby("commit")["seconds"].agg(how)


@_exercise("4.2")
def ex_4_2(slowest, bench: pd.DataFrame) -> None:
    """``slowest``: the commit policy whose fastest replicated run is slowest."""
    best = _best(bench)
    _expect(slowest in set(best.index), f"slowest should be one of {sorted(best.index)}")
    _expect(slowest == best.idxmax(), f"{slowest!r}: its fastest run took {best[slowest]:.4f} s; compare each "
                                      "policy's minimum over all its runs")


_wrong("4.2", "placeholder None")(lambda c: None)
_wrong("4.2", "the fastest")(lambda c: _best(c.data[0]).idxmin())
_wrong("4.2", "by the median")(lambda c: _best(c.data[0], "median").idxmax())
_wrong("4.2", "by the slowest run")(lambda c: _best(c.data[0], "max").idxmax())
for _p in ("output", "epoch", "none"):
    _wrong("4.2", f"hard-coded {_p!r}")(lambda c, _p=_p: _p)


def _epoch_ratio(bench, commit="epoch", how="median"):
    e = bench[(bench["mode"] == "run") & (bench["commit"] == commit)].groupby("epoch")["seconds"].agg(how)
    return float(e[16] / e[256])


@_exercise("4.3")
def ex_4_3(epoch_ratio, bench: pd.DataFrame) -> None:
    """``epoch_ratio``: median time at epoch 16 / median at epoch 256, ``commit == 'epoch'``."""
    _expect(_is_number(epoch_ratio), "epoch_ratio should be a number")
    _expect(_close(epoch_ratio, _epoch_ratio(bench)), f"{epoch_ratio:.3f}: the median of epoch 16 over the median of "
                                                      "epoch 256, of the epoch policy's replicated runs")


_wrong("4.3", "placeholder None")(lambda c: None)
_wrong("4.3", "upside down")(lambda c: 1 / c.answer)
_wrong("4.3", "the output policy")(lambda c: _epoch_ratio(c.data[0], "output"))
_wrong("4.3", "the fastest runs")(lambda c: _epoch_ratio(c.data[0], how="min"))
_wrong("4.3", "the means")(lambda c: _epoch_ratio(c.data[0], how="mean"))


# == Notebook 5 =================================================================================

def _chain_cases(stdout: str) -> list[tuple[str, str, bool]]:
    """Outputs a chain checker must judge: (what, text, the right verdict)."""
    lines = stdout.splitlines()
    _expect(len(lines) >= 4, "the counter printed fewer than 4 lines")
    j = "\n".join
    return [
        ("the run's output", stdout, True),
        ("a line repeated right after itself", j(lines[:2] + [lines[1]] + lines[2:]), True),
        ("the first line repeated right after itself", j([lines[0]] + lines), True),
        ("two lines swapped", j([lines[1], lines[0], *lines[2:]]), False),
        ("a line lost", j(lines[:2] + lines[3:]), False),
        ("a line altered", j(lines[:2] + [lines[2].replace("r=", "r=1", 1)] + lines[3:]), False),
        ("an earlier line printed again later", j(lines[:3] + [lines[0]] + lines[3:]), False),
        ("the last line's sum altered", j(lines[:-1] + [lines[-1][:-1] + ("0" if lines[-1][-1] != "0" else "1")]), False),
    ]


@_exercise("5.1")
def ex_5_1(chain_ok, stdout: str) -> None:
    """``chain_ok(stdout)``: True iff every line's sum continues the chain (an adjacent repeat skipped)."""
    _expect(callable(chain_ok), "chain_ok should be a function of the program's output")
    for what, text, right in _chain_cases(stdout):
        got = chain_ok(text)
        _expect(got is right, f"chain_ok gave {got!r} for {what}; should be {right}")


def _fnv_chain(skip):
    def chain_ok(stdout):
        h, seen, previous = 0xCBF29CE484222325, set(), None
        for line in stdout.splitlines():
            if skip(line, previous, seen):
                continue
            previous = line
            seen.add(line)
            body, _, tail = line.rpartition(" sum=")
            for b in body.encode():
                h = ((h ^ b) * 0x100000001B3) % 2 ** 64
            if tail != f"{h:016x}":
                return False
        return True
    return chain_ok


def _per_line_hash(stdout):
    for line in stdout.splitlines():
        body, _, tail = line.rpartition(" sum=")
        h = 0xCBF29CE484222325
        for b in body.encode():
            h = ((h ^ b) * 0x100000001B3) % 2 ** 64
        if tail != f"{h:016x}":
            return False
    return True


_wrong("5.1", "placeholder None")(lambda c: None)
_wrong("5.1", "repeats not skipped")(lambda c: _fnv_chain(lambda line, prev, seen: False))
_wrong("5.1", "any line seen before skipped")(lambda c: _fnv_chain(lambda line, prev, seen: line in seen))
_wrong("5.1", "each line hashed on its own")(lambda c: _per_line_hash)
_wrong("5.1", "always True")(lambda c: (lambda stdout: True))


def _sweep_rows(sweep: pd.DataFrame) -> list[dict]:
    return [row.to_dict() for _, row in sweep.iterrows()]


def _bad_runs(sweep: pd.DataFrame, lines: int) -> list[tuple[str, dict, bool]]:
    base = dict(_sweep_rows(sweep)[0], returncode=0, lines=lines, chain_ok=True, duplicates=0)
    return [("a clean run", base, True),
            ("one line repeated", dict(base, duplicates=1), True),
            ("two lines repeated", dict(base, duplicates=2), False),
            ("a line missing", dict(base, lines=lines - 1), False),
            ("a line too many", dict(base, lines=lines + 1), False),
            ("a broken chain", dict(base, chain_ok=False), False),
            ("exit status 1", dict(base, returncode=1), False)]


@_exercise("5.2", answers=2)
def ex_5_2(run_ok, all_good, sweep: pd.DataFrame, lines: int) -> None:
    """``run_ok(row)``: is one sweep run good? ``all_good``: are all of them?"""
    _expect(callable(run_ok), "run_ok should be a function of one row (a dict)")
    for what, row, right in _bad_runs(sweep, lines):
        got = run_ok(row)
        _expect(got is not None and bool(got) is right, f"run_ok gave {got!r} for {what}; should be {right}")
    _expect(isinstance(all_good, bool), "all_good should be True or False")
    right = all(bool(r["returncode"] == 0 and r["lines"] == lines and r["chain_ok"] and r["duplicates"] <= 1)
                for r in _sweep_rows(sweep))
    _expect(all_good == right, f"all_good should be {right}: apply run_ok to every row")


def _run_ok(dups=1, lines_ok=lambda n, want: n == want, rc=True):
    return lambda lines: (lambda row: bool((not rc or row["returncode"] == 0) and lines_ok(row["lines"], lines)
                                           and row["chain_ok"] and row["duplicates"] <= dups))


_wrong("5.2", "placeholder None")(lambda c: (None, None))
_wrong("5.2", "no repeat allowed")(lambda c: (_run_ok(dups=0)(c.data[1]), c.answer[1]))
_wrong("5.2", "repeats not checked")(lambda c: (_run_ok(dups=10 ** 9)(c.data[1]), c.answer[1]))
_wrong("5.2", "at least the lines")(lambda c: (_run_ok(lines_ok=lambda n, w: n >= w)(c.data[1]), c.answer[1]))
_wrong("5.2", "exit status not checked")(lambda c: (_run_ok(rc=False)(c.data[1]), c.answer[1]))
_wrong("5.2", "all_good hard-coded False")(lambda c: (c.answer[0], False))


def _failovers(sweep):
    return sweep.loc[sweep["outcome"] == "failover", "failover_ms"]


@_exercise("5.3")
def ex_5_3(median_failover_ms, sweep: pd.DataFrame) -> None:
    """``median_failover_ms``: the median ``failover_ms`` of the sweep's failovers."""
    _expect(_is_number(median_failover_ms), "median_failover_ms should be a number")
    _expect(_close(median_failover_ms, float(_failovers(sweep).median())),
            f"{median_failover_ms:.3f} ms: the median of failover_ms over the rows whose outcome is failover")


_wrong("5.3", "placeholder None")(lambda c: None)
_wrong("5.3", "the mean")(lambda c: float(_failovers(c.data[0]).mean()))
_wrong("5.3", "in seconds")(lambda c: c.answer / 1e3)
_wrong("5.3", "the longest")(lambda c: float(_failovers(c.data[0]).max()))
_wrong("5.3", "every row, completed runs as 0")(lambda c: float(c.data[0]["failover_ms"].fillna(0).where(
    c.data[0]["outcome"] == "failover", 0).median()))


def _writes(trace, replica, action):
    return int(((trace["syscall"] == "write") & (trace["replica"] == replica) & (trace["action"] == action)).sum())


@_exercise("5.4", answers=2)
def ex_5_4(by_primary, by_backup, trace: pd.DataFrame) -> None:
    """``by_primary``: writes the primary logged; ``by_backup``: writes the backup ran live."""
    _expect(_is_number(by_primary) and _is_number(by_backup), "by_primary and by_backup should be numbers")
    p, b = _writes(trace, "primary", "logged"), _writes(trace, "backup", "live")
    _expect(by_primary == p, f"by_primary={by_primary}: count the primary's write rows with action logged")
    _expect(by_backup == b, f"by_backup={by_backup}: count the backup's write rows with action live")


_wrong("5.4", "placeholder None")(lambda c: (None, None))
_wrong("5.4", "one more for the primary")(lambda c: (c.answer[0] + 1, c.answer[1]))
_wrong("5.4", "swapped")(lambda c: (c.answer[1], c.answer[0]))
_wrong("5.4", "the backup's emulated writes too")(
    lambda c: (c.answer[0], c.answer[1] + _writes(c.data[0], "backup", "emulated")))
_wrong("5.4", "every write of each replica")(
    lambda c: tuple(int(((c.data[0]["syscall"] == "write") & (c.data[0]["replica"] == r)).sum())
                    for r in ("primary", "backup")))


# == Notebook 6 =================================================================================

def _id_pairs(ident):
    p = ident[ident["replica"] == "primary"].set_index(["pid", "seq", "syscall"])["result"]
    b = ident[ident["replica"] == "backup"].set_index(["pid", "seq", "syscall"])["result"]
    return {(int(k[0]), int(k[1]), str(k[2])): (int(p[k]), int(b[k])) if k in b.index else (int(p[k]), None)
            for k in p.index}


@_exercise("6.1", answers=2)
def ex_6_1(id_pairs, same_ids, ident: pd.DataFrame) -> None:
    """``id_pairs``: (pid, seq, syscall) -> (primary's result, backup's result); ``same_ids``: all equal?"""
    _expect(isinstance(id_pairs, dict), "id_pairs should be a dict")
    right = _id_pairs(ident)
    keys = {(int(k[0]), int(k[1]), str(k[2])) if isinstance(k, tuple) and len(k) == 3 else k for k in id_pairs}
    _expect(keys == set(right), f"one key (pid, seq, syscall) per identity call: {len(right)} of them")
    norm = {(int(k[0]), int(k[1]), str(k[2])): v for k, v in id_pairs.items()}
    _expect(all(isinstance(v, tuple) and len(v) == 2 for v in norm.values()), "each value: (primary's, backup's)")
    _expect(norm == right, "those are not the two replicas' results")
    _expect(same_ids is (all(a == b for a, b in right.values())), "same_ids: are the two results of every pair equal?")


_wrong("6.1", "placeholder None")(lambda c: (None, None))
_wrong("6.1", "keyed by (pid, seq)")(lambda c: ({k[:2]: v for k, v in c.answer[0].items()}, c.answer[1]))
_wrong("6.1", "the primary's results only")(lambda c: ({k: v[0] for k, v in c.answer[0].items()}, c.answer[1]))
_wrong("6.1", "seq off by one")(lambda c: ({(k[0], k[1] + 1, k[2]): v for k, v in c.answer[0].items()}, c.answer[1]))
_wrong("6.1", "same_ids False")(lambda c: (c.answer[0], False))


def _backup_file_writes(trace, action_is_emulated=False, replica="backup"):
    w = trace[(trace["replica"] == replica) & (trace["syscall"] == "write") & trace["args"].str.startswith("3,")]
    return int((w["action"] == "emulated").sum()) if action_is_emulated else int((w["action"] != "emulated").sum())


@_exercise("6.2", answers=2)
def ex_6_2(file_lines, backup_file_writes, file_contents: str, trace: pd.DataFrame) -> None:
    """``file_lines``: lines in FILE; ``backup_file_writes``: writes to fd 3 the backup performed."""
    _expect(_is_number(file_lines) and _is_number(backup_file_writes), "both answers should be numbers")
    _expect(file_lines == len(file_contents.splitlines()), f"FILE holds {len(file_contents.splitlines())} lines, "
                                                           f"not {file_lines}")
    _expect(backup_file_writes == _backup_file_writes(trace), "count the backup's writes to fd 3 whose action is "
                                                              "not emulated")


_wrong("6.2", "placeholder None")(lambda c: (None, None))
_wrong("6.2", "one line too many")(lambda c: (c.answer[0] + 1, c.answer[1]))
_wrong("6.2", "the emulated ones")(lambda c: (c.answer[0], _backup_file_writes(c.data[1], True)))
_wrong("6.2", "the primary's writes")(lambda c: (c.answer[0], _backup_file_writes(c.data[1], replica="primary")))
_wrong("6.2", "characters, not lines")(lambda c: (len(c.data[0]), c.answer[1]))


def _journal_cases(journal: list, sets: list) -> list[tuple[str, list, list, bool]]:
    _expect(len(sets) >= 3, "the client made fewer than 3 SETs")
    return [("this run's journal", journal, sets, None),
            ("each SET once", list(sets), sets, True),
            ("one SET repeated right after itself", sets[:2] + [sets[1]] + sets[2:], sets, True),
            ("two SETs repeated", [sets[0], *sets[:2], *sets[1:]], sets, False),
            ("one SET three times", [sets[0]] * 3 + sets[1:], sets, False),
            ("a SET lost", sets[1:], sets, False),
            ("two SETs swapped", [sets[1], sets[0], *sets[2:]], sets, False),
            ("an earlier SET again at the end", sets + [sets[0]], sets, False)]


def _journal_right(journal, sets):
    deduped = [x for i, x in enumerate(journal) if i == 0 or x != journal[i - 1]]
    return deduped == sets and len(journal) - len(deduped) <= 1


@_exercise("6.3", answers=2)
def ex_6_3(after, journal_ok, talk: dict) -> None:
    """``after``: command -> reply of the second connection; ``journal_ok(journal, sets)``."""
    _expect(isinstance(after, dict), "after should be a dict: command -> reply")
    _expect(after == dict(talk["after"]), "after: the replies of the second connection (talk['after'])")
    _expect(callable(journal_ok), "journal_ok should be a function of (journal lines, SET commands)")
    sets = [c for c, _ in list(talk["before"]) + list(talk["after"]) if c.startswith("SET")]
    for what, journal, s, right in _journal_cases(list(talk["journal"]), sets):
        right = _journal_right(journal, s) if right is None else right
        got = journal_ok(journal, s)
        _expect(got is right, f"journal_ok gave {got!r} for {what}; should be {right}")


def _journal_fn(max_repeats=1, adjacent=True, ordered=True):
    def ok(journal, sets):
        if not ordered:
            return set(journal) == set(sets)
        deduped = [x for i, x in enumerate(journal) if i == 0 or x != journal[i - 1]] if adjacent else \
            list(dict.fromkeys(journal))
        return deduped == sets and len(journal) - len(deduped) <= max_repeats
    return ok


_wrong("6.3", "placeholder None")(lambda c: (None, None))
_wrong("6.3", "the first connection's replies")(lambda c: (dict(c.data[0]["before"]), c.answer[1]))
_wrong("6.3", "no repeat allowed")(lambda c: (c.answer[0], _journal_fn(max_repeats=0)))
_wrong("6.3", "any number of repeats")(lambda c: (c.answer[0], _journal_fn(max_repeats=10 ** 9)))
_wrong("6.3", "order not checked")(lambda c: (c.answer[0], _journal_fn(ordered=False)))
_wrong("6.3", "any earlier line skipped")(lambda c: (c.answer[0], _journal_fn(adjacent=False)))


def _stood_in(trace, replica="backup"):
    return set(trace.loc[(trace["replica"] == replica) & (trace["action"] == "standin"), "syscall"].astype(str))


@_exercise("6.4")
def ex_6_4(stood_in, trace: pd.DataFrame) -> None:
    """``stood_in``: the names of the calls the backup answered with a stand-in."""
    _expect(isinstance(stood_in, set), "stood_in should be a set of names")
    right = _stood_in(trace)
    _expect(not (right - stood_in), f"the backup stood in for these too: {sorted(right - stood_in)}")
    _expect(not (stood_in - right), f"no stand-in for: {sorted(stood_in - right)}")


_wrong("6.4", "placeholder None")(lambda c: None)
_wrong("6.4", "without accept4")(lambda c: c.answer - {"accept4"})
_wrong("6.4", "hard-coded socket and openat")(lambda c: {"socket", "openat"})
_wrong("6.4", "every resource call")(
    lambda c: set(c.data[0].loc[(c.data[0]["replica"] == "backup") & (c.data[0]["cls"] == "resource"), "syscall"]
                  .astype(str)))


# == Notebook 7 =================================================================================

def _added(per_call, workload, mode, how="median", col="µs added per call"):
    rows = per_call[(per_call["mode"] == mode) & per_call["workload"].str.startswith(workload)]
    return float(rows[col].agg(how))


@_exercise("7.1")
def ex_7_1(record_us, per_call: pd.DataFrame) -> None:
    """``record_us``: median µs added per call by ``record``, ``getppid`` workload."""
    _expect(_is_number(record_us), "record_us should be a number")
    _expect(_close(record_us, _added(per_call, "getppid", "record")),
            f"{record_us:.2f}: the median 'µs added per call' of the record rows of the getppid workload")


_wrong("7.1", "placeholder None")(lambda c: None)
_wrong("7.1", "the clock workload")(lambda c: _added(c.data[0], "clock", "record"))
_wrong("7.1", "the run mode")(lambda c: _added(c.data[0], "getppid", "run"))
_wrong("7.1", "per call, native not subtracted")(lambda c: _added(c.data[0], "getppid", "record", col="µs per call"))
_wrong("7.1", "milliseconds")(lambda c: c.answer / 1e3)


@_exercise("7.2")
def ex_7_2(backup_us, per_call: pd.DataFrame) -> None:
    """``backup_us``: median µs added by ``run`` minus that of ``record`` (``getppid``)."""
    _expect(_is_number(backup_us), "backup_us should be a number")
    right = _added(per_call, "getppid", "run") - _added(per_call, "getppid", "record")
    _expect(_close(backup_us, right), f"{backup_us:.2f}: run's median µs added per call minus record's (getppid)")


_wrong("7.2", "placeholder None")(lambda c: None)
_wrong("7.2", "the clock workload")(lambda c: _added(c.data[0], "clock", "run") - _added(c.data[0], "clock", "record"))
_wrong("7.2", "record not subtracted")(lambda c: _added(c.data[0], "getppid", "run"))
_wrong("7.2", "the wrong way round")(lambda c: -c.answer)
_wrong("7.2", "the output policy only")(
    lambda c: _added(c.data[0][c.data[0]["commit"] == "output"], "getppid", "run") - _added(c.data[0], "getppid", "record"))


@_exercise("7.3")
def ex_7_3(median_gap_us, gaps_us: pd.Series, calls: pd.DataFrame) -> None:
    """``median_gap_us``: the median of ``gaps_us``."""
    _expect(_is_number(median_gap_us), "median_gap_us should be a number")
    _expect(_close(median_gap_us, float(gaps_us.median())), f"{median_gap_us:.2f}: the median of gaps_us (in µs)")


_wrong("7.3", "placeholder None")(lambda c: None)
_wrong("7.3", "the mean")(lambda c: float(c.data[0].mean()))
_wrong("7.3", "in ns")(lambda c: c.answer * 1e3)
_wrong("7.3", "the long preemptions kept")(lambda c: float((c.data[1]["t_ns"].diff().dropna() / 1e3).median()))
_wrong("7.3", "the first gap")(lambda c: float(c.data[0].iloc[0]))
