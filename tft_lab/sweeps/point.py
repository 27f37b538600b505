"""One crash point: ``tft run --fault VICTIM@N`` in a folder of its own, judged.

Everything here runs wherever the point runs: in a thread of the local pool or
in a Dask worker on another machine.  So a :class:`Plan` is a plain, picklable
value (the checker is a shell command, or a picklable Python callable), and
:func:`run_point` depends only on the ``tft`` command line being importable
there.  Each point gets a fresh temporary folder (the program's working
directory, so files it writes by relative name are its own), a free TCP port
for a ``{port}`` placeholder in the arguments, and is removed on every path.

Interrupting: :func:`stop` terminates every ``tft run`` a sweep started in
this process (SIGTERM: ``tft run`` stops its supervisors and they their
programs) and makes the sweep's points that have not started return at once.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Union

from .._process import start_cli

#: The outcomes of a crash point, best first (the table's ``outcome`` column).
OUTCOMES = ("masked", "lost output", "duplicated output", "diverged", "hung", "error")
#: ``tft run``'s own status for bad usage (a program it cannot start, a bad option).
_TFT_USAGE = 2
#: The environment variable a checker sees: the crash point (0 for the fault-free reference).
POINT_ENV = "TFT_SWEEP_POINT"
CHECK_TIMEOUT = 60.0

Check = Union[str, Callable[[str], bool], None]


@dataclass(frozen=True)
class Reference:
    """What the fault-free run did: the yardstick for every crash point."""

    returncode: int
    """The program's exit status."""
    lines: tuple
    """Its stdout, as lines (bytes), an adjacent repeat collapsed."""
    files: dict = field(default_factory=dict)
    """Files it left in its working directory: relative path -> lines (bytes), collapsed likewise."""
    calls: dict = field(default_factory=dict)
    """Replica -> its intercepted calls, in order: (seq, syscall, class) each."""
    wall_s: float = 0.0
    """How long ``tft run`` took, seconds."""


@dataclass(frozen=True)
class Plan:
    """How to run each point of one sweep (a picklable value: it travels to Dask workers)."""

    argv: tuple
    """The program and its arguments; ``{port}`` in an argument becomes a free TCP port."""
    victim: str = "primary"
    """The replica failed at the point: ``primary`` or ``backup``."""
    commit: str = "output"
    epoch: int = 64
    check: Check = None
    """A shell command (stdout on its stdin, passes if it exits 0) or ``f(stdout) -> bool``;
    None: compare with the reference's output and files (deterministic programs)."""
    timeout: float = 60.0
    """A point still running after this many seconds is ``hung`` (and stopped)."""
    heartbeat: float = 0.5
    """``tft run --heartbeat``: a longer one keeps a loaded machine from failing a run for silence."""
    sweep_id: str = ""
    """Names this sweep's processes, so :func:`stop` stops this sweep's only."""


# -- interrupting ------------------------------------------------------------------------------

_lock = threading.Lock()
_live: dict[str, set] = {}      # sweep id -> its running ``tft run`` processes (in this process)
_stopped: set[str] = set()      # sweeps interrupted: their points not yet started return at once


def stop(sweep_id: str) -> int:
    """Stop every point of ``sweep_id`` running in this process; returns how many were running."""
    with _lock:
        _stopped.add(sweep_id)
        procs = list(_live.get(sweep_id, ()))
    for p in procs:
        _terminate(p)
    return len(procs)


def _terminate(proc: subprocess.Popen) -> None:
    """SIGTERM first: ``tft run`` then stops its supervisors and removes its own folder."""
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Interrupted(Exception):
    """The sweep was stopped before this point ran."""


# -- small facts ---------------------------------------------------------------------------------

def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def collapse(lines: list) -> tuple[list, int]:
    """``lines`` with each line equal to the one right before it dropped, and how many were.

    A failover may perform its *uncertain* output twice, byte-identical and adjacent:
    that repeat is counted, not taken for a second line.
    """
    kept, repeats = [], 0
    for i, line in enumerate(lines):
        if i and line == lines[i - 1]:
            repeats += 1
        else:
            kept.append(line)
    return kept, repeats


def folder_files(root: str) -> dict[str, list]:
    """The regular files under ``root``: relative path -> lines (bytes)."""
    found = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            if os.path.isfile(path) and not os.path.islink(path):
                with open(path, "rb") as f:
                    found[os.path.relpath(path, root)] = f.read().splitlines()
    return found


def sha256(path: str) -> str | None:
    """The file's sha256 (hex), None if it cannot be read."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return None
    return h.hexdigest()


def file_digests(paths: list[str]) -> dict[str, str | None]:
    """path -> sha256 for each of ``paths`` (run on every Dask worker before a sweep)."""
    return {p: sha256(p) for p in paths}


# -- one run -------------------------------------------------------------------------------------

@dataclass
class Ran:
    """One ``tft run`` as the point saw it."""

    returncode: int | None
    stdout: bytes
    stderr: bytes
    result: dict
    files: dict
    wall_s: float
    timed_out: bool
    check_ok: bool | None = None
    check_note: str = ""


def run_tft(plan: Plan, point: int, *, keep_events: str | None = None) -> Ran:
    """Run the program under ``tft run`` with the victim failed at ``point`` (0: no fault).

    In a fresh folder that is removed before this returns; the checker runs in it.
    ``keep_events``: a folder for ``tft run --workdir`` (the event streams, for the
    reference's call list), left to the caller.
    """
    with _lock:
        if plan.sweep_id in _stopped:
            raise Interrupted(f"point {point}: the sweep was stopped")
    folder = tempfile.mkdtemp(prefix="tft-sweep-")
    try:
        work = os.path.join(folder, "work")
        os.mkdir(work)
        port = str(free_port()) if any("{port}" in a for a in plan.argv) else ""
        argv = [a.replace("{port}", port) for a in plan.argv]
        result_path = os.path.join(folder, "result.json")
        # One failure a point: a fresh backup after it would only double the point's cost.
        cmd = ["run", "--commit", plan.commit, "--epoch", str(plan.epoch), "--heartbeat", str(plan.heartbeat),
               "--respawn", "0", "--result-json", result_path]
        if keep_events:
            cmd += ["--workdir", keep_events]
        if point:
            cmd += ["--fault", f"{plan.victim}@{point}"]
        started = time.monotonic()
        proc = start_cli([*cmd, "--", *argv], cwd=work)
        with _lock:
            _live.setdefault(plan.sweep_id, set()).add(proc)
        timed_out = False
        try:
            try:
                out, err = proc.communicate(timeout=plan.timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                _terminate(proc)
                out, err = proc.communicate()
            except BaseException:   # Ctrl-C in the thread that waits (the reference run)
                _terminate(proc)
                raise
        finally:
            with _lock:
                _live.get(plan.sweep_id, set()).discard(proc)
                if not _live.get(plan.sweep_id):
                    _live.pop(plan.sweep_id, None)
        wall = time.monotonic() - started
        try:
            with open(result_path) as f:
                result = json.load(f)
        except (OSError, ValueError):
            result = {}
        ran = Ran(proc.returncode, out, err, result, folder_files(work), wall, timed_out)
        with _lock:
            if plan.sweep_id in _stopped:
                raise Interrupted(f"point {point}: the sweep was stopped")
        if plan.check is not None and not timed_out:
            ran.check_ok, ran.check_note = run_check(plan.check, out, work, point)
        return ran
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run_check(check: Check, stdout: bytes, cwd: str, point: int) -> tuple[bool, str]:
    """The user's verdict on one run's stdout: (passed, a note on why not)."""
    if callable(check):
        try:
            return bool(check(stdout.decode(errors="replace"))), ""
        except Exception as e:  # noqa: BLE001 - a checker that raises has failed, and says why
            return False, f"the checker raised {type(e).__name__}: {e}"
    env = dict(os.environ, **{POINT_ENV: str(point)})
    try:
        p = subprocess.run(check, shell=True, input=stdout, cwd=cwd, env=env, capture_output=True,
                           timeout=CHECK_TIMEOUT)
    except subprocess.TimeoutExpired:
        return False, f"the checker did not finish within {CHECK_TIMEOUT:.0f} s"
    if p.returncode == 0:
        return True, ""
    said = (p.stderr or p.stdout).decode(errors="replace").strip().splitlines()
    return False, f"the checker exited {p.returncode}" + (f": {said[-1][:200]}" if said else "")


# -- judging a point -----------------------------------------------------------------------------

def judge(plan: Plan, ref: Reference, ran: Ran) -> tuple[str, str]:
    """The point's outcome (one of :data:`OUTCOMES`) and a one-line note on why."""
    if ran.timed_out:
        return "hung", f"still running after {plan.timeout:.0f} s"
    run_outcome = ran.result.get("outcome")
    if run_outcome in (None, "failed", "refused"):
        tail = ran.stderr.decode(errors="replace").strip().splitlines()
        return "error", f"tft run: {run_outcome or 'no result'}" + (f": {tail[-1][:200]}" if tail else "")
    if ran.result.get("backup", {}).get("outcome") == "diverged":
        return "diverged", f"the backup diverged: {ran.result['backup'].get('error')}"
    lines, repeats = collapse(ran.stdout.splitlines())
    if len(lines) < len(ref.lines):
        return "lost output", f"{len(lines)} distinct lines, the reference {len(ref.lines)}"
    if len(lines) > len(ref.lines) or repeats > 1:
        return "duplicated output", f"{len(lines)} distinct lines and {repeats} repeated, the reference " \
                                    f"{len(ref.lines)}: at most one repeat per failover"
    if ran.returncode != ref.returncode:
        return "diverged", f"exit status {ran.returncode}, the reference {ref.returncode}"
    if plan.check is None:
        if tuple(lines) != ref.lines:
            return "diverged", "the output differs from the reference's"
        files = {k: tuple(collapse(v)[0]) for k, v in ran.files.items()}
        if files != {k: tuple(v) for k, v in ref.files.items()}:
            differ = sorted(set(files) ^ set(ref.files) | {k for k in files if files[k] != tuple(ref.files.get(k, ()))})
            return "diverged", f"its files differ from the reference's: {', '.join(differ)[:200]}"
    elif not ran.check_ok:
        return "diverged", ran.check_note
    return "masked", ""


def run_point(plan: Plan, ref: Reference, point: int) -> dict:
    """Run crash point ``point`` and return its table row (see :data:`tft_lab.sweeps.COLUMNS`)."""
    calls = ref.calls.get(plan.victim, ())
    seq, syscall, cls = calls[point - 1] if 0 < point <= len(calls) else (None, "", "")
    ran = run_tft(plan, point)
    outcome, note = judge(plan, ref, ran)
    lines, repeats = collapse(ran.stdout.splitlines())
    check_ok = ran.check_ok if plan.check is not None else outcome == "masked"
    return dict(point=point, seq=seq, syscall=syscall, cls=cls, outcome=outcome,
                run_outcome=ran.result.get("outcome", ""), returncode=ran.returncode, lines=len(lines),
                duplicates=repeats, failover_ms=ran.result.get("failover_ms"), wall_s=round(ran.wall_s, 4),
                check_ok=bool(check_ok), victim=plan.victim, commit=plan.commit, epoch=plan.epoch,
                worker="local", note=note)
