"""Checks of notebook 07 Measuring overhead."""
from __future__ import annotations

import pandas as pd

from ._core import _exercise, _wrong, _expect, _is_number, _close


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


def _net(loop: pd.DataFrame, mode: str, col: str = "us_per_call_net") -> float:
    return float(loop.loc[loop["mode"] == mode, col].iloc[0])


@_exercise("7.4")
def ex_7_4(vs_strace, loop: pd.DataFrame) -> None:
    """``vs_strace``: record's ``us_per_call_net`` over that of (pinned) ``strace``, getppid loop."""
    _expect(_is_number(vs_strace), "vs_strace should be a number")
    _expect(_close(vs_strace, _net(loop, "record") / _net(loop, "strace")),
            f"{vs_strace:.3f}: the us_per_call_net of record divided by that of strace (pinned)")


_wrong("7.4", "placeholder None")(lambda c: None)
_wrong("7.4", "the wrong way round")(lambda c: _net(c.data[0], "strace") / _net(c.data[0], "record"))
_wrong("7.4", "strace unpinned")(lambda c: _net(c.data[0], "record") / _net(c.data[0], "strace unpinned"))
_wrong("7.4", "the floor, not strace")(lambda c: _net(c.data[0], "record") / _net(c.data[0], "floor emulate"))
_wrong("7.4", "whole runs, fixed cost included")(
    lambda c: _net(c.data[0], "record", "seconds") / _net(c.data[0], "strace", "seconds"))
_wrong("7.4", "the difference, not the ratio")(lambda c: _net(c.data[0], "record") - _net(c.data[0], "strace"))
