"""Running tft from Python (and so from a notebook): every run in its own processes.

The supervisor never runs inside the caller (a Jupyter kernel): each function
starts ``python -m tft_lab.cli ...`` as a child process that dies with its
parent, streams its events to a file this module follows for live progress,
and returns a :class:`Run` with the program's output, its status and the trace
as a DataFrame.  Interrupting (Ctrl-C, or the notebook's stop button) stops
the run and every process it started.

    >>> r = tft_lab.session.run(["./app"], fault=["primary@40"])
    >>> r.returncode, r.outcome, r.trace.groupby("replica").size()
"""
from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import threading
import time
import weakref
from dataclasses import dataclass, field

import pandas as pd

from . import _scratch
from ._process import CLI, start_cli
from .trace import FRESH_BACKUPS, EventFollower, TraceEvent, event_file, to_dataframe


@dataclass
class Run:
    """One finished ``tft run`` / ``record`` / ``replay``."""

    command: list
    """The tft command line that ran."""
    returncode: int
    """The program's exit status (128+signal if it was killed); tft's own error status (2, 3) on error."""
    stdout: str
    """What the program wrote to its stdout (exactly once, whichever replica wrote it)."""
    stderr: str
    """The program's stderr followed by tft's own messages (failover, warnings)."""
    trace: pd.DataFrame
    """One row per intercepted event, both replicas (see :mod:`tft_lab.trace`)."""
    outcome: str = ""
    """For ``run``: ``completed``, ``failover``, ``backup-lost`` or ``failed``."""
    log: str | None = None
    """For ``record``: the log file."""
    details: dict = field(default_factory=dict)
    """For ``run``: the supervisors' own results (failover time, log bytes...)."""

    @property
    def failover_ms(self) -> float | None:
        return self.details.get("failover_ms")

    def __repr__(self) -> str:
        rows = len(self.trace)
        extra = f", outcome={self.outcome!r}" if self.outcome else ""
        prog = self.command[self.command.index("--") + 1:] if "--" in self.command else [self.log or ""]
        return f"<Run {self.command[3]} {' '.join(prog)!r}: returncode={self.returncode}{extra}, {rows} trace rows>"


class Progress:
    """What a running tft has done so far: calls per replica, epoch, failover."""

    def __init__(self):
        self.calls = {}
        self.epoch = {}
        self.signals = {}
        self.failover = False
        self.started = time.monotonic()

    def update(self, events: list[TraceEvent]) -> None:
        for ev in events:
            if ev.kind == "syscall":
                self.calls[ev.replica] = self.calls.get(ev.replica, 0) + 1
                self.epoch[ev.replica] = ev.epoch
            elif ev.kind == "signal":
                self.signals[ev.replica] = self.signals.get(ev.replica, 0) + 1
            elif ev.kind == "failover":
                self.failover = True

    def text(self, state: str = "running") -> str:
        parts = [f"{state} {time.monotonic() - self.started:.1f}s"]
        for replica in sorted(self.calls):
            parts.append(f"{replica}: {self.calls[replica]} calls, epoch {self.epoch.get(replica, 0)}, "
                         f"{self.signals.get(replica, 0)} signal events")
        if self.failover:
            parts.append("FAILOVER: the backup is live")
        return " | ".join(parts)


def _display_progress():
    """A progress callback: an updating widget in a notebook, nothing elsewhere."""
    try:
        from IPython import get_ipython

        if get_ipython() is None:
            return None
        import ipywidgets as w
        from IPython.display import display

        label = w.HTML("starting...")
        display(label)

        def show(text: str) -> None:
            label.value = f"<code>tft: {text}</code>"

        return show
    except Exception:  # noqa: BLE001 - progress is a nicety, never a failure
        return None


def _execute(args: list[str], event_files: list[str], *, stdin=None, progress=True, timeout=None,
             pass_fds=(), cwd=None) -> tuple[int, str, str, list[TraceEvent]]:
    """Run ``tft ARGS`` to its end, following its event streams for the progress display."""
    show = _display_progress() if progress is True else (progress or None)
    follower = EventFollower(event_files)
    prog = Progress()
    proc = start_cli(args, stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
                     pass_fds=pass_fds, cwd=cwd)
    out: dict[str, bytes] = {}

    def drain(name, stream):
        out[name] = stream.read()

    threads = [threading.Thread(target=drain, args=(n, s), daemon=True)
               for n, s in (("stdout", proc.stdout), ("stderr", proc.stderr))]
    for t in threads:
        t.start()
    if stdin is not None:
        proc.stdin.write(stdin if isinstance(stdin, bytes) else stdin.encode())
        proc.stdin.close()
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while proc.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"tft did not finish within {timeout} s")
            prog.update(follower.poll())
            if show:
                show(prog.text())
            time.sleep(0.2)
    except BaseException:
        _stop(proc)
        raise
    for t in threads:
        t.join()
    prog.update(follower.poll())
    if show:
        show(prog.text("finished"))
    return proc.returncode, out.get("stdout", b"").decode(errors="replace"), \
        out.get("stderr", b"").decode(errors="replace"), follower.events


def _stop(proc: subprocess.Popen) -> None:
    """Interrupted: SIGTERM tft (it stops its supervisors, and they their programs), then SIGKILL."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _replicas(kind: str, backup: str = "local") -> list[str]:
    """The replicas whose event streams a ``kind`` run leaves here (a remote backup's stay there)."""
    if kind == "run":
        return ["primary", "backup", *FRESH_BACKUPS] if backup == "local" else ["primary"]   # each may exist
    return ["primary"] if kind == "record" else ["backup"]


def _control(control_fd: int | None) -> tuple[list[str], tuple[int, ...]]:
    """The options and the fds to pass for a live stepper's socket (none without one)."""
    return ([], ()) if control_fd is None else (["--control-fd", str(control_fd)], (control_fd,))


def _check(argv: list[str], cwd=None) -> list[str]:
    """A missing or non-executable program raises ProgramError here, before anything starts."""
    from ._backend.ptrace import find_program

    find_program(argv, None, cwd)
    return argv


def run(argv, *, backup: str = "local", commit: str = "output", epoch: int = 64, fault=(),
        heartbeat: float = 0.5, stdin=None, progress=True, timeout: float | None = None,
        cwd=None, control_fd: int | None = None, workdir: str | None = None, arbiter: str | None = None,
        lease_ttl: int | None = None, respawn: int | None = None, pause=()) -> Run:
    """``tft run`` from Python: a replicated run of ``argv`` (a list or a shell-like string).

    ``fault`` and ``pause``: one spec or a list (``primary@40``, ``primary@1.5s:2s``);
    ``respawn``: how many fresh backups may follow failovers (default: no limit; 0: none);
    ``arbiter``: ``etcd://HOST:PORT`` decides which replica is live (``docs/arbiter.md``)."""
    argv = _check(shlex.split(argv) if isinstance(argv, str) else list(argv), cwd)
    work = workdir or _scratch.make("tft-nb-run-")
    try:
        result_json = os.path.join(work, "result.json")
        cmd = ["run", "--backup", backup, "--commit", commit, "--epoch", str(epoch),
               "--heartbeat", str(heartbeat), "--workdir", work, "--result-json", result_json]
        for f in ([fault] if isinstance(fault, str) else fault):
            cmd += ["--fault", f]
        for f in ([pause] if isinstance(pause, str) else pause):
            cmd += ["--pause", f]
        if respawn is not None:
            cmd += ["--respawn", str(respawn)]
        if arbiter is not None:
            cmd += ["--arbiter", arbiter] + (["--lease-ttl", str(lease_ttl)] if lease_ttl is not None else [])
        ctl, pass_fds = _control(control_fd)
        cmd += ctl
        cmd += ["--", *argv]
        files = [event_file(work, r) for r in _replicas("run", backup)]
        rc, out, err, events = _execute(cmd, files, stdin=stdin, progress=progress, timeout=timeout,
                                        pass_fds=pass_fds, cwd=cwd)
        details = {}
        try:
            with open(result_json) as f:
                details = json.load(f)
        except (OSError, ValueError):
            pass
    finally:
        if workdir is None:
            _scratch.remove(work)   # the events were read above; nothing stays
    return Run([*CLI, *cmd], rc, out, err, to_dataframe(events), details.get("outcome", "failed" if rc else ""),
               None, details)


def record(argv, log: str | None = None, *, epoch: int = 64, stdin=None, progress=True,
           timeout: float | None = None, cwd=None, control_fd: int | None = None,
           workdir: str | None = None) -> Run:
    """``tft record`` from Python; the log goes to ``log``.

    Without ``log`` (and ``workdir``) the log is a temporary file that lives as long as the
    returned :class:`Run`: it is removed, with its directory, when the Run is garbage-collected
    or at exit.  Nothing else is left behind.
    """
    argv = _check(shlex.split(argv) if isinstance(argv, str) else list(argv), cwd)
    work = workdir or _scratch.make("tft-nb-rec-")
    events, log_path = event_file(work, "primary"), log or os.path.join(work, "run.log")
    try:
        cmd = ["record", "--log", log_path, "--epoch", str(epoch), "--events", events]
        ctl, pass_fds = _control(control_fd)
        cmd += ctl
        cmd += ["--", *argv]
        rc, out, err, evs = _execute(cmd, [events], stdin=stdin, progress=progress, timeout=timeout,
                                     pass_fds=pass_fds, cwd=cwd)
    except BaseException:
        if workdir is None:
            _scratch.remove(work)
        raise
    run = Run([*CLI, *cmd], rc, out, err, to_dataframe(evs), log=log_path)
    if workdir is None:
        if log is None:
            _remove_quietly(events)
            weakref.finalize(run, _scratch.remove, work)   # the log goes with its Run
        else:
            _scratch.remove(work)
    return run


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def scratch_dir(prefix: str = "tft-scratch-") -> str:
    """A new temporary directory for a notebook's own files, removed when this process ends,
    however it ends (a kernel shut down, restarted or killed): a notebook never cleans up."""
    return _scratch.make(prefix)


def replay(log: str, *, progress=True, timeout: float | None = None, control_fd: int | None = None) -> Run:
    """``tft replay`` from Python."""
    work = _scratch.make("tft-nb-rep-")
    try:
        events = event_file(work, "backup")
        cmd = ["replay", "--events", events]
        ctl, pass_fds = _control(control_fd)
        cmd += ctl
        cmd += [log]
        rc, out, err, evs = _execute(cmd, [events], progress=progress, timeout=timeout, pass_fds=pass_fds)
    finally:
        _scratch.remove(work)
    return Run([*CLI, *cmd], rc, out, err, to_dataframe(evs), log=log)


class _Background:
    """What a :class:`LiveSession` shares with the thread that runs its tft: the outcome, and
    its temporary directory's fate.  It holds no reference to the session, so a session
    nobody holds any more is collected even while its run goes on."""

    def __init__(self, work: str | None):
        self.result: Run | None = None
        self.error: BaseException | None = None
        self.work = work             # removed once the run has ended and the session let it go
        self.done = False            # the run has ended
        self.let_go = False          # closed, collected, or the interpreter is exiting
        self.lock = threading.Lock()

    def run(self, fn, argv, theirs: socket.socket, kw: dict) -> None:
        try:
            self.result = fn(argv, control_fd=theirs.fileno(), **kw)
        except BaseException as e:  # noqa: BLE001 - reported by result()
            self.error = e
        finally:
            theirs.close()
            with self.lock:
                self.done = True
                remove = self.let_go
            if remove:
                self.remove_work()

    def release(self, controller) -> None:
        """Let go of the run: its program runs on unattended; the directory goes when it ends."""
        controller.close()
        with self.lock:
            self.let_go = True
            remove = self.done
        if remove:
            self.remove_work()

    def remove_work(self) -> None:
        if self.work is not None:
            _scratch.remove(self.work)


class LiveSession:
    """A run paused after every event; ``step(cmd)`` lets it go on (see :mod:`tft_lab.control`).

    The supervisor runs in a background child process; this object holds the controlling
    end of its socket.  ``step("next")`` returns the next paused event as a dict with keys
    ``event`` (the TraceEvent fields) and ``pending`` (signals held back), or None at the end.
    ``result()`` waits for the run and returns its :class:`Run`.

    Without a ``workdir``, the event streams (and a record's log, unless ``log`` is given)
    are in a temporary directory that lives as long as the run and this object: :meth:`close`,
    or the object being garbage-collected (a notebook user who never calls ``close``), lets go
    of the run (a paused program runs on to its end, unattended) and the directory is removed
    as soon as the run has ended; at exit (a kernel shutting down) it is removed in any case.
    """

    def __init__(self, kind: str, argv, **kw):
        from .control import Controller

        mine, theirs = socket.socketpair()
        self.controller = Controller(mine)
        self._awaiting = False
        fn = {"run": run, "record": record}[kind]
        kw.setdefault("progress", False)
        mine_dir = kw.get("workdir") is None
        if mine_dir:
            kw["workdir"] = _scratch.make(f"tft-live-{kind}-")   # removed at exit in any case
        work = kw["workdir"]
        self._bg = _Background(work if mine_dir else None)
        self._release = weakref.finalize(self, self._bg.release, self.controller)
        self.epoch = kw.get("epoch", 64)
        #: replica -> the event stream its supervisor writes (:func:`tft_lab.trace.event_file`)
        self.event_files = {r: event_file(work, r) for r in _replicas(kind, kw.get("backup", "local"))}
        #: The replicas whose events this machine sees, primary first.
        self.replicas = list(self.event_files)
        self._thread = threading.Thread(target=self._bg.run, args=(fn, argv, theirs, kw), daemon=True)
        self._thread.start()
        self.current = self.controller.receive()

    def step(self, cmd: str = "next", timeout: float | None = 60) -> dict | None:
        """Send ``cmd`` and wait for the next paused event (None: the program has ended).

        If the program has not reached it within ``timeout`` seconds (a server waiting for a
        client, say), TimeoutError is raised and the session stays usable: the next ``step()``
        waits for that same stop instead of sending another command.
        """
        if self.current is None:
            return None
        if not self._awaiting:
            self.controller.send(cmd)
            self._awaiting = True
        try:
            msg = self.controller.receive(timeout=None if cmd == "continue" else timeout)
        except (TimeoutError, socket.timeout):
            raise TimeoutError(f"the program has not reached its next stop within {timeout} s "
                               "(it may be waiting for input); step() again to keep waiting") from None
        self._awaiting = False
        self.current = msg
        return self.current

    def result(self, timeout: float | None = 120) -> Run:
        while self.current is not None:
            self.step("continue")
        self._thread.join(timeout)
        if self._bg.error is not None:
            raise self._bg.error
        return self._bg.result

    def close(self) -> None:
        """Let go of the run (an unfinished program runs on, unattended); its temporary
        directory is removed once the run has ended (waited for up to 10 s here)."""
        self._release()
        self._thread.join(10)


def live(argv, kind: str = "run", **kw) -> LiveSession:
    """Start ``argv`` under ``tft run`` (or ``record``), paused after its first event."""
    argv = shlex.split(argv) if isinstance(argv, str) else list(argv)
    return LiveSession(kind, argv, **kw)
