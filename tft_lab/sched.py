"""Threads: one thread of a process in user space at a time, switched only at its own calls.

Without a performance counter nothing can count a thread's instructions, so the only
points where two replicas can agree to switch threads are the threads' own
intercepted system calls.  A :class:`ThreadGroup` is one process's threads; exactly
one of them (``running``) may execute in user space, the others are held stopped by
the supervisor.  The running thread gives way at a *switch point*:

``block``  it enters a call that may wait (the table's ``blocks`` fact: a futex wait, a
           read, poll, a sleep, sched_yield...).  The primary lets the call wait in its
           kernel while another thread runs; the replay answers it from the log when the
           schedule comes back to it.
``epoch``  it completed a call that ends an epoch (so a thread that makes calls cannot
           starve the others).
``exit``   it is gone (or, for the first thread, it called ``exit`` while others live on).

At each point the primary picks the next thread (:func:`first_ready`, round robin among
the threads ready to run; if none is, the first one to become ready) and logs a
``switch`` record when it is another thread; the replay follows those records exactly
(:class:`Schedule`).  How a held thread is resumed is the engine's (``Task.held``).

A thread that never makes a call while others are ready cannot be switched: the
engine detects it (``Engine.spin_limit``) and stops with an error naming the thread.
"""
from __future__ import annotations

import collections
import os
import signal as _signal
import threading
import time
from typing import TYPE_CHECKING

from ._backend import ptrace as pt
from .errors import DivergenceError, UnsupportedError

if TYPE_CHECKING:   # the engine imports us; we only name its task type
    from .guest import Task

#: A thread that runs this long without a call while others wait to run is spinning (seconds);
#: the environment variable ``TFT_SPIN_LIMIT`` sets it for every supervisor of a command.
SPIN_LIMIT = 10.0


def spin_limit_from_env() -> float:
    """``TFT_SPIN_LIMIT`` (seconds, > 0) if set, else :data:`SPIN_LIMIT`; a bad value is a
    :class:`~tft_lab.errors.TftError` naming it."""
    from .errors import TftError

    text = os.environ.get("TFT_SPIN_LIMIT")
    if text is None:
        return SPIN_LIMIT
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise TftError(f"TFT_SPIN_LIMIT={text!r}: seconds, a positive number")
    return value

CLONE_VM = 0x100
CLONE_VFORK = 0x4000
CLONE_THREAD = 0x10000
CLONE_PARENT_SETTID = 0x100000
CLONE_CHILD_SETTID = 0x1000000

#: The order of the switch points that share one seq: ``epoch`` (after call seq-1) comes
#: before ``block`` (at the entry of call seq), which comes before ``exit``.
POINTS = {"epoch": 0, "block": 1, "exit": 2}

#: futex operations on priority-inheritance futexes: the kernel itself writes the owner's tid
#: into the futex word, at a time only the primary's kernel knows.
_FUTEX_PI_OPS = frozenset((6, 7, 8, 11, 12, 13))   # LOCK_PI, UNLOCK_PI, TRYLOCK_PI, *REQUEUE_PI, LOCK_PI2
_FUTEX_CMD_MASK = 0x7F   # without FUTEX_PRIVATE_FLAG (128) and FUTEX_CLOCK_REALTIME (256)
FUTEX_PRIVATE_FLAG = 128


class ThreadGroup:
    """One process's threads, and which of them may run in user space.

    Invariants: ``threads`` holds the live threads in creation order (the leader first while
    it lives); at most ``running`` executes program code; every other thread is stopped with
    its resumption kept in its ``Task.held``, or waits in its kernel in a blocking call, or
    is about to report its first stop.  ``running`` is None only while the primary waits for
    the first thread to become ready (``after`` says after which switch point)."""

    __slots__ = ("leader", "threads", "running", "exiting", "after", "seen")

    def __init__(self, leader: "Task"):
        self.leader = leader
        self.threads: list[Task] = [leader]
        self.running: Task | None = leader
        self.exiting = False
        """exit_group, a fatal signal: every thread is let go, nothing is scheduled any more."""
        self.after: tuple[Task, int, str] | None = None
        """While ``running`` is None: the (thread, seq, point) the next thread runs after."""
        self.seen = 0.0
        """When the running thread last stopped (time.monotonic): a spin is measured from it."""

    @property
    def free(self) -> bool:
        """Nothing to schedule: one thread, or all of them on their way out."""
        return self.exiting or len(self.threads) < 2

    def ready(self) -> list["Task"]:
        """The threads held stopped, ready to run when scheduled."""
        return [t for t in self.threads if t.held is not None]

    def by_vtid(self, vtid: int) -> "Task | None":
        for t in self.threads:
            if t.vpid == vtid:
                return t
        return None


def first_ready(task: "Task", at: str) -> "Task | None":
    """The primary's choice at switch point ``at`` of ``task`` (the running thread): the next
    ready thread after it in creation order, round robin.  If none is ready: at an epoch
    boundary ``task`` goes on; in a blocking call or at its exit, None (the first thread to
    become ready runs, maybe ``task`` itself when its call returns)."""
    threads = task.group.threads
    i = threads.index(task) if task in threads else -1
    for t in threads[i + 1:] + threads[:i + 1]:
        if t.held is not None and t is not task:
            return t
    return task if at == "epoch" else None


def check_clone(flags: int, name: str) -> None:
    """Refuse what threads cannot make replicable: memory shared by two *processes*."""
    if flags & CLONE_VM and not flags & (CLONE_THREAD | CLONE_VFORK):
        raise UnsupportedError(f"{name} with CLONE_VM but not CLONE_THREAD: memory shared between two "
                               "processes cannot be replicated (threads can)", syscall=name)


def check_futex(task: "Task", addr: int, op: int) -> None:
    """Refuse what a futex call cannot make replicable.

    - Priority-inheritance futexes (PTHREAD_PRIO_INHERIT mutexes): their word is written by
      the kernel at a moment the replay cannot know.
    - A futex in memory shared with another process (a process-shared lock or semaphore, such
      as multiprocessing's): the two processes are scheduled apart, so who gets the lock is
      decided by timing that no log records.  Threads of one process are scheduled as one
      (:class:`ThreadGroup`); a shared futex (no FUTEX_PRIVATE_FLAG) in a MAP_SHARED mapping,
      while the program has another process, is the sign of a lock between processes."""
    if op & _FUTEX_CMD_MASK in _FUTEX_PI_OPS:
        raise UnsupportedError("futex on a priority-inheritance lock (a PTHREAD_PRIO_INHERIT mutex) cannot be "
                               "replicated: use a default mutex", syscall="futex")
    if op & FUTEX_PRIVATE_FLAG or len({t.tgid for t in task.engine.tasks.values()}) < 2:
        return
    if _in_shared_mapping(task.pid, addr):
        raise UnsupportedError("futex on memory shared between processes (a process-shared lock or semaphore, "
                               "such as multiprocessing's): processes that share memory cannot be replicated "
                               "(threads can: docs/threads.md)", syscall="futex")


def _in_shared_mapping(pid: int, addr: int) -> bool:
    """Whether ``addr`` lies in a MAP_SHARED mapping of process ``pid`` (its /proc maps)."""
    try:
        with open(f"/proc/{pid}/maps") as f:
            for line in f:
                span, perms = line.split(None, 2)[:2]
                lo, hi = (int(x, 16) for x in span.split("-"))
                if lo <= addr < hi:
                    return perms[3] == "s"
    except OSError:
        pass
    return False


class Schedule:
    """The switches the log holds for one process, in the primary's order (the replay side)."""

    __slots__ = ("q",)

    def __init__(self):
        self.q: collections.deque = collections.deque()

    def take(self, task: "Task", at: str):
        """The switch record for ``task`` at this point, taken from the queue, or None if the
        primary did not switch here.  A record of ``task`` for an earlier point is a divergence.

        A record of another thread first means the primary did not switch here: it logs a
        thread's switch before anything that follows it, so another's switch can only come
        first when this thread gave way without one (it blocked in the kernel with no other
        thread ready, or it ran on past a point where it had given way once: gpg-agent's
        threads).  The thread's own records still check every call it makes."""
        if not self.q:
            return None
        rec = self.q[0]
        if rec["tid"] != task.vpid:
            return None
        here, there = (task.seq, POINTS[at]), (rec["seq"], POINTS.get(rec["at"], -1))
        if there > here:
            return None
        if there < here:
            raise DivergenceError(f"replay diverged: the log switches from thread {task.vpid} at its seq "
                                  f"{rec['seq']} ({rec['at']}), the replay is past it ({at} at seq {task.seq})",
                                  pid=task.vpid, seq=task.seq)
        return self.q.popleft()


class Scheduling:
    """The engine's thread mechanics (a mixin of :class:`~tft_lab.engine.Engine`): holding a
    thread the schedule does not run, switching at a switch point, and the spin watch.  The
    policy decides who runs (``Policy.next_thread``); this decides how."""

    def _go(self, task: Task, sig: int = 0, to_exit: bool = False) -> None:
        """Resume ``task`` into program code, if the schedule lets it run; else hold it, stopped,
        until it is scheduled (``Task.held``)."""
        g = task.group
        if g is None or g.free or g.running is task:
            if g is not None and not g.free:
                g.seen = time.monotonic()   # it runs program code from now (a call without exit stop too)
            pt.resume(task.pid, sig, to_exit=to_exit)
            return
        if g.running is None and task in g.threads:   # a live switch waits for the first ready thread
            frm, seq, at = g.after
            g.after = None
            self._switch_to(frm, seq, at, task)
            pt.resume(task.pid, sig, to_exit=to_exit)
            return
        task.held = (sig, to_exit)

    def _switch(self, task: Task, at: str) -> None:
        """``task`` (running) reached a switch point: the policy says who runs next."""
        g = task.group
        seq = task.seq
        nxt = self.policy.next_thread(task, at)
        if nxt is None:
            g.running, g.after = None, (task, seq, at)
        elif nxt is not task:
            self._switch_to(task, seq, at, nxt)
            self._run(nxt)

    def _switch_to(self, task: Task, seq: int, at: str, to: Task) -> None:
        g = task.group
        g.running = to
        g.seen = time.monotonic()
        if to is task:
            return
        self.policy.on_switch(task, seq, at, to)
        self.emit(task, "switch", at, f"tid {to.vpid}", to.vpid, "event", "switched", seq=seq)

    def _run(self, task: Task) -> None:
        """Let a held thread go on now that it is scheduled (it may not have stopped yet: a
        new thread; then it runs at its first stop)."""
        held, task.held = task.held, None
        if held == "entry":      # a call the replay left undecided at its entry
            self._decide(task, task.call)
        elif held is not None:
            pt.resume(task.pid, held[0], to_exit=held[1])

    def _leave(self, task: Task) -> None:
        """``task`` is gone from its process's schedule: if it was running, the next one runs."""
        g = task.group
        running = g.running is task
        g.threads.remove(task)
        if not running:
            return
        if g.free:   # one thread left (or none): it runs, no switch to log
            g.running = g.threads[0] if g.threads else None
            if g.running is not None and g.running.held is not None and not g.exiting:
                # (after an exit_group the kernel is killing it where it is held: let it die there)
                self._run(g.running)
        else:
            self._switch(task, "exit")

    def _wait(self):
        """waitpid for the next stop; while a thread runs and others wait to run, no longer than
        the spin limit (a thread that makes no call cannot be switched: say so, never hang)."""
        spinner = None
        if self.groups and threading.current_thread() is threading.main_thread():
            for g in self.groups:
                if not g.free and g.running is not None and g.running.call is None and g.ready():
                    if spinner is None or g.seen < spinner.seen:
                        spinner = g
        if spinner is None:
            return pt.wait_any()
        left = spinner.seen + self.spin_limit - time.monotonic()
        if left > 0:
            # An alarm that fires just as waitpid returns loses that status: harmless, the spin
            # error that follows ends the run.
            old = _signal.signal(_signal.SIGALRM, _spin_alarm)
            _signal.setitimer(_signal.ITIMER_REAL, left)
            try:
                return pt.wait_any()
            except _SpinAlarm:
                pass
            finally:
                _signal.setitimer(_signal.ITIMER_REAL, 0)
                _signal.signal(_signal.SIGALRM, old)
        t = spinner.running
        waiting = ", ".join(str(w.vpid) for w in spinner.ready())
        raise UnsupportedError(
            f"thread {t.vpid} of process {spinner.leader.vpid} ran {self.spin_limit:g} s without a system call "
            f"while thread(s) {waiting} waited to run: a thread that spins on memory cannot be replicated "
            "(threads are switched only at system calls: docs/threads.md; a longer limit: TFT_SPIN_LIMIT=SECONDS)",
            pid=t.vpid, seq=t.seq)


class _SpinAlarm(Exception):
    """The spin limit passed while waiting for a stop (raised by the SIGALRM handler)."""


def _spin_alarm(signo, frame):
    raise _SpinAlarm()
