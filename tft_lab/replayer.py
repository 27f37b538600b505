"""The replayer: the backup whose channel is a file.

It re-executes the program and feeds it the primary's answers: input and
identity calls are skipped and their results and out-buffers written back,
outputs are skipped (the program's writes to the inherited stdout and stderr
are performed by the supervisor itself, in the primary's order), fd-creating
resource calls get a stand-in so fd numbers match, local calls run and are
checked against the log.  Signals are raised at the seq the log says, with
their original siginfo; the backup's own asynchronous signals are dropped.

Bytes an output moved from another fd (``sendfile``, ``copy_file_range``,
``splice``) are not in the program's memory: the primary logged them where the
replay shows the destination, and they are written from the log.

Paths and directories: the replay skips the program's ``mkdir`` (an output),
so what exists here is not what the primary saw.  The working directory is the
primary's, kept in the fd table (:mod:`tft_lab.fdtable`), and every path the
replay resolves itself (a read-only open it runs for real, a ``chdir``) is
resolved against it or against the recorded path of a directory fd, never
against this process's own working directory.  ``chdir``/``fchdir`` answer
the primary's result; this process enters the directory for real where it
exists here (so that a backup going live is in the right place; under ``tft
run`` the primary made it already), and otherwise only the recorded one moves.
A read-only open of a file or directory present here opens it for real; one
that is not here gets a stand-in that still knows its recorded path.

A file of the process's own ``/proc`` entry (``/proc/self/uid_map``...) is the
process's kernel state, not the world: it is opened for real (``/proc/<pid>``
of the primary's pid becomes this process's), and what the program writes to
it is written for real and checked against the primary's result.
"""
from __future__ import annotations

import collections
import os
import stat
import struct
from dataclasses import dataclass, field
from typing import Iterable, Iterator

from . import fdtable
from . import log as _log
from . import pairs, sched
from .engine import Engine, Policy, ReplayLane, SignalAction, Tsc
from .guest import Call, Task, signed
from .errors import DivergenceError, LogError, TftError
from .mapped import MapReplayer
from .outs import MOVED, gather, places
from .recorder import file_sha256, refused_by_determinism
from .strace import format_args as _fmt
from .syscalls import RESTART_CODES, name_of, TABLE

#: The answered calls (the compiled lane's: :meth:`Replayer.lane`), by number.
_ANSWERED = frozenset(e.x64 for e in TABLE.values() if e.answered)
#: Records the lane is offered at most at once (read ahead from a log file).
LANE_AHEAD = 256

O_ACCMODE, O_CREAT, O_TRUNC, O_APPEND, O_CLOEXEC = 0o3, 0o100, 0o1000, 0o2000, 0o2000000
AT_FDCWD = fdtable.AT_FDCWD
NR_OPENAT = TABLE["openat"].x64
NR_CHDIR = TABLE["chdir"].x64
NR_DUP3, NR_CLOSE = TABLE["dup3"].x64, TABLE["close"].x64
#: ``Call.note`` of a new fd being moved to the primary's number (``_move_fd``), then the
#: number it got here; ``+`` once the ``dup3`` is done.
_MOVING = "moving fd "
_WAIT_FOR_SIGNAL = ("pause", "rt_sigsuspend")   # re-run for real with the signal already pending


class Stream:
    """The records of one (virtual) process, in the order the primary wrote them.

    Per process the primary writes: ``sys(k)``, then any ``sig(k)`` delivered right after
    call k, any ``tsc`` read before call k+1, then ``sys(k+1)``; an ``exec(k)`` follows the
    ``sys(k)`` of a successful execve.
    """

    def __init__(self):
        self.q: collections.deque = collections.deque()
        self.exit = None


@dataclass(slots=True)
class ReplayTaskState:
    """What the replaying side (:class:`Replayer`, and the backup built on it) keeps about one
    process."""

    fds: dict[int, fdtable.Fd] = field(default_factory=dict)
    """What each fd stands for on the primary (:mod:`tft_lab.fdtable`): a real object or a
    stand-in; the working directory under ``AT_FDCWD``.  Copied at fork, pruned at exec."""
    before: list = field(default_factory=list)
    """``sig`` records the primary delivered just before this process's next call: raised at
    that call's entry, which then starts afresh."""


class Replayer(Policy):
    """Backup / replayer over records, from a log file (read as the replay needs them) or a
    channel (as they come).

    ``records``: the header, then the rest, from any iterable (a :class:`~tft_lab.log.LogReader`
    streams a file: memory stays flat in the log's length).  Where the log stops before its
    ``end`` record (cut off, corrupt, its recorder killed), every process replays all it has
    and the replay then stops with a :class:`LogError` saying where and why."""

    replica = "backup"
    schedule = "log"   # threads run in the order the log says (docs/threads.md)

    def new_task_state(self) -> ReplayTaskState:
        return ReplayTaskState()

    def __init__(self, records: Iterable, *, out_fds: dict[str, int] | None = None):
        source = iter(records)
        first = next(source, None)
        if first is None or first.type != "header":
            raise LogError("log has no header")
        self.header = first
        self._source: Iterator | None = source   # the records not read yet (None: no more)
        self.source_name: str = getattr(records, "path", "the log")
        self.log_stop: LogError | None = None    # why the log stopped being readable, if it did
        self.mapped = MapReplayer()   # mapped files: the logged contents
        self.streams: dict[int, Stream] = collections.defaultdict(Stream)
        self.schedules: dict[int, sched.Schedule] = collections.defaultdict(sched.Schedule)  # per process
        self.end_status: int | None = None
        self.next_oseq = 1
        self.parked: dict[int, Task] = {}   # oseq -> task waiting for its turn to output
        self.out_fds = out_fds if out_fds is not None else {"stdout": 1, "stderr": 2}

    def add(self, rec) -> None:
        """Take one more record (from the file or, on a live channel, as records arrive)."""
        t = rec.type
        if t == "end":
            self.end_status = rec["status"]
        elif t == "exit":
            self.streams[rec["pid"]].exit = rec
        elif t in ("sys", "sig", "tsc", "exec"):
            self.streams[rec["pid"]].q.append(rec)
        elif t in ("blob", "map"):
            self.mapped.add(rec)
        elif t == "switch":
            self.schedules[rec["pid"]].q.append(rec)
        else:
            raise LogError(f"unexpected {t!r} record after the header")

    def pull(self) -> bool:
        """Read one more record; False when none will come: the log's end, or the place where it
        stops being a sound log (kept in :attr:`log_stop`, reported once a process needs more)."""
        if self._source is None:
            return False
        try:
            self.add(next(self._source))
            return True
        except StopIteration:
            pass
        except LogError as e:
            self.log_stop = e
        self._source = None
        return False

    def stopped_short(self) -> LogError | None:
        """Why the log has no more records although the recording went on (None: it is whole
        so far, or ended with its end record)."""
        if self._source is not None or self.end_status is not None:
            return None
        why = (str(self.log_stop) if self.log_stop is not None else
               f"{self.source_name}: the log ends without an end record: the recording did not finish "
               "(was its recorder killed?)")
        return LogError(f"{why}; everything recorded before it was replayed")

    def peek(self, task: Task):
        """The next record of ``task``'s process, waiting for it if the channel is live."""
        stream = self.streams[task.vpid]
        while not stream.q:
            if not self.pull():
                return None
        return stream.q[0]

    # -- lifecycle -----------------------------------------------------------------------
    def on_start(self, engine: Engine) -> None:
        self.engine = engine
        engine.root.vpid = self.header["pid"]
        engine.root.policy_state.fds = fdtable.inherited()
        fdtable.set_cwd(engine.root.policy_state.fds, self.header["cwd"])

    def on_exec(self, task: Task, at_random: int | None) -> None:
        fdtable.after_exec(task.policy_state.fds)
        rec = self.peek(task)
        path = os.readlink(f"/proc/{task.pid}/exe")
        if rec is None and self.stopped_short() is not None:
            raise self.stopped_short()
        if rec is None or rec.type != "exec" or rec["seq"] != task.seq:
            raise DivergenceError(f"replay diverged: the program executed {path} where the log has "
                                  f"{_describe(rec)}", syscall="execve")
        if os.path.basename(path) != os.path.basename(rec["path"]):
            raise DivergenceError(f"replay diverged: the log has execve of {rec['path']}, "
                                  f"the program executed {path}", syscall="execve")
        self.mapped.check_exec(task, rec, path)
        self.streams[task.vpid].q.popleft()
        if at_random:
            task.write(at_random, rec["blobs"][0])

    def on_fork(self, parent: Task, child: Task) -> None:
        if child.group is parent.group:   # a thread: one fd table for the whole process
            child.policy_state.fds = parent.policy_state.fds
        else:
            child.policy_state.fds = fdtable.copy_table(parent.policy_state.fds)
        call = parent.call
        if call is None or call.rec is None:
            raise DivergenceError("a process was created outside a logged fork/clone", pid=parent.vpid)
        child.vpid = call.rec["res"]

    # -- the compiled lane ---------------------------------------------------------------
    def lane(self, task: Task) -> ReplayLane | None:
        if task.policy_state.before:
            return None   # signals to deliver at the next call's entry: on_entry's work
        # The lane stops before the call that ends an epoch: offer no record past it.
        seq, epoch = task.seq, self.engine.epoch
        want = min((epoch - (seq + 1) % epoch) % epoch, LANE_AHEAD)
        if not want:
            return None
        q = self.streams[task.vpid].q
        while len(q) <= want and self.reads_ahead() and self.pull():
            pass
        records = []
        it = iter(q)
        rec = next(it, None)
        for nxt in it:
            # An answered call whose record is followed by another call's: no signal, rdtsc or
            # exec record is due after it (those are after_call's and on_exec's work).
            if (rec.type != "sys" or rec["seq"] != seq or rec["nr"] not in _ANSWERED or rec["res"] in RESTART_CODES
                    or len(rec["addrs"]) > 1 or nxt.type != "sys" or len(records) >= want):
                break
            addrs = rec["addrs"]
            records.append((rec["nr"], tuple(rec["args"]), rec["res"], addrs[0] if addrs else 0,
                            rec["blobs"][0] if addrs else None))
            seq += 1
            rec = nxt
        if not records:
            return None
        return ReplayLane(records, lambda n: self._lane_took(task, n))

    def _lane_took(self, task: Task, n: int) -> None:
        q = self.streams[task.vpid].q
        for _ in range(n):
            q.popleft()

    def reads_ahead(self) -> bool:
        """Whether :meth:`pull` may read records before a task needs them, without waiting."""
        return True

    # -- calls ---------------------------------------------------------------------------
    def next_record(self, task: Task, call: Call):
        rec = self.peek(task)
        if rec is None:
            return None
        if rec.type != "sys" or rec["seq"] != call.seq or rec["nr"] != call.nr:
            raise DivergenceError(
                f"replay diverged: the log has {_describe(rec)}, "
                f"the program called {call.name}({_fmt(call.args[:len(rec.get('args', ()))])}) at seq {call.seq}",
                pid=task.vpid, seq=call.seq, epoch=task.epoch, syscall=call.name)
        want = rec["args"]
        got = list(call.args[:len(want)])
        if want != got and not (call.entry is not None and call.entry.execs):
            raise DivergenceError(
                f"replay diverged: {call.name} arguments differ: log ({_fmt(want)}), program ({_fmt(got)})",
                pid=task.vpid, seq=call.seq, epoch=task.epoch, syscall=call.name)
        return self.streams[task.vpid].q.popleft()

    def on_entry(self, task: Task, call: Call) -> None:
        st: ReplayTaskState = task.policy_state
        if st.before:   # the primary delivered these just before this call: so do we
            before, st.before = st.before, []
            for rec in before:
                task.inject_signal(rec["signo"], rec["blobs"][0])
            task.rewind()
            return
        if self.gives_way(task, call):
            return
        entry = call.entry
        rec = call.rec or self.next_record(task, call)
        if rec is None:
            return self.log_exhausted(task, call)
        call.rec = rec
        res = rec["res"]
        outs = list(zip(rec["addrs"], rec["blobs"]))
        if outs and call.cls != "output":
            self.check_places(task, call, outs)
        refused = refused_by_determinism(call)
        entry = call.entry
        cls = call.cls
        if refused is not None or (entry is not None and cls == "unsupported"):
            task.emulate(res)
            return
        if res in RESTART_CODES:
            # The primary's call was interrupted by a signal delivered in the call.
            if call.name in _WAIT_FOR_SIGNAL:
                self.inject_signals(task, call.seq)
                call.note = "preinjected"
                task.run(to_exit=True)
            else:
                for addr, data in outs:
                    task.write(addr, data)
                task.skip_to_exit()
            call.action = "emulated"
            return
        if cls in ("input", "identity") and not entry.forks:
            task.emulate(res, outs)
            return
        if cls == "output":
            oseq = rec.get("oseq")
            if not self.output_turn(oseq):
                if oseq < self.next_oseq or oseq in self.parked:
                    raise DivergenceError(f"replay diverged: the log numbers two outputs {oseq} "
                                          "(corrupt log)", pid=task.vpid, seq=call.seq, syscall=call.name)
                self.parked[oseq] = task
                task.park()
                self.check_stalled()
                return
            if self.changes_itself(task, call):
                call.action = "ran"     # checked against the primary's result at its exit
                task.run(to_exit=True)
            else:
                self.perform_output(task, call, res)
                task.emulate(res, [(a, d) for a, d in outs if a != MOVED])   # offsets a move updated
            if oseq is not None and oseq >= self.next_oseq:
                self.next_oseq = oseq + 1
                waiting = self.parked.pop(self.next_oseq, None)
                if waiting is not None:
                    self.engine.retry(waiting)
            return
        if cls == "resource":
            self.resource(task, call, res, outs)
            return
        if entry is not None and entry.chdir:
            self.change_dir(task, call, res)
            return
        # local (and fork/clone): run for real; checked or overridden at the exit
        if entry is not None and entry.execs and res < 0:
            task.emulate(res)
            return
        if call.name == "mmap" and self.mapped.replay_mmap(task, call, rec):
            return   # mapped the logged content, not the local file
        call.action = "ran"
        task.run(to_exit=not (entry is not None and entry.noreturn))

    def check_places(self, task: Task, call: Call, outs) -> None:
        """The log's out-buffers of ``call`` must be where the call's own arguments point: the
        replay writes them into the program's memory (a forged address would put the bytes
        elsewhere and the program would go on, silently, with what its buffer held before)."""
        allowed = places(task, call)
        for addr, _ in outs:
            if addr != MOVED and addr not in allowed:   # (MOVED: bytes the replay shows, not memory)
                raise DivergenceError(f"replay diverged: the log puts what {call.name} returned at "
                                      f"{addr:#x}, where its arguments do not point (corrupt log)",
                                      pid=task.vpid, seq=call.seq, syscall=call.name)

    def next_thread(self, task: Task, at: str) -> Task | None:
        """The thread the log runs after this switch point of ``task`` (``task``: no switch).

        The primary logs a switch before any later record of the thread that gives way (its
        blocking call's own record comes when that call returns), so the log is read until it
        shows either the switch or that thread's next record."""
        if self.schedules_live(task):   # a backup past the log: its own choice, as a primary's
            return sched.first_ready(task, at)
        schedule = self.schedules[task.group.dom.leader.vpid]
        stream = self.streams[task.vpid]
        while not schedule.q and (at == "exit" or not stream.q):
            if not self.pull():
                break
        rec = schedule.take(task, at)
        if rec is None:   # no switch here; at an exit (a backup past the log's end) the next ready one
            return sched.first_ready(task, at) if at == "exit" else task
        nxt = task.group.dom.by_vtid(rec["to"])
        if nxt is None:
            raise DivergenceError(f"replay diverged: the log runs thread {rec['to']} after thread {task.vpid} "
                                  f"(seq {task.seq}), there is no such thread here", pid=task.vpid,
                                  seq=task.seq)
        return nxt

    def gives_way(self, task: Task, call: Call) -> bool:
        """At a switch point (the entry of a blocking call, not answered yet): whether the log
        runs another task here; then ``task`` yields to it.  Asked again when the schedule
        comes back to a call it left undecided here: a replica that went live with this task
        held at this entry made the call live then, and it switched again at this same point
        (the log's next switch says so; else it runs on); so did a primary whose call was
        interrupted and made again."""
        entry = call.entry
        if entry is None or not entry.blocks or call.rec is not None or task.group.dom.free:
            return False
        nxt = self.next_thread(task, "block")
        if nxt is task:
            return False
        task.yield_to(nxt)
        return True

    def check_stalled(self) -> None:
        """Every process waits for its turn to output, and the turn's output is in none of them:
        nothing can ever run again.  Replay never waits on the log: that is a divergence."""
        tasks = [t for t in self.engine.tasks.values() if t.state != "gone"]
        if self.parked and all(t.call is not None and t.call.parked for t in tasks):
            raise DivergenceError(f"replay diverged: every process waits to output, none has output "
                                  f"#{self.next_oseq} of the log's order (corrupt log?)")

    def on_task_exit(self, task: Task, code, sig) -> None:
        g = task.group
        if g is not None and g.exiting and task.held is not None:
            # Killed by another thread's exit_group while the schedule held it: the call the
            # primary completed meanwhile (logged) is never made here.
            self.streams[task.vpid].q.clear()
        self.check_stalled()

    def output_turn(self, oseq: int | None) -> bool:
        """Outputs are replayed in the primary's order (its oseq), whichever process makes them."""
        return oseq is None or oseq == self.next_oseq

    @staticmethod
    def changes_itself(task: Task, call: Call) -> bool:
        """An output to a file of the process's own ``/proc`` entry (``fdtable.own_proc_path``):
        it changes the process, not the world, so the replay makes it for real, as a local call
        (``unshare -r`` writes its uid map so).  Not one whose bytes come from another fd."""
        entry = call.entry
        if entry is None or entry.fd_arg is None or entry.writes == "fd":
            return False
        info = task.policy_state.fds.get(call.args[entry.fd_arg])
        return info is not None and info.own

    def perform_output(self, task: Task, call: Call, res: int) -> None:
        """Writes to the inherited stdout/stderr are the replay's visible output (whatever the call
        that moved them: the table's ``writes`` fact says where its bytes are)."""
        if res <= 0 or call.entry is None or not call.entry.writes:
            return
        info = task.policy_state.fds.get(call.args[call.entry.fd_arg])
        fd = self.out_fds.get(info.kind) if info else None
        if fd is None:
            return
        data = gather(task, call, res)
        if len(data) != res:
            # Never a silent wrong replay: bytes the program put on its output are not in the log.
            raise DivergenceError(f"replay cannot show the {res} bytes {call.name} moved to {info.kind}: "
                                  "the log does not have them", pid=task.vpid, seq=call.seq, syscall=call.name)
        while data:
            n = os.write(fd, data)
            data = data[n:]

    def resource(self, task: Task, call: Call, res: int, outs) -> None:
        name = call.name
        if res < 0 or not call.entry.creates_fd:
            # bind, listen, connect... and every failed one (a listen's logged address is not memory)
            task.emulate(res, [(a, d) for a, d in outs if a != MOVED])
            return
        if call.entry.opens:
            path_arg, flags = fdtable.open_call(call)
            where = fdtable.resolve_call(task, task.policy_state.fds, call)
            own = fdtable.own_proc_path(task, where) if where is not None else None
            if own is not None:
                # The process's own kernel state (/proc/self/uid_map...): opened here for real, in
                # whatever mode, so that its writes can be made (see perform_output).
                call.action = "ran"
                task.redirect(NR_OPENAT, (AT_FDCWD, task.scratch(own.encode(errors="surrogateescape") + b"\0"),
                                          flags, 0))
                return
            if flags & O_ACCMODE == 0 and not flags & (O_CREAT | O_TRUNC) and self._exists(task, call, path_arg, where):
                # Read-only and present here: the real file (its mmaps map the logged content), or directory (so
                # that a backup going live has it).  A relative path is resolved against the
                # recorded directories, not this process's own working directory.
                call.action = "ran"
                raw = task.mem.read_cstring(call.args[path_arg])
                if where is not None and not raw.startswith(b"/"):
                    mode = call.args[path_arg + 2]     # open(path, flags, mode), openat(at, path, flags, mode)
                    task.redirect(NR_OPENAT, (AT_FDCWD, task.scratch(where.encode(errors="surrogateescape") + b"\0"),
                                              flags, mode))
                else:
                    task.run(to_exit=True)
                return
            cloexec = flags & O_CLOEXEC
        else:
            flag_arg = {"socket": 1, "accept4": 3, "inotify_init1": 0}.get(name)   # SOCK_/IN_CLOEXEC
            cloexec = call.args[flag_arg] & O_CLOEXEC if flag_arg is not None else 0
        for addr, data in outs:
            if addr != MOVED:   # logged beside the call (an accepted connection's addresses)
                task.write(addr, data)
        path = task.scratch(b"/dev/null\0")
        fds = task.policy_state.fds
        if res not in fds and res != fdtable.lowest_free(fds):
            # With threads the kernel picks the number when the call returns, maybe after another
            # thread closed a lower one, which the schedule replays before this call (that thread
            # may be gone since: gpg-agent's): the stand-in is put at the primary's number (free:
            # the fd table has it closed).
            tmp = task.inject(NR_OPENAT, (AT_FDCWD, path, os.O_RDWR | cloexec, 0))
            if tmp >= 0:
                pairs.dup_into(task, tmp, res, bool(cloexec))
                task.emulate(res)
                call.action = "standin"
                return
        task.redirect(NR_OPENAT, (AT_FDCWD, path, os.O_RDWR | cloexec, 0))
        call.action = "standin"

    @staticmethod
    def _exists(task: Task, call: Call, path_arg: int, where: str | None) -> bool:
        path = where
        if path is None:   # relative to a directory we know nothing of: ask the kernel's view
            path = task.mem.read_cstring(call.args[path_arg]).decode(errors="surrogateescape")
            if not path.startswith("/"):
                base = f"/proc/{task.pid}/cwd"
                at = fdtable.dirfd(call.args[0]) if call.name == "openat" else AT_FDCWD
                if at != AT_FDCWD:
                    base = f"/proc/{task.pid}/fd/{at}"
                path = os.path.join(base, path)
        try:
            st = os.stat(path)
        except OSError:
            return False
        return stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode) or stat.S_ISCHR(st.st_mode)

    def change_dir(self, task: Task, call: Call, res: int) -> None:
        """chdir/fchdir: the working directory becomes the primary's (kept in the fd table), and
        this process's own follows it where that directory exists here (a backup that goes live
        needs it); where it does not (the program made it, and its mkdir is an output, skipped
        here), paths are still resolved against the recorded one.  The result is the primary's."""
        if res < 0:
            task.emulate(res)
            return
        call.action = "ran"
        fds = task.policy_state.fds
        info = fds.get(call.args[0]) if call.name == "fchdir" else None
        if info is not None and info.standin and info.path.startswith("/"):
            target = info.path     # a stand-in cannot be entered: go by the path it stands for
        elif call.name == "chdir":
            target = fdtable.resolve_call(task, fds, call)
        else:
            target = None          # a real directory fd: fchdir it for real
        if target is not None and os.path.isdir(target):
            task.redirect(NR_CHDIR, (task.scratch(target.encode(errors="surrogateescape") + b"\0"),))
        elif target is not None:
            task.emulate(res)      # not here: the recorded directory alone is the working directory
        else:
            task.run(to_exit=True)

    def on_exit(self, task: Task, call: Call) -> None:
        rec = call.rec
        if rec is None:
            return
        want = rec["res"]
        got = signed(call.result)
        if call.note.startswith(_MOVING):
            if not self._moved_fd(task, call, want):
                return   # (its second step runs)
            got = want
        if want in RESTART_CODES:
            if call.note != "preinjected":
                task.set_result(want, restart_nr=call.nr)
            call.result = want
            return
        if call.action == "standin" or (call.entry is not None and call.entry.forks):
            if call.action == "standin" and got != want:
                raise DivergenceError(f"stand-in for {call.name} got fd {got}, the primary's was {want}: "
                                      "the replicas' fd tables differ", syscall=call.name)
            task.set_result(want)
            call.result = want
            if want > 0 and call.entry.forks and task.clone_flags & sched.CLONE_THREAD:
                self._virtual_tid(task, call, want)
        elif call.action == "ran" and call.to_exit:
            entry = call.entry
            unchecked = entry is not None and entry.cls == "local" and not entry.check
            if unchecked:   # the program (and the trace) sees the primary's answer
                for addr, data in zip(rec["addrs"], rec["blobs"]):
                    task.write(addr, data)
                task.set_result(want)
            elif call.entry.opens and got < 0 <= want:
                # The file was there when we looked and gone when we opened it (the primary,
                # ahead of us, removed it): open a stand-in instead, as for a file it wrote.
                _, flags = fdtable.open_call(call)
                task.redo_as(NR_OPENAT, (AT_FDCWD, task.scratch(b"/dev/null\0"), os.O_RDWR | (flags & O_CLOEXEC), 0))
                call.action = "standin"
                return
            elif got < 0 <= want and call.entry is not None and call.entry.execs:
                where = fdtable.resolve_call(task, task.policy_state.fds, call) or "?"
                raise DivergenceError(f"replay diverged: {call.name} of {where} failed here ({os.strerror(-got)}), "
                                      "it ran on the primary: a replay runs the programs the recording ran, "
                                      "and this one is not here (did the recorded program make it?)",
                                      pid=task.vpid, seq=call.seq, epoch=task.epoch, syscall=call.name)
            elif got != want and not self._move_fd(task, call, got, want):
                raise DivergenceError(f"replay diverged: {call.name} returned {got} here, {want} on the primary",
                                      pid=task.vpid, seq=call.seq, epoch=task.epoch, syscall=call.name)
            elif got != want:
                return   # moved to the primary's number first (_moved_fd finishes it)
            elif call.saved_args is not None:
                task.set_result(got)   # it was redirected (an absolute path): restore its arguments
            call.result = want if unchecked else got
        else:
            call.result = want
        fdtable.update(task, task.policy_state.fds, call, call.result, standin=call.action == "standin")

    @staticmethod
    def _move_fd(task: Task, call: Call, got: int, want: int) -> bool:
        """A new fd got another number here than on the primary: move it to the primary's, if
        that one is free here.  Why they differ: another thread's call that took a number on
        the primary first (an ``accept`` that completed in its kernel while this thread ran)
        takes it here only when the schedule reaches that thread.  Made as the call again: a
        ``dup3`` onto the primary's number, then a ``close`` of ours (:meth:`_moved_fd`)."""
        entry = call.entry
        if (got < 0 or want < 0 or entry is None or not (entry.opens or entry.creates_fd)
                or task.group.dom.free or os.path.lexists(f"/proc/{task.tgid}/fd/{want}")):
            return False
        try:
            with open(f"/proc/{task.tgid}/fdinfo/{got}") as f:
                flags = next(int(line.split()[1], 8) for line in f if line.startswith("flags:"))
        except (OSError, StopIteration, ValueError):
            return False
        task.redo_as(NR_DUP3, (got, want, flags & O_CLOEXEC))
        call.note = f"{_MOVING}{got}"
        return True

    @staticmethod
    def _moved_fd(task: Task, call: Call, want: int) -> bool:
        """The steps of :meth:`_move_fd` as their exits come: after the ``dup3``, close ours
        (False: that runs now); after the ``close``, True: the call is done, with ``want``."""
        if call.note.endswith("+"):
            call.note = ""
            return True
        got = int(call.note[len(_MOVING):])
        if signed(call.result) != want:
            raise DivergenceError(f"replay diverged: {call.name} returned {got} here, {want} on the primary "
                                  f"(and it could not be moved there: {os.strerror(-signed(call.result))})",
                                  pid=task.vpid, seq=call.seq, epoch=task.epoch, syscall=call.name)
        call.note += "+"
        task.redo_as(NR_CLOSE, (got,))
        return False

    @staticmethod
    def _virtual_tid(task: Task, call: Call, tid: int) -> None:
        """The kernel wrote the new thread's real tid where clone was asked to (glibc's
        ``pthread->tid``, which pthread_join waits on and pthread_kill signals): the program
        must see the primary's, as gettid answers."""
        flags = task.clone_flags
        if call.name == "clone":
            ptid, ctid = call.args[2], call.args[3]
        else:   # clone3: struct clone_args {flags, pidfd, child_tid, parent_tid, ...}
            ctid, ptid = struct.unpack("<QQ", task.read(call.args[0] + 16, 16))
        for bit, addr in ((sched.CLONE_PARENT_SETTID, ptid), (sched.CLONE_CHILD_SETTID, ctid)):
            if flags & bit and addr:
                task.write(addr, struct.pack("<i", tid))

    def after_call(self, task: Task, call: Call) -> None:
        self.inject_signals(task, call.seq)

    def inject_signals(self, task: Task, seq: int) -> None:
        """Raise every signal the log delivers right after call ``seq`` (or keep those it
        delivers just before the next call for that call's entry)."""
        stream = self.streams[task.vpid]
        while True:
            rec = self.peek(task)
            if rec is None or rec.type != "sig" or rec["seq"] != seq:
                return
            stream.q.popleft()
            self.signal_logged(task, rec)
            if rec["mode"] == "before":
                task.policy_state.before.append(rec)
            else:
                task.inject_signal(rec["signo"], rec["blobs"][0])

    def signal_logged(self, task: Task, rec) -> None:
        """A logged signal of ``task``'s process is taken from the log, to be delivered now or
        at its next call's entry (a hook: the backup counts the signals its processes received)."""

    def on_signal(self, task: Task, signo: int, siginfo: bytes) -> SignalAction:
        return SignalAction.DROP  # the backup's own signals are not the program's: the log says which it gets

    def on_rdtsc(self, task: Task, rdtscp: bool) -> Tsc:
        rec = self.peek(task)
        if rec is None and self.stopped_short() is not None:
            raise self.stopped_short()
        if rec is None or rec.type != "tsc" or rec["seq"] != task.seq - 1:
            raise DivergenceError("replay diverged: the program read the time-stamp counter where the "
                                  f"log has {_describe(rec)}", syscall="rdtsc")
        self.streams[task.vpid].q.popleft()
        return Tsc(rec["value"], rec["aux"])

    def log_exhausted(self, task: Task, call: Call) -> None:
        """The log has nothing more for this process (a file replay: the primary died here)."""
        ex = self.streams[task.vpid].exit
        if ex is not None and ex["signal"]:
            os.kill(task.pid, 9)   # the primary was killed here (SIGKILL cannot be intercepted)
            task.run(to_exit=False)
            call.action = "failed"
            return
        short = self.stopped_short()
        if short is not None:
            raise short
        raise DivergenceError(f"replay diverged: the log ends, the program called {call.name} at seq {call.seq}",
                              pid=task.vpid, seq=call.seq, epoch=task.epoch, syscall=call.name)

    def on_finish(self, engine: Engine) -> None:
        self.mapped.close()
        if self.parked:
            raise DivergenceError(f"replay ended with {len(self.parked)} output(s) never reached")


def _describe(rec) -> str:
    if rec is None:
        return "nothing more for this process"
    t = rec.type
    if t == "sys":
        return f"{name_of(rec['nr'])}({_fmt(rec['args'])}) at seq {rec['seq']}"
    if t == "sig":
        return f"signal {rec['signo']} after seq {rec['seq']}"
    if t == "tsc":
        return f"an rdtsc after seq {rec['seq']}"
    if t == "switch":
        return f"a switch from thread {rec['tid']} to thread {rec['to']} at its seq {rec['seq']} ({rec['at']})"
    return f"execve of {rec['path']} at seq {rec['seq']}"


def replay(log_path: str, *, keep_trace: bool = True, check_program: bool = True,
           events: str | None = None, control_fd: int | None = None) -> tuple[int, Engine]:
    """Replay the log at ``log_path``; returns (the recorded exit status, engine).

    The log is streamed (memory flat in its length).  A log that stops before its end record
    (cut off, corrupt, its recorder killed) is replayed up to there, then :class:`LogError`
    says where and why; a replay that ends otherwise than the recording is a divergence."""
    reader = _log.LogReader(log_path)
    try:
        policy = Replayer(reader)
        h = policy.header
        if check_program:
            try:
                digest = file_sha256(h["exe"])
            except OSError:
                raise LogError(f"{h['exe']}: the recorded program is missing")
            if digest != h["exe_sha256"]:
                raise DivergenceError(f"{h['exe']}: the program changed since it was recorded (sha256 differs)")
        if not os.path.isdir(h["cwd"]):
            raise LogError(f"{h['cwd']}: the recorded working directory is not here (the replay runs there)")
        engine = Engine(policy, epoch=h["epoch"], keep_trace=keep_trace)
        try:
            with engine.watched(events, control_fd):
                engine.start(h["argv"], env=h["env"], cwd=h["cwd"], path=h["exe"], signals=_log.start_signals(h))
                engine.run()
            _finish(policy, engine)
        except TftError as e:
            e.engine = engine   # its trace up to the stop shows where the replay diverged
            raise
    finally:
        reader.close()
    return policy.end_status, engine


def _finish(policy: Replayer, engine: Engine) -> None:
    """After the program: the rest of the log is its processes' exits and the end record."""
    while policy.end_status is None and policy.pull():
        pass
    short = policy.stopped_short()
    if short is not None:
        raise short
    policy.pull()   # nothing may follow the end record (the reader says so if something does)
    if policy.log_stop is not None:
        raise policy.log_stop
    left = [(pid, s.q[0]) for pid, s in policy.streams.items() if s.q]
    left += [(pid, s.q[0]) for pid, s in policy.schedules.items() if s.q]
    if left:
        pid, rec = left[0]
        raise DivergenceError(f"replay diverged: the program ended, the log still has {_describe(rec)}", pid=pid)
    if engine.root_status != policy.end_status:
        raise DivergenceError(f"replay diverged: the program exited with status {engine.root_status}, "
                              f"the log's exit status is {policy.end_status}")
