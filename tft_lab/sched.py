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
from typing import TYPE_CHECKING

from .errors import DivergenceError, UnsupportedError

if TYPE_CHECKING:   # the engine imports us; we only name its task type
    from .guest import Task

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


def check_futex(op: int) -> None:
    """Refuse priority-inheritance futexes (PTHREAD_PRIO_INHERIT mutexes): their word is
    written by the kernel at a moment the replay cannot know."""
    if op & _FUTEX_CMD_MASK in _FUTEX_PI_OPS:
        raise UnsupportedError("futex on a priority-inheritance lock (a PTHREAD_PRIO_INHERIT mutex) cannot be "
                               "replicated: use a default mutex", syscall="futex")


class Schedule:
    """The switches the log holds for one process, in the primary's order (the replay side)."""

    __slots__ = ("q",)

    def __init__(self):
        self.q: collections.deque = collections.deque()

    def take(self, task: "Task", at: str):
        """The switch record for ``task`` at this point, taken from the queue, or None if the
        primary did not switch here.  A record for an earlier point, or for another thread, is
        a divergence: only the running thread reaches switch points."""
        if not self.q:
            return None
        rec = self.q[0]
        if rec["tid"] != task.vpid:
            raise DivergenceError(f"replay diverged: the log switches threads after thread {rec['tid']} "
                                  f"(seq {rec['seq']}), here thread {task.vpid} runs", pid=task.vpid,
                                  seq=task.seq)
        here, there = (task.seq, POINTS[at]), (rec["seq"], POINTS.get(rec["at"], -1))
        if there > here:
            return None
        if there < here:
            raise DivergenceError(f"replay diverged: the log switches from thread {task.vpid} at its seq "
                                  f"{rec['seq']} ({rec['at']}), the replay is past it ({at} at seq {task.seq})",
                                  pid=task.vpid, seq=task.seq)
        return self.q.popleft()
