"""Fault injection: the specs ``primary@N`` (fail-stop at the N-th intercepted call, before
it runs), ``primary@2.5s`` (2.5 seconds after the run started), and the same for
``backup@``; and firing them (:class:`Injector`, :func:`fail_stop`), the same way for
either replica.

A ``primary@`` fault is the primary's *role*, not its process: after a failover the live
replica is the primary (``tft run --respawn``), so it holds the run's primary faults too.
N counts the program's calls from its start (a replica that replayed calls 1..k and went
live counts on from k), and a fault fires once per run: one whose call or time had come
before a replica became the primary fired on an earlier one.

A pause (``--pause primary@1.5s:3s``: :class:`Pause`, fired by :class:`Pauser` from
``tft run``'s coordinator) stops the replica's supervisor for a while instead of killing it."""
from __future__ import annotations

import os
import re
import signal
import threading
import time
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


def spec(fault: Fault) -> str:
    """The fault as ``--fault`` writes it (``primary@12``, ``backup@2.5s``)."""
    at = f"{fault.at_call}" if fault.at_call is not None else f"{fault.after_seconds:g}s"
    return f"{fault.replica}@{at}"


_PAUSE = re.compile(r"^(primary|backup)@(\d+(?:\.\d*)?)s:(\d+(?:\.\d*)?)s$")


class Pause(NamedTuple):
    """``--pause primary@Ts:Ds``: the replica's supervisor is stopped (SIGSTOP) T seconds after
    the run started, for D seconds, then resumed (SIGCONT): a long GC pause, a frozen VM, a
    partition that heals.  Its program runs on at most to its next intercepted call and waits
    there (every call stops for the supervisor): no output while paused."""

    replica: str
    """``primary`` or ``backup``: whichever replica has that role at T."""
    at_seconds: float
    """T, seconds after the run started."""
    seconds: float
    """D, how long it stays stopped."""


def parse_pause(spec: str) -> Pause:
    m = _PAUSE.match(spec.strip())
    if not m:
        raise ValueError(f"bad pause {spec!r}: use primary@Ts:Ds or backup@Ts:Ds (e.g. primary@1.5s:3s)")
    replica, at, secs = m.groups()
    if float(secs) <= 0:
        raise ValueError(f"bad pause {spec!r}: it must last more than 0 s")
    return Pause(replica, float(at), float(secs))


class Pauser:
    """Fires :class:`Pause` faults from outside the paused replica (a stopped process cannot
    resume itself): ``tft run``'s coordinator calls :meth:`tick` often with the supervisor's
    pid for each role; each pause sends SIGSTOP when its time comes and SIGCONT D s later."""

    def __init__(self, pauses, t0: float):
        self.todo = sorted(pauses, key=lambda p: p.at_seconds)
        self.t0 = t0
        self.stopped: list[tuple[float, int]] = []   # (resume at, pid)
        self.fired: list[str] = []

    @property
    def pending(self) -> bool:
        return bool(self.todo or self.stopped)

    def tick(self, roles: dict[str, int | None]) -> None:
        now = time.monotonic()
        while self.todo and self.t0 + self.todo[0].at_seconds <= now:
            p = self.todo.pop(0)
            pid = roles.get(p.replica)
            if pid is not None and _signal(pid, signal.SIGSTOP):
                self.stopped.append((now + p.seconds, pid))
                self.fired.append(f"{p.replica}@{p.at_seconds:g}s:{p.seconds:g}s")
        for resume_at, pid in list(self.stopped):
            if resume_at <= now:
                _signal(pid, signal.SIGCONT)
                self.stopped.remove((resume_at, pid))

    def resume_all(self) -> None:
        """Every stopped supervisor goes on (the run is ending: none may stay stopped)."""
        for _, pid in self.stopped:
            _signal(pid, signal.SIGCONT)
        self.stopped.clear()


def _signal(pid: int, sig: int) -> bool:
    try:
        os.kill(pid, sig)
        return True
    except OSError:
        return False


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
    ``replica@N`` fault before the N-th runs; ``finish`` says which were never injected.

    ``armed=False``: count the calls, fire nothing until :meth:`promote` (a backup holds the
    run's primary faults that way: they are its own once it is live)."""

    def __init__(self, faults, replica: str, armed: bool = True, ledger: str | None = None):
        self.replica = replica
        self.faults = [f for f in faults if f.replica == replica]
        self.entries = 0
        self.engine = None
        self.armed = armed
        self.ledger = ledger   # the run's file of faults fired (one spec a line), if several replicas share them

    def start(self, engine, t0: float | None = None) -> None:
        """Arm a daemon timer per ``replica@Ts`` fault (it kills this supervisor when it fires),
        T seconds after ``t0`` (a ``time.monotonic()`` reading: when the run started; default
        now).  A deadline already past is not armed: that fault was another replica's."""
        self.engine = engine
        if not self.armed:
            return
        now = time.monotonic()
        t0 = now if t0 is None else t0
        if self.ledger is not None and self.replica == "primary" and not os.path.exists(self.ledger):
            self._note(f"t0={t0!r}")   # the first primary's start: the later ones' timed faults count from it
        for f in self.faults:
            if f.after_seconds is not None and t0 + f.after_seconds > now:
                t = threading.Timer(t0 + f.after_seconds - now, self._fire, args=(f,))
                t.daemon = True
                t.start()

    def promote(self, engine, t0: float | None, calls: int) -> None:
        """This replica has become the primary, its program past ``calls`` calls: its faults
        fire from now on, but not one that fired already (the ledger's), nor one whose call
        was passed (it was an earlier primary's).  Timed faults count from the first primary's
        start (in the ledger), else from ``t0``."""
        fired = set()
        if self.ledger is not None:
            try:
                with open(self.ledger) as f:
                    fired = set(f.read().split())
            except OSError:
                pass
        for word in fired:
            if word.startswith("t0="):
                t0 = float(word[3:])
        self.faults = [f for f in self.faults if spec(f) not in fired and (f.at_call is None or f.at_call > calls)]
        self.entries = calls
        self.armed = True
        self.start(engine, t0)

    def entry(self) -> None:
        """One more intercepted call, before it runs; precondition: :meth:`start` was called."""
        self.entries += 1
        if not self.armed:
            return
        for f in self.faults:
            if f.at_call == self.entries:
                self._fire(f)

    def _fire(self, fault: Fault) -> None:
        self._note(spec(fault))   # before dying: the next primary must not fire it again
        fail_stop(self.engine)

    def _note(self, line: str) -> None:
        if self.ledger is not None:
            try:
                with open(self.ledger, "a") as f:
                    f.write(line + "\n")
            except OSError:
                pass

    def finish(self) -> list[str]:
        """The ``replica@N`` faults that never fired (see :func:`not_injected`); none while unarmed."""
        return not_injected(self.faults, self.replica, self.entries) if self.armed else []
