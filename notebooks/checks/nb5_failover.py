"""Checks of notebook 05 Failover and crash sweeps."""
from __future__ import annotations

import pandas as pd

from ._core import _exercise, _wrong, _expect, _is_number, _close


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
    base = dict(_sweep_rows(sweep)[0], returncode=0, lines=lines, check_ok=True, duplicates=0)
    return [("a clean run", base, True),
            ("one line repeated", dict(base, duplicates=1), True),
            ("two lines repeated", dict(base, duplicates=2), False),
            ("a line missing", dict(base, lines=lines - 1), False),
            ("a line too many", dict(base, lines=lines + 1), False),
            ("a broken chain", dict(base, check_ok=False), False),
            ("exit status 1", dict(base, returncode=1), False)]


@_exercise("5.2", answers=2)
def ex_5_2(run_ok, all_good, sweep: pd.DataFrame, lines: int) -> None:
    """``run_ok(row)``: is one sweep run good? ``all_good``: are all of them?"""
    _expect(callable(run_ok), "run_ok should be a function of one row (a dict)")
    for what, row, right in _bad_runs(sweep, lines):
        got = run_ok(row)
        _expect(got is not None and bool(got) is right, f"run_ok gave {got!r} for {what}; should be {right}")
    _expect(isinstance(all_good, bool), "all_good should be True or False")
    right = all(bool(r["returncode"] == 0 and r["lines"] == lines and r["check_ok"] and r["duplicates"] <= 1)
                for r in _sweep_rows(sweep))
    _expect(all_good == right, f"all_good should be {right}: apply run_ok to every row")


def _run_ok(dups=1, lines_ok=lambda n, want: n == want, rc=True):
    return lambda lines: (lambda row: bool((not rc or row["returncode"] == 0) and lines_ok(row["lines"], lines)
                                           and row["check_ok"] and row["duplicates"] <= dups))


_wrong("5.2", "placeholder None")(lambda c: (None, None))
_wrong("5.2", "no repeat allowed")(lambda c: (_run_ok(dups=0)(c.data[1]), c.answer[1]))
_wrong("5.2", "repeats not checked")(lambda c: (_run_ok(dups=10 ** 9)(c.data[1]), c.answer[1]))
_wrong("5.2", "at least the lines")(lambda c: (_run_ok(lines_ok=lambda n, w: n >= w)(c.data[1]), c.answer[1]))
_wrong("5.2", "exit status not checked")(lambda c: (_run_ok(rc=False)(c.data[1]), c.answer[1]))
_wrong("5.2", "all_good hard-coded False")(lambda c: (c.answer[0], False))


def _failovers(sweep):
    return sweep.loc[sweep["run_outcome"] == "failover", "failover_ms"]


@_exercise("5.3")
def ex_5_3(median_failover_ms, sweep: pd.DataFrame) -> None:
    """``median_failover_ms``: the median ``failover_ms`` of the sweep's failovers."""
    _expect(_is_number(median_failover_ms), "median_failover_ms should be a number")
    _expect(_close(median_failover_ms, float(_failovers(sweep).median())),
            f"{median_failover_ms:.3f} ms: the median of failover_ms over the rows whose run_outcome is failover")


_wrong("5.3", "placeholder None")(lambda c: None)
_wrong("5.3", "the mean")(lambda c: float(_failovers(c.data[0]).mean()))
_wrong("5.3", "in seconds")(lambda c: c.answer / 1e3)
_wrong("5.3", "the longest")(lambda c: float(_failovers(c.data[0]).max()))
_wrong("5.3", "every row, completed runs as 0")(lambda c: float(c.data[0]["failover_ms"].fillna(0).where(
    c.data[0]["run_outcome"] == "failover", 0).median()))


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


def _pairs(sweeps: pd.DataFrame):
    return sweeps.groupby(["commit", "epoch"])


def _safe(sweeps: pd.DataFrame) -> set:
    good = (sweeps["outcome"] == "masked") & sweeps["check_ok"].astype(bool)
    return {(c, int(e)) for (c, e), g in good.groupby([sweeps["commit"], sweeps["epoch"]]) if g.all()}


def _cost(sweeps: pd.DataFrame, how: str = "median") -> dict:
    return {(c, int(e)): float(v) for (c, e), v in _pairs(sweeps)["wall_s"].agg(how).items()}


@_exercise("5.5", answers=2)
def ex_5_5(safe, cost, sweeps: pd.DataFrame) -> None:
    """``safe``: the (commit, epoch) pairs whose every point is masked and checked;
    ``cost``: (commit, epoch) -> the median ``wall_s`` of its points."""
    _expect(isinstance(safe, (set, frozenset, list)), "safe should be a set of (commit, epoch) pairs")
    got = {(c, int(e)) for c, e in safe} if all(isinstance(p, tuple) and len(p) == 2 for p in safe) else None
    _expect(got is not None, "each element of safe should be a (commit, epoch) pair")
    right = _safe(sweeps)
    _expect(got == right, f"safe={sorted(got)}; a pair is safe when every one of its rows is masked with "
                          f"check_ok True ({len(right)} of {len(_cost(sweeps))} pairs are)")
    _expect(isinstance(cost, dict), "cost should be a dict: (commit, epoch) -> seconds")
    want = _cost(sweeps)
    _expect(set(cost) == set(want), f"cost should have one key per (commit, epoch) pair: {sorted(want)}")
    for key, seconds in want.items():
        _expect(_close(cost[key], seconds), f"cost[{key}]={cost[key]!r}: the median wall_s of that pair's points")


_wrong("5.5", "placeholder None")(lambda c: (None, None))
_wrong("5.5", "a pair that is not in the table counted safe")(lambda c: (c.answer[0] | {("none", 0)}, c.answer[1]))
_wrong("5.5", "cost in milliseconds")(lambda c: (c.answer[0], {k: v * 1e3 for k, v in c.answer[1].items()}))
_wrong("5.5", "the slowest point, not the median")(lambda c: (c.answer[0], _cost(c.data[0], "max")))
_wrong("5.5", "keys as (epoch, commit)")(lambda c: (c.answer[0], {(e, k): v for (k, e), v in c.answer[1].items()}))
