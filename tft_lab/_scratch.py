"""Temporary directories that go away with the process that made them, however it ends.

The notebook API keeps some files as long as an object or the process lives (a
recording's log while its :class:`~tft_lab.session.Run` is held, a live
session's event streams, a notebook's scratch folder).  They are removed when
no longer needed, and at the latest when the process exits (``atexit``).

A Jupyter kernel is not always let exit: nbval stops its kernels with SIGKILL,
a kernel out of memory is killed so, a hung one is killed on restart.  No exit
handler runs then.  So inside a kernel a *janitor* is started with the first
such directory: a small process in a session of its own (the kill of the
kernel's process group does not reach it) that reads the directories to
remove on a pipe and removes those still listed when the pipe ends, that is
when the kernel is gone, however it went.
"""
from __future__ import annotations

import atexit
import shutil
import subprocess
import sys
import tempfile

_MINE: set[str] = set()
_janitor: subprocess.Popen | None = None

# The janitor's program: "+hex" adds a path, "-hex" drops one; at end of input (its parent
# is gone) it waits a moment for the parent's children (tft, dying with it) and removes the rest.
_JANITOR = """
import shutil, sys, time
paths = set()
for line in sys.stdin.buffer:
    op, path = line[:1], bytes.fromhex(line[1:].strip().decode()).decode("utf-8", "surrogateescape")
    (paths.add if op == b"+" else paths.discard)(path)
time.sleep(0.5)
for path in paths:
    shutil.rmtree(path, ignore_errors=True)
"""


def _in_kernel() -> bool:
    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def _tell(op: str, path: str) -> None:
    global _janitor
    if _janitor is None:
        if op == "-" or not _in_kernel():
            return
        _janitor = subprocess.Popen([sys.executable, "-c", _JANITOR], stdin=subprocess.PIPE,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    start_new_session=True)
    try:
        _janitor.stdin.write(f"{op}{path.encode(errors='surrogateescape').hex()}\n".encode())
        _janitor.stdin.flush()
    except OSError:
        pass   # the janitor is gone: the exit handler is left


def make(prefix: str) -> str:
    """A new temporary directory (``tempfile.mkdtemp(prefix=prefix)``), removed at exit at the
    latest; :func:`remove` removes it sooner."""
    path = tempfile.mkdtemp(prefix=prefix)
    _MINE.add(path)
    _tell("+", path)
    return path


def remove(path: str) -> None:
    """Remove ``path`` (made by :func:`make`) now."""
    shutil.rmtree(path, ignore_errors=True)
    if path in _MINE:
        _MINE.discard(path)
        _tell("-", path)


def pending() -> frozenset[str]:
    """The directories still to be removed at exit (their objects are alive, or their runs)."""
    return frozenset(_MINE)


@atexit.register
def _remove_all() -> None:
    for path in list(_MINE):
        shutil.rmtree(path, ignore_errors=True)
    _MINE.clear()
    if _janitor is not None:
        try:
            _janitor.stdin.close()   # nothing left for it to do: it ends
        except OSError:
            pass
