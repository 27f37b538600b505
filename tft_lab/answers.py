"""Calls the primary answers itself at the seccomp stop: one stop instead of two.

A call the primary runs for real costs two stops: its seccomp stop, where the
supervisor lets it run, and its exit stop, where it reads the result and logs
it.  For some calls the supervisor can compute exactly the answer the kernel
would give -- the task's pid, its parent from ``/proc/PID/stat``, a system-wide
clock, random bytes -- so it skips the call at the seccomp stop and writes that
answer (:meth:`~tft_lab.guest.Task.emulate`); the record it logs is the one the
call would have produced, so the backup and the replay do not change.  Which
calls, and how, is the table's ``answered`` fact (:mod:`tft_lab.syscalls`).

:meth:`Answerer.answer` declines (returns None) wherever its answer could differ from the
kernel's, and the call then runs as before:

- the task is in another pid namespace than the supervisor (its pids are not ours),
  or another time namespace for a clock a time namespace offsets (MONOTONIC, BOOTTIME);
- a per-process clock (CPU time), a clock id it does not know, ``getpgid``/``getsid``
  of another process, ``gettimeofday`` with a timezone, ``getrandom`` of more than
  :data:`MAX_RANDOM` bytes or that would block;
- a NULL or unwritable buffer (the kernel's EFAULT is the kernel's to give).

Known limit: a task's time namespace is checked once per exec; a program that moves itself
into another time namespace with ``setns`` (it needs CAP_SYS_ADMIN) and then reads
CLOCK_MONOTONIC or CLOCK_BOOTTIME would be answered the supervisor's clock.

Why it pays: one stop instead of two saves ~35-45 % of a call's cost even in a
tracer written in C (``benchmarks/floor.c``); tft's own figures are in
benchmarks/README.md.
"""
from __future__ import annotations

import errno
import os
import struct
import time

from . import syscalls
from ._backend import core as _core
from .errors import TracingError
from .guest import Call, Task

#: getrandom larger than this runs for real (programs draw 16-64 bytes; a large draw is rare).
MAX_RANDOM = 4096
GRND_NONBLOCK = 0x0001
#: System-wide clocks the supervisor reads as the program would: REALTIME, MONOTONIC,
#: MONOTONIC_RAW, REALTIME_COARSE, MONOTONIC_COARSE, BOOTTIME, TAI.  (Per-process CPU clocks,
#: the alarm clocks and dynamic clock ids run for real.)
_CLOCKS = frozenset((0, 1, 4, 5, 6, 7, 11))
#: Clocks a time namespace offsets (time_namespaces(7)): MONOTONIC*, BOOTTIME.
_NS_CLOCKS = frozenset((1, 4, 6, 7))
CLOCK_REALTIME_COARSE = 5
_STAT_FIELD = {"getppid": 1, "getpgrp": 2, "getpgid": 2, "getsid": 3}   # after the ")" of comm


#: How the compiled lane (``tft_lab._core.lane``) answers each ``answered`` kind; getpgid and
#: getsid (of the task itself only) have their own.  The lane answers exactly what
#: :meth:`Answerer.answer` answers, the same way (``tests/test_lane.py`` compares the logs).
_LANE_KIND = {"pid": 1, "stat": 2, "clock": 4, "gettimeofday": 5, "time": 6, "random": 7}
_LANE_STAT_OF = 3
LANE_PID_OK, LANE_TIME_OK, LANE_STAT_OK = 1, 2, 4


def _lane_rows() -> list[tuple[int, int, int, int]]:
    """(nr, kind, nargs, field) of every answered call: what ``_core.lane`` answers."""
    rows = []
    for e in syscalls.TABLE.values():
        if e.answered:
            kind = _LANE_STAT_OF if e.name in ("getpgid", "getsid") else _LANE_KIND[e.answered]
            rows.append((e.x64, kind, e.nargs, _STAT_FIELD.get(e.name, 0)))
    return rows


if _core is not None:
    _core.lane_setup(_lane_rows())


def _ns_inode(pid: int | str, kind: str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/{kind}").st_ino
    except OSError:
        return None


def _write(task: Task, addr: int, data: bytes) -> bool:
    """Write the answer's out-buffer; False (the call then runs) if the kernel would fault."""
    if not addr:
        return False
    try:
        task.write(addr, data)
    except TracingError:
        return False
    return True


class _Facts:
    """What the supervisor learnt about one task, to answer its calls cheaply."""

    __slots__ = ("pid_ns_ok", "time_ns_ok", "exec_count", "stat_fd")

    def __init__(self):
        self.pid_ns_ok: bool | None = None    # a task's own pid namespace never changes
        self.time_ns_ok: bool | None = None   # its time namespace may, at exec: checked per exec
        self.exec_count = -1
        self.stat_fd = -1                     # /proc/PID/stat, kept open: pread re-reads it (~1 us)


class Answerer:
    """Answers calls at their seccomp stop for one supervisor (the primary or a recorder).

    It keeps, per task, the namespace checks and an open ``/proc/PID/stat``: :meth:`forget`
    a task when it is gone, :meth:`close` at the end.
    """

    def __init__(self):
        self._ours = {kind: _ns_inode("self", kind) for kind in ("pid", "time")}
        self._facts: dict[int, _Facts] = {}

    def _of(self, task: Task) -> _Facts:
        f = self._facts.get(task.pid)
        if f is None:
            f = self._facts[task.pid] = _Facts()
        return f

    def _same_pid_ns(self, task: Task, f: _Facts) -> bool:
        if f.pid_ns_ok is None:
            f.pid_ns_ok = self._ours["pid"] is not None and _ns_inode(task.pid, "pid") == self._ours["pid"]
        return f.pid_ns_ok

    def _same_time_ns(self, task: Task, f: _Facts) -> bool:
        if f.exec_count != task.exec_count:
            f.exec_count = task.exec_count
            f.time_ns_ok = self._ours["time"] is not None and _ns_inode(task.pid, "time") == self._ours["time"]
        return f.time_ns_ok

    def _stat_fields(self, task: Task, f: _Facts, last: int) -> list[bytes] | None:
        """Fields 0..``last`` after comm in ``/proc/PID/stat`` (state, ppid, pgrp, session...)."""
        try:
            if f.stat_fd < 0:
                f.stat_fd = os.open(f"/proc/{task.pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
            raw = os.pread(f.stat_fd, 1024, 0)
        except OSError:
            return None
        # comm (in parentheses) may hold spaces and parentheses: the fields follow the last ")"
        return raw[raw.rindex(b")") + 2:].split(b" ", last + 1)

    def _stat_field(self, task: Task, f: _Facts, index: int) -> int | None:
        fields = self._stat_fields(task, f, index)
        return None if fields is None else int(fields[index])

    def lane_facts(self, task: Task) -> tuple[int, int, int, int]:
        """What the compiled lane needs to answer ``task``'s calls as :meth:`answer` does, from
        now until it hands the next stop back: its flags (:data:`LANE_PID_OK`,
        :data:`LANE_TIME_OK`, :data:`LANE_STAT_OK`) and its ppid, process group and session.

        Read once here, not at each call: while the lane runs, the program is one task, so
        its parent is the supervisor (its spawner, or the subreaper it was reparented to),
        and its group and session change only by its own calls (setpgid, setsid), which the
        lane hands back."""
        f = self._of(task)
        flags = LANE_PID_OK if self._same_pid_ns(task, f) else 0
        if self._same_time_ns(task, f):
            flags |= LANE_TIME_OK
        fields = self._stat_fields(task, f, 3) if flags & LANE_PID_OK else None
        if fields is None:
            return flags, 0, 0, 0
        return flags | LANE_STAT_OK, int(fields[1]), int(fields[2]), int(fields[3])

    def forget(self, task: Task) -> None:
        """The task is gone: drop what was kept for it."""
        f = self._facts.pop(task.pid, None)
        if f is not None and f.stat_fd >= 0:
            os.close(f.stat_fd)

    def close(self) -> None:
        for f in self._facts.values():
            if f.stat_fd >= 0:
                os.close(f.stat_fd)
        self._facts.clear()

    def answer(self, task: Task, call: Call) -> int | None:
        """At ``call``'s seccomp stop: write its out-buffers and return its result, as the
        kernel would; or None (nothing written that matters) if the call must run for real."""
        how = call.entry.answered
        a = call.args
        f = self._of(task)
        if how == "pid":
            if not self._same_pid_ns(task, f):
                return None
            return task.pid if call.name == "gettid" else task.tgid   # a thread's getpid: its process's
        if how == "stat":
            if call.name in ("getpgid", "getsid") and a[0] & 0xFFFFFFFF not in (0, task.tgid):
                return None
            if not self._same_pid_ns(task, f):
                return None
            return self._stat_field(task, f, _STAT_FIELD[call.name])
        if how == "clock":
            clock = a[0] & 0xFFFFFFFF
            if clock not in _CLOCKS or (clock in _NS_CLOCKS and not self._same_time_ns(task, f)):
                return None
            ns = time.clock_gettime_ns(clock)
            return 0 if _write(task, a[1], struct.pack("<qq", ns // 1_000_000_000, ns % 1_000_000_000)) else None
        if how == "gettimeofday":
            if a[1]:   # the timezone the kernel keeps (sys_tz): not ours to know
                return None
            ns = time.time_ns()
            tv = struct.pack("<qq", ns // 1_000_000_000, ns % 1_000_000_000 // 1000)
            return 0 if _write(task, a[0], tv) else None
        if how == "time":
            # time(2) reads the seconds of the last tick, as CLOCK_REALTIME_COARSE does
            secs = time.clock_gettime_ns(CLOCK_REALTIME_COARSE) // 1_000_000_000
            if a[0] and not _write(task, a[0], struct.pack("<q", secs)):
                return None
            return secs
        if how == "random":
            size, flags = a[1], a[2] & 0xFFFFFFFF
            if size > MAX_RANDOM:
                return None
            try:
                data = os.getrandom(size, flags | GRND_NONBLOCK)
            except BlockingIOError:   # the pool is not ready: the program's own call waits, or says so
                return -errno.EAGAIN if flags & GRND_NONBLOCK else None
            except OSError:           # flags the kernel refuses: its error is its to give
                return None
            return len(data) if (not data or _write(task, a[0], data)) else None
        return None
