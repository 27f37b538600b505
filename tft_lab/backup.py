"""The backup of a live pair: a replayer fed over a channel that goes live when the primary dies.

While the primary lives, the backup replays every record as it arrives (and
acknowledges what it received, in batches and at once when nothing more is
waiting, which is what the primary's output rule waits for).  When the channel ends without a clean close — the primary's supervisor
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
- a creation or removal the primary may have made before it died (its record
  lost with it) is answered from what the file system shows (:mod:`tft_lab.redo`);
- bytes the program's processes had in flight between them (pipes, connections
  with both ends in the program) are put back (:mod:`tft_lab.pairs`).

With a :class:`~tft_lab.reintegration.Relay` (``tft run --respawn``), the backup that
went live is the primary from then on: it logs its own calls after those it received
(an inner :class:`~tft_lab.primary.Primary` does, through the relay), holds the run's
primary faults, and a fresh backup catches up from that log (:mod:`tft_lab.reintegration`).

With an arbiter (``--arbiter``, :mod:`tft_lab.arbiter`) the backup goes live only after
it wins the run's key in etcd; if the primary is seen renewing its lease, the backup stands
down (:class:`~tft_lab.arbiter.StoodDown`) instead.  Once live it holds the key and stops
(fences) if it cannot renew it.

A primary that stopped the program on a call tft_lab refuses (process_vm_readv, say) says so
in its ``end`` record: the backup then stops its program too (PrimaryRefused),
it does not go live.  So does a primary the operator stopped (PrimaryStopped).
"""
from __future__ import annotations

import collections
import errno
import os
import queue
import signal
import struct
import sys
import threading
import time
from dataclasses import dataclass, field

from . import fdtable
from . import log as _log
from . import arbiter as _arbiter
from . import pairs, procview, rebuild, redo, reintegration
from .engine import Engine, SignalAction, Tsc
from .guest import Call, Task, signed
from .errors import DivergenceError, LogError, TftError, UnsupportedError
from .faults import Fault, Injector
from .pidmap import P_PGID, P_PID, SI_PID, SI_TKILL, WALL, WEXITED, PidMap, SentSignals, reaped_child, sent_siginfo
from .replayer import Replayer, ReplayTaskState
from .syscalls import number
from .trace import FRESH_BACKUPS

#: A fresh backup notes the time every this many records it takes (its catch-up, measured).
PROGRESS_EVERY = 100
#: Bytes of frames the receiving thread holds at most, ahead of the replay (as frames: a record
#: is decoded when the replay takes it, decoded it is ~10 times bigger).  Beyond it the thread
#: stops taking frames, and acknowledging them: they wait in the channel (bounded too), then TCP
#: slows the primary.  Unbounded, a fresh backup catching up held its whole history decoded in
#: memory (390 MB at 10^6 records: benchmarks/README.md).
BACKLOG_BYTES = 16 << 20
SIGRTMIN = 32   # signals below it are standard: pending at most once
NR = {name: number(name) for name in ("lseek", "epoll_ctl")}

#: Live calls whose pid arguments the program took from the primary: index of each.
_PID_ARGS = {"wait4": (0,), "kill": (0,), "tkill": (0,), "tgkill": (0, 1), "setpgid": (0, 1),
             "getpgid": (0,), "getsid": (0,)}
#: Live calls whose bytes are rewritten when they read an fd on /proc (:mod:`tft_lab.procview`).
_PROC_READS = frozenset(("read", "pread64", "getdents64"))
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
    trimmed: int = 0
    """Bytes its current live output leaves out: its reader had them already
    (:meth:`tft_lab.pairs.InFlight.trim`); its exit adds them to the result."""
    pending: list[tuple[int, bytes]] = field(default_factory=list)
    """Its own signals since the primary failed (the primary cannot have seen them), and
    those that arrive while it is live but stopped: delivered once it is live."""
    # Once this replica is the primary (a relay), its inner Primary keeps these as a
    # recorder does (see recorder.PrimaryTaskState; ``pending`` is shared).
    expect_self_signal: bool = False
    before_seq: int | None = None
    in_call_signal: tuple[int, bytes] | None = None


class PrimaryStopped(TftError):
    """The operator stopped ``tft run``: the primary stopped the program and said so; the
    backup stops too instead of going live.  Its message is the primary's reason."""

    def __str__(self) -> str:
        return self.message


#: The pump acknowledges at least every this many frames (and whenever no more is waiting).
ACK_EVERY = 64


class _Pump(threading.Thread):
    """Receives frames, checks them, acknowledges them once held: at most :data:`BACKLOG_BYTES`
    of them ahead of the replay, which takes them decoded (:meth:`take`).  Never touches ptrace."""

    def __init__(self, receiver, history=None):
        super().__init__(name="tft-backup-pump", daemon=True)
        self.receiver = receiver
        self.history = history   # every frame, on disk too, for a fresh backup after a failover
        self.q: queue.Queue = queue.Queue()   # ("frames", (payloads, bytes)), then ("end", None) or ("failed", error)
        self.room = threading.Condition()
        self.held = 0   # bytes of the messages in q (guarded by room)
        self.taking: collections.deque[bytes] = collections.deque()   # the records of the message being taken

    def run(self) -> None:
        n = acked = 0   # frames received, and acknowledged
        try:
            while True:
                if acked < n:
                    # Acknowledged in batches: when no frame is waiting (the primary waits for
                    # this acknowledgement at an output, and sends nothing meanwhile), before
                    # waiting for room, and every ACK_EVERY frames; one message per frame
                    # cost the backup a send and the primary a receive for every record.
                    try:
                        frame = self.receiver.recv(timeout=0)
                    except TimeoutError:
                        self.receiver.ack(n)
                        acked = n
                        continue
                else:
                    frame = self.receiver.recv()
                if frame is None:
                    self.q.put(("end", None))
                    return
                payloads = _log.check_frames(frame)   # a bad frame fails here, before it is acknowledged
                n += 1
                if self.history is not None:
                    self.history.append(frame)
                if self.held >= BACKLOG_BYTES and acked < n - 1:
                    self.receiver.ack(n - 1)   # those are held: the primary may be waiting for them
                    acked = n - 1
                with self.room:
                    while self.held >= BACKLOG_BYTES:
                        self.room.wait()
                    self.held += len(frame)
                self.q.put(("frames", (payloads, len(frame))))
                if n - acked >= ACK_EVERY:
                    self.receiver.ack(n)
                    acked = n
        except (TftError, OSError, ValueError) as e:
            self.q.put(("failed", e))

    def ready(self) -> bool:
        """Whether :meth:`take` has an item without waiting."""
        return bool(self.taking) or not self.q.empty()

    def has_records(self) -> bool:
        """Whether :meth:`take` has a record without waiting: not the end or a failure, which
        must be taken only when the replay needs more than it has (see ``Backup.reads_ahead``)."""
        if self.taking:
            return True
        with self.q.mutex:
            return bool(self.q.queue) and self.q.queue[0][0] == "frames"

    def take(self, timeout: float | None = None) -> tuple[str, object]:
        """The next item: ``("rec", Record)``, ``("end", None)`` or ``("failed", error)``.
        Raises ``queue.Empty`` after ``timeout`` seconds without one."""
        if not self.taking:
            kind, item = self.q.get(timeout=timeout)
            if kind != "frames":
                return kind, item
            payloads, size = item
            with self.room:
                self.held -= size   # the message's length, as counted in
                self.room.notify()
            self.taking.extend(payloads)
        try:
            return "rec", _log.decode_payload(self.taking.popleft())
        except (TftError, ValueError) as e:   # sound frame, unsound record: the primary's log is corrupt
            self.taking.clear()
            return "failed", e


class Backup(Replayer):
    """Backup replica over a channel Receiver."""

    def __init__(self, receiver, *, faults: list[Fault] = (), warn=None, header_timeout: float = 30.0,
                 relay=None, commit: str = "output", fence_after: float = 2.0, t0: float | None = None,
                 ledger: str | None = None, fresh: str | None = None, arbiter=None,
                 lease_ttl: int | None = None):
        self.fresh = fresh    # a fresh backup of a live replica: it replays a history first
        if fresh:
            self.replica = fresh if fresh in FRESH_BACKUPS else FRESH_BACKUPS[-1]   # the trace's name
        self.consumed = 0     # records taken from the channel
        self.progress: list[tuple[int, int]] = []   # a fresh backup's (records taken, monotonic ns)
        self.relay = relay    # a Relay: once live, log like a primary and catch a fresh backup up
        self.inner = None     # that primary (a Primary over the relay), once promoted
        self.commit, self.fence_after, self.t0 = commit, fence_after, t0
        self.pump = _Pump(receiver, relay.history if relay is not None else None)
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
        self.arbiter = arbiter   # an arbiter.Etcd, or None: heartbeats decide
        self.run_id = _arbiter.run_of(first, arbiter)
        self.lease_ttl = lease_ttl or _arbiter.DEFAULT_TTL
        self.lease: _arbiter.Lease | None = None   # won at failover: this replica is live
        self.ordered = True
        self.faults = Injector(faults, "backup", ledger=ledger)
        self.as_primary = Injector(faults, "primary", armed=False, ledger=ledger)   # once promoted
        self.faults_not_injected: list[str] = []   # faults past the program's last call
        self.waiting: dict[int, Task] = {}      # processes that replayed all they had, at failover
        self.in_flight = pairs.InFlight()   # bytes between the program's own processes
        self.not_accepted: list = []   # (task, fd, info): connections to its own listener (reconcile)
        self.stopped: list[Task] = []   # processes at a syscall entry while going live together
        self.pids = PidMap()
        self.sent_signals = SentSignals()   # what the program's kills sent its own processes
        # Descriptions rebuilt at go-live -> (task, fd) holding the rebuilt object: every other fd
        # (of any process) that shared the description gets that same object, not a copy.
        self.rebuilt: dict[fdtable.Description, tuple[Task, int]] = {}
        self.uncertain_calls = redo.Uncertain(self.warn)   # what a process's first live calls answer
        self.max_oseq = 0   # the last output number received: a promoted replica numbers on from it

    def _get(self, timeout=None):
        try:
            kind, item = self.pump.take(timeout)
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
        if not self.pump.ready():
            self.engine.flush_trace()   # we are about to wait for the primary: show what we did
        rec = self._get()
        if rec is None:
            if self.primary_state == "failed":
                self.ordered = False  # outputs the primary never confirmed are re-executed live
                self.failover_ns = time.monotonic_ns()
                if self.arbiter is not None:
                    self._win_key()
                self.warn(f"primary failed ({self.failure}); the backup replays what it received and goes live")
            return False
        self.consumed += 1
        if self.fresh and self.consumed % PROGRESS_EVERY == 0:
            self.progress.append((self.consumed, time.monotonic_ns()))
        if rec.type == "sys":
            self.uncertain_calls.heard(rec["pid"])
            self.max_oseq = max(self.max_oseq, rec.get("oseq") or 0)
        self.add(rec)
        if rec.type == "end" and "refused" in rec:
            # Not a crash: the program's end.  Going live would run it on, unsupervised.
            raise PrimaryRefused(rec["refused"])
        if rec.type == "end" and "stopped" in rec:
            raise PrimaryStopped(rec["stopped"])   # the operator's stop: both replicas stop
        return True

    def _win_key(self) -> None:
        """Go live only with the run's key: win it, or stand down (raise StoodDown)."""
        self.engine.flush_trace()
        who = f"backup {os.uname().nodename} pid {os.getpid()}"
        contest = _arbiter.contend(self.arbiter, self.run_id, who, self.lease_ttl)
        task = self.engine.root
        if contest.lease is None:
            self.engine.emit(task, "arbiter", "lease-lost", contest.why, 0, "event", "lost")
            raise _arbiter.StoodDown(f"the backup stood down, it did not go live: {contest.why}")
        self.lease = contest.lease
        self.engine.emit(task, "arbiter", "lease-won", f"{contest.why} after {contest.waited_s * 1e3:.0f} ms, "
                         f"{contest.tries} transactions", 0, "event", "won")

    # -- lifecycle -----------------------------------------------------------------------
    def on_start(self, engine: Engine) -> None:
        super().on_start(engine)
        self.pids.add(engine.root.vpid, engine.root.pid)
        self.faults.start(engine)
        self.as_primary.start(engine)

    def new_task_state(self) -> BackupTaskState:
        return BackupTaskState()

    def held_signals(self, task: Task) -> list[int]:
        return [s for s, _ in task.policy_state.pending]

    def hold_signal(self, task: Task, signo: int, siginfo: bytes) -> None:
        if self.is_live(task) or self.primary_state == "failed":
            self._hold(task, signo, siginfo)   # ours: delivered once live

    @staticmethod
    def _hold(task: Task, signo: int, siginfo: bytes) -> None:
        """Keep a signal of this replica's own for delivery once live; a standard signal is
        held at most once, as the kernel keeps it pending (two copies made the new primary
        deliver it twice, logged apart from the kernel's one)."""
        pending = task.policy_state.pending
        if signo >= SIGRTMIN or all(s != signo for s, _ in pending):
            pending.append((signo, siginfo))

    @staticmethod
    def is_live(task: Task) -> bool:
        return task.policy_state.live

    def schedules_live(self, task: Task) -> bool:
        return task.policy_state.live   # past the log, its threads are scheduled here

    def on_fork(self, parent: Task, child: Task) -> None:
        if self.is_live(parent):
            child.vpid = child.pid
            st: BackupTaskState = child.policy_state
            thread = child.group is parent.group
            st.fds = parent.policy_state.fds if thread else fdtable.copy_table(parent.policy_state.fds)
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
            if self.inner is not None:
                self.inner.on_exec(task, at_random)
        else:
            super().on_exec(task, at_random)

    # -- the compiled lane ---------------------------------------------------------------
    def lane(self, task: Task):
        if (self.faults.faults or self.is_live(task) or self.primary_state != "running" or self.arbiter is not None
                or self.parked):
            return None   # each call counted for the faults, or live calls: on_entry's work
        return super().lane(task)

    def reads_ahead(self) -> bool:
        # Only records that came already, never the primary's failure (or end) behind them: the
        # failure is noticed when the replay has used every record, as without the lane.  Taken
        # early, it made this replica hold its own signals (the primary cannot have seen them)
        # while it still replayed the primary's time, and deliver them again at go-live.
        return self.primary_state == "running" and self.pump.has_records()

    # -- calls ---------------------------------------------------------------------------
    def on_entry(self, task: Task, call: Call) -> None:
        self.faults.entry()
        self.as_primary.entry()   # fires only once this replica is the primary
        if not self.ordered and self.parked:
            parked, self.parked = self.parked, {}
            for other in parked.values():
                if other is not task:
                    self.engine.retry(other)
        if self.is_live(task):
            if self.lease is not None and self.lease.expired():
                self.engine.emit(task, "arbiter", "fenced", self.lease.lost, 0, "event", "fenced")
                raise _arbiter.LeaseLost(f"the live backup fenced itself: {self.lease.lost}")
            if self.waiting and self._everyone_waiting():
                # This one went live on its own (an exec the primary never reported): the others
                # must not stay parked, it may be waiting for them (a pipe, a wait).
                self._go_live_all(current=None)
            if self._made_already(task, call):
                call.rec = self.next_record(task, call)
                return super().on_entry(task, call)   # answered from the dead primary's record
            return self.live_entry(task, call)
        if not task.policy_state.before:
            if call.name in ("wait4", "waitid") and (self.gives_way(task, call) or self._replay_reap(task, call)):
                return
            if call.name == "setpgid":
                self._translate_pids(task, call)   # run for real: with the backup's pids
        super().on_entry(task, call)
        if call.emulated and call.rec is not None and not call.parked:
            self.in_flight.account(task, call)
            if call.entry is not None and call.entry.kills and call.result == 0:
                self._account_kill(task, call)

    def _made_already(self, task: Task, call: Call) -> bool:
        """A thread the schedule held at this call's entry when its process went live: the dead
        primary made the call (its record came) before it died.  It is answered from that
        record, once, as a fresh backup replaying this replica's log will answer it; made again
        live, it would be logged twice."""
        q = self.streams[task.vpid].q
        if not (task.group is not None and call.rec is None and bool(q) and q[0].type == "sys"
                and q[0]["seq"] == call.seq):
            return False
        if self.in_flight.between_ours(task, call):
            # Through a pipe or connection between the program's processes: the bytes it moved
            # were put back going live (or are owed: InFlight.trim), so it moves them for real.
            self.next_record(task, call)
            return False
        return True

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

    def _account_kill(self, task: Task, call: Call) -> None:
        """A replayed kill reached processes of the program on the primary: count the signal as
        owed to each until the log shows it delivered (see :class:`pidmap.SentSignals`)."""
        a = call.args
        signo = (a[2] if call.name == "tgkill" else a[1]) & 0xFFFFFFFF
        if not 0 < signo < 65:
            return   # signal 0: a probe
        target = self.pids.to_real(a[0])
        if target > 0:   # a process of the program: by the pid the program knows (an outside one: none)
            # tgkill names the thread (raise() in a second thread): it is owed to that thread.
            vpid = (a[1] if call.name == "tgkill" else a[0]) & 0xFFFFFFFF
            targets = [t for t in self.engine.tasks.values() if t.vpid == vpid]
        elif call.name == "kill" and target != -1:   # a process group: 0 is the sender's own
            try:
                group = os.getpgid(task.pid) if target == 0 else -target
                targets = [t for t in self.engine.tasks.values() if os.getpgid(t.pid) == group]
            except OSError:
                return
        else:
            return
        try:
            uid = os.stat(f"/proc/{task.pid}").st_uid
        except OSError:
            uid = 0
        queued = task.read(a[2], 128) if call.name == "rt_sigqueueinfo" and a[2] else None
        info = sent_siginfo(call.name, signo, task.vpid, uid, queued)
        for t in targets:
            self.sent_signals.sent(t.vpid, signo, info)

    def signal_logged(self, task: Task, rec) -> None:
        info = rec["blobs"][0]
        thread = len(info) >= 12 and struct.unpack_from("<i", info, 8)[0] == SI_TKILL   # si_code
        # A signal sent to the process may be delivered to any of its threads: it was owed to
        # the process (its first thread, as the kill named it); one sent to a thread, to that thread.
        whom = task if thread or task.group is None else task.group.leader
        self.sent_signals.received(whom.vpid, rec["signo"], info)

    def _translate_pids(self, task: Task, call: Call) -> None:
        idx = _PID_ARGS.get(call.name, ())
        if call.name == "waitid" and call.args[0] in (P_PID, P_PGID):
            idx = (1,)
        args = list(call.args)
        for i in idx:
            real = self.pids.to_real(args[i])
            if (real - args[i]) & 0xFFFFFFFF:   # a pid_t: -1 is -1 whatever the upper half holds
                args[i] = real
        if args != list(call.args):
            task.redirect(call.nr, tuple(args))

    @staticmethod
    def _translate_proc_path(task: Task, call: Call) -> None:
        """A path under ``/proc/<pid>`` of one of the program's processes names the primary's
        pid (the one the program knows): live, it is this replica's process's entry."""
        path_arg = call.entry.path[1]
        raw = task.mem.read_cstring(call.args[path_arg]).decode(errors="surrogateescape")
        here = fdtable.proc_here(task, raw)
        if here is not None and here != raw:
            args = list(call.args)
            args[path_arg] = task.scratch(here.encode(errors="surrogateescape") + b"\0")
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
            if t.group is not None and not t.group.dom.free and t.group.dom.running is not t:
                continue   # a task the schedule holds: it goes live with the running one
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
        self.in_flight.refill(self.engine.tasks.values(), self.warn)
        self._connect_again()
        for t in tasks:
            if t is not current and t.pid in self.engine.tasks:
                self.engine.retry(t)

    def _connect_again(self) -> None:
        """The connections the program had made to its own listeners and not accepted yet
        (they waited in the dead kernel's backlog): connected again now that every process
        went live and listens again; reset if that fails."""
        pending, self.not_accepted = self.not_accepted, []
        for task, fd, info in pending:
            try:
                note = pairs.connect_again(task, fd, info, self.in_flight.conns)
            except TftError:
                note = ""
            if not note:
                rebuild.reset(task, fd, info)
                note = f"fd {fd}: connection reset"
            self.rebuilt[info.desc] = (task, fd)
            self.warn(f"pid {task.vpid}: {note}")

    def on_exit(self, task: Task, call: Call) -> None:
        if call.note == "reap":
            return self._reaped(task, call)
        if not self.is_live(task) or call.rec is not None:   # (a live call has no record)
            return super().on_exit(task, call)
        res = signed(call.result)
        st: BackupTaskState = task.policy_state
        if st.trimmed:
            if res < 0:
                self.in_flight.untrim(task, call, st.trimmed)
            else:
                res += st.trimmed
            st.trimmed = 0
        if call.note in (redo.UNCERTAIN, redo.DONE):
            res = self.uncertain_calls.settle(task, task.policy_state.fds, call, res)
            if res is None:
                return   # made again (an exclusive open without O_EXCL): its next exit decides
        if call.name in _PID_RESULTS and res > 0:
            res = self.pids.to_virtual(res)
        elif call.name == "waitid" and res == 0 and call.args[2]:
            real = task.mem.read_u32(call.args[2] + SI_PID)
            if real:
                task.write(call.args[2] + SI_PID, struct.pack("<i", self.pids.to_virtual(real)))
        elif call.name in _PROC_READS and (view := procview.wanted(call, task.policy_state.fds)):
            res = procview.rewrite(task, call, res, view, self.pids.to_virtual)   # /proc: its own pids
        if call.saved_args is not None or res != signed(call.result):
            task.set_result(res)   # also puts back the arguments we translated
        call.result = res
        if call.name in _FD_CALLS:
            fdtable.update(task, task.policy_state.fds, call, res, standin=False)
        if self.inner is not None and 0 <= call.nr < 1024:
            # Logged as the program saw it (virtual pids).  A call with no number is not the
            # program's (a signal's rewind gone astray): a fresh backup would take its record for
            # a corrupt stream, hence a failure, and go live beside us; unlogged, it diverges.
            self.inner.on_exit(task, call)

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
        if self.inner is not None:
            return self.inner.after_call(task, call)   # held signals: at epoch boundaries, logged
        st: BackupTaskState = task.policy_state
        pending, st.pending = st.pending, []
        for signo, info in pending:
            task.inject_signal(signo, info)

    def on_signal(self, task: Task, signo: int, siginfo: bytes) -> SignalAction:
        if self.is_live(task):
            return SignalAction.DELIVER if self.inner is None else self.inner.on_signal(task, signo, siginfo)
        if self.primary_state == "failed":
            self._hold(task, signo, siginfo)   # the primary cannot have seen it: ours, once live
        return SignalAction.DROP

    def on_rdtsc(self, task: Task, rdtscp: bool) -> Tsc:
        # peek() first: it waits for the primary's next record, and it is while waiting that a
        # failure is noticed.  A process with nothing more in the log once the primary failed
        # reads the counter live (it goes live at its next system call), whatever the state
        # was before the wait.
        if self.is_live(task) or (self.peek(task) is None and self.primary_state == "failed"):
            if self.inner is not None:
                return self.inner.on_rdtsc(task, rdtscp)   # logged: the fresh backup reads it too
            return Tsc(time.monotonic_ns() * 3)
        return super().on_rdtsc(task, rdtscp)

    def on_finish(self, engine: Engine) -> None:
        self.faults_not_injected = self.faults.finish() + self.as_primary.finish()
        for msg in self.faults_not_injected:
            self.warn(f"warning: {msg}")
        super().on_finish(engine)
        if self.inner is not None:
            self.inner.on_finish(engine)   # the end record: the fresh backup ends with the program

    def on_task_exit(self, task: Task, code, sig) -> None:
        self.waiting.pop(task.pid, None)
        if self.inner is not None and self.is_live(task):
            self.inner.on_task_exit(task, code, sig)
        if self.primary_state == "failed" and self.waiting and self._everyone_waiting():
            self._go_live_all(current=None)

    def on_switch(self, task: Task, seq: int, at: str, to: Task) -> None:
        if self.inner is not None and self.is_live(task):
            self.inner.on_switch(task, seq, at, to)   # a live replica's own schedule: the fresh backup follows it

    # -- live ----------------------------------------------------------------------------
    def live_entry(self, task: Task, call: Call) -> None:
        """Run the call for real; keep pids virtual and dead connections reset."""
        name = call.name
        call.action = "live"
        st: BackupTaskState = task.policy_state
        if not st.reconciled:
            self.reconcile(task)
            self._connect_again()
        if name in ("getpid", "gettid"):
            return task.emulate(task.vpid if name == "gettid" or task.group is None else task.group.leader.vpid)
        if name == "getppid" and task.parent is not None:
            return task.emulate(task.parent.vpid)
        entry = call.entry
        if entry is not None and entry.fd_arg is not None and entry.resets:
            info = task.policy_state.fds.get(call.args[entry.fd_arg])
            if info is not None and info.kind == "dead":
                return task.emulate(-errno.ECONNRESET)
        if name in _PID_ARGS or name == "waitid":
            self._translate_pids(task, call)
        elif entry is not None and entry.path is not None:
            self._translate_proc_path(task, call)
        if st.uncertain:
            st.uncertain = self.uncertain_calls.enter(call)
        if self.in_flight.owing and call.saved_args is None:
            st.trimmed = self.in_flight.trim(task, call)
            if st.trimmed:
                self.warn(f"pid {task.vpid}: {call.name} leaves out the first {st.trimmed} bytes: the primary "
                          f"had written them before it died, and its reader read them")
        if self.inner is not None:
            self._relay_news(task)
            if entry is not None and entry.kills and reintegration.at_itself(task, call):
                st.expect_self_signal = True   # the recorder compares real pids: the program's are virtual
            self.inner.on_entry(task, call)   # run to its exit stop under the output rule, logged
            if call.action == "logged":
                call.action = "live"
            return
        # The exit stop costs a stop; take it where we translate, or where someone watches.
        task.run(to_exit=name in _PID_ARGS or name in _PID_RESULTS or name in _FD_CALLS or name == "waitid"
                 or call.note == redo.UNCERTAIN or call.saved_args is not None or self.engine.tracing
                 # (a write may wait for a reader its schedule holds: the engine gives it room)
                 or (entry is not None and bool(entry.writes) and not task.group.dom.free)
                 or (name in _PROC_READS and procview.wanted(call, st.fds) is not None))

    def go_live(self, task: Task) -> None:
        """From now on this process runs for real (rebuilt at its next system call).

        After a failure its first calls are *uncertain* until it makes an output: the primary
        may have made them already (:mod:`tft_lab.redo` answers those)."""
        for t in task.group.dom.tasks if task.group is not None else [task]:   # all it is scheduled with
            t.policy_state.live = True
            if self.primary_state == "failed":
                t.policy_state.uncertain = True
        if self.primary_state == "failed" and self.relay is not None and self.inner is None:
            self._promote()

    def _promote(self) -> None:
        """This replica is the primary now: it logs on after what it received (through the
        relay, which catches a fresh backup up), and the run's primary faults are its own."""
        self.inner = reintegration.inner_primary(self.relay, self.engine, max(self.max_oseq, self.next_oseq - 1),
                                                 commit=self.commit, fence_after=self.fence_after,
                                                 warn=self.warn, lease=self.lease)
        self.as_primary.promote(self.engine, self.t0, self.engine.stopped_calls)
        self.relay.start()

    def _relay_news(self, task: Task) -> None:
        """Put the fresh backup's progress in the trace (catch-up start, caught up, lost)."""
        for name, text in self.relay.news():
            self.engine.emit(task, "reintegration", name, text, 0, "event", "live")

    def reconcile(self, task: Task) -> None:
        """Rebuild what the primary's kernel had for this process.  Precondition: at a syscall entry."""
        for t in task.group.threads if task.group is not None else [task]:   # one fd table per process
            t.policy_state.reconciled = True
        if self.live_ns is None:
            self.live_ns = time.monotonic_ns()   # the first process of the program is live
        notes = [rebuild.enter_cwd(task)]
        for fd, info in sorted(task.policy_state.fds.items()):
            try:
                rebuilt = info.desc in self.rebuilt
                if rebuilt and rebuild.share(task, fd, info, self.rebuilt, self.engine.tasks):
                    continue   # another fd of this description was rebuilt: the same object
                if info.kind == "file" and (info.standin or rebuilt):
                    notes.append(rebuild.reopen(task, fd, info))
                elif info.kind == "listen" and (info.standin or rebuilt):
                    notes.append(rebuild.relisten(task, fd, info))
                elif info.kind == "conn" and info.standin and (peer := pairs.find_peer(
                        info, self.stopped or [task], self.rebuilt)) is not None:
                    note = pairs.reconnect(task, fd, info, *peer, self.in_flight.conns)
                    if not note:
                        rebuild.reset(task, fd, info)
                        note = f"fd {fd}: connection reset"
                    else:
                        self.rebuilt[peer[0].policy_state.fds[peer[1]].desc] = peer
                    notes.append(note)
                elif info.kind == "socket" and (info.standin or rebuilt):
                    notes.append(rebuild.resocket(task, fd, info))
                elif (info.kind == "conn" and info.standin and not rebuilt
                        and pairs.own_listener(info, self.engine.tasks.values())):
                    self.not_accepted.append((task, fd, info))   # once every listener listens again
                    continue
                elif info.kind in ("conn", "dead") and (info.standin or rebuilt):
                    rebuild.reset(task, fd, info)
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
        for t in task.group.threads if task.group is not None else [task]:
            for signo, info in self.sent_signals.owed(t.vpid) if t.state != "gone" else ():
                # Sent by the program before the failover, its delivery lost with the primary.
                t.inject_signal(signo, info)
                sender = struct.unpack_from("<i", info, SI_PID)[0]
                notes.append(f"{_signame(signo)} sent by pid {sender} before the failover, delivered now"
                             + (f" (to thread {t.vpid})" if t is not task else ""))
        self.engine.emit(task, "failover", "go-live", "; ".join(n for n in notes if n), 0, "event", "live")
        if any(notes):
            self.warn(f"pid {task.vpid} went live at seq {task.seq}: " + "; ".join(n for n in notes if n))

def _signame(signo: int) -> str:
    try:
        return signal.Signals(signo).name
    except ValueError:
        return f"signal {signo}"
