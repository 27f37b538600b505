"""Fault injection specs: ``primary@N`` (fail-stop at the N-th intercepted call, before it
runs), ``primary@2.5s`` (after 2.5 seconds), and the same for ``backup@``."""
from __future__ import annotations

import re
from typing import NamedTuple

_SPEC = re.compile(r"^(primary|backup)@(?:(\d+)|(\d+(?:\.\d*)?)s)$")


class Fault(NamedTuple):
    replica: str
    """``primary`` or ``backup``."""
    at_call: int | None
    """Fail at this intercepted call (1-based, counted over all the replica's processes)."""
    after_seconds: float | None
    """Or fail after this many seconds."""


def parse_fault(spec: str) -> Fault:
    m = _SPEC.match(spec.strip())
    if not m:
        raise ValueError(f"bad fault {spec!r}: use primary@N, primary@2.5s, backup@N or backup@Ts")
    replica, n, secs = m.groups()
    if n is not None:
        if int(n) < 1:
            raise ValueError(f"bad fault {spec!r}: calls are counted from 1")
        return Fault(replica, int(n), None)
    return Fault(replica, None, float(secs))


def not_injected(faults, replica: str, calls: int) -> list[str]:
    """One message per ``replica@N`` fault that never fired because the replica made only
    ``calls`` intercepted calls (N is past its last call): such a run had no fault at all,
    which a user must be told rather than left to believe the failover was exercised."""
    return [f"fault {replica}@{f.at_call} was not injected: the {replica} made only {calls} intercepted calls"
            for f in faults if f.replica == replica and f.at_call is not None and f.at_call > calls]
