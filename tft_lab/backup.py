"""The backup of a live pair: a replayer fed over a channel that goes live when the primary dies.

While the primary lives, the backup replays every record as it arrives (and
acknowledges each on receipt, which is what the primary's output rule waits
for).  When the channel ends without a clean close — the primary's supervisor
died, its program was killed, its host went silent — every process of the
backup replays what it received and then *goes live*:

- files the primary wrote are reopened for real, at the primary's offset, with
  create/truncate dropped; real files whose reads were fed get their offset;
- listening sockets are re-created on the same port (on another host: on the
  backup's address), with their socket options, and re-registered in epoll;
- connections that lived in the dead kernel become reset: reads and writes on
  them fail with ECONNRESET;
- every fd that shared an open file description on the primary (dup'ed, or
  inherited across fork) shares the one rebuilt object: one offset, as before;
- pids stay virtual: getpid() still answers the primary's pid; the pids the
  program passes (wait4, waitid, kill, tgkill, setpgid, getpgid, getsid) are
  translated to the backup's, and those the kernel returns back.  While
  replaying, a wait that reaped a child on the primary reaps the same child
  here for real, so after going live every child the program knows of is
  waitable, with its real status, and no other is;
- the one output the primary announced but never confirmed runs again (the
  backup simply has no record of it): at most one duplicate per failover.

A primary that stopped the program on a call tft_lab refuses (a thread) says so
in its ``end`` record: the backup then stops its program too (PrimaryRefused),
it does not go live.
"""
from __future__ import annotations

import errno
import os
import queue
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass, field

from . import fdtable
from . import log as _log
from . import pairs
from .engine import Engine, SignalAction, Tsc
from .guest import Call, Task, signed
from .errors import DivergenceError, LogError, TftError, UnsupportedError
from .faults import Fault, Injector
from .pidmap import P_PGID, P_PID, SI_PID, WALL, WEXITED, PidMap, reaped_child
from .outs import gather
from .replayer import Replayer, ReplayTaskState
from .syscalls import TABLE

NR = {name: TABLE[name].x64 for name in ("openat", "lseek", "dup3", "close", "socket", "setsockopt", "chdir",
                                          "bind", "listen", "socketpair", "epoll_ctl")}
# Not replicated calls (the program never makes them through us), so not in the table: the
# numbers come from python-ptrace's list, by name.
_PTRACE_NR = None


def _nr(name: str) -> int:
    global _PTRACE_NR
    if _PTRACE_NR is None:
        from ptrace.syscall import SYSCALL_NAMES

        _PTRACE_NR = {v: k for k, v in SYSCALL_NAMES.items()}
    return _PTRACE_NR[name]


AT_FDCWD = -100
_EXCL = fdtable.O_CREAT | fdtable.O_EXCL
#: Seconds by which a file-system change the primary made may predate the arrival of the record
#: before it (the pump thread waits for a CPU).  Small: a change older than the primary's last
#: record by more is not the uncertain call's (a directory git made a second earlier).
FRESH_SLACK = 1.0
SOL_SOCKET, SO_REUSEADDR = 1, 2
#: Live calls whose pid arguments the program took from the primary: index of each.
_PID_ARGS = {"wait4": (0,), "kill": (0,), "tkill": (0,), "tgkill": (0, 1), "setpgid": (0, 1),
             "getpgid": (0,), "getsid": (0,)}
#: Live calls that return a pid (or a group or session id) of the backup's kernel.
_PID_RESULTS = frozenset(("wait4", "getpgid", "getsid", "getpgrp", "setsid"))
#: Live calls that change the fd table: followed at their exit (dead connections, a fork's copy).
_FD_CALLS = frozenset(("dup", "dup2", "dup3", "fcntl", "close", "close_range", "open", "openat", "creat",
                       "socket", "accept", "accept4", "pipe", "pipe2", "socketpair", "epoll_create",
                       "epoll_create1", "epoll_ctl", "lseek", "bind", "listen", "connect", "chdir", "fchdir"))


class PrimaryRefused(UnsupportedError):
    """The primary stopped the program on a call tft_lab refuses: the backup stops too.

    Its message is the primary's, which names the primary's pid, seq and call already."""

    def __str__(self) -> str:
        return self.message


@dataclass(slots=True)
class BackupTaskState(ReplayTaskState):
    """What the backup keeps about one process, beyond what any replay keeps."""

    live: bool = False
    """It runs for real now (:meth:`Backup.go_live`); it never goes back."""
    reconciled: bool = False
    """Live, and what the primary's kernel had for it is rebuilt (:meth:`Backup.reconcile`):
    at its first live call, or at birth for a child of a live process (its fds are copies of
    its parent's, real already)."""
    uncertain: bool = False
    """Live after a failure, and no output run live yet: its calls may have run on the primary
    already, their records lost with it (see :meth:`Backup.go_live`)."""
    pending: list[tuple[int, bytes]] = field(default_factory=list)
    """Its own signals since the primary failed (the primary cannot have seen them), and
    those that arrive while it is live but stopped: delivered once it is live."""


class _Pump(threading.Thread):
    """Receives frames, decodes them, acknowledges each once stored.  Never touches ptrace."""

    def __init__(self, receiver):
        super().__init__(name="tft-backup-pump", daemon=True)
        self.receiver = receiver
        self.q: queue.Queue = queue.Queue()

    def run(self) -> None:
        n = 0
        try:
            while True:
                frame = self.receiver.recv()
                if frame is None:
                    self.q.put(("end", None))
                    return
                n += 1
                rec = _log.decode_frame(frame)
                self.q.put(("rec", rec))
                self.receiver.ack(n)
        except (TftError, OSError, ValueError) as e:
            self.q.put(("failed", e))


class Backup(Replayer):
    """Backup replica over a channel Receiver."""

    def __init__(self, receiver, *, faults: list[Fault] = (), warn=None, header_timeout: float = 30.0):
        self.pump = _Pump(receiver)
        self.pump.start()
        self.primary_state = "running"   # running -> done (clean end) | failed
        self.failure: Exception | None = None
        self.failover_ns: int | None = None     # when the primary's failure was noticed
        self.live_ns: int | None = None         # when the first process went live
        self.warn = warn or (lambda msg: print(f"tft: {msg}", file=sys.stderr, flush=True))
        first = self._get(header_timeout)
        if first is None or first.type != "header":
            raise LogError(f"the primary sent no header ({self.failure or 'stream ended'})")
        super().__init__([first], out_fds={})
        self.ordered = True
        self.faults = Injector(faults, "backup")
        self.faults_not_injected: list[str] = []   # faults past the program's last call
        self.waiting: dict[int, Task] = {}      # processes that replayed all they had, at failover
        self.pipes: dict[str, pairs.Flow] = {}
        self.flows: dict[tuple[bytes, bytes], pairs.Flow] = {}   # connections: (from, to) address
        self.stopped: list[Task] = []   # processes at a syscall entry while going live together
        self.pids = PidMap()
        # Descriptions rebuilt at go-live -> (task, fd) holding the rebuilt object: every other fd
        # (of any process) that shared the description gets that same object, not a copy.
        self.rebuilt: dict[fdtable.Description, tuple[Task, int]] = {}
        # Wall-clock time each (virtual) process's last record arrived: what the primary did
        # after it is newer than that (see _done_by_primary).
        self.received: dict[int, float] = {}

    def _get(self, timeout=None):
        try:
            kind, item = self.pump.q.get(timeout=timeout)
        except queue.Empty:
            self.primary_state = "failed"
            self.failure = TimeoutError("no header from the primary")
            return None
        if kind == "rec":
            return item
        if kind == "end":
            self.primary_state = "done"
        else:
            self.primary_state = "failed"
            self.failure = item
        return None

    def pull(self) -> bool:
        if self.primary_state != "running":
            return False
        if self.pump.q.empty():
            self.engine.flush_trace()   # we are about to wait for the primary: show what we did
        rec = self._get()
        if rec is None:
            if self.primary_state == "failed":
                self.ordered = False  # outputs the primary never confirmed are re-executed live
                self.failover_ns = time.monotonic_ns()
                self.warn(f"primary failed ({self.failure}); the backup replays what it received and goes live")
            return False
        if rec.type == "sys":
            self.received[rec["pid"]] = time.time()
        self.add(rec)
        if rec.type == "end" and "refused" in rec:
            # Not a crash: the program's end.  Going live would run it on, unsupervised.
            raise PrimaryRefused(rec["refused"])
        return True

    # -- lifecycle -----------------------------------------------------------------------
    def on_start(self, engine: Engine) -> None:
        super().on_start(engine)
        self.pids.add(engine.root.vpid, engine.root.pid)
        self.faults.start(engine)

    def new_task_state(self) -> BackupTaskState:
        return BackupTaskState()

    def held_signals(self, task: Task) -> list[int]:
        return [s for s, _ in task.policy_state.pending]

    def hold_signal(self, task: Task, signo: int, siginfo: bytes) -> None:
        if self.is_live(task) or self.primary_state == "failed":
            task.policy_state.pending.append((signo, siginfo))   # ours: delivered once live

    @staticmethod
    def is_live(task: Task) -> bool:
        return task.policy_state.live

    def on_fork(self, parent: Task, child: Task) -> None:
        if self.is_live(parent):
            child.vpid = child.pid
            st: BackupTaskState = child.policy_state
            st.fds = fdtable.copy_table(parent.policy_state.fds)
            st.live = True
            # Its fds are copies of its parent's, which are real already: rebuilding them again
            # from the table would undo what the parent did since it went live.
            st.reconciled = True
        else:
            super().on_fork(parent, child)
        self.pids.add(child.vpid, child.pid)

    def on_exec(self, task: Task, at_random: int | None) -> None:
        if not self.is_live(task) and self.peek(task) is None and self.primary_state == "failed":
            self.go_live(task)   # the primary died before it could tell us about this exec
        if self.is_live(task):
            fdtable.after_exec(task.policy_state.fds)   # the kernel closed its close-on-exec fds
        else:
            super().on_exec(task, at_random)

    # -- calls ---------------------------------------------------------------------------
    def on_entry(self, task: Task, call: Call) -> None:
        self.faults.entry()
        if not self.ordered and self.parked:
            parked, self.parked = self.parked, {}
            for other in parked.values():
                if other is not task:
                    self.engine.retry(other)
        if self.is_live(task):
            if self.waiting and self._everyone_waiting():
                # This one went live on its own (an exec the primary never reported): the others
                # must not stay parked, it may be waiting for them (a pipe, a wait).
                self._go_live_all(current=None)
            return self.live_entry(task, call)
        if not task.policy_state.before:
            if call.name in ("wait4", "waitid") and self._replay_reap(task, call):
                return
            if call.name == "setpgid":
                self._translate_pids(task, call)   # run for real: with the backup's pids
        super().on_entry(task, call)
        if call.emulated and call.rec is not None and not call.parked:
            self._account_pipe(task, call)

    def _exited(self, vpid: int) -> bool:
        stream = self.streams.get(vpid)
        return stream is not None and stream.exit is not None

    def _replay_reap(self, task: Task, call: Call) -> bool:
        """A logged wait that reaped a child on the primary reaps the same child here, for real
        (its zombie would otherwise be waited for again once live).  Blocks until the backup's
        child exits: its records, up to its exit, precede this one in the log."""
        rec = call.rec or self.next_record(task, call)
        if rec is None:
            return False
        call.rec = rec
        vpid = reaped_child(call.name, call.args, rec, self._exited)
        real = self.pids.real(vpid) if vpid is not None else None
        if real is None:
            return False
        if call.name == "wait4":
            task.redirect(call.nr, (real, 0, WALL, 0))
        else:
            task.redirect(call.nr, (P_PID, real, 0, WEXITED | WALL, 0))
        call.note = "reap"
        call.action = "emulated"
        return True

    def _translate_pids(self, task: Task, call: Call) -> None:
        idx = _PID_ARGS.get(call.name, ())
        if call.name == "waitid" and call.args[0] in (P_PID, P_PGID):
            idx = (1,)
        args = list(call.args)
        for i in idx:
            args[i] = self.pids.to_real(args[i])
        if args != list(call.args):
            task.redirect(call.nr, tuple(args))

    def output_turn(self, oseq) -> bool:
        return not self.ordered or oseq is None or oseq == self.next_oseq

    def log_exhausted(self, task: Task, call: Call) -> None:
        if self.primary_state != "failed":
            return super().log_exhausted(task, call)
        # Every process replays all it received before any goes live: only then is it known
        # what the primary's processes had left in the pipes between them.
        if not self.ordered and self.parked:
            parked, self.parked = self.parked, {}
            for other in parked.values():
                if other is not task:
                    self.engine.retry(other)
        self.waiting[task.pid] = task
        if not self._everyone_waiting():
            task.park()
            return None
        self._go_live_all(current=task)
        return self.live_entry(task, call)

    def _everyone_waiting(self) -> bool:
        for t in self.engine.tasks.values():
            if t.pid in self.waiting or t.state == "gone" or self.is_live(t):
                continue   # a process live already (it exec'ed past the log) is not waited for
            c = t.call
            if c is not None and (c.name == "vfork" or (c.name == "clone" and c.args[0] & 0x4000)):
                continue   # a vfork parent waits in the kernel for its child: it cannot come
            return False
        return True

    def _go_live_all(self, current: Task | None) -> None:
        tasks = list(self.waiting.values())
        self.waiting.clear()
        self.stopped = tasks
        try:
            for t in tasks:
                self.go_live(t)
                self.reconcile(t)
        finally:
            self.stopped = []
        self._refill_pipes()
        for t in tasks:
            if t is not current and t.pid in self.engine.tasks:
                self.engine.retry(t)

    def _account_pipe(self, task: Task, call: Call) -> None:
        """Follow the bytes the primary's processes put into and took out of their pipes."""
        entry = call.entry
        if entry is None or entry.fd_arg is None or call.result <= 0:
            return
        info = task.policy_state.fds.get(call.args[entry.fd_arg])
        if info is None:
            return
        if info.kind == "conn":   # a connection: both ends may be the program's (see pairs.py)
            writing = entry.cls == "output" and bool(entry.writes)
            key = pairs.direction(info, writing)
            if key is None or not (writing or call.name in pairs.READS):
                return
            flow = self.flows.setdefault(key, pairs.Flow())
        elif info.kind == "pipe" and info.path:
            flow = self.pipes.setdefault(info.path, pairs.Flow())
        else:
            return
        if entry.cls == "output":
            flow.wrote(gather(task, call, call.result))
        elif call.name in pairs.READS:
            flow.read(call.result)

    def _refill_pipes(self) -> None:
        """Put back what the primary had written to its pipes and not yet read."""
        for ident, flow in self.pipes.items():
            data = flow.leftover()
            if not data:
                continue
            for t in self.engine.tasks.values():
                fd = next((fd for fd, info in t.policy_state.fds.items() if info.kind == "pipe" and info.path == ident), None)
                if fd is None:
                    continue
                try:
                    w = os.open(f"/proc/{t.pid}/fd/{fd}", os.O_WRONLY | os.O_NONBLOCK)
                    try:
                        os.write(w, data)
                    finally:
                        os.close(w)
                    self.warn(f"put back {len(data)} bytes the primary had left in {ident}")
                except OSError as e:
                    self.warn(f"could not put back {len(data)} bytes into {ident}: {e.strerror}")
                break

    def on_exit(self, task: Task, call: Call) -> None:
        if call.note == "reap":
            return self._reaped(task, call)
        if not self.is_live(task):
            return super().on_exit(task, call)
        res = signed(call.result)
        if call.note == "uncertain" and self._redone(task, call, res):
            return   # made again (an exclusive open without O_EXCL): its next exit decides
        if call.note == "done-by-primary":
            res = self._primary_result(task, call, res)
        if call.name in _PID_RESULTS and res > 0:
            res = self.pids.to_virtual(res)
        elif call.name == "waitid" and res == 0 and call.args[2]:
            real = task.mem.read_u32(call.args[2] + SI_PID)
            if real:
                task.write(call.args[2] + SI_PID, struct.pack("<i", self.pids.to_virtual(real)))
        if call.saved_args is not None or res != signed(call.result):
            task.set_result(res)   # also puts back the arguments we translated
        call.result = res
        if call.name in _FD_CALLS:
            fdtable.update(task, task.policy_state.fds, call, res, standin=False)

    def _redone(self, task: Task, call: Call, res: int) -> bool:
        """An uncertain non-idempotent call ran live and failed as it does when it was done
        already (the table's ``redo`` fact: EEXIST for a creation, ENOENT for a removal or a
        rename).  Redoing is safe for a write at an offset; this one needs the primary's
        outcome, which died with it, so it is read from the file system:

        - the primary did it if the path now shows its effect *and* that effect is newer
          than the last record the primary sent for this process (the birth time of what a
          creation made, the ctime of a hard link or a rename's target, the parent
          directory's for a removal): a lock file
          left by an earlier crash, or a name that was never there, is older, and the
          program then gets the failure it would have got from the primary;
        - then the program gets success: for an ``O_CREAT|O_EXCL`` open the file is opened
          again without ``O_EXCL`` (it is the one the primary created: nothing was written to
          it, writes are outputs that wait for the acknowledgement we never sent), for
          mkdir/link/symlink/mknod/unlink/rmdir/rename the result is 0.

        True if the call is made again (its next exit stop completes it)."""
        entry = call.entry
        want = {"creates": -errno.EEXIST, "removes": -errno.ENOENT, "renames": -errno.ENOENT}[entry.redo]
        if res != want:
            return False
        path = fdtable.resolve_call(task, task.policy_state.fds, call)
        if path is None or not self._done_by_primary(task, call, path):
            return False
        self.warn(f"pid {task.vpid}: {call.name} of {path} was done by the primary before it died "
                  "(its record was lost): the program gets success, not a second attempt")
        if entry.opens:
            args = list(call.args)
            idx = 2 if call.name == "openat" else 1
            args[idx] &= ~fdtable.O_EXCL
            call.note = "done-by-primary"
            task.redo_as(call.nr, tuple(args))
            return True
        call.note = "done-by-primary"
        return False

    def _done_by_primary(self, task: Task, call: Call, path: str) -> bool:
        since = self.received.get(task.vpid, 0.0) - FRESH_SLACK
        redo = call.entry.redo
        if redo == "removes":
            when = fdtable.changed_at(os.path.dirname(path.rstrip("/")) or "/")
        else:   # what it made was born then (a hard link makes no inode: the link count changed)
            when = fdtable.changed_at(path, born=call.name not in ("link", "linkat"))
        return when is not None and when >= since

    @staticmethod
    def _primary_result(task: Task, call: Call, res: int) -> int:
        """The result the primary got for a call it did (see :meth:`_redone`)."""
        if call.entry.opens:
            return res        # the fd of the file, opened again
        task.set_result(0)
        return 0

    def _reaped(self, task: Task, call: Call) -> None:
        rec = call.rec
        got = signed(call.result)
        if got < 0:
            raise DivergenceError(f"replay diverged: {call.name} could not reap the child the primary "
                                  f"reaped ({os.strerror(-got)})", syscall=call.name)
        for addr, data in zip(rec["addrs"], rec["blobs"]):
            task.write(addr, data)
        task.set_result(rec["res"])
        call.result = rec["res"]

    def after_call(self, task: Task, call: Call) -> None:
        if not self.is_live(task):
            return super().after_call(task, call)
        st: BackupTaskState = task.policy_state
        pending, st.pending = st.pending, []
        for signo, info in pending:
            task.inject_signal(signo, info)

    def on_signal(self, task: Task, signo: int, siginfo: bytes) -> SignalAction:
        if self.is_live(task):
            return SignalAction.DELIVER
        if self.primary_state == "failed":
            task.policy_state.pending.append((signo, siginfo))   # the primary cannot have seen it: ours, once live
        return SignalAction.DROP

    def on_rdtsc(self, task: Task, rdtscp: bool) -> Tsc:
        # peek() first: it waits for the primary's next record, and it is while waiting that a
        # failure is noticed.  A process with nothing more in the log once the primary failed
        # reads the counter live (it goes live at its next system call), whatever the state
        # was before the wait.
        if self.is_live(task) or (self.peek(task) is None and self.primary_state == "failed"):
            return Tsc(time.monotonic_ns() * 3)
        return super().on_rdtsc(task, rdtscp)

    def on_finish(self, engine: Engine) -> None:
        self.faults_not_injected = self.faults.finish()
        for msg in self.faults_not_injected:
            self.warn(f"warning: {msg}")
        super().on_finish(engine)

    def on_task_exit(self, task: Task, code, sig) -> None:
        self.waiting.pop(task.pid, None)
        if self.primary_state == "failed" and self.waiting and self._everyone_waiting():
            self._go_live_all(current=None)


    # -- live ----------------------------------------------------------------------------
    def live_entry(self, task: Task, call: Call) -> None:
        """Run the call for real; keep pids virtual and dead connections reset."""
        name = call.name
        call.action = "live"
        st: BackupTaskState = task.policy_state
        if not st.reconciled:
            self.reconcile(task)
        if name in ("getpid", "gettid"):
            return task.emulate(task.vpid)
        if name == "getppid" and task.parent is not None:
            return task.emulate(task.parent.vpid)
        entry = call.entry
        if entry is not None and entry.fd_arg is not None and entry.resets:
            info = task.policy_state.fds.get(call.args[entry.fd_arg])
            if info is not None and info.kind == "dead":
                return task.emulate(-errno.ECONNRESET)
        if name in _PID_ARGS or name == "waitid":
            self._translate_pids(task, call)
        if st.uncertain and entry is not None:
            if entry.cls == "output":
                st.uncertain = False   # no later call can have run on the primary
            if entry.redo and (not entry.opens or fdtable.open_call(call)[1] & _EXCL == _EXCL):
                call.note = "uncertain"   # decided at its exit, from what the file system shows
        # The exit stop costs a stop; take it where we translate, or where someone watches.
        task.run(to_exit=name in _PID_ARGS or name in _PID_RESULTS or name in _FD_CALLS or name == "waitid"
                 or call.note == "uncertain" or self.engine.tracing)

    def go_live(self, task: Task) -> None:
        """From now on this process runs for real (rebuilt at its next system call).

        Its first calls are *uncertain* until it makes an output: the primary may have made
        them already, their records lost with it (a resource call is logged after it ran, and
        records wait for the next output to leave; the output itself is logged after it ran).
        Under the output rule no later output can have run (it waits for the acknowledgement
        of a record we never got), so the window closes at the first output run live."""
        task.policy_state.live = True
        if self.primary_state == "failed":
            task.policy_state.uncertain = True

    def reconcile(self, task: Task) -> None:
        """Rebuild what the primary's kernel had for this process.  Precondition: at a syscall entry."""
        task.policy_state.reconciled = True
        if self.live_ns is None:
            self.live_ns = time.monotonic_ns()   # the first process of the program is live
        notes = [self._enter_cwd(task)]
        for fd, info in sorted(task.policy_state.fds.items()):
            try:
                rebuilt = info.desc in self.rebuilt
                if rebuilt and self._share(task, fd, info):
                    continue   # another fd of this description was rebuilt: the same object
                if info.kind == "file" and (info.standin or rebuilt):
                    notes.append(self._reopen(task, fd, info))
                elif info.kind == "listen" and (info.standin or rebuilt):
                    notes.append(self._relisten(task, fd, info))
                elif info.kind == "conn" and info.standin and (peer := pairs.find_peer(
                        info, self.stopped or [task], self.rebuilt)) is not None:
                    note = pairs.reconnect(task, fd, info, *peer, self.flows)
                    if not note:
                        self._reset(task, fd, info)
                        note = f"fd {fd}: connection reset"
                    else:
                        self.rebuilt[peer[0].policy_state.fds[peer[1]].desc] = peer
                    notes.append(note)
                elif info.kind in ("conn", "socket", "dead") and (info.standin or rebuilt):
                    self._reset(task, fd, info)
                    notes.append(f"fd {fd}: connection reset")
                else:
                    # A real object (its kernel shares it as the primary's did): only the offset
                    # of a file whose reads were fed from the log is behind.
                    if info.kind == "file" and info.offset and not info.flags & 0o200000:  # not O_DIRECTORY
                        task.inject(NR["lseek"], (fd, info.offset, fdtable.SEEK_SET))
                    continue
                self.rebuilt[info.desc] = (task, fd)
            except TftError as e:
                notes.append(f"fd {fd}: could not be rebuilt ({e})")
        for fd, info in sorted(task.policy_state.fds.items()):
            if info.kind == "epoll":
                for target, event in info.epoll.items():
                    if target in task.policy_state.fds:
                        addr = task.scratch(event)
                        task.inject(NR["epoll_ctl"], (fd, 1, target, addr))  # EPOLL_CTL_ADD
        self.engine.emit(task, "failover", "go-live", "; ".join(n for n in notes if n), 0, "event", "live")
        if any(notes):
            self.warn(f"pid {task.vpid} went live at seq {task.seq}: " + "; ".join(n for n in notes if n))

    def _enter_cwd(self, task: Task) -> str:
        """The process's own working directory becomes the recorded one: while replaying it could
        not follow a chdir into a directory missing here then (made by the program's mkdir, an
        output the replay skips); live, the program's relative paths must resolve where the
        primary's did.  Returns a note ("" when nothing had to move)."""
        info = task.policy_state.fds.get(fdtable.AT_FDCWD)
        if info is None or not info.path.startswith("/"):
            return ""
        try:
            if os.readlink(f"/proc/{task.pid}/cwd") == info.path:
                return ""
        except OSError:
            return ""
        res = task.inject(NR["chdir"], (task.scratch(info.path.encode(errors="surrogateescape") + b"\0"),))
        if res < 0:
            return f"cannot enter the working directory {info.path}: {os.strerror(-res)}"
        return f"working directory {info.path}"

    def _share(self, task: Task, fd: int, info: fdtable.Fd) -> bool:
        """Make ``fd`` refer to the object already rebuilt for its description (dup'ed fds in
        one process, fds inherited across fork in another: pidfd_getfd), so that they share
        one offset as they did on the primary.  False if that object is gone."""
        owner, ofd = self.rebuilt[info.desc]
        held = owner.policy_state.fds.get(ofd)
        if owner.pid not in self.engine.tasks or held is None or held.desc is not info.desc:
            return False   # the process that holds it exited, or closed or replaced that fd
        if owner is task:
            if ofd != fd:
                task.inject(NR["dup3"], (ofd, fd, fdtable.O_CLOEXEC if info.cloexec else 0))
            return True
        pidfd = task.inject(_nr("pidfd_open"), (owner.pid, 0))
        if pidfd < 0:
            return False
        tmp = task.inject(_nr("pidfd_getfd"), (pidfd, ofd, 0))
        task.inject(NR["close"], (pidfd,))
        if tmp < 0:
            return False
        self._dup_into(task, tmp, fd, info.cloexec)
        return True

    def _dup_into(self, task: Task, tmp: int, fd: int, cloexec: bool) -> None:
        if tmp != fd:
            task.inject(NR["dup3"], (tmp, fd, fdtable.O_CLOEXEC if cloexec else 0))
            task.inject(NR["close"], (tmp,))

    def _reopen(self, task: Task, fd: int, info: fdtable.Fd) -> str:
        flags = info.flags & ~(fdtable.O_CREAT | fdtable.O_TRUNC | fdtable.O_EXCL)
        path_addr = task.scratch(info.path.encode(errors="surrogateescape") + b"\0")
        tmp = task.inject(NR["openat"], (AT_FDCWD, path_addr, flags, 0))
        if tmp < 0:
            raise DivergenceError(f"cannot reopen {info.path}: {os.strerror(-tmp)}")
        if not info.flags & fdtable.O_APPEND:
            task.inject(NR["lseek"], (tmp, info.offset, fdtable.SEEK_SET))
        self._dup_into(task, tmp, fd, info.cloexec)
        info.standin = False
        return f"fd {fd}: reopened {info.path} at offset {info.offset}"

    def _relisten(self, task: Task, fd: int, info: fdtable.Fd) -> str:
        tmp = task.inject(NR["socket"], (info.domain, info.type, info.proto))
        if tmp < 0:
            raise DivergenceError(f"cannot create a socket: {os.strerror(-tmp)}")
        one = task.scratch(struct.pack("<i", 1))
        task.inject(NR["setsockopt"], (tmp, SOL_SOCKET, SO_REUSEADDR, one, 4))
        for level, name, value in info.sockopts:
            task.inject(NR["setsockopt"], (tmp, level, name, task.scratch(value), len(value)))
        addr = info.addr
        where = _fmt_sockaddr(addr)
        for attempt in range(50):
            res = task.inject(NR["bind"], (tmp, task.scratch(addr), len(addr)))
            if res == -errno.EADDRNOTAVAIL and info.domain == socket.AF_INET:
                addr = addr[:4] + bytes(4) + addr[8:]   # another host: listen on the backup's addresses
                where = _fmt_sockaddr(addr)
                continue
            if res == -errno.EADDRINUSE:
                time.sleep(0.05)   # the dead primary's socket is still being torn down
                continue
            break
        if res < 0:
            task.inject(NR["close"], (tmp,))
            raise DivergenceError(f"cannot bind {where}: {os.strerror(-res)}")
        task.inject(NR["listen"], (tmp, info.backlog))
        self._dup_into(task, tmp, fd, info.cloexec)
        info.standin = False
        return f"fd {fd}: listening again on {where}"

    def _reset(self, task: Task, fd: int, info: fdtable.Fd) -> None:
        pair = task.scratch(bytes(8))
        if task.inject(NR["socketpair"], (socket.AF_UNIX, socket.SOCK_STREAM, 0, pair)) < 0:
            return
        a, b = struct.unpack("<ii", task.read(pair, 8))
        self._dup_into(task, a, fd, info.cloexec)
        task.inject(NR["close"], (b,))
        info.kind = "dead"
        info.standin = False


def _fmt_sockaddr(addr: bytes) -> str:
    if len(addr) >= 8 and int.from_bytes(addr[:2], "little") == socket.AF_INET:
        port = int.from_bytes(addr[2:4], "big")
        return f"{socket.inet_ntoa(addr[4:8])}:{port}"
    return addr.hex()
