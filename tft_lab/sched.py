"""Threads: one thread of a process in user space at a time, switched only at its own calls.

Without a performance counter nothing can count a thread's instructions, so the only
points where two replicas can agree to switch threads are the threads' own
intercepted system calls.  A :class:`ThreadGroup` is one process's threads, a
:class:`Domain` the tasks scheduled as one: a process's threads, and the processes that
share writable memory with it (see below); exactly one task of a domain (``running``) may
execute in user space, the others are held stopped by the supervisor.  The running task
gives way at a *switch point*:

``block``  it enters a call that may wait (the table's ``blocks`` fact: a futex wait, a
           read, poll, a sleep, sched_yield...).  The primary lets the call wait in its
           kernel while another thread runs; the replay answers it from the log when the
           schedule comes back to it.
``epoch``  it completed a call that ends an epoch (so a thread that makes calls cannot
           starve the others).
``exit``   it is gone (or, for the first thread, it called ``exit`` while others live on).

Processes that share writable memory (``multiprocessing``'s locks and queues: a
``MAP_SHARED`` mapping made before a fork) race on it just as threads do.  A process forked
while its process has such a mapping (:func:`shares_writable`) joins its parent's domain:
one of them runs at a time, switched at the same points.

A task that never makes a call while others are ready cannot be switched: the engine
detects it (``Engine.spin_limit``) and stops with an error naming the task.  One that waits
in a write into a pipe a process of its domain reads (a reader the schedule holds) gets room:
the pipe grows (``Engine._wait``), or, past :data:`MAX_PIPE`, an error.  (A write that waits
for a reader outside the program just waits.)

At each point the primary picks the next thread (:func:`first_ready`, round robin among
the threads ready to run; if none is, the first one to become ready) and logs a
``switch`` record when it is another thread; the replay follows those records exactly
(:class:`Schedule`).  How a held thread is resumed is the engine's (``Task.held``).
"""
from __future__ import annotations

import collections
import fcntl
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
    """One process's threads.

    Invariant: ``threads`` holds the threads its domain schedules, in creation order (the
    leader first while it lives)."""

    __slots__ = ("leader", "threads", "exiting", "dom")

    def __init__(self, leader: "Task", dom: "Domain | None" = None):
        self.leader = leader
        self.threads: list[Task] = [leader]
        self.exiting = False
        """exit_group, a fatal signal: every thread is let go, none is scheduled any more."""
        self.dom = Domain(leader) if dom is None else dom
        if dom is not None:
            dom.tasks.append(leader)
            dom.shared = True

    @property
    def free(self) -> bool:
        """One thread (or all of them on their way out)."""
        return self.exiting or len(self.threads) < 2


class Domain:
    """The tasks scheduled as one (a process's threads, and the processes that share memory
    with it), and which of them may run in user space.

    Invariants: ``tasks`` holds its processes' ``threads``, in creation order; at most
    ``running`` executes program code; every other task is stopped with its resumption kept
    in its ``Task.held``, or waits in its kernel in a blocking call, or is about to report
    its first stop, or belongs to an exiting process (let go).  ``running`` is None only
    while the primary waits for the first task to become ready (``after`` says after which
    switch point)."""

    __slots__ = ("leader", "tasks", "running", "after", "seen", "shared")

    def __init__(self, leader: "Task"):
        self.leader = leader
        """The first process's first thread: its id names the domain's schedule in the log."""
        self.tasks: list[Task] = [leader]
        self.running: Task | None = leader
        self.after: tuple[Task, int, str] | None = None
        """While ``running`` is None: the (task, seq, point) the next task runs after."""
        self.seen = 0.0
        """When the running task last stopped (time.monotonic): a spin is measured from it."""
        self.shared = False
        """It holds several processes."""

    @property
    def free(self) -> bool:
        """Nothing to schedule: fewer than two tasks that are not on their way out."""
        n = 0
        for t in self.tasks:
            if not t.group.exiting:
                n += 1
                if n > 1:
                    return False
        return True

    def ready(self) -> list["Task"]:
        """The tasks held stopped, ready to run when scheduled."""
        return [t for t in self.tasks if t.held is not None and not t.group.exiting]

    def by_vtid(self, vtid: int) -> "Task | None":
        for t in self.tasks:
            if t.vpid == vtid:
                return t
        return None


def first_ready(task: "Task", at: str) -> "Task | None":
    """The primary's choice at switch point ``at`` of ``task`` (the running task): the next
    ready task after it in creation order, round robin.  If none is ready: at an epoch
    boundary ``task`` goes on; in a blocking call or at its exit, None (the first task to
    become ready runs, maybe ``task`` itself when its call returns)."""
    tasks = task.group.dom.tasks
    i = tasks.index(task) if task in tasks else -1
    for t in tasks[i + 1:] + tasks[:i + 1]:
        if t.held is not None and t is not task and not t.group.exiting:
            return t
    return task if at == "epoch" else None


def shares_writable(pid: int) -> bool:
    """Whether process ``pid`` has writable memory mapped shared (a child it forks now shares
    it): its /proc maps.  The same on both replicas: anonymous shared memory is real on
    both, a file's shared writable mapping is the replay's own copy, mapped shared."""
    try:
        with open(f"/proc/{pid}/maps", "rb") as f:
            maps = f.read()
    except OSError:
        return False
    return b" rw-s " in maps or b" rwxs " in maps


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
      decided by timing that no log records.  Threads of one process, and processes forked
      sharing its memory, are scheduled as one (:class:`Domain`); a shared futex (no
      FUTEX_PRIVATE_FLAG) in a MAP_SHARED mapping of a process scheduled alone, while the
      program has another process, is the sign of a lock with a process that mapped it
      on its own (``shm_open`` in both)."""
    if op & _FUTEX_CMD_MASK in _FUTEX_PI_OPS:
        raise UnsupportedError("futex on a priority-inheritance lock (a PTHREAD_PRIO_INHERIT mutex) cannot be "
                               "replicated: use a default mutex", syscall="futex")
    if op & FUTEX_PRIVATE_FLAG or task.group.dom.shared or len({t.tgid for t in task.engine.tasks.values()}) < 2:
        return   # (processes forked sharing the memory are scheduled as one: Domain)
    if _in_shared_mapping(task.pid, addr):
        raise UnsupportedError("futex on memory shared between processes that each mapped it on their own (a "
                               "process-shared lock or semaphore in a file both map): it cannot be replicated "
                               "(memory mapped shared before a fork can, as multiprocessing's: docs/threads.md)",
                               syscall="futex")


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
        d = g.dom if g is not None else None
        if d is None or g.exiting or d.free or d.running is task:
            if d is not None and d.running is task:
                d.seen = time.monotonic()   # it runs program code from now (a call without exit stop too)
            pt.resume(task.pid, sig, to_exit=to_exit)
            return
        if d.running is None and task in d.tasks:   # a live switch waits for the first ready task
            frm, seq, at = d.after
            d.after = None
            self._switch_to(frm, seq, at, task)
            pt.resume(task.pid, sig, to_exit=to_exit)
            return
        task.held = (sig, to_exit)

    def _switch(self, task: Task, at: str) -> None:
        """``task`` (running) reached a switch point: the policy says who runs next."""
        d = task.group.dom
        seq = task.seq
        nxt = self.policy.next_thread(task, at)
        if nxt is None:
            d.running, d.after = None, (task, seq, at)
        elif nxt is not task:
            self._switch_to(task, seq, at, nxt)
            self._run(nxt)

    def _switch_to(self, task: Task, seq: int, at: str, to: Task) -> None:
        d = task.group.dom
        d.running = to
        d.seen = time.monotonic()
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
        """``task`` is gone from its domain's schedule: if it was running, the next one runs."""
        g = task.group
        d = g.dom
        running = d.running is task
        g.threads.remove(task)
        d.tasks.remove(task)
        if not running:
            return
        if d.free:   # one task left (or none): it runs, no switch to log
            # (after an exit_group the kernel is killing its process's threads where they are
            # held: let them die there)
            d.running = next((t for t in d.tasks if not t.group.exiting), d.tasks[0] if d.tasks else None)
            if d.running is not None and d.running.held is not None and not d.running.group.exiting:
                self._run(d.running)
        else:
            self._switch(task, "exit")

    def _wait(self):
        """waitpid for the next stop.  While a task runs and others wait to run, no longer than
        the spin limit (a task that makes no call cannot be switched: say so, never hang); while
        it waits in a write into a pipe its domain reads, no longer than :data:`PIPE_PATIENCE`:
        then the pipe is given room (:func:`_give_room`), or the run stops saying why."""
        while True:
            spinner = self._spinner()
            if spinner is None:
                return pt.wait_any()
            t = spinner.running
            patience = self.spin_limit if t.call is None else min(PIPE_PATIENCE, self.spin_limit)
            left = spinner.seen + patience - time.monotonic()
            if left > 0:
                # An alarm that fires just as waitpid returns loses that status: harmless, the
                # error or the room that follows lets the run go on or end.
                old = _signal.signal(_signal.SIGALRM, _spin_alarm)
                _signal.setitimer(_signal.ITIMER_REAL, left)
                try:
                    return pt.wait_any()
                except _SpinAlarm:
                    pass
                finally:
                    _signal.setitimer(_signal.ITIMER_REAL, 0)
                    _signal.signal(_signal.SIGALRM, old)
            waiting = ", ".join(str(w.vpid) for w in spinner.ready())
            if t.call is None:
                raise UnsupportedError(
                    f"{_who(t)} ran {self.spin_limit:g} s without a system call while thread(s) {waiting} waited "
                    "to run: a thread that spins on memory cannot be replicated (threads are switched only at "
                    "system calls: docs/threads.md; a longer limit: TFT_SPIN_LIMIT=SECONDS)", pid=t.vpid, seq=t.seq)
            pipe = _pipe_read_inside(spinner)
            if pipe is None:
                spinner.seen = _NEVER   # it waits for the world, not for its domain: not watched until it stops
            elif _give_room(*pipe):
                spinner.seen = time.monotonic()
            else:
                raise UnsupportedError(
                    f"{_who(t)} waits in {t.call.name} into a full pipe that task(s) {waiting}, held by its "
                    f"schedule, read, and the pipe cannot grow past {MAX_PIPE >> 20} MiB: a message that large "
                    "between processes that share memory cannot be replicated (docs/threads.md)",
                    pid=t.vpid, seq=t.seq, syscall=t.call.name)

    def _spinner(self) -> "Domain | None":
        """The domain whose running task has held it longest while others wait (watched ones
        only), or None."""
        spinner = None
        if self.domains and threading.current_thread() is threading.main_thread():
            for d in self.domains:
                if d.seen < _NEVER and not d.free and d.running is not None and _stuck(d.running) and d.ready():
                    if spinner is None or d.seen < spinner.seen:
                        spinner = d
        return spinner


def _who(t: "Task") -> str:
    return f"thread {t.vpid} of process {t.group.leader.vpid}" if t is not t.group.leader else f"process {t.vpid}"


#: A task of a domain that waits this long (s) in a write into a pipe its domain reads gets room.
PIPE_PATIENCE = 0.05
#: A pipe is given room up to this many bytes.
MAX_PIPE = 64 << 20

_NEVER = float("inf")


def _stuck(t: "Task") -> bool:
    """Whether running task ``t`` may hold its schedule: in program code, or in the kernel in
    a call that is no switch point (one that blocks gave way already; a parked one is ours)."""
    c = t.call
    return c is None or not (c.parked or c.emulated or (c.entry is not None and c.entry.blocks))


def _pipe_read_inside(d: Domain) -> tuple[int, int] | None:
    """(process id, fd) of the pipe the running task's call writes into, if a process of its
    domain holds a read end of it (the reader may be held by the schedule); else None."""
    t = d.running
    entry = t.call.entry
    if entry is None or entry.fd_arg is None or not entry.writes:
        return None
    fd = t.call.args[entry.fd_arg]
    try:
        ident = os.readlink(f"/proc/{t.tgid}/fd/{fd}")
    except OSError:
        return None
    if not ident.startswith("pipe:"):
        return None
    for tgid in {u.tgid for u in d.tasks}:
        try:
            fds = os.listdir(f"/proc/{tgid}/fd")
        except OSError:
            continue
        for other in fds:
            try:
                if os.readlink(f"/proc/{tgid}/fd/{other}") != ident:
                    continue
                with open(f"/proc/{tgid}/fdinfo/{other}") as f:
                    flags = next(int(line.split()[1], 8) for line in f if line.startswith("flags:"))
            except (OSError, StopIteration, ValueError):
                continue
            if flags & 3 == os.O_RDONLY:
                return t.tgid, fd
    return None


def _give_room(tgid: int, fd: int) -> bool:
    """Make process ``tgid``'s pipe ``fd`` hold four times as much (a writer waiting in it goes
    on); False if it cannot grow (:data:`MAX_PIPE`, or the kernel's limits)."""
    try:
        w = os.open(f"/proc/{tgid}/fd/{fd}", os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        size = fcntl.fcntl(w, fcntl.F_GETPIPE_SZ)
        if size >= MAX_PIPE:
            return False
        try:
            fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, min(size * 4, MAX_PIPE))
        except OSError:
            return False
        return fcntl.fcntl(w, fcntl.F_GETPIPE_SZ) > size
    finally:
        os.close(w)


class _SpinAlarm(Exception):
    """The spin limit passed while waiting for a stop (raised by the SIGALRM handler)."""


def _spin_alarm(signo, frame):
    raise _SpinAlarm()
