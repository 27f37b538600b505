"""The machinery of the checks: the registry, wrong answers, :func:`mutate`, helpers."""
from __future__ import annotations

import functools
import math
import numbers
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
    tmp: str = ""
    """A scratch directory for files a wrong answer writes (a lying log): :func:`mutate`
    removes it when every wrong answer has been checked."""


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

        @functools.wraps(fn)
        def check(*args):
            fn(*args)
            ex.last = args      # the arguments of the last call that passed: mutate() uses them
            print(f"✓ exercise {number} passed")
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
    with tempfile.TemporaryDirectory(prefix="tft-mutate-") as tmp:
        for label, make in ex.wrongs:
            wrong = make(Ctx(answer, data, tmp))
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
