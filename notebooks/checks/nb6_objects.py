"""Checks of notebook 06 OS objects."""
from __future__ import annotations

import pandas as pd

from ._core import _exercise, _wrong, _expect, _is_number


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
