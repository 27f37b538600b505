"""The guest handle: one traced process (:class:`Task`) and one of its calls (:class:`Call`).

A policy reaches the tracee only through a :class:`Task`: it reads registers and
memory, and decides the current call (run it, emulate it, redirect it, park it,
rewind it) through the methods below, whose docstrings state their
preconditions.  The engine owns the state machine that moves a task between
stops; this module owns what one stop may do.
"""
from __future__ import annotations

import os
from typing import Any

from . import syscalls
from ._backend import ptrace as pt
from .errors import TracingError

MASK64 = (1 << 64) - 1
_ARG_REGS = ("rdi", "rsi", "rdx", "r10", "r8", "r9")


def signed(v: int) -> int:
    v &= MASK64
    return v - (1 << 64) if v >> 63 else v


class Call:
    """One intercepted system call of one task, from its entry stop to its completion."""

    __slots__ = ("nr", "name", "args", "entry", "seq", "to_exit", "saved_args", "action", "result",
                 "emulated", "rec", "oseq", "note", "parked", "wait_ns", "rewound", "redo", "yielded")

    def __init__(self, nr: int, args: tuple, seq: int):
        self.nr = nr
        self.entry = syscalls.lookup(nr)
        self.name = self.entry.name if self.entry else syscalls.name_of(nr)
        self.args = args
        self.seq = seq
        self.to_exit = True
        self.saved_args = None
        self.action = "ran"
        self.result = 0
        self.emulated = False
        self.rec = None
        self.oseq = None
        self.note = ""
        self.parked = False
        self.wait_ns = 0
        self.rewound = False
        self.redo = False
        self.yielded: Task | None = None   # the thread the logged schedule runs before this call

    @property
    def cls(self) -> str:
        return self.entry.cls if self.entry else "local"


class Task:
    """The guest handle: one traced process as a policy sees it.

    Preconditions are stated per method; breaking one raises TracingError.
    """

    def __init__(self, engine, pid: int, vpid: int | None, parent: "Task | None"):
        # engine: the Engine that owns this task (not imported here: the engine imports us)
        self.engine = engine
        self.pid = pid
        self.vpid = vpid if vpid is not None else pid
        self.parent = parent
        self.state = "new"          # new -> (pre-exec) -> running -> gone
        self.mem: pt.Memory | None = None
        self.seq = 0                # completed logical calls
        self.call: Call | None = None
        self.interrupted: Call | None = None
        self.injecting: dict[int, bytes] = {}          # signals we tgkill'ed, awaiting delivery
        self.exec_count = 0                            # execs it made (a fork's child: its parent's)
        # Threads (sched.py): the process this thread belongs to, and how to resume the thread
        # while the schedule holds it: (signal, to_exit), or "entry" (its call undecided).
        self.group = None
        self.held: tuple[int, bool] | str | None = None
        self.clone_flags = 0                           # of the clone it is in (to know a thread's)
        # What only the policy reads and writes about this process: an object of the policy's
        # own type (recorder.PrimaryTaskState, replayer.ReplayTaskState, backup.BackupTaskState),
        # made by Policy.new_task_state.  The engine never looks inside.
        self.policy_state: Any = engine.policy.new_task_state()

    # -- reading -----------------------------------------------------------------------
    @property
    def epoch(self) -> int:
        return self.seq // self.engine.epoch

    def regs(self):
        """Registers (a python-ptrace user_regs_struct).  Precondition: the task is stopped."""
        return pt.get_regs(self.pid)

    def read(self, addr: int, size: int) -> bytes:
        return self.mem.read(addr, size)

    def write(self, addr: int, data: bytes) -> None:
        self.mem.write(addr, data)

    # -- deciding a call at its entry stop ---------------------------------------------
    def run(self, to_exit: bool = True) -> None:
        """Let the current call run for real; ``to_exit``: stop again at its exit."""
        self.call.to_exit = to_exit

    def emulate(self, result: int, outs=()) -> None:
        """Skip the current call: write ``outs`` [(addr, bytes)] and make it return ``result``.

        Precondition: at the call's entry stop.  Costs one GETREGS+SETREGS (no exit stop).
        """
        for addr, data in outs:
            self.mem.write(addr, data)
        regs = pt.get_regs(self.pid)
        regs.orig_rax = MASK64  # -1: the kernel skips the call
        regs.rax = result & MASK64
        pt.set_regs(self.pid, regs)
        c = self.call
        c.emulated = True
        c.to_exit = False
        c.result = result
        c.action = "emulated"

    def skip_to_exit(self) -> None:
        """Skip the current call but stop at its exit (to set restart state there)."""
        regs = pt.get_regs(self.pid)
        regs.orig_rax = MASK64
        pt.set_regs(self.pid, regs)
        self.call.emulated = True
        self.call.to_exit = True

    def redirect(self, nr: int, args: tuple) -> None:
        """Run syscall ``nr`` with ``args`` instead of the current call; the argument
        registers are restored at its exit (the syscall ABI preserves them)."""
        regs = pt.get_regs(self.pid)
        self.call.saved_args = tuple(getattr(regs, r) for r in _ARG_REGS)
        regs.orig_rax = nr
        for r, v in zip(_ARG_REGS, args):
            setattr(regs, r, v & MASK64)
        pt.set_regs(self.pid, regs)
        self.call.to_exit = True

    @property
    def tgid(self) -> int:
        """The real id of the process this thread belongs to (its first thread's)."""
        return self.group.leader.pid if self.group is not None else self.pid

    def yield_to(self, other: "Task") -> None:
        """At the entry of a blocking call, undecided: the schedule runs ``other`` first; this
        call is decided again (``Policy.on_entry``) when this thread is scheduled."""
        self.call.yielded = other

    def park(self) -> None:
        """Keep the task stopped at this entry until the policy calls ``engine.retry(task)``."""
        self.call.parked = True

    def redo_as(self, nr: int, args: tuple) -> None:
        """At the exit stop: make this same call again as syscall ``nr`` with ``args`` (e.g. a
        stand-in after a real open failed); its arguments are restored at its final exit."""
        regs = pt.get_regs(self.pid)
        if self.call.saved_args is None:
            self.call.saved_args = tuple(getattr(regs, r) for r in _ARG_REGS)
        regs.rax = nr
        regs.orig_rax = MASK64
        regs.rip -= 2
        for r, v in zip(_ARG_REGS, args):
            setattr(regs, r, v & MASK64)
        pt.set_regs(self.pid, regs)
        self.call.redo = True

    def rewind(self) -> None:
        """Undo entering the current call: the task resumes just before its syscall instruction,
        so a signal injected now is delivered there, and the call is made afresh afterwards."""
        regs = pt.get_regs(self.pid)
        regs.rax = regs.orig_rax     # what the syscall instruction will find again
        regs.orig_rax = MASK64       # the kernel skips the call it is entering
        regs.rip -= 2
        pt.set_regs(self.pid, regs)
        self.call.rewound = True

    def scratch(self, data: bytes) -> int:
        """Put ``data`` below the stack's red zone and return its address (valid during this call)."""
        regs = pt.get_regs(self.pid)
        addr = (regs.rsp - 128 - len(data) - 64) & ~15
        self.mem.write(addr, data)
        return addr

    def set_result(self, value: int, restart_nr: int | None = None) -> None:
        """At an exit stop: the value the program sees; with ``restart_nr`` also the syscall
        number the kernel restarts if a signal handler asks for it."""
        regs = pt.get_regs(self.pid)
        regs.rax = value & MASK64
        if restart_nr is not None:
            regs.orig_rax = restart_nr
        if self.call is not None and self.call.saved_args is not None:
            for r, v in zip(_ARG_REGS, self.call.saved_args):
                setattr(regs, r, v)
            self.call.saved_args = None
        pt.set_regs(self.pid, regs)

    def inject(self, nr: int, args: tuple = ()) -> int:
        """Make the program run syscall ``nr`` now, as if it had called it, and return its result.

        Precondition: at the entry stop of the current call, before any decision on it.
        Postcondition: back at that same entry stop, registers as they were.  Signals that
        arrive meanwhile cannot be delivered there: they go to the policy's ``hold_signal``.
        """
        pid = self.pid
        # The task is back where it was only at the same kind of stop: a seccomp stop (PTRACE_CONT
        # to it), or a syscall-entry stop (PTRACE_SYSCALL; a call the filter does not trap).
        at_entry_stop = pt.syscall_info(pid)[0] == pt.SYSCALL_INFO_ENTRY
        regs0 = pt.get_regs(self.pid)
        saved = pt.user_regs_struct.from_buffer_copy(regs0)
        regs0.orig_rax = nr
        regs0.rax = nr
        for r, v in zip(_ARG_REGS, tuple(args) + (0,) * (6 - len(args))):
            setattr(regs0, r, v & MASK64)
        pt.set_regs(pid, regs0)
        pt.resume(pid, 0, to_exit=True)
        self._wait_for(pt.SyscallExitStop, to_exit=True)
        result = signed(pt.get_regs(pid).rax)
        saved.rip -= 2          # re-execute the program's own syscall instruction
        saved.rax = saved.orig_rax
        pt.set_regs(pid, saved)
        pt.resume(pid, 0, to_exit=at_entry_stop)
        self._wait_for(pt.SeccompStop, to_exit=at_entry_stop)
        return result

    def _wait_for(self, wanted: type, to_exit: bool) -> None:
        """Wait for the stop of type ``wanted``, resuming past the others as the task was
        resumed (``to_exit``: PTRACE_SYSCALL).  Resumed with PTRACE_SYSCALL on the way back to
        a call's seccomp stop, the task would stop at its syscall-entry stop first: taken for
        the seccomp stop, the call then skipped there came back as a seccomp stop of syscall
        -1, counted as one more call."""
        while True:
            _, status = os.waitpid(self.pid, pt.WALL)
            stop = pt.decode(self.pid, status)
            if isinstance(stop, wanted):
                return
            if isinstance(stop, pt.Exited):
                raise TracingError("the process died during an injected call", pid=self.vpid)
            if isinstance(stop, pt.SignalStop):
                self.engine.policy.hold_signal(self, stop.sig, pt.get_siginfo(self.pid))
            pt.resume(self.pid, 0, to_exit=to_exit)

    # -- signals -----------------------------------------------------------------------
    def inject_signal(self, signo: int, siginfo: bytes) -> None:
        """Raise ``signo`` now (tgkill); at its delivery stop the original siginfo is restored."""
        self.injecting[signo] = siginfo
        pt.tgkill(self.tgid, self.pid, signo)

    def signal_disposition(self, signo: int) -> str:
        """``handled``, ``ignored`` or ``default`` (read from /proc/PID/status)."""
        masks = {}
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith(("SigIgn:", "SigCgt:")):
                        masks[line[:6]] = int(line.split()[1], 16)
        except OSError:
            return "default"
        bit = 1 << (signo - 1)
        if masks.get("SigCgt", 0) & bit:
            return "handled"
        if masks.get("SigIgn", 0) & bit:
            return "ignored"
        return "default"

    def __repr__(self) -> str:
        return f"<Task pid={self.pid} vpid={self.vpid} seq={self.seq} {self.state}>"
