"""Known failures of the corpus, in one place: (workload, check) -> reason.

Each reason starts with the failure class: ``class N`` for the classes of issue 7
(1-11), ``new class N`` for those this corpus found (12 and up, each with a
minimal reproduction below).  The corpus tests mark these as ``xfail(strict=True)``:
when a fix lands the test XPASSes and fails the run, and the entry must go.
The workload and the check may be patterns (``*``, ``fault-*``); the first match wins.
"""
from __future__ import annotations

from fnmatch import fnmatchcase

KNOWN: dict[tuple[str, str], str] = {}


def known_reason(workload: str, check: str) -> str:
    """Why ``check`` of ``workload`` is expected to fail ("" if it is not)."""
    for (w, c), reason in KNOWN.items():
        if fnmatchcase(workload, w) and fnmatchcase(check, c):
            return reason
    return ""
