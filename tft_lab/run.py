"""``tft run``: a primary and a backup replica of one program, each under its own supervisor.

The process that calls :func:`run` is only a coordinator: it never traces.  It
forks the primary's supervisor and (for ``backup="local"``) the backup's,
joined by a socket pair; with ``backup="tcp://HOST:PORT"`` the backup is a
``tft backup --listen`` elsewhere.  Each supervisor leaves a small JSON result
and an event stream (:func:`tft_lab.trace.event_file`) in a private directory;
the coordinator merges the streams (``--trace FILE``, parquet) and reports the
program's status: the primary's if it finished, else the backup's after it
went live.  That directory is removed when :func:`run` returns or raises, unless
the caller named it (``workdir``).

With ``arbiter="etcd://HOST:PORT"`` an etcd lease, not heartbeat silence, decides which
replica is live (:mod:`tft_lab.arbiter`): the primary holds its run's key from the start,
the backup goes live only after winning it.

A program that asks for what tft_lab refuses (threads, io_uring...) is stopped
on both replicas: the primary tells the backup in its ``end`` record, so the
backup does not take the refusal for a crash and go live (outcome ``refused``).
"""
from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field

from . import channel as _channel
from . import log as _log
from ._process import die_with_parent, reap_exited
from .errors import DivergenceError, ProgramError, TftError, UnsupportedError
from .faults import Fault, Pause, Pauser, fail_stop, parse_fault, parse_pause
from .trace import event_file
from .trace import load as load_trace
from .trace import save as save_trace

#: ``tft run``'s status when the backup diverged and the program itself exited 0: the program
#: ran, but unprotected from the point named in the message (``tft replay`` uses it too).
EXIT_BACKUP_DIVERGED = 3
#: ``tft run``'s status when the program asked for what tft_lab refuses (as ``tft record``'s).
EXIT_REFUSED = 2
#: ``tft run``'s status when this primary stopped (it fenced itself, or it or its program was
#: killed) while its backup was remote: the program is the backup's now, and ``tft backup``
#: there reports its output and exit status (outcome ``handed-over``).
EXIT_HANDED_OVER = 4
#: ``tft run``'s status when the operator stopped it (SIGTERM, SIGHUP, Ctrl-C); a remote
#: ``tft backup`` the primary told so exits with it too.
EXIT_INTERRUPTED = 130
#: Why the backup stops when the operator stopped ``tft run`` (its ``end`` record says so).
OPERATOR_STOP = "the operator stopped tft run: both replicas stop, the backup does not go live"
STOP_CLOSE_TIMEOUT = 2.0   # seconds a stopped primary waits for the backup to confirm (of the 5 it has)
CLOSE_TIMEOUT = 30.0       # seconds a live replica that finished waits for its fresh backup to confirm
SENDER_TIMEOUT_FACTOR = 2.0    # the primary gives up on a silent backup first ...
RECEIVER_TIMEOUT_FACTOR = 4.0  # ... well before the backup takes over from a silent primary


@dataclass
class RunResult:
    """What ``tft run`` (or ``%tft run``) reports."""

    returncode: int
    """The program's exit status (128+signal if killed); :data:`EXIT_BACKUP_DIVERGED` instead
    of 0 when the backup diverged (the program ran unprotected from then on)."""
    outcome: str
    """``completed`` (no failure), ``failover`` (the backup went live and finished),
    ``backup-lost`` (the primary finished alone), ``refused`` (the program made a call tft_lab
    refuses, e.g. it started a thread: both replicas stopped it), ``handed-over`` (the primary
    stopped and the backup is remote: the program goes on there, if that backup lives; see
    :data:`EXIT_HANDED_OVER`), ``failed`` (no replica finished)."""
    primary: dict = field(default_factory=dict)
    """The primary supervisor's result (``outcome``, ``status``, ``error``...), empty if it was killed."""
    backup: dict = field(default_factory=dict)
    """The backup supervisor's result, empty if it was killed or remote."""
    failover_ms: float | None = None
    """Primary failure detected -> first backup process live, in milliseconds."""
    trace_files: list = field(default_factory=list)
    """The replicas' event streams (JSON lines), if a trace was asked for and the caller named
    the ``workdir`` (a run's own temporary directory is gone when :func:`run` returns)."""
    redundancy_lost: str | None = None
    """For ``backup-lost``: where and why the backup was lost (its error names pid and seq)."""
    loaded_trace: object = field(default=None, repr=False)
    """The trace, read before the run's temporary directory was removed (None: read ``trace_files``)."""
    backups: list = field(default_factory=list)
    """Every backup supervisor's result, in the order they started (with ``--respawn``, a fresh
    backup after each failover); :attr:`backup` is the one that finished the program, if one went live."""
    failovers: int = 0
    """How many times a backup went live (and, with ``--respawn``, became the primary)."""

    @property
    def trace(self):
        """Both replicas' trace as a DataFrame (see :mod:`tft_lab.trace`); empty without ``trace``/``workdir``."""
        return self.loaded_trace if self.loaded_trace is not None else load_trace(self.trace_files)

    @property
    def error(self) -> str | None:
        """For ``refused``, ``handed-over`` and ``failed``: why, in one line (the primary's reason first)."""
        return self.primary.get("error") or self.backup.get("error")


# -- supervisors (each runs in its own process) ----------------------------------------------

def _write_result(path: str | None, result: dict) -> None:
    if path:
        with open(path + ".tmp", "w") as f:
            json.dump(result, f)
        os.replace(path + ".tmp", path)


def _supervisor_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C is the program's (and the coordinator's)

    def _term(signum, frame):
        # KeyboardInterrupt, but never between a send and its bookkeeping: the primary's last
        # word (its end record) goes out after it, over a stream that must be whole.
        _channel.interrupt_when_safe()

    signal.signal(signal.SIGTERM, _term)


def supervise_primary(argv, sender, *, commit="output", epoch=64, faults=(), trace_path=None,
                      result_path=None, env=None, cwd=None, fence_after=1.0, control_fd=None,
                      t0: float | None = None, ledger: str | None = None, arbiter: str | None = None,
                      run_id: str | None = None, lease_ttl: int | None = None) -> int:
    """Run ``argv`` as the primary, streaming its log to ``sender`` (None: alone).

    ``arbiter``: etcd://HOST:PORT; the primary first takes the key of run ``run_id`` there
    (an error if it cannot) and holds it until it ends (revoked then, on every path)."""
    from .engine import Engine
    from .primary import ChannelSink, Fenced, Primary

    _supervisor_signals()
    result = {"role": "primary", "outcome": "error", "status": None, "error": None}
    lease = None
    if arbiter:
        from . import arbiter as _arbiter

        try:
            lease = _arbiter.hold(_arbiter.Etcd.from_spec(arbiter), run_id,
                                  f"primary {os.uname().nodename} pid {os.getpid()}", lease_ttl or _arbiter.DEFAULT_TTL)
        except TftError as e:
            result.update(error=f"no lease from the arbiter: {e}")
            print(f"tft: {e}", file=sys.stderr, flush=True)
            if sender is not None:
                sender.abort()
            _write_result(result_path, result)
            return 1
    sink = ChannelSink(sender)
    policy = Primary(sink, commit=commit, faults=list(faults), fence_after=fence_after, lease=lease,
                     t0=t0, ledger=ledger)
    engine = Engine(policy, epoch=epoch, cpu=_cpu(0), keep_trace=False)   # events go to trace_path
    try:
        # the event stream is flushed every 0.2 s, and before an injected fault
        with engine.watched(trace_path, control_fd, on_fail=lambda: fail_stop(engine)):
            engine.start(argv, env=env, cwd=cwd)
            status = engine.run()
            if policy.failed_program:
                result.update(outcome="failed-program", error="the primary's program was killed from outside")
                if sender is not None:
                    sender.abort()   # to the backup, the primary failed
            else:
                result.update(outcome="completed", status=status)
                if sender is not None and sink.sender is not None:
                    sink.flush()
                    lost = sink.lost or sender.failure
                    if lost is None:
                        try:
                            sink.sync(fence_after)
                        except TftError as e:
                            lost = e
                    if lost is not None and policy.backup_lost is None:
                        policy.backup_lost = str(lost)
                        policy.warn(f"the backup failed ({lost}); the primary finished the program ALONE")
                    _close_quietly(sender)
            result.update(log_bytes=sink.bytes, calls=engine.stopped_calls, backup_lost=policy.backup_lost,
                          faults_not_injected=policy.faults_not_injected)
    except Fenced as e:
        result.update(outcome="fenced", error=str(e))
    except KeyboardInterrupt:
        # The operator's stop (the program is dead already: the engine kills it on the way
        # out).  Tell the backup before going, or it takes our silence for a crash and goes live.
        result.update(outcome="interrupted", error="the primary's supervisor was stopped (SIGTERM)")
        if sender is not None and sink.sender is not None and sink.lost is None:
            policy.stop_backup(OPERATOR_STOP)
            _close_quietly(sender, timeout=STOP_CLOSE_TIMEOUT)
    except UnsupportedError as e:
        # Not a failure of this replica: the program itself is refused (the coordinator says so).
        result.update(outcome="refused", error=str(e))
        if sender is not None and sink.sender is not None:
            policy.refuse(e)   # the backup stops too instead of going live
            _close_quietly(sender)
    except TftError as e:
        result.update(outcome="error", error=str(e))
        print(f"tft: {e}", file=sys.stderr, flush=True)
    finally:
        if lease is not None:
            # After the clean close: a backup that saw the end does not contend, one cut off
            # finds the key saying the run ended.  On any other ending (the primary failed)
            # the revoke lets the backup win at once instead of after the TTL.
            ended = result["outcome"] in ("completed", "refused", "interrupted")
            lease.release(f"{result['outcome']}, status {result['status']}" if ended else None)
            result.update(lease_renewals=lease.renewals)
        _write_result(result_path, result)
    return result["status"] if result["outcome"] == "completed" else 1


def _close_quietly(sender, timeout: float = 10.0) -> None:
    """A clean close (the backup learns that the stream ended on purpose); a lost backup changes nothing."""
    try:
        sender.close(timeout)
    except TftError:
        pass


def supervise_backup(receiver, *, faults=(), trace_path=None, result_path=None, relay=None,
                     commit: str = "output", fence_after: float = 1.0, t0: float | None = None,
                     ledger: str | None = None, fresh: str | None = None, arbiter: str | None = None,
                     lease_ttl: int | None = None) -> int:
    """Run the backup replica fed by ``receiver`` until the program ends (replayed or live).

    With ``relay`` (a :class:`~tft_lab.reintegration.Relay`), a backup that goes live becomes
    the primary: it logs on, under the ``commit`` rule, to a fresh backup the relay catches up.
    ``fresh``: this is such a fresh backup, its name in the trace (``backup2``...).
    ``arbiter``: etcd://HOST:PORT, where it must win the run's key before going live."""
    from .arbiter import Etcd, LeaseLost, StoodDown
    from .backup import Backup, PrimaryStopped
    from .engine import Engine
    from .primary import Fenced
    from .replayer import file_sha256

    _supervisor_signals()
    result = {"role": "backup", "outcome": "error", "status": None, "error": None}
    policy = None
    try:
        policy = Backup(receiver, faults=list(faults), relay=relay, commit=commit, fence_after=fence_after,
                        t0=t0, ledger=ledger, fresh=fresh, arbiter=Etcd.from_spec(arbiter) if arbiter else None,
                        lease_ttl=lease_ttl)
        h = policy.header
        if file_sha256(h["exe"]) != h["exe_sha256"]:
            raise ProgramError(f"{h['exe']}: the backup's copy of the program differs from the primary's")
        engine = Engine(policy, epoch=h["epoch"], cpu=_cpu(1), keep_trace=False)
        if fresh and t0 is not None:
            engine.t0 = int(t0 * 1e9)   # its trace's clock is the run's: its rows follow the failover
        with engine.watched(trace_path):
            engine.start(h["argv"], env=h["env"], cwd=h["cwd"], path=h["exe"], signals=_log.start_signals(h))
            status = engine.run()
            while policy.pull():   # the primary's last records (its end) may still be on their way
                pass
        if policy.primary_state == "failed":
            result.update(outcome="live", status=status, failure=str(policy.failure),
                          detected_ns=policy.failover_ns, live_ns=policy.live_ns)
            if policy.inner is not None:   # the fresh backup gets the whole log, and the end
                lost = relay.finish(CLOSE_TIMEOUT)
                result.update(backup_lost=lost or policy.inner.backup_lost)
        else:
            result.update(outcome="replayed", status=policy.end_status, program_status=status)
        result.update(faults_not_injected=policy.faults_not_injected)
        if policy.progress:   # a fresh backup: how fast it took the history (benchmarks/catchup.py)
            result.update(progress_ns=[list(p) for p in policy.progress])
    except Fenced as e:
        result.update(outcome="fenced", error=str(e))
    except KeyboardInterrupt:
        result.update(outcome="interrupted")
        if policy is not None and policy.inner is not None and relay.lost is None:
            policy.inner.stop_backup(OPERATOR_STOP)   # the fresh backup stops too
            relay.finish(STOP_CLOSE_TIMEOUT)
    except PrimaryStopped as e:
        result.update(outcome="stopped", error=str(e), status=EXIT_INTERRUPTED)
    except StoodDown as e:
        result.update(outcome="stood-down", error=str(e))   # the primary lives on: not a failure here
    except LeaseLost as e:
        result.update(outcome="fenced", error=str(e))
        print(f"tft: backup: {e}", file=sys.stderr, flush=True)
    except UnsupportedError as e:
        # The primary's refusal (its end record says so), or the same call reached here first:
        # the backup stops its program, it does not go live.  Whoever started us reports it.
        from .backup import PrimaryRefused

        result.update(outcome="refused", error=str(e), by="primary" if isinstance(e, PrimaryRefused) else "backup")
    except TftError as e:
        result.update(outcome="diverged" if isinstance(e, DivergenceError) else "error", error=str(e),
                      pid=e.pid, seq=e.seq)
        print(f"tft: backup: {e}", file=sys.stderr, flush=True)
    except Exception as e:   # a bug of ours: the report says what it was (its traceback follows)
        result.update(outcome="error", error=f"internal error: {type(e).__name__}: {e}")
        raise
    finally:
        if relay is not None:
            result.update(relay.summary())
        if policy is not None and policy.lease is not None:
            policy.lease.release(f"{result['outcome']}, status {result['status']}"
                                 if result["outcome"] == "live" else None)
        _write_result(result_path, result)
        try:
            receiver.close()
        except Exception:  # noqa: BLE001 - closing must not hide the result
            pass
        if relay is not None:
            relay.history.remove()
    return result["status"] if result["status"] is not None else 1


def _cpu(index: int) -> int:
    """Primary and backup each get a CPU of their own (with their tracees), if there are two."""
    allowed = sorted(os.sched_getaffinity(0))
    return allowed[index % len(allowed)]


# -- the coordinator ---------------------------------------------------------------------------

def _fork(fn) -> int:
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            # A supervisor never outlives its coordinator (and its tracees die with it: EXITKILL).
            die_with_parent(signal.SIGKILL)
            code = fn()
        except BaseException as e:  # noqa: BLE001 - a forked child must never return
            print(f"tft: {e}", file=sys.stderr, flush=True)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code if isinstance(code, int) and 0 <= code < 256 else 1)
    return pid


def _read_json(path: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def parse_backup(spec: str) -> tuple[str, str | None, int | None]:
    if spec in ("local", "none"):
        return spec, None, None
    if spec.startswith("tcp://"):
        host, _, port = spec[6:].rpartition(":")
        if host and port.isdigit():
            return "tcp", host.strip("[]"), int(port)
    raise ValueError(f"bad --backup {spec!r}: use local, none or tcp://HOST:PORT")


def run(argv, *, backup: str = "local", commit: str = "output", epoch: int = 64, trace: str | None = None,
        faults=(), key: bytes | None = None, heartbeat: float = 0.5, env=None, cwd=None,
        workdir: str | None = None, control_fd: int | None = None, respawn: int | None = None,
        pauses=(), arbiter: str | None = None, lease_ttl: int | None = None) -> RunResult:
    """Run ``argv`` replicated; return when the program has finished on a live replica.

    ``respawn`` (``backup="local"`` only): after each failover the live replica is the
    primary, and a fresh backup catches up from its log and follows it; at most this many
    fresh backups in the run (None: no bound; 0: after a failover the program runs alone).
    ``pauses``: ``primary@Ts:Ds`` / ``backup@Ts:Ds`` specs (:class:`~tft_lab.faults.Pause`):
    the replica with that role at T is stopped for D seconds, then resumed.

    The supervisors' results and event streams go to a new temporary directory that is
    removed before this returns or raises (Ctrl-C, SIGTERM and SIGHUP included: then the
    ``trace`` asked for is still written, with the rows streamed so far); with
    ``workdir`` they go there and stay (``trace_files``).  Raises ValueError for bad options
    and :class:`~tft_lab.errors.ProgramError` for a program that cannot be run, before
    anything starts; :class:`~tft_lab.arbiter.ArbiterError` for an ``arbiter`` that is not
    an etcd v3 server answering there.  ``lease_ttl``: the arbiter's lease, in seconds.
    """
    from ._backend.ptrace import find_program

    faults = [f if isinstance(f, Fault) else parse_fault(f) for f in faults]
    pauses = [p if isinstance(p, Pause) else parse_pause(p) for p in pauses]
    kind, host, port = parse_backup(backup)
    if commit not in ("output", "epoch", "none"):
        raise ValueError("--commit must be output, epoch or none")
    if epoch < 1:
        raise ValueError("--epoch must be at least 1")
    if respawn is not None and respawn < 0:
        raise ValueError("--respawn must be 0 or more")
    if respawn and kind != "local":
        raise ValueError("--respawn needs the local backup (on two hosts: tft backup --rejoin)")
    if kind != "local" and any(p.replica == "backup" for p in pauses):
        raise ValueError("--pause backup@... needs the local backup (tft run cannot stop a remote one)")
    env = dict(os.environ if env is None else env)
    cwd = cwd or os.getcwd()
    find_program(argv, env, cwd)   # a clear error before anything starts
    if kind == "tcp" and key is None:
        raise ValueError("a TCP backup needs --key-file")
    run_id = None
    if arbiter is not None:
        from . import arbiter as _arbiter

        if lease_ttl is not None and not 1 <= lease_ttl <= 3600:
            raise ValueError("--lease-ttl must be 1 to 3600 seconds")
        _arbiter.Etcd.from_spec(arbiter).check()   # a clear error before anything starts
        run_id = _arbiter.new_run_id()

    def _terminate(signum, frame):
        raise KeyboardInterrupt   # stop the supervisors, remove the directory, then go

    previous = {sig: signal.signal(sig, _terminate) for sig in (signal.SIGTERM, signal.SIGHUP)}
    work = workdir or tempfile.mkdtemp(prefix="tft-run-")
    try:
        return _coordinate(argv, work, kind, host, port, key=key, commit=commit, epoch=epoch, trace=trace,
                           faults=faults, heartbeat=heartbeat, env=env, cwd=cwd, keep=workdir is not None,
                           control_fd=control_fd, respawn=respawn, pauses=pauses,
                           arbiter=(arbiter, run_id, lease_ttl))
    finally:
        if workdir is None:
            shutil.rmtree(work, ignore_errors=True)   # on every path: results, events, all
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _coordinate(argv, work: str, kind: str, host, port, *, key, commit, epoch, trace, faults, heartbeat,
                env, cwd, keep: bool, control_fd, respawn=None, pauses=(),
                arbiter=(None, None, None)) -> RunResult:
    """:func:`run` in ``work``; ``keep``: the caller named it (its event streams stay there);
    ``arbiter``: (etcd://HOST:PORT or None, the run id, the lease TTL)."""
    arbiter_url, run_id, lease_ttl = arbiter
    os.makedirs(work, exist_ok=True)
    traced = bool(trace or keep)   # event streams cost a write per 0.2 s of events: only on demand
    paths = {r: (os.path.join(work, f"{r}.result.json"), event_file(work, r) if traced else None)
             for r in ("primary", "backup")}
    pids: dict[str, int] = {}
    t0 = time.monotonic()   # a successor's timed faults count from here if the primary left no start
    ledger = os.path.join(work, "faults.fired")
    relaying = kind == "local" and respawn != 0
    held: list[socket.socket] = []   # every socket this coordinator holds: a child closes them all
    a = b = None
    if kind == "local":
        a, b = _channel.socketpair_channel()
        held += [a, b]

    def primary_main():
        for s in held:
            if s is not a:
                s.close()
        sender = None
        try:
            if kind == "local":
                sender = _channel.Sender.from_socket(a, key, heartbeat=heartbeat,
                                                     timeout_factor=SENDER_TIMEOUT_FACTOR)
            elif kind == "tcp":
                sender = _channel.connect(host, port, key, heartbeat, timeout_factor=SENDER_TIMEOUT_FACTOR)
        except TftError as e:
            print(f"tft: {e}", file=sys.stderr, flush=True)
            _write_result(paths["primary"][0], {"role": "primary", "outcome": "error", "status": None,
                                                "error": f"no channel to the backup: {e}", "connected": False})
            return 1
        return supervise_primary(argv, sender, commit=commit, epoch=epoch, faults=faults,
                                 trace_path=paths["primary"][1], result_path=paths["primary"][0],
                                 env=env, cwd=cwd, fence_after=heartbeat * SENDER_TIMEOUT_FACTOR,
                                 control_fd=control_fd, ledger=ledger, arbiter=arbiter_url, run_id=run_id,
                                 lease_ttl=lease_ttl)

    def backup_main(role: str, end: socket.socket, ctl: socket.socket | None):
        for s in held:
            if s is not end and s is not ctl:
                s.close()
        if control_fd is not None:
            os.close(control_fd)   # only the primary is stepped
        relay = None
        if ctl is not None:
            from .reintegration import History, Relay

            relay = Relay(History(os.path.join(work, f"{role}.history")), _fresh_backup_from(ctl, key, heartbeat),
                          warn=lambda msg: print(f"tft: {msg}", file=sys.stderr, flush=True))
        receiver = _channel.Receiver.from_socket(end, key, heartbeat=heartbeat,
                                                 timeout_factor=RECEIVER_TIMEOUT_FACTOR)
        return supervise_backup(receiver, faults=faults, trace_path=paths[role][1], result_path=paths[role][0],
                                relay=relay, commit=commit, fence_after=heartbeat * SENDER_TIMEOUT_FACTOR,
                                t0=t0, ledger=ledger, fresh=role if role != "backup" else None,
                                arbiter=arbiter_url, lease_ttl=lease_ttl)

    ctls: dict[str, socket.socket] = {}   # a relaying backup's control socket: it asks for a fresh backup there
    fresh = went_live = 0
    roles = {"primary": "primary", "backup": "backup" if kind == "local" else None}   # role -> who has it
    pauser = Pauser(pauses, t0)

    def start_backup(role: str, end: socket.socket) -> None:
        ctl = mine = None
        if relaying:
            mine, ctl = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            held.extend((mine, ctl))
        pids[role] = _fork(lambda: backup_main(role, end, ctl))
        for s in (end, ctl):
            if s is not None:
                held.remove(s)
                s.close()
        if mine is not None:
            ctls[role] = mine

    def answer(role: str, ctl: socket.socket) -> None:
        """The backup ``role`` went live and asks for a fresh backup: start one (within
        ``respawn``) and hand the live replica its end of their channel."""
        nonlocal fresh, went_live
        try:
            asked = ctl.recv(1)
        except OSError:
            asked = b""
        went_live += asked == b"B"
        if asked != b"B" or (respawn is not None and fresh >= respawn):
            if asked:
                _send_quietly(ctl, b"N")
            ctls.pop(role)
            held.remove(ctl)
            ctl.close()
            return
        fresh += 1
        new = f"backup{fresh + 1}"
        roles.update(primary=role, backup=new)
        paths[new] = (os.path.join(work, f"{new}.result.json"), event_file(work, new) if traced else None)
        live_end, new_end = _channel.socketpair_channel()
        held.extend((live_end, new_end))
        start_backup(new, new_end)
        try:
            socket.send_fds(ctl, [b"Y"], [live_end.fileno()])
        except OSError:
            pass   # the live replica is gone: the fresh backup's channel ends, it stops
        held.remove(live_end)
        live_end.close()

    from ._backend.ptrace import set_subreaper

    set_subreaper()   # a killed supervisor's program is reaped here, not left to whoever is above
    try:
        if kind == "local":
            start_backup("backup", b)
        pids["primary"] = _fork(primary_main)
        for s in (a,):
            if s is not None:
                held.remove(s)
                s.close()
        while pids:
            if ctls or pauser.pending:
                ready, _, _ = select.select(list(ctls.values()), [], [], 0.05 if pauser.pending else 0.1)
                for role, ctl in list(ctls.items()):
                    if ctl in ready:
                        answer(role, ctl)
                pauser.tick({r: pids.get(who) for r, who in roles.items()})
                _wait_all(pids, block=False)
            else:
                _wait_all(pids)
    except KeyboardInterrupt:
        pauser.resume_all()
        for pid in pids.values():
            _signal_quietly(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while pids and time.monotonic() < deadline:
            _wait_all(pids, block=False)
            time.sleep(0.05)
        for pid in pids.values():
            _signal_quietly(pid, signal.SIGKILL)
        _wait_all(pids)
        if trace:
            # An interrupted run still writes the trace it has (as record and replay do on an
            # error): it shows where the program was when the operator stopped it.
            _save_partial_trace([p for _, p in paths.values() if p], trace)
        raise
    finally:
        pauser.resume_all()
        for s in held:
            s.close()
    reap_exited(linger=2.0)   # a killed supervisor's programs, adopted by us (they may still be dying)
    prim = _read_json(paths["primary"][0])
    backups = [_read_json(paths[r][0]) for r in paths if r != "primary"]   # in the order they started
    back = backups[0]
    live = [bk for bk in backups if bk.get("outcome") == "live"]
    if live:
        back = live[-1]   # the replica that finished the program (earlier live ones were killed)
    trace_files = [p for _, p in paths.values() if p]
    frame = None
    if trace:
        frame = load_trace(trace_files)
        save_trace(frame, trace)
    if not keep:
        trace_files = []   # they go with the run's directory; the trace was read above
    failover_ms = None
    if back.get("outcome") == "live":
        outcome, status = "failover", back["status"]
        if back.get("detected_ns") and back.get("live_ns"):
            failover_ms = (back["live_ns"] - back["detected_ns"]) / 1e6
    elif prim.get("outcome") == "completed":
        lost = prim.get("backup_lost") or (kind == "local" and back.get("outcome") not in ("replayed",))
        outcome, status = ("backup-lost" if lost else "completed"), prim["status"]
    elif "refused" in (prim.get("outcome"), back.get("outcome")):
        outcome, status = "refused", EXIT_REFUSED
    elif kind == "tcp" and prim.get("connected", True) and prim.get("outcome") != "interrupted":
        # This primary stopped with the channel up (fenced, failed, killed): the remote backup
        # goes live, and only it can tell how the program ends.  Not "no replica finished".
        outcome, status = "handed-over", EXIT_HANDED_OVER
        injected = any(f.replica == "primary" for f in faults)
        prim["error"] = prim.get("error") or ("killed by the injected fault" if injected else
                                              "its supervisor was killed")
    else:
        outcome, status = "failed", 1
    why = _why_lost(prim, back) if outcome == "backup-lost" else None
    if outcome == "backup-lost" and back.get("outcome") == "diverged" and status == 0:
        status = EXIT_BACKUP_DIVERGED   # a script must not take an unprotected run for a good one
    return RunResult(status, outcome, prim, back, failover_ms, trace_files, why, frame, backups,
                     went_live if relaying else int(bool(live)))


def _save_partial_trace(trace_files: list[str], trace: str) -> None:
    """Write the replicas' event streams, as far as they got, to ``trace`` (mode 0600).
    Best effort: a stream cut mid-line or missing loses only its tail, never the interrupt."""
    try:
        save_trace(load_trace([p for p in trace_files if os.path.exists(p)]), trace)
    except (OSError, ValueError) as e:
        print(f"tft: the trace could not be written to {trace}: {e}", file=sys.stderr)


def _why_lost(prim: dict, back: dict) -> str:
    """One line: where the backup was lost and why."""
    if back.get("outcome") == "stood-down":
        return back.get("error") or "the backup stood down"
    if back.get("outcome") in ("diverged", "error"):
        where = f"at seq {back['seq']} of pid {back['pid']}" if back.get("seq") is not None else "during the run"
        what = "diverged" if back["outcome"] == "diverged" else "failed"
        return f"the backup {what} {where}: {back.get('error')}"
    return f"the backup failed: {prim.get('backup_lost') or 'its supervisor died'}"


def _fresh_backup_from(ctl: socket.socket, key, heartbeat: float):
    """How a live replica gets a fresh backup under ``tft run``: it asks the coordinator on
    ``ctl``, which starts one and sends back the live replica's end of their channel."""

    def get_sender(stop):
        ctl.sendall(b"B")
        _, fds, _, _ = socket.recv_fds(ctl, 1, 1)
        ctl.close()   # one fresh backup per go-live: this replica goes live once
        if not fds:
            return None   # --respawn is spent
        return _channel.Sender.from_socket(socket.socket(fileno=fds[0]), key, heartbeat=heartbeat,
                                           timeout_factor=SENDER_TIMEOUT_FACTOR)

    return get_sender


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except OSError:
        pass


def _signal_quietly(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except OSError:
        pass


def _wait_all(pids: dict[str, int], block: bool = True) -> None:
    while pids:
        try:
            pid, _ = os.waitpid(-1, 0 if block else os.WNOHANG)
        except ChildProcessError:
            pids.clear()
            return
        if pid == 0:
            return
        for role, p in list(pids.items()):
            if p == pid:
                del pids[role]
