"""Going live: the calls a dead primary may have made already, and what they answer.

A process of the backup that goes live after a failure is *uncertain* until it
runs an output: the primary may have made its first live calls already, their
records lost with it (a resource call is logged after it ran, and records wait
for the next output to leave; the output itself is logged after it ran).  Under
the output rule no later output can have run (it waits for the acknowledgement
of a record the backup never got), so the window closes at the first output run
live.

Most calls are safe to make twice (a write at an offset, a read of a file).  The
ones that are not are the table's ``redo`` fact (``creates``: an
``O_CREAT|O_EXCL`` open, mkdir, link, symlink, mknod; ``removes``: unlink,
rmdir; ``renames``: rename): made a second time they fail (EEXIST, ENOENT) where
the program, which made them once, expects success.  :class:`Uncertain` decides
those from what the file system shows.

The contract with the backup (:mod:`tft_lab.backup`), which owns the window:

- :meth:`Uncertain.heard` each time a ``sys`` record arrives, with its process;
- :meth:`Uncertain.enter` at the entry of each call run live in the window: it
  marks the call (``call.note``) whose exit must be judged, and says whether the
  window stays open; a marked call needs its exit stop;
- :meth:`Uncertain.settle` at the exit of a marked call: the result the program
  gets, or None when the call is made again (its next exit comes back here).
"""
from __future__ import annotations

import errno
import os
import time

from . import fdtable
from .guest import Call, Task

#: Seconds by which a file-system change the primary made may predate the arrival of the record
#: before it (the pump thread waits for a CPU).  Small: a change older than the primary's last
#: record by more is not the uncertain call's (a directory git made a second earlier).
FRESH_SLACK = 1.0
_EXCL = fdtable.O_CREAT | fdtable.O_EXCL
#: The failure a call of each ``redo`` kind gets when it was done already.
_AGAIN = {"creates": -errno.EEXIST, "removes": -errno.ENOENT, "renames": -errno.ENOENT}
#: call.note of a call to judge at its exit, and of one the primary did.
UNCERTAIN, DONE = "uncertain", "done-by-primary"


class Uncertain:
    """The backup's judge of uncertain calls.  ``warn``: prints one line to the user."""

    def __init__(self, warn):
        self.warn = warn
        # Wall-clock time each (virtual) process's last record arrived: what the primary did
        # after it is newer than that.
        self.received: dict[int, float] = {}

    def heard(self, vpid: int) -> None:
        """A record of process ``vpid`` arrived (called from the backup's replay loop)."""
        self.received[vpid] = time.time()

    @staticmethod
    def enter(call: Call) -> bool:
        """At the entry of ``call``, run live in the uncertain window: mark it if its exit must
        be judged (a ``redo`` call; an open only with ``O_CREAT|O_EXCL``).  Returns whether the
        window stays open after it (not after an output: no later call can have run on the
        primary)."""
        entry = call.entry
        if entry is None:
            return True
        if entry.redo and (not entry.opens or fdtable.open_call(call)[1] & _EXCL == _EXCL):
            call.note = UNCERTAIN   # decided at its exit, from what the file system shows
        return entry.cls != "output"

    def settle(self, task: Task, fds: dict[int, fdtable.Fd], call: Call, res: int) -> int | None:
        """At the exit of a call :meth:`enter` marked (or made again here): the result the
        program gets, or None if the call is made again (its next exit stop settles it).
        ``fds``: the task's fd table, ``res``: what the call returned here.

        A marked call that failed as it does when done already needs the primary's outcome,
        which died with it, so it is read from the file system:

        - the primary did it if the path now shows its effect *and* that effect is newer
          than the last record the primary sent for this process (the birth time of what a
          creation made, the ctime of a hard link or a rename's target, the parent
          directory's for a removal): a lock file left by an earlier crash, or a name that
          was never there, is older, and the program then gets the failure it would have got
          from the primary;
        - then the program gets success: for an ``O_CREAT|O_EXCL`` open the file is opened
          again without ``O_EXCL`` (it is the one the primary created: nothing was written to
          it, writes are outputs that wait for the acknowledgement we never sent), for
          mkdir/link/symlink/mknod/unlink/rmdir/rename the result is 0.

        Postcondition when an int is returned: ``task``'s registers are untouched; the caller
        sets the result."""
        entry = call.entry
        if call.note == UNCERTAIN:
            if res != _AGAIN[entry.redo]:
                return res
            path = fdtable.resolve_call(task, fds, call)
            if path is None or not self._done_by_primary(task, call, path):
                return res
            self.warn(f"pid {task.vpid}: {call.name} of {path} was done by the primary before it died "
                      "(its record was lost): the program gets success, not a second attempt")
            call.note = DONE
            if entry.opens:
                args = list(call.args)
                args[2 if call.name == "openat" else 1] &= ~fdtable.O_EXCL
                task.redo_as(call.nr, tuple(args))
                return None
        if call.note == DONE:
            return res if entry.opens else 0   # the fd of the file, opened again; or success
        return res

    def _done_by_primary(self, task: Task, call: Call, path: str) -> bool:
        since = self.received.get(task.vpid, 0.0) - FRESH_SLACK
        if call.entry.redo == "removes":
            when = fdtable.changed_at(os.path.dirname(path.rstrip("/")) or "/")
        else:   # what it made was born then (a hard link makes no inode: the link count changed)
            when = fdtable.changed_at(path, born=call.name not in ("link", "linkat"))
        return when is not None and when >= since
