"""The engine: one loop — stop, policy decision, resume — over every task of a program.

The engine owns the per-task state machine (pre-exec, running, in a call,
interrupted, gone) and the mechanics every policy shares: skipping a call and
setting its result, redirecting a call to a stand-in, injecting a signal with
its original siginfo, emulating rdtsc, hiding the vDSO.  A :class:`Policy`
decides *what* happens; the engine decides *how*.  A policy that overrides
nothing is a valid pass-through.  A policy answers in typed values
(:class:`SignalAction`, :class:`Tsc`) and keeps what it knows of each process in
its own object (``Task.policy_state``): the engine never asks which policy it runs.

:meth:`Engine.step` handles exactly one stop and returns a :class:`Status`; the
CLI loops on it, the notebook's stepper calls it one at a time.
"""
from __future__ import annotations

import contextlib
import enum
import errno
import os
import signal as _signal
import struct
import time
from typing import Any, NamedTuple

from . import sched, syscalls
from ._backend import core as _core
from ._backend import ptrace as pt
from ._process import reap_exited
from .errors import ProgramError, TftError, TracingError, UnsupportedError
from .guest import Call, Task
from .strace import format_args
from .trace import EventWriter, TraceEvent

AT_NULL, AT_IGNORE, AT_RANDOM, AT_SYSINFO_EHDR = 0, 1, 25, 33
SI_TKILL = -6
SI_KERNEL = 0x80
_FAULT_SIGNALS = frozenset((_signal.SIGSEGV, _signal.SIGBUS, _signal.SIGILL, _signal.SIGFPE, _signal.SIGTRAP))
#: Signals whose default action is to do nothing (so an un-handled one may be deferred freely).
_DEFAULT_IGNORED = frozenset((_signal.SIGCHLD, _signal.SIGURG, _signal.SIGWINCH, _signal.SIGCONT))
_STOP_SIGNALS = frozenset((_signal.SIGSTOP, _signal.SIGTSTP, _signal.SIGTTIN, _signal.SIGTTOU))
NR_EXIT, NR_EXIT_GROUP, NR_FUTEX = syscalls.number("exit"), syscalls.number("exit_group"), syscalls.number("futex")


class SignalAction(enum.Enum):
    """What a policy does with an asynchronous signal (:meth:`Policy.on_signal`); the value
    is the trace's ``action`` for its arrival."""

    DELIVER = "delivered"
    """Now, where it arrived (and it interrupts the call in progress, if any)."""
    DEFER = "deferred"
    """Held back by the policy, which delivers it later (``Task.inject_signal``)."""
    MERGE = "merged"
    """The same standard signal is held back already: one delivery, as in the kernel."""
    DROP = "dropped"
    """Not the program's (a backup's own: the log says which signals it gets)."""


class Tsc(NamedTuple):
    """The time-stamp counter a policy answers an rdtsc/rdtscp with (:meth:`Policy.on_rdtsc`)."""

    value: int
    """The 64-bit counter value."""
    aux: int = 0
    """What rdtscp puts in ecx (the processor id)."""
    action: str = "emulated"
    """The trace's ``action``: ``logged`` (read here, logged), ``emulated`` (from the log or a
    clock, not logged)."""


class Policy:
    """What to do at each event.  Every hook has a pass-through default."""

    replica = "tracer"
    #: Trap every syscall (an observer: ``tft trace``); else all but those the table runs untrapped.
    trap_all: bool = False
    #: Whether programs with several threads run under this policy (else clone of a thread is
    #: refused with a clear error).
    threads = True
    #: Who decides the thread schedule (:mod:`tft_lab.sched`): ``live`` (a blocking call waits in
    #: the kernel while the next ready thread runs: :meth:`next_thread` picks it) or ``log``
    #: (the policy follows a logged schedule; at a blocking call it calls ``Task.yield_to``).
    schedule = "live"

    def new_task_state(self) -> Any:
        """The state only this policy keeps about a new process (``Task.policy_state``), of the
        policy's own type; the engine makes one per task and never looks inside it."""
        return None
    def on_start(self, engine: "Engine") -> None: ...
    def on_exec(self, task: Task, at_random_addr: int | None) -> None: ...
    def on_entry(self, task: Task, call: Call) -> None:
        task.run(to_exit=True)
    def on_exit(self, task: Task, call: Call) -> None: ...
    def after_call(self, task: Task, call: Call) -> None:
        """The call is counted (``task.seq`` is past it); signals may be injected here."""
    def on_signal(self, task: Task, signo: int, siginfo: bytes) -> SignalAction:
        """An asynchronous signal arrived (not a fault of the program's own instruction, not one
        the policy injected).  The engine delivers it only for ``DELIVER``."""
        return SignalAction.DELIVER
    def held_signals(self, task: Task) -> list[int]:
        """The signals the policy holds back for ``task``, not delivered yet (the trace shows
        them on every call row)."""
        return []
    def hold_signal(self, task: Task, signo: int, siginfo: bytes) -> None:
        """``signo`` arrived while the supervisor ran a call of its own in ``task``
        (``Task.inject``), where it cannot be delivered: keep it for later or drop it."""
    def on_rdtsc(self, task: Task, rdtscp: bool) -> Tsc:
        """The program read the time-stamp counter (which traps): what it reads."""
        return Tsc(time.monotonic_ns())
    def on_fork(self, parent: Task, child: Task) -> None: ...
    def next_thread(self, task: Task, at: str) -> Task | None:
        """``task``, the running thread, reached a switch point (``epoch``, ``block``, ``exit``):
        the thread that runs next (``task`` itself: no switch), or None: the first thread that
        becomes ready (a live schedule only)."""
        return sched.first_ready(task, at)
    def on_switch(self, task: Task, seq: int, at: str, to: Task) -> None:
        """Thread ``to`` runs after ``task``'s switch point ``at`` at ``seq`` (logged by a primary)."""
    def schedules_live(self, task: Task) -> bool:
        """Whether ``task``'s threads are scheduled live now (``schedule``; a backup: once live)."""
        return self.schedule == "live"
    def on_task_exit(self, task: Task, code: int | None, sig: int | None) -> None: ...
    def on_finish(self, engine: "Engine") -> None: ...
    def lane(self, task: Task) -> "RecordLane | ReplayLane | None":
        """Whether the compiled lane may handle ``task``'s answered calls (:mod:`tft_lab.answers`)
        by itself from this stop on, as this policy would, and with what; None: every stop
        comes to the policy.  Asked only while the program is one task of one thread and
        nobody watches its trace; a call the lane handled is never seen by the policy."""
        return None


class RecordLane(NamedTuple):
    """A recording policy's lane (:meth:`Policy.lane`): answer the calls as ``Answerer.answer``
    would and log them as their sys records."""

    flags: int
    """``answers.LANE_PID_OK | LANE_TIME_OK | LANE_STAT_OK``: which answers are the kernel's."""
    ppid: int
    pgrp: int
    sid: int
    sink: Any
    """Where the records go: ``sink.write_frames(frames)``."""


class ReplayLane(NamedTuple):
    """A replaying policy's lane (:meth:`Policy.lane`): answer the calls from their records."""

    records: list
    """``(nr, args, res, addr, blob)`` of the next logged calls, in order (``addr`` 0 and
    ``blob`` None: no out-buffer)."""
    taken: Any
    """``taken(n)``: the lane used the first ``n`` of them."""


class Status(NamedTuple):
    """What one :meth:`Engine.step` did."""
    pid: int
    what: str      # "syscall", "exit-stop", "signal", "exec", "fork", "exited", "other", "done"
    event: TraceEvent | None


class Engine(sched.Scheduling):
    """Runs one program (and its children) under ptrace, asking ``policy`` at every stop."""

    def __init__(self, policy: Policy, *, epoch: int = 64, keep_trace: bool = True, cpu: int | None = -1,
                 spin_limit: float | None = None):
        if epoch < 1:
            raise ValueError("epoch length must be at least 1")
        self.policy = policy
        self.epoch = epoch
        self.tasks: dict[int, Task] = {}
        self.root: Task | None = None
        self.root_status: int | None = None
        self.keep_trace = keep_trace
        self.events: list[TraceEvent] = []
        self.t0 = time.monotonic_ns()
        self._errfd: int | None = None
        self.spawn_error: str | None = None
        self.signals: tuple[int, int] = (0, 0)   # blocked, ignored: what the program started with
        self.stopped_calls = 0
        self.lane_calls = 0   # of those, calls the compiled lane answered (Policy.lane)
        # Whether the lane is worth trying at the next stop: an answered call was seen since the
        # lane last found none (a program that makes none never pays for asking the policy).
        self._lane_hot = True
        self.cpu = cpu   # -1: the first CPU we may use; None: do not pin
        self.trace_file: EventWriter | None = None   # the event stream, if one was asked for
        self.gate = None         # called after every event while the task is stopped (live stepping)
        self.domains: list[sched.Domain] = []   # those that have had several tasks to schedule
        # seconds a thread may run without a call while others wait
        self.spin_limit = sched.spin_limit_from_env() if spin_limit is None else spin_limit

    @contextlib.contextmanager
    def watched(self, events: str | None = None, control_fd: int | None = None, on_fail=None):
        """Stream the events to the file ``events`` (JSON lines) and/or let a live stepper on
        the socket ``control_fd`` pause the program after each one (``on_fail``: what its
        "fail here" does; default: kill the program).  Both are closed on the way out."""
        if events:
            self.trace_file = EventWriter(events)
        if control_fd is not None:
            from .control import gate_from_fd

            self.gate = gate_from_fd(control_fd, on_fail or self.kill_all)
        try:
            yield self
        finally:
            if self.trace_file is not None:
                self.trace_file.close()
                self.trace_file = None
            if self.gate is not None:
                self.gate.close()
                self.gate = None

    @property
    def tracing(self) -> bool:
        """Whether anyone looks at the events (a trace kept, streamed, or a stepper)."""
        return self.keep_trace or self.trace_file is not None or self.gate is not None

    # -- lifecycle ---------------------------------------------------------------------
    def start(self, argv: list[str], env: dict[str, str] | None = None, cwd: str | None = None,
              path: str | None = None, signals: tuple[int, int] | None = None) -> Task:
        """Spawn ``argv`` traced; it is stopped until the first :meth:`step`.  ``signals``: the
        sets it starts with blocked and ignored (a recording's), else ours (see ``pt.spawn``);
        :attr:`signals` holds the sets it got."""
        env = dict(os.environ if env is None else env)
        cwd = cwd or os.getcwd()
        if path is None:
            path = pt.find_program(argv, env, cwd)
        else:
            pt.check_program(path)
        self.path = path
        self.argv, self.env, self.cwd = list(argv), env, cwd
        pt.set_subreaper()
        if self.cpu is not None:
            # Tracer and tracee on one CPU: a stop round trip costs ~5 us instead of ~15 (measured here: benchmarks/README.md).
            allowed = sorted(os.sched_getaffinity(0))
            cpu = allowed[0] if self.cpu < 0 or self.cpu not in allowed else self.cpu
            os.sched_setaffinity(0, {cpu})
        trap_all = self.policy.trap_all
        pid, self._errfd = pt.spawn(path, list(argv), env, cwd, [] if trap_all else syscalls.untrapped(),
                                    None if trap_all else syscalls.untrapped_if(), signals)
        task = Task(self, pid, None, None)
        task.state = "pre-exec"
        task.group = sched.ThreadGroup(task)
        self.tasks[pid] = task
        self.root = task
        try:
            self.signals = pt.signal_sets(pid)
            self.policy.on_start(self)
            pt.resume(pid)
        except BaseException:
            self.kill_all()   # never leave the stopped child behind
            raise
        return task

    def run(self) -> int:
        """Step until every task is gone; return the root's exit status (128+signal if killed)."""
        try:
            while self.tasks:
                self.step()
        except BaseException:
            self.kill_all()
            raise
        # Children the program never waited for: each exit was reported to us as their tracer,
        # but they stay zombies of their parent, and are ours once it is gone.  Reap them now,
        # not whoever is above us after we exit (200 of them took init 1-3 s).
        reap_exited()
        self.policy.on_finish(self)
        if self.spawn_error is not None:
            raise ProgramError(f"{self.argv[0]}: cannot execute: {self.spawn_error}")
        return self.root_status if self.root_status is not None else 1

    def kill_all(self) -> None:
        """Kill every tracee and reap them all: nothing is left behind."""
        for pid in list(self.tasks):
            pt.kill_quietly(pid)
        deadline = time.monotonic() + 5
        while self.tasks and time.monotonic() < deadline:
            w = pt.wait_any(block=True)
            if w is None:
                break
            pid, status = w
            if os.WIFEXITED(status) or os.WIFSIGNALED(status):
                t = self.tasks.pop(pid, None)
                if t and t.mem:
                    t.mem.close()
        self.tasks.clear()
        reap_exited()   # orphans we adopted as a subreaper

    # -- the loop ----------------------------------------------------------------------
    def step(self) -> Status:
        """Wait for one stop, handle it, resume the task.  Never leaves a task stopped (except
        threads held by the schedule, :mod:`tft_lab.sched`)."""
        w = self._next_stop()
        if w is None:
            self.tasks.clear()
            return Status(0, "done", None)
        pid, status = w
        task = self.tasks.get(pid)
        if task is None:
            if os.WIFEXITED(status) or os.WIFSIGNALED(status):
                return Status(pid, "other", None)  # an orphan we adopted, or a child we never knew
            task = Task(self, pid, None, None)     # a new child whose fork event we have not seen
            self.tasks[pid] = task
        elif self.domains and task.group is not None and task.group.dom.running is task:
            task.group.dom.seen = time.monotonic()
        try:
            stop = pt.decode(pid, status)
        except TracingError:
            if not os.path.exists(f"/proc/{pid}"):
                return Status(pid, "other", None)  # died under us (SIGKILL); its exit follows
            raise
        try:
            return self._dispatch(task, stop)
        except TftError as e:
            if e.pid is None:
                e.pid, e.seq, e.epoch = task.vpid, task.seq, task.epoch
                e.syscall = e.syscall or (task.call.name if task.call else None)
            raise

    def _next_stop(self) -> tuple[int, int] | None:
        """The next stop for Python to handle, after those the compiled lane handled by itself:
        the answered calls of a program that is one task, with nobody watching its trace
        (:meth:`Policy.lane`)."""
        while True:
            lane = self._lane_args()
            if lane is None:
                return self._wait()
            task, how = lane
            if isinstance(how, RecordLane):
                frames, pid, status = _core.lane(task.pid, task.vpid, task.seq, self.epoch, how.flags, how.ppid,
                                                 how.pgrp, how.sid, task.mem.fd)
                n = len(frames)
                if n:
                    how.sink.write_frames(frames)
            else:
                n, pid, status = _core.replay_lane(task.pid, task.seq, self.epoch, task.mem.fd, how.records)
                if n:
                    how.taken(n)
            if n:
                task.seq += n
                self.stopped_calls += n
                self.lane_calls += n
            else:
                self._lane_hot = False   # cold until Python meets an answered call again
            if pid:
                return (pid, status) if pid > 0 else None

    def _lane_args(self):
        if not self._lane_hot or _core is None or len(self.tasks) != 1 or self.domains or self.tracing:
            return None
        task = next(iter(self.tasks.values()))
        # one process of one thread (not a thread whose leader has exited: its pid is not its
        # process's), between two calls, with no signal of ours on its way
        if (task.state != "running" or task.pid != task.tgid or len(task.group.threads) != 1
                or task.call is not None or task.interrupted is not None or task.injecting
                or task.mem is None or task.mem.fd < 0):
            return None
        how = self.policy.lane(task)
        if how is None:
            self._lane_hot = False
            return None
        return task, how

    def _dispatch(self, task: Task, stop) -> Status:
        if isinstance(stop, pt.SeccompStop):
            return self._on_entry(task, stop)
        if isinstance(stop, pt.SyscallExitStop):
            return self._on_exit(task, stop.result)
        if isinstance(stop, pt.SignalStop):
            return self._on_signal(task, stop.sig)
        if isinstance(stop, pt.ForkStop):
            return self._on_fork(task, stop.child)
        if isinstance(stop, pt.ExecStop):
            return self._on_exec(task)
        if isinstance(stop, pt.Exited):
            return self._on_gone(task, stop)
        self._resume(task)
        return Status(task.pid, "other", None)

    def _resume(self, task: Task, sig: int = 0) -> None:
        to_exit = task.call is not None and task.call.to_exit
        self._go(task, sig, to_exit)

    def emit(self, task: Task, kind: str, syscall: str, args: str, result: int, cls: str,
              action: str, signal: str = "", seq: int | None = None, wait_ns: int = 0) -> TraceEvent | None:
        if not self.tracing:
            return None
        seq = task.seq if seq is None else seq
        pid = task.group.leader.vpid if task.group is not None else task.vpid
        ev = TraceEvent(self.policy.replica, pid, seq, max(seq, 0) // self.epoch, kind, syscall, args, result,
                        cls, action, signal, time.monotonic_ns() - self.t0, wait_ns, task.vpid)
        if self.keep_trace:
            self.events.append(ev)
        if self.trace_file is not None:
            self.trace_file.write(ev)
        if self.gate is not None:
            self.flush_trace()   # the stepper shows this event while we wait for its command
            self.gate(ev, [_signame(s) for s in self.policy.held_signals(task)])
        return ev

    def flush_trace(self) -> None:
        """Make the streamed events visible now (before this supervisor may wait a while)."""
        if self.trace_file is not None:
            self.trace_file.flush()

    # -- syscall entry -----------------------------------------------------------------
    def _on_entry(self, task: Task, stop: pt.SeccompStop) -> Status:
        if task.state == "pre-exec":
            task.call = None
            pt.resume(task.pid)
            return Status(task.pid, "other", None)
        if task.call is not None and task.call.redo:   # the same call, made again (redo_as)
            task.call.redo = False
            pt.resume(task.pid, 0, to_exit=True)
            return Status(task.pid, "syscall", None)
        itr = task.interrupted
        if itr is not None:
            if stop.nr in (syscalls.NR_RESTART_SYSCALL, itr.nr):
                # The kernel restarts the interrupted call (no handler ran): the same logical call.
                task.interrupted = None
                task.call = itr
                d = task.group.dom
                if (itr.to_exit and itr.entry is not None and itr.entry.blocks and not d.free and d.running is task
                        and self.policy.schedules_live(task)):
                    # It may wait in the kernel again: it gives way again at the same point (the
                    # replay asks again there: Replayer.gives_way), or it would hold the schedule.
                    pt.resume(task.pid, 0, to_exit=True)
                    self._switch(task, "block")
                else:
                    self._go(task, 0, itr.to_exit)
                return Status(task.pid, "syscall", None)
            self._close_interrupted(task, -errno.EINTR)
        call = Call(stop.nr, stop.args, task.seq)
        task.call = call
        entry = call.entry
        if entry is not None and entry.answered:
            self._lane_hot = True
        if entry is not None and entry.cls == "unsupported" and not entry.enosys and not self.policy.trap_all:
            raise UnsupportedError(f"{entry.name} is not supported by tft_lab" + ("" if entry.name in syscalls.TABLE else
                                   " (a syscall it has no entry for: docs/syscalls.md)"), syscall=entry.name)
        if entry is not None and entry.forks:
            task.clone_flags = flags = self._clone_flags(task, call) if call.name in ("clone", "clone3") else 0
            sched.check_clone(flags, call.name)
            if flags & sched.CLONE_THREAD and not self.policy.threads:
                raise UnsupportedError(f"threads are not supported yet by the {self.policy.replica} (the program "
                                       "called clone with CLONE_THREAD; tft record, replay and run support "
                                       "threads)", syscall=call.name)
        elif call.nr == NR_FUTEX:
            sched.check_futex(task, call.args[0], call.args[1])
        elif entry is not None and entry.execs and not task.group.free:
            raise UnsupportedError("execve in a process with several threads is not supported", syscall=call.name)
        return self._decide(task, call)

    def _decide(self, task: Task, call: Call) -> Status:
        self.policy.on_entry(task, call)
        if call.yielded is not None:   # the logged schedule runs another thread here
            nxt, call.yielded = call.yielded, None
            task.held = "entry"
            self._switch_to(task, task.seq, "block", nxt)
            self._run(nxt)
            return Status(task.pid, "switch", None)
        g = task.group
        d = g.dom
        if not g.free and call.entry is not None and call.entry.noreturn:
            if call.nr == NR_EXIT_GROUP:
                # The kernel kills the other threads where they are (held ones never run again):
                # letting them go on here would race with their death, differently on each replica.
                g.exiting = True
            elif task is g.leader and d.running is task:
                # The first thread ends, others live on: its exit is reported only after theirs.
                self._leave(task)
        if call.parked:
            return Status(task.pid, "parked", None)  # the policy resumes it later (retry)
        if call.rewound:   # not entered: the program runs on from just before its syscall instruction
            task.call = None
            self._go(task)
            return Status(task.pid, "rewound", None)
        if call.emulated and not call.to_exit:
            return self._complete(task, call)
        blocks = (call.entry is not None and call.entry.blocks and not call.emulated and not d.free
                  and d.running is task and self.policy.schedules_live(task))
        if blocks and not call.entry.noreturn:
            call.to_exit = True   # another thread runs while it waits: its return is a stop to hold it at
        if not call.to_exit:  # runs without an exit stop (exit_group, or a cheap pass-through)
            self.policy.on_exit(task, call)
            task.call = None
            ev = self._count(task, call)
            self._go(task)
            return Status(task.pid, "syscall", ev)
        pt.resume(task.pid, 0, to_exit=True)
        if blocks:
            self._switch(task, "block")   # it may wait in the kernel: another thread runs meanwhile
        return Status(task.pid, "syscall", None)

    def retry(self, task: Task) -> Status:
        """Ask the policy again about a call it parked; resumes the task unless parked again."""
        call = task.call
        call.parked = False
        return self._decide(task, call)

    @staticmethod
    def _clone_flags(task: Task, call: Call) -> int:
        if call.name == "clone":
            return call.args[0]
        try:
            return task.mem.read_u64(call.args[0])
        except TracingError:
            return 0

    # -- syscall exit ------------------------------------------------------------------
    def _on_exit(self, task: Task, result: int) -> Status:
        call = task.call
        if call is None:  # an exit stop we did not ask for (e.g. after exec in pre-exec)
            self._go(task)
            return Status(task.pid, "other", None)
        if result in syscalls.RESTART_CODES and not call.emulated:
            # Interrupted by a signal: the next stop tells whether it restarts or a handler runs.
            call.result = result
            task.interrupted = call
            task.call = None
            self._go(task)
            return Status(task.pid, "exit-stop", None)
        call.result = result
        return self._complete(task, call)

    def _complete(self, task: Task, call: Call) -> Status:
        """The call is over (ran, or emulated): let the policy log/inject, count it, resume."""
        self.policy.on_exit(task, call)
        if call.redo:
            pt.resume(task.pid)
            return Status(task.pid, "syscall", None)
        ev = self._count(task, call)
        task.call = None
        self.policy.after_call(task, call)
        g = task.group
        if g is not None and g.dom.running is task and task.seq % self.epoch == 0 and not g.dom.free:
            self._switch(task, "epoch")
        self._go(task)
        return Status(task.pid, "syscall", ev)

    def _count(self, task: Task, call: Call) -> TraceEvent | None:
        self.stopped_calls += 1
        task.seq = call.seq + 1
        if not self.tracing:   # nobody looks: formatting the arguments would be most of this
            return None
        return self.emit(task, "syscall", call.name, _fmt_args(call), call.result, call.cls, call.action,
                         ",".join(_signame(s) for s in self.policy.held_signals(task)), seq=call.seq,
                         wait_ns=call.wait_ns)

    def _close_interrupted(self, task: Task, result: int) -> None:
        call = task.interrupted
        task.interrupted = None
        call.result = result
        saved, task.call = task.call, call
        self.policy.on_exit(task, call)
        self._count(task, call)
        task.call = saved

    # -- signals -----------------------------------------------------------------------
    def _on_signal(self, task: Task, sig: int) -> Status:
        if task.state == "new" and sig == _signal.SIGSTOP:
            # A new child's first stop.  It waits until its parent's fork event is handled,
            # so that the policy knows which process it is before it runs.
            task.state = "running" if task.parent is not None else "born"
            if task.parent is not None:
                self._go(task)
            return Status(task.pid, "other", None)
        if task.state == "pre-exec" and sig == _signal.SIGSEGV and self._emulate_tsc(task):
            return Status(task.pid, "other", None)
        if task.state == "pre-exec" or sig in _STOP_SIGNALS or sig == _signal.SIGCONT:
            self._resume(task, sig)
            return Status(task.pid, "signal", None)
        try:
            raw = pt.get_siginfo(task.pid)
        except TracingError:
            self._resume(task, 0)  # a group-stop, not a delivery
            return Status(task.pid, "other", None)
        info = pt.SigInfo.parse(raw)
        name = _signame(sig)
        if sig in task.injecting and info.code == SI_TKILL and info.pid == os.getpid():
            original = task.injecting.pop(sig)
            pt.set_siginfo(task.pid, original)
            if task.interrupted is not None:
                self._close_interrupted(task, task.interrupted.result)
            ev = self.emit(task, "signal", name, "", 0, "event", "delivered", "delivered",
                            seq=task.seq - 1)
            self._resume(task, sig)
            return Status(task.pid, "signal", ev)
        if sig == _signal.SIGSEGV and info.code == SI_KERNEL and self._emulate_tsc(task):
            return Status(task.pid, "signal", None)
        if sig in _FAULT_SIGNALS and info.code > 0:
            self._resume(task, sig)  # synchronous fault: happens on every replica by itself
            return Status(task.pid, "signal", None)
        action = self.policy.on_signal(task, sig, raw)
        deliver = action is SignalAction.DELIVER
        if deliver and task.interrupted is not None:
            self._close_interrupted(task, task.interrupted.result)
        ev = self.emit(task, "signal", name, "", 0, "event", action.value, "delivered" if deliver else "arrived",
                        seq=task.seq - 1)
        self._resume(task, sig if deliver else 0)
        return Status(task.pid, "signal", ev)

    def _emulate_tsc(self, task: Task) -> bool:
        if task.mem is None:
            task.mem = pt.Memory(task.pid)
        regs = pt.get_regs(task.pid)
        code = task.mem.read(regs.rip, 3)
        if code[:2] == b"\x0f\x31":
            rdtscp, length = False, 2
        elif code == b"\x0f\x01\xf9":
            rdtscp, length = True, 3
        else:
            return False
        if task.state == "pre-exec":  # our own set-up code, not the program: not logged
            tsc = Tsc(time.monotonic_ns() * 3)
        else:
            tsc = self.policy.on_rdtsc(task, rdtscp)
        value, aux = tsc.value, tsc.aux
        regs = pt.get_regs(task.pid)
        regs.rax = value & 0xFFFFFFFF
        regs.rdx = (value >> 32) & 0xFFFFFFFF
        if rdtscp:
            regs.rcx = aux & 0xFFFFFFFF
        regs.rip += length
        pt.set_regs(task.pid, regs)
        if task.state != "pre-exec":
            self.emit(task, "rdtsc", "rdtscp" if rdtscp else "rdtsc", "", value, "input", tsc.action,
                      seq=task.seq - 1)
        self._go(task)
        return True

    # -- processes ---------------------------------------------------------------------
    def _on_fork(self, parent: Task, child_pid: int) -> Status:
        child = self.tasks.get(child_pid)
        if child is None:
            child = Task(self, child_pid, None, parent)
            self.tasks[child_pid] = child
        child.parent = parent
        child.mem = pt.Memory(child_pid) if os.path.exists(f"/proc/{child_pid}") else None
        child.exec_count = parent.exec_count
        if parent.clone_flags & sched.CLONE_THREAD:
            child.group = parent.group
            child.group.threads.append(child)
            child.group.dom.tasks.append(child)
        elif not parent.clone_flags & sched.CLONE_VFORK and sched.shares_writable(child_pid):
            # It shares its parent's writable memory: the two are scheduled as one.
            child.group = sched.ThreadGroup(child, dom=parent.group.dom)
        else:
            child.group = sched.ThreadGroup(child)
        dom = child.group.dom
        if len(dom.tasks) > 1:
            if dom not in self.domains:
                self.domains.append(dom)
            dom.seen = time.monotonic()   # the spin watch starts now, not at the domain's birth
        self.policy.on_fork(parent, child)
        if child.state == "born":
            child.state = "running"
            self._go(child)
        self._resume(parent)
        return Status(parent.pid, "fork", None)

    def _on_exec(self, task: Task) -> Status:
        if task.mem is not None:
            task.mem.close()
        task.mem = pt.Memory(task.pid)
        first = task.state == "pre-exec"
        if first:
            task.state = "running"
            self.spawn_error = None
            if self._errfd is not None:
                pt.read_spawn_error(self._errfd)
                self._errfd = None
        task.exec_count += 1
        at_random = self._rewrite_auxv(task)
        self.policy.on_exec(task, at_random)
        self.emit(task, "exec", "execve", "", 0, "local", "ran", seq=task.seq)
        self._resume(task)
        return Status(task.pid, "exec", None)

    def _rewrite_auxv(self, task: Task) -> int | None:
        """Hide the vDSO (AT_SYSINFO_EHDR -> AT_IGNORE) so time calls are real syscalls;
        return the address of the 16 AT_RANDOM bytes."""
        mem = task.mem
        sp = pt.get_regs(task.pid).rsp
        argc = mem.read_u64(sp)
        p = sp + 8 * (argc + 2)
        while mem.read_u64(p) != 0:  # envp
            p += 8
        p += 8
        at_random = None
        for _ in range(64):
            a_type, a_val = struct.unpack("<QQ", mem.read(p, 16))
            if a_type == AT_NULL:
                break
            if a_type == AT_SYSINFO_EHDR:
                mem.write(p, struct.pack("<Q", AT_IGNORE))
            elif a_type == AT_RANDOM:
                at_random = a_val
            p += 16
        return at_random

    def _on_gone(self, task: Task, stop: pt.Exited) -> Status:
        self.tasks.pop(task.pid, None)
        if task.mem is not None:
            task.mem.close()
        if task.state == "pre-exec" and task is self.root and self._errfd is not None:
            self.spawn_error = pt.read_spawn_error(self._errfd) or "exited before exec"
            self._errfd = None
        task.state = "gone"
        if task.interrupted is not None:
            self._close_interrupted(task, task.interrupted.result)
        if task is self.root:
            self.root_status = stop.code if stop.code is not None else 128 + stop.killed_by
        self.policy.on_task_exit(task, stop.code, stop.killed_by)
        self.emit(task, "exit", "exit", "", stop.code if stop.code is not None else -stop.killed_by,
                   "local", "ran", seq=task.seq)
        g = task.group
        if g is not None and task in g.threads:
            if stop.killed_by or task is g.leader:
                g.exiting = True   # a fatal signal, or the whole process is done: the kernel kills the rest
            self._leave(task)
        return Status(task.pid, "exited", None)


def _signame(sig: int) -> str:
    try:
        return _signal.Signals(sig).name
    except ValueError:
        return f"SIG{sig}"


def _fmt_args(call: Call) -> str:
    n = call.entry.nargs if call.entry else 6
    return format_args(call.args[:max(n, 1)]) if call.args else ""
