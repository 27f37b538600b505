"""Checks of notebook 09 Threads."""
from __future__ import annotations

import collections

import pandas as pd

from ._core import _exercise, _expect, _wrong


def switch_rows(trace: pd.DataFrame, replica: str = "primary") -> pd.DataFrame:
    """The ``switch`` rows of one replica, in the order they were made."""
    t = trace[(trace["replica"] == replica) & (trace["kind"] == "switch")]
    return t.sort_values("t_ns", kind="stable")


def threads_in_order(trace: pd.DataFrame, replica: str = "primary") -> list[int]:
    """The threads in the order the log says they got the processor: the process's first
    thread, then the thread each switch names."""
    sw = switch_rows(trace, replica)
    first = int(trace.loc[trace["replica"] == replica, "pid"].iloc[0])
    return [first] + [int(x) for x in sw["result"]]


def schedule_of(trace: pd.DataFrame, replica: str) -> list[tuple]:
    """A replica's switches as ``(tid, seq, why, next tid)``: what the log decides."""
    sw = switch_rows(trace, replica)
    return [(int(t), int(q), str(w), int(r)) for t, q, w, r in zip(sw["tid"], sw["seq"], sw["syscall"], sw["result"])]


@_exercise("9.1", answers=2)
def ex_9_1(ran, reasons, trace: pd.DataFrame) -> None:
    """``ran``: the threads in the order they got the processor; ``reasons``: why -> switches."""
    _expect(isinstance(ran, list), "ran should be a list of thread ids")
    _expect(isinstance(reasons, dict), "reasons should be a dict: reason -> number of switches")
    right = threads_in_order(trace)
    _expect(len(ran) == len(right), f"the processor changed hands {len(right) - 1} times: ran should have "
                                     f"{len(right)} entries (the first thread, then one per switch)")
    _expect([int(x) for x in ran] == right, "each switch row's result is the thread that runs next (its tid is "
                                            "the one that gives way)")
    counts = collections.Counter(str(s) for s in switch_rows(trace)["syscall"])
    _expect({str(k): v for k, v in reasons.items()} == dict(counts),
            "count the switch rows by their syscall column (block, epoch, exit)")


_wrong("9.1", "placeholder None")(lambda c: (None, None))
_wrong("9.1", "the threads that gave way")(
    lambda c: ([int(x) for x in switch_rows(c.data[0])["tid"]], c.answer[1]))
_wrong("9.1", "without the first thread")(lambda c: (c.answer[0][1:], c.answer[1]))
_wrong("9.1", "each thread once")(lambda c: (list(dict.fromkeys(c.answer[0])), c.answer[1]))
_wrong("9.1", "every switch a block")(lambda c: (c.answer[0], {"block": sum(c.answer[1].values())}))
_wrong("9.1", "calls counted, not switches")(
    lambda c: (c.answer[0], dict(collections.Counter(
        str(s) for s in c.data[0].loc[c.data[0]["kind"] == "syscall", "syscall"]).most_common(3))))


@_exercise("9.2", answers=2)
def ex_9_2(replays_agree, recordings_differ, rec, rec2, replays: list) -> None:
    """``replays_agree``: every replay printed the recording's output and followed its schedule;
    ``recordings_differ``: the two recordings' schedules differ."""
    _expect(isinstance(replays_agree, bool) and isinstance(recordings_differ, bool),
            "both answers are True or False")
    want = schedule_of(rec.trace, "primary")
    agree = all(r.stdout == rec.stdout and schedule_of(r.trace, "backup") == want for r in replays)
    _expect(replays_agree == agree, "compare each replay's output and its switches (tid, seq, why, next) with "
                                    "the recording's: a replay's rows are the backup's")
    _expect(recordings_differ == (schedule_of(rec2.trace, "primary") != want),
            "compare the two recordings' switches, not their outputs")


_wrong("9.2", "placeholder None")(lambda c: (None, None))
_wrong("9.2", "replays disagree")(lambda c: (not c.answer[0], c.answer[1]))
_wrong("9.2", "the opposite for the recordings")(lambda c: (c.answer[0], not c.answer[1]))
_wrong("9.2", "strings")(lambda c: (str(c.answer[0]), str(c.answer[1])))


def blocked_calls(trace: pd.DataFrame, replica: str = "primary") -> dict:
    """Call name -> how many times a thread gave way blocked in it."""
    calls = trace[(trace["replica"] == replica) & (trace["kind"] == "syscall")]
    name = {(int(t), int(q)): str(n) for t, q, n in zip(calls["tid"], calls["seq"], calls["syscall"])}
    sw = switch_rows(trace, replica)
    sw = sw[sw["syscall"] == "block"]
    return dict(collections.Counter(name[(int(t), int(q))] for t, q in zip(sw["tid"], sw["seq"])))


@_exercise("9.3")
def ex_9_3(blocked_in, trace: pd.DataFrame) -> None:
    """``blocked_in``: call name -> how many times a thread gave way blocked in that call."""
    _expect(isinstance(blocked_in, dict), "blocked_in should be a dict: call name -> count")
    right = blocked_calls(trace)
    _expect({str(k): int(v) for k, v in blocked_in.items()} == right,
            "take the switch rows whose syscall is 'block', and for each the call of the same thread (tid) "
            "at the same seq")


_wrong("9.3", "placeholder None")(lambda c: None)
_wrong("9.3", "every switch")(lambda c: {"futex": len(switch_rows(c.data[0]))})
_wrong("9.3", "every call of those names")(
    lambda c: {n: int((c.data[0].loc[c.data[0]["kind"] == "syscall", "syscall"] == n).sum()) for n in c.answer})
def _call_before(trace: pd.DataFrame) -> dict:
    calls = trace[(trace["replica"] == "primary") & (trace["kind"] == "syscall")]
    name = {(int(t), int(q)): str(n) for t, q, n in zip(calls["tid"], calls["seq"], calls["syscall"])}
    sw = switch_rows(trace)
    sw = sw[sw["syscall"] == "block"]
    return dict(collections.Counter(name.get((int(t), int(q) - 1), "none") for t, q in zip(sw["tid"], sw["seq"])))


_wrong("9.3", "the call before the one that blocked")(lambda c: _call_before(c.data[0]))
_wrong("9.3", "off by one")(lambda c: {k: v + 1 for k, v in c.answer.items()})
