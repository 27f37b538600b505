"""Fault injection: the specs ``primary@N`` (fail-stop at the N-th intercepted call, before
it runs), ``primary@2.5s`` (after 2.5 seconds), and the same for ``backup@``; and firing
them (:class:`Injector`, :func:`fail_stop`), the same way for either replica."""
from __future__ import annotations

import os
import re
import signal
import threading
from typing import NamedTuple

from ._backend import ptrace as pt

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


def fail_stop(engine) -> None:
    """Fault injection: the supervisor and its program die at once (SIGKILL, no last words).

    ``engine``: the :class:`~tft_lab.engine.Engine` of this supervisor (not imported: the
    engine sits above this module)."""
    if engine.trace_file is not None:
        engine.trace_file.flush()   # measurement data, not state: the experiment wants it
    for pid in list(engine.tasks):
        pt.kill_quietly(pid)
    os.kill(os.getpid(), signal.SIGKILL)


class Injector:
    """The faults of one replica, fired from its policy: ``start`` arms the timed ones,
    ``entry`` counts the replica's intercepted calls (all its processes) and fires a
    ``replica@N`` fault before the N-th runs; ``finish`` says which were never injected."""

    def __init__(self, faults, replica: str):
        self.replica = replica
        self.faults = [f for f in faults if f.replica == replica]
        self.entries = 0
        self.engine = None

    def start(self, engine) -> None:
        """Arm a daemon timer per ``replica@Ts`` fault (it kills this supervisor when it fires)."""
        self.engine = engine
        for f in self.faults:
            if f.after_seconds is not None:
                t = threading.Timer(f.after_seconds, fail_stop, args=(engine,))
                t.daemon = True
                t.start()

    def entry(self) -> None:
        """One more intercepted call, before it runs; precondition: :meth:`start` was called."""
        self.entries += 1
        for f in self.faults:
            if f.at_call == self.entries:
                fail_stop(self.engine)

    def finish(self) -> list[str]:
        """The ``replica@N`` faults that never fired (see :func:`not_injected`)."""
        return not_injected(self.faults, self.replica, self.entries)
