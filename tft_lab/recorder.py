"""The recorder: the primary whose channel is a file.

It runs every call for real and logs every answer that came from outside
(the classes of docs/syscalls.md), holds asynchronous signals to epoch boundaries
and logs where it delivered them, and logs rdtsc values and AT_RANDOM bytes.
"""
from __future__ import annotations

import errno
import os
import signal as _signal
import time

from . import fdtable
from . import log as _log
from .answers import Answerer
from .mapped import HashCache, MapLogger, new_sha256
from ._backend.ptrace import SigInfo, find_program
from .engine import Engine, Policy, RecordLane, SignalAction, Tsc
from .guest import Call, Task, signed
from .errors import TftError, TracingError
from .outs import MAX_MOVED, MOVED, capture, move_plan, moved

PR_SET_TSC = 26
SIGRTMIN = 32
ARCH_SET_CPUID = 0x1012
EPIPE = errno.EPIPE
EINPROGRESS = errno.EINPROGRESS


def file_sha256(path: str, cache: HashCache | None = None) -> str:
    """The sha256 of the file at ``path``: from the per-user hash cache (keyed by the file's
    identity and times, see :class:`~tft_lab.mapped.HashCache`) when it is known there, since
    hashing a program as big as python3 costs milliseconds on every command."""
    try:
        digest = (cache or HashCache()).sha256(path)
    except TftError:   # no usable cache folder: hash it here
        digest = None
    if digest is not None:
        return digest
    h = new_sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def refused_by_determinism(call: Call) -> int | None:
    """Calls that would undo what makes replicas identical are answered EPERM on both replicas."""
    if call.name == "prctl" and call.args[0] == PR_SET_TSC:
        return -errno.EPERM
    if call.name == "arch_prctl" and call.args[0] == ARCH_SET_CPUID:
        return -errno.EPERM
    return None


#: The words of an environment variable's name (split at ``_`` and ``-``, any case) that say its
#: value is a secret: a log masks such a variable (see :func:`log_env`).
SECRET_WORDS = frozenset((
    "TOKEN", "SECRET", "PASSWORD", "PASSWD", "PASS", "PASSPHRASE", "PWD", "CREDENTIAL",
    "CREDENTIALS", "AUTH", "COOKIE", "KEY", "APIKEY", "PRIVATE",
))
_NOT_SECRET = frozenset(("PWD", "OLDPWD"))   # the working directories, not passwords
MASK = "*"


def is_secret(name: str) -> bool:
    """Whether a log masks the variable ``name``: one of its words is in :data:`SECRET_WORDS`
    (``GITHUB_TOKEN``, ``AWS_SECRET_ACCESS_KEY``, ``MYSQL_PWD``, ``npm_config__auth``...)."""
    if name in _NOT_SECRET:
        return False
    return any(word in SECRET_WORDS for word in name.upper().replace("-", "_").split("_"))


def log_env(env: dict[str, str], record_env: bool = False) -> dict[str, str]:
    """The environment as a log stores it.

    A log is a file that outlives the run: it must not hold the tokens and passwords an
    environment carries.  A variable whose name says it holds a secret (:func:`is_secret`)
    keeps its name and the *length* of its value, the value replaced by as many ``*``; every
    other variable is kept as it is, since programs read their configuration there (``GIT_*``,
    ``LANG``, a server's port) and a replay must see what the recording saw.  The replay
    starts the program with exactly this environment, so equal lengths keep the program's
    stack (where the environment lives, and many out-buffers with it) as the log has it.  A
    program whose behaviour depends on a masked value diverges on replay (or shows the
    ``*``): record it with ``record_env`` (``tft record --record-env``) to keep every value.
    """
    if record_env:
        return dict(env)
    return {k: MASK * len(v) if is_secret(k) else v for k, v in env.items()}


class PrimaryTaskState:
    """What the recording side (:class:`Recorder`, and the primary built on it) keeps about
    one process: the signals it holds back, and where they are delivered.  (A plain class,
    not a dataclass: importing dataclasses costs ~5 ms of every ``tft record``.)"""

    __slots__ = ("pending", "expect_self_signal", "before_seq", "in_call_signal")

    def __init__(self) -> None:
        self.pending: list[tuple[int, bytes]] = []
        """Asynchronous signals held back (signo, siginfo), in arrival order; each is delivered,
        and logged, at the next epoch boundary or before a call that may block."""
        self.expect_self_signal = False
        """The call just made raises a signal at this very process (kill(getpid()), raise,
        abort, a write's SIGPIPE): its arrival is delivered at once and logged as ``self``."""
        self.before_seq: int | None = None
        """The seq of the call at whose entry the held signals were last delivered
        (``before``): once per call, since after the rewind the same call enters again."""
        self.in_call_signal: tuple[int, bytes] | None = None
        """A signal delivered inside the call that is interrupted now: logged right after that
        call's record, when the call completes."""


class Recorder(Policy):
    """Primary / recorder.  ``sink`` receives ``(fields, blobs)`` records (a LogWriter or a channel).

    ``record_env``: the header carries the whole environment (a live backup needs it to run the
    program as the primary does); False (a log file, by default): see :func:`log_env`."""

    replica = "primary"
    run_id: str | None = None
    """The run's id in the header (``run``), set by a primary that holds an arbiter's key for it."""

    def new_task_state(self) -> PrimaryTaskState:
        return PrimaryTaskState()

    def held_signals(self, task: Task) -> list[int]:
        return [s for s, _ in task.policy_state.pending]

    def __init__(self, sink, small_log: bool = False, record_env: bool = True):
        self.sink = sink
        self.record_env = record_env
        self.oseq = 0
        self.maps = MapLogger(self.emit, small=small_log,   # mapped files are input
                              live=not isinstance(sink, _log.LogWriter))
        self.shown: set[tuple[int, int]] = set()   # (dev, ino) of the stdout/stderr a replay shows
        self.answers = Answerer()   # calls answered at their seccomp stop (one stop, not two)

    def emit(self, fields: dict, blobs=()) -> None:
        self.sink.write(fields, list(blobs))

    def lane(self, task: Task):
        st: PrimaryTaskState = task.policy_state
        if st.pending or st.expect_self_signal or st.in_call_signal is not None:
            return None   # a signal to deliver or to log first: on_entry's work
        return RecordLane(*self.answers.lane_facts(task), self.sink)

    # -- lifecycle -----------------------------------------------------------------------
    def on_start(self, engine: Engine) -> None:
        self.engine = engine
        fds = {}
        for fd in (0, 1, 2):
            try:
                fds[str(fd)] = os.readlink(f"/proc/self/fd/{fd}")
                if fd:
                    st = os.fstat(fd)
                    self.shown.add((st.st_dev, st.st_ino))
            except OSError:
                fds[str(fd)] = "closed"
        self.emit({"t": "header", "version": _log.VERSION, "argv": engine.argv,
                   "env": log_env(engine.env, self.record_env),
                   "cwd": engine.cwd, "exe": engine.path, "exe_sha256": file_sha256(engine.path, self.maps.cache),
                   "epoch": engine.epoch, "arch": os.uname().machine, "pid": engine.root.pid,
                   "fds": fds, "sigblk": engine.signals[0], "sigign": engine.signals[1],
                   "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                   **({"run": self.run_id} if self.run_id else {})})

    def on_finish(self, engine: Engine) -> None:
        self.answers.close()
        self.emit({"t": "end", "status": engine.root_status if engine.root_status is not None else 1})
        if hasattr(self.sink, "flush"):
            self.sink.flush()

    def on_exec(self, task: Task, at_random: int | None) -> None:
        call = task.call
        if call is not None and call.entry is not None and call.entry.execs:
            call.result = 0
            self.on_exit(task, call)   # logged now, so its record precedes the exec record
            call.note = "logged"
        rnd = task.read(at_random, 16) if at_random else bytes(16)
        path = os.readlink(f"/proc/{task.pid}/exe")
        self.emit({"t": "exec", "pid": task.vpid, "seq": task.seq, "path": path, **self.maps.exec_facts(task)},
                  [rnd])

    def on_fork(self, parent: Task, child: Task) -> None:
        child.vpid = child.pid  # the primary's pids are the virtual ones

    def on_task_exit(self, task: Task, code, sig) -> None:
        self.answers.forget(task)
        self.emit({"t": "exit", "pid": task.vpid, "code": -1 if code is None else code,
                   "signal": sig or 0})

    # -- calls ---------------------------------------------------------------------------
    def on_entry(self, task: Task, call: Call) -> None:
        refused = refused_by_determinism(call)
        if refused is not None:
            task.emulate(refused)
            return
        entry = call.entry
        if entry is not None and entry.cls == "unsupported":  # enosys ones (others stop earlier)
            task.emulate(-errno.ENOSYS)
            call.action = "failed"
            return
        st: PrimaryTaskState = task.policy_state
        if st.pending and entry is not None and self._deliver_before(st, call) and st.before_seq != call.seq:
            st.before_seq = call.seq   # one such delivery point per call
            self._deliver_pending(task, mode="before")
            task.rewind()
            return
        if entry is not None and entry.answered:
            result = self.answers.answer(task, call)
            if result is not None:   # answered here, logged at on_exit as if it had run
                task.emulate(result)
                call.action = "logged"
                return
        if entry is not None and entry.writes == "fd":
            # Bytes moved from another fd: the replay has no copy of them in memory, so they
            # are logged where the replay shows them; where they cannot be, the program is told
            # EINVAL (coreutils and CPython then fall back to read and write).
            plan = move_plan(task, call, self.shown)
            if plan == "refuse":
                task.emulate(-errno.EINVAL)
                return
            if plan == "log":
                call.note = "moved"
                length = entry.count_arg
                if call.args[length] > MAX_MOVED:   # one log record holds it: a short move
                    args = list(call.args)
                    args[length] = MAX_MOVED
                    task.redirect(call.nr, tuple(args))
        if entry is not None and entry.cls == "output":
            self.oseq += 1
            call.oseq = self.oseq
        if entry is not None and entry.kills:
            to_thread = call.name in ("tgkill", "tkill")
            target = call.args[1] if call.name == "tgkill" else call.args[0]
            # At this very thread (tgkill, tkill), or at its process when it has one thread only: a
            # signal sent to a process with several threads may reach any of them (then it is async).
            if signed(target) in (0, task.pid if to_thread else task.tgid) and (to_thread or task.group.free):
                st.expect_self_signal = True
        task.run(to_exit=not (entry is not None and entry.noreturn))
        call.action = "logged"

    def on_exit(self, task: Task, call: Call) -> None:
        if call.note == "logged":
            return
        res = signed(call.result)
        call.result = res
        if res == -EPIPE and call.entry is not None and call.entry.writes:
            task.policy_state.expect_self_signal = True  # SIGPIPE follows, raised by the kernel for this write
        outs = capture(task, call) if call.cls != "local" or call.entry and call.entry.outs else []
        if call.name == "listen" and res == 0:
            bound = fdtable.local_address(task.tgid, call.args[0])
            if bound:   # the port a bind to port 0 got: a backup going live listens there again
                outs.append((MOVED, bound))
        elif (call.name in ("accept", "accept4") and res >= 0) or (call.name == "connect" and res in (0, -EINPROGRESS)):
            # Both ends' addresses: a backup going live pairs the program's own connections
            sock = res if call.name != "connect" else call.args[0]
            ends = [fdtable.local_address(task.tgid, sock), fdtable.local_address(task.tgid, sock, peer=True)]
            if all(ends):
                outs += [(MOVED, e) for e in ends]
        if call.note == "moved":
            if call.saved_args is not None:
                task.set_result(res)   # the length was clamped: the program's arguments back
            data = moved(task, call, res) if res > 0 else b""
            if data is None:
                raise TracingError(f"{call.name} moved {res} bytes that could not be read back for the log",
                                   pid=task.vpid, seq=call.seq, syscall=call.name)
            if data:
                outs.append((MOVED, data))
        fields = {"t": "sys", "pid": task.vpid, "seq": call.seq, "nr": call.nr,
                  "args": list(call.args[: call.entry.nargs if call.entry else 6]), "res": res,
                  "addrs": [a for a, _ in outs]}
        if call.oseq is not None:
            fields["oseq"] = call.oseq
        if call.name == "mmap":
            self.maps.on_mmap_exit(task, call, res)   # its content, before its sys record
        self.emit(fields, [d for _, d in outs])
        st: PrimaryTaskState = task.policy_state
        if st.in_call_signal is not None:   # a signal delivered inside this (interrupted) call follows it
            self._log_signal(task, call.seq, *st.in_call_signal, "in-call")
            st.in_call_signal = None

    @staticmethod
    def _deliver_before(st: PrimaryTaskState, call: Call) -> bool:
        """Whether the held-back signals are delivered before this call: it may wait long, or
        it changes the handling of a signal that is held back."""
        entry = call.entry
        if entry.blocks:
            return True
        return entry.disposes and call.args[1] != 0 and any(s == call.args[0] for s, _ in st.pending)

    def after_call(self, task: Task, call: Call) -> None:
        if task.policy_state.pending and task.seq % self.engine.epoch == 0:
            self._deliver_pending(task)

    # -- signals -------------------------------------------------------------------------
    def on_signal(self, task: Task, signo: int, siginfo: bytes) -> SignalAction:
        info = SigInfo.parse(siginfo)
        st: PrimaryTaskState = task.policy_state
        if st.expect_self_signal and info.pid == task.tgid:
            # Raised by the program's own call (kill(getpid()), raise, abort, SIGPIPE): it is
            # delivered right after that call on every replica.
            st.expect_self_signal = False
            self._log_signal(task, task.seq - 1, signo, siginfo, "self")
            return SignalAction.DELIVER
        itr = task.interrupted
        if itr is not None:
            disp = task.signal_disposition(signo)
            fatal = disp == "default" and signo not in (_signal.SIGCHLD, _signal.SIGURG, _signal.SIGWINCH,
                                                       _signal.SIGCONT)
            if disp == "handled" or fatal:
                # It interrupted a blocking call (a sleep, a read, pause): deliver it there, or the
                # program would wait forever.  The backup re-creates the interruption.
                st.in_call_signal = (signo, siginfo)  # logged after the call
                return SignalAction.DELIVER
        if signo < SIGRTMIN and any(s == signo for s, _ in st.pending):
            return SignalAction.MERGE   # a standard signal is pending at most once, as in the kernel
        st.pending.append((signo, siginfo))
        return SignalAction.DEFER

    def _deliver_pending(self, task: Task, mode: str = "boundary") -> None:
        seen = set()
        keep = []
        st: PrimaryTaskState = task.policy_state
        for signo, info in st.pending:
            if signo in seen or signo in task.injecting:
                keep.append((signo, info))  # a standard signal cannot be pending twice
                continue
            seen.add(signo)
            self._log_signal(task, task.seq - 1, signo, info, mode)
            task.inject_signal(signo, info)
        st.pending = keep

    def _log_signal(self, task: Task, seq: int, signo: int, siginfo: bytes, mode: str) -> None:
        self.emit({"t": "sig", "pid": task.vpid, "seq": seq, "signo": signo, "mode": mode}, [siginfo])

    def on_switch(self, task: Task, seq: int, at: str, to: Task) -> None:
        self.emit({"t": "switch", "pid": task.group.dom.leader.vpid, "tid": task.vpid, "seq": seq, "at": at,
                   "to": to.vpid})

    def on_rdtsc(self, task: Task, rdtscp: bool) -> Tsc:
        value = time.monotonic_ns() * 3  # a 3 GHz-like counter; only its monotonicity matters
        aux = 0
        self.emit({"t": "tsc", "pid": task.vpid, "seq": task.seq - 1, "value": value, "aux": aux})
        return Tsc(value, aux, "logged")


def record(argv: list[str], log_path: str, *, epoch: int = 64, env=None, cwd=None,
           keep_trace: bool = True, events: str | None = None, control_fd: int | None = None,
           small_log: bool = False, record_env: bool = False,
           spin_limit: float | None = None, keep_going: bool = False) -> tuple[int, Engine]:
    """Record ``argv`` into ``log_path``; returns (exit status, engine).

    ``record_env``: keep every environment variable's value in the log; by default those whose
    names say they hold a secret are masked (:func:`log_env`).

    ``small_log``: log only the sha256 of mapped files (libraries...), not their content: the
    log then replays only where those files are unchanged.

    ``events``: also stream the trace there (JSON lines); ``control_fd``: a socket on which a
    live stepper pauses the program after every event (see :mod:`tft_lab.control`).

    ``spin_limit``: seconds a thread may run without a system call while other threads of its
    process wait to run before the recording stops with an error naming it (default:
    ``TFT_SPIN_LIMIT`` from the environment, else :data:`~tft_lab.sched.SPIN_LIMIT`).

    ``keep_going``: if the log cannot be written (a full disk), the program goes on to its end
    unrecorded instead of being stopped (``engine.policy.sink.lost`` then says why the log is
    short).  It stays under the supervisor, which answers its calls as before: its seccomp
    filter makes every trapped call fail with ENOSYS once no tracer is attached, so it cannot
    be let go untraced.
    """
    env = dict(os.environ if env is None else env)
    find_program(argv, env, cwd)   # a clear error before the log is created
    writer = _log.LogWriter(log_path, keep_going=keep_going)
    engine = Engine(Recorder(writer, small_log=small_log, record_env=record_env), epoch=epoch,
                    keep_trace=keep_trace, spin_limit=spin_limit)
    with engine.watched(events, control_fd):
        try:
            engine.start(argv, env=env, cwd=cwd)
            status = engine.run()
        except TftError as e:
            e.engine = engine   # its trace up to the stop (a refusal: the call it stopped at)
            raise
        finally:
            writer.close()
    return status, engine
