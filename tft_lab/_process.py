"""Process plumbing shared by the coordinator, the notebook API and the test helpers.

One place each for: a child that dies with its parent (:func:`die_with_parent`),
reaping children that have already exited (:func:`reap_exited`), and starting
the ``tft`` command line as a child process (:func:`start_cli`, and
:func:`run_cli` to wait for it).  Becoming a
child subreaper is :func:`tft_lab._backend.ptrace.set_subreaper`.
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys
import time
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    import subprocess

_PR_SET_PDEATHSIG = 1
# Looked up once, here: die_with_parent runs in a child forked from a process that may have
# other threads, where loading a library (dlopen's lock) or importing could deadlock.
_prctl = ctypes.CDLL(None, use_errno=True).prctl
_WALL = 0x40000000   # __WALL: clone children (and traced ones) too
# subprocess.DEVNULL and subprocess.PIPE (fixed values): the engine imports this module, and
# importing subprocess (selectors, threading) costs a few ms on every tft command.
_DEVNULL, _PIPE = -3, -1
#: How ``tft`` is started as a child: this interpreter, this package's command line.
CLI = (sys.executable, "-m", "tft_lab.cli")
#: The directory the running ``tft_lab`` package was imported from.
_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))   # (not pathlib: ~3 ms of each command)


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Have the kernel send ``sig`` to this process when its parent dies.

    Call it in the child (``preexec_fn``, or right after ``fork``).  The kernel
    fires it when the *thread* that forked us ends, not only the process: fork
    from a thread that outlives the child (or from the main thread).
    """
    _prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)


def reap_exited(linger: float = 0.0) -> None:
    """Reap every child of ours that has already exited; with ``linger``, also those that exit
    within that many seconds (none is waited for longer).

    A subreaper adopts the orphans of whatever it supervised; reaping them
    here means none is left a zombie under us.  A supervisor that was killed
    leaves its program dying (the kernel kills a tracee with its tracer), not
    dead yet: its caller lingers, or the program would become a zombie of
    whoever is above us once we are gone.
    """
    deadline = time.monotonic() + linger
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG | _WALL)
        except ChildProcessError:
            return
        if pid == 0:
            if time.monotonic() >= deadline:
                return
            time.sleep(0.002)


def cli_env(env: dict | None = None) -> dict:
    """``env`` (default: ours) with this ``tft_lab`` first on ``PYTHONPATH``: the child runs the
    same package as its parent, whatever else is installed."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_PARENT, env.get("PYTHONPATH")) if p)
    return env


def start_cli(args: Sequence[str | os.PathLike], *, stdin=_DEVNULL, stdout=_PIPE,
              stderr=_PIPE, cwd: str | os.PathLike | None = None, env: dict | None = None,
              pass_fds: Sequence[int] = ()) -> subprocess.Popen:
    """Start ``tft ARGS...`` (``python -m tft_lab.cli``) as a child that dies (SIGTERM) with its parent.

    On SIGTERM ``tft`` stops its supervisors and they their programs, so a
    caller that dies leaves nothing running.  The other parameters are
    :class:`subprocess.Popen`'s.
    """
    import subprocess

    return subprocess.Popen([*CLI, *map(str, args)], stdin=stdin,
                            stdout=stdout, stderr=stderr, cwd=cwd, env=cli_env(env), pass_fds=tuple(pass_fds),
                            preexec_fn=die_with_parent)


def run_cli(args: Sequence[str | os.PathLike], *, input: bytes | None = None, stdin=_DEVNULL,
            timeout: float | None = None, cwd: str | os.PathLike | None = None,
            env: dict | None = None) -> subprocess.CompletedProcess:
    """:func:`start_cli`, wait for it and return its exit status, stdout and stderr (bytes).

    ``input`` is piped to its stdin (else ``stdin`` is given to it as is).  On a
    timeout (``subprocess.TimeoutExpired``) or an interrupt the child is killed
    before the exception goes on: the call never leaves it running.
    """
    import subprocess

    with start_cli(args, stdin=subprocess.PIPE if input is not None else stdin, cwd=cwd, env=env) as proc:
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
