"""Test helpers that ship with the library (as Reverie's ``test_cmd`` does).

They build the tiny guest programs of ``tests/programs/``, run the ``tft``
command line in a child process exactly as a user would, and check that no
process is left behind::

    from tft_lab.testing import build_program, record_and_replay

    prog = build_program("clocks")
    rec, rep, log = record_and_replay([str(prog)], tmp_path)
    assert rep.stdout == rec.stdout

Everything runs ``tft`` in a child process (``python -m tft_lab.cli``), so a
hang or a crash of the supervisor cannot take the caller down with it, and
the caller sees what a user at a terminal would: bytes on stdout and stderr
and an exit status.  The names in ``__all__`` are public API, described in
``docs/testing.md``.
"""
from __future__ import annotations

import itertools
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import IO, NamedTuple, Sequence, Union

from ._backend.ptrace import set_subreaper
from ._build import compile_c
from ._process import run_cli as _run_cli
from .errors import ProgramError

__all__ = [
    "REPO", "PROGRAMS", "BIN", "BuildError", "program_source", "build_program",
    "run_cli", "native", "new_log_path", "record", "replay", "record_and_replay", "outcome",
    "free_port", "wait_listening",
    "ProcInfo", "processes", "current_pids", "adopt_orphans", "leftover_processes", "assert_no_leftovers",
    "reap_adopted_zombies", "nothing_left_running",
]

#: The repository (the package lives at ``REPO/tft_lab``).
REPO = Path(__file__).resolve().parents[1]
#: The guest programs' sources.
PROGRAMS = REPO / "tests" / "programs"
#: Where :func:`build_program` caches binaries (git-ignored).
BIN = PROGRAMS / "bin"

Stdin = Union[bytes, int, IO, None]

_log_numbers = itertools.count()


class BuildError(RuntimeError):
    """A guest program could not be built (no compiler, or the compiler refused it)."""


# --- building guest programs ---------------------------------------------------------------

def program_source(name: str | os.PathLike) -> Path:
    """The C source for ``name``: ``tests/programs/NAME.c``, or ``name`` itself if it is a path."""
    p = Path(name)
    if p.is_absolute() or p.suffix == ".c":
        return p if p.is_absolute() else (PROGRAMS / p).resolve()
    return PROGRAMS / f"{name}.c"


def build_program(name: str | os.PathLike, out: str | os.PathLike | None = None, *,
                  force: bool = False) -> Path:
    """Compile a guest program with the system's ``cc -O1`` and return the binary's path.

    ``name`` is a program of ``tests/programs/`` (``"clocks"``) or the absolute path of
    a ``.c`` file.  The binary goes to ``out`` if given, else to ``tests/programs/bin/NAME``
    for the bundled programs (those in its subfolders too) and next to the source for any
    other file (a source in a
    test's ``tmp_path`` must not leave a binary in the repository).  It is rebuilt
    only when the source is newer than the binary (or ``force``).  Sources that
    include ``<pthread.h>`` are linked with ``-lpthread``.

    Raises :class:`BuildError` if there is no ``cc`` or the source does not compile.
    """
    src = program_source(name)
    if not src.is_file():
        raise BuildError(f"{src}: no such guest program source")
    if out is None:
        out = BIN / src.stem if src.is_relative_to(PROGRAMS) else src.with_suffix("")
    try:
        return compile_c(src, binary=out, force=force)
    except ProgramError as e:
        raise BuildError(str(e)) from None


# --- running the command line ----------------------------------------------------------------

def _stdin_kwargs(stdin: Stdin) -> dict:
    if isinstance(stdin, (bytes, bytearray)):
        return {"input": bytes(stdin)}
    return {"stdin": subprocess.DEVNULL if stdin is None else stdin}


def run_cli(args: Sequence[str | os.PathLike], stdin: Stdin = None, timeout: float = 60, *,
            cwd: str | os.PathLike | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``tft ARGS...`` (as ``python -m tft_lab.cli``) and return what a terminal would see.

    ``stdin``: bytes to pipe in, a file object or fd, or None for ``/dev/null``.
    stdout and stderr are bytes.  Raises ``subprocess.TimeoutExpired`` after
    ``timeout`` seconds (the supervisor is killed; ``PTRACE_O_EXITKILL`` takes its
    tracees with it).  ``tft`` is this package's, whatever else is installed, and
    gets SIGTERM if the caller dies.
    """
    return _run_cli(args, timeout=timeout, cwd=cwd, env=env, **_stdin_kwargs(stdin))


def native(argv: Sequence[str | os.PathLike], stdin: Stdin = None, timeout: float = 60, *,
           cwd: str | os.PathLike | None = None) -> subprocess.CompletedProcess:
    """Run ``argv`` without tft (bytes stdout/stderr), for comparison."""
    return subprocess.run(list(map(str, argv)), capture_output=True, timeout=timeout, cwd=cwd,
                          **_stdin_kwargs(stdin))


def new_log_path(tmp_path: str | os.PathLike) -> Path:
    """A log file name in ``tmp_path`` that no other call has used."""
    while True:
        p = Path(tmp_path) / f"rec{next(_log_numbers)}.log"
        if not p.exists():
            return p


def record(argv: Sequence[str | os.PathLike], log: str | os.PathLike, *, epoch: int = 64,
           stdin: Stdin = None, cwd: str | os.PathLike | None = None,
           timeout: float = 60) -> subprocess.CompletedProcess:
    """``tft record --log LOG --epoch EPOCH -- ARGV``."""
    return run_cli(["record", "--log", log, "--epoch", str(epoch), "--", *argv],
                   stdin=stdin, cwd=cwd, timeout=timeout)


def replay(log: str | os.PathLike, *, timeout: float = 60,
           cwd: str | os.PathLike | None = None) -> subprocess.CompletedProcess:
    """``tft replay LOG`` with stdin from /dev/null (a replay must not need the original input)."""
    return run_cli(["replay", log], timeout=timeout, cwd=cwd)


def record_and_replay(argv: Sequence[str | os.PathLike], tmp_path: str | os.PathLike, epoch: int = 64,
                      stdin: Stdin = None, *, cwd: str | os.PathLike | None = None,
                      timeout: float = 60):
    """Record ``argv`` into a fresh log in ``tmp_path``, then replay it.

    Returns ``(rec, rep, log_path)``: the two CompletedProcess results and the log.
    The replay gets ``/dev/null`` as stdin whatever the recording got.
    """
    log = new_log_path(tmp_path)
    rec = record(argv, log, epoch=epoch, stdin=stdin, cwd=cwd, timeout=timeout)
    rep = replay(log, timeout=timeout)
    return rec, rep, log


def outcome(p: subprocess.CompletedProcess) -> tuple[bytes, bytes, int]:
    """What a run showed the world: (stdout, stderr, exit status)."""
    return p.stdout, p.stderr, p.returncode


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now (for ``tft backup --listen`` or a server under tft)."""
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    """Return once something listens on TCP ``port``; ``AssertionError`` if ``proc`` exits or
    ``timeout`` seconds pass first.  Read from ``/proc/net/tcp``: a probe connection would be a
    peer to the listener (``tft backup`` would count it as a refused primary)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        with open("/proc/net/tcp") as f:
            if any(line.split()[1].endswith(f":{port:04X}") and line.split()[3] == "0A" for line in f):
                return
        time.sleep(0.05)
    said = ""
    if proc.poll() is not None and proc.stderr is not None:
        said = ": " + proc.stderr.read().decode(errors="replace").strip()
    raise AssertionError(f"nothing listened on port {port} within {timeout:g} s{said}")


# --- processes left behind ---------------------------------------------------------------------

class ProcInfo(NamedTuple):
    """One process as /proc shows it."""
    pid: int
    ppid: int
    state: str
    """``R``, ``S``, ``t`` (stopped by a tracer), ``T``, ``Z`` (zombie)..."""
    tracer: int
    """TracerPid (0: not traced)."""
    cmdline: str


def _proc(pid: int) -> ProcInfo | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
        with open(f"/proc/{pid}/status") as f:
            tracer = next((int(line.split()[1]) for line in f if line.startswith("TracerPid:")), 0)
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except (OSError, ValueError):
        return None  # gone meanwhile
    # The command name (field 2) is in parentheses and may itself hold spaces and parentheses.
    rest = stat[stat.rfind(")") + 2:].split()
    return ProcInfo(pid, int(rest[1]), rest[0], tracer, cmd or stat[stat.find("(") + 1:stat.rfind(")")])


def processes() -> dict[int, ProcInfo]:
    """Every process now running, by pid."""
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            p = _proc(int(name))
            if p is not None:
                out[p.pid] = p
    return out


def current_pids() -> frozenset[int]:
    """The pids that exist now (give it to :func:`leftover_processes` as ``since_pids``)."""
    return frozenset(int(n) for n in os.listdir("/proc") if n.isdigit())


def adopt_orphans() -> None:
    """Make this process a child subreaper: orphans of everything it starts become its
    children instead of init's, so :func:`leftover_processes` can see them."""
    set_subreaper()


def leftover_processes(since_pids: frozenset[int] | set[int] | None = None) -> list[ProcInfo]:
    """Processes this process is responsible for that still exist.

    That is every descendant of this process (a child, an adopted orphan — see
    :func:`adopt_orphans` — or theirs), in any state including zombie, plus any
    process stopped by a tracer (``t``) or zombie whose tracer is this process or a
    descendant.  Processes in ``since_pids`` (taken before the run) are not counted,
    so long-lived helpers of the test session do not count.
    """
    me = os.getpid()
    procs = processes()
    children: dict[int, list[int]] = {}
    for p in procs.values():
        children.setdefault(p.ppid, []).append(p.pid)
    ours, todo = set(), [me]
    while todo:
        for c in children.get(todo.pop(), ()):
            if c not in ours:
                ours.add(c)
                todo.append(c)
    left = []
    for p in procs.values():
        if p.pid == me or (since_pids is not None and p.pid in since_pids):
            continue
        if p.pid in ours or (p.state in ("t", "T", "Z") and (p.tracer == me or p.tracer in ours)):
            left.append(p)
    return sorted(left)


def assert_no_leftovers(since_pids: frozenset[int] | set[int] | None = None, grace: float = 3.0) -> None:
    """Fail if :func:`leftover_processes` finds anything after ``grace`` seconds.

    Processes that are merely slow to finish dying get ``grace`` seconds.  Whatever is
    left is listed in the assertion message, then killed and reaped so the next
    test starts clean.
    """
    deadline = time.monotonic() + grace
    while True:
        left = leftover_processes(since_pids)
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    if not left:
        return
    for p in left:
        try:
            os.kill(p.pid, signal.SIGKILL)
        except OSError:
            pass
    _reap(p.pid for p in left if p.ppid == os.getpid())
    listing = "; ".join(f"pid {p.pid} (parent {p.ppid}, state {p.state}, tracer {p.tracer}): {p.cmdline}"
                        for p in left)
    raise AssertionError(f"{len(left)} process(es) left behind: {listing}")


def _reap(pids) -> None:
    """Reap the given children of ours (only those: others belong to their own Popen)."""
    for pid in pids:
        try:
            os.waitpid(pid, 0x40000000)  # __WALL
        except ChildProcessError:
            pass


def reap_adopted_zombies() -> int:
    """Reap dead orphans re-parented to this (subreaper) process: a killed supervisor's program.

    They are dead already (a shell's init would reap them); only live, stopped or traced
    processes count as left behind.  Returns how many were reaped.
    """
    reaped = 0
    for p in processes().values():
        if p.ppid == os.getpid() and p.state == "Z":
            try:
                os.waitpid(p.pid, os.WNOHANG)
                reaped += 1
            except ChildProcessError:
                pass
    return reaped


def nothing_left_running(since_pids, grace: float = 5.0) -> None:
    """:func:`assert_no_leftovers`, reaping adopted zombies while waiting up to ``grace`` s."""
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        reap_adopted_zombies()
        if not leftover_processes(since_pids):
            break
        time.sleep(0.05)
    assert_no_leftovers(since_pids, grace=0)
