"""The backup's process tree: the primary's (virtual) pids and the backup's real ones.

A program only ever sees the primary's pids: ``getpid`` is answered from the
log while replaying, and a backup that went live keeps answering with them.
So every pid the program *passes* to the kernel once live (``wait4``,
``waitid``, ``kill``, ``setpgid``...) is virtual and must be translated to the
backup's real pid, and every pid the kernel *returns* must be translated back.
Process-group and session ids are pids of their leaders and translate the same
way; an id that names no process of the program (the shell that started it,
say) is the same on both replicas and passes unchanged.

:func:`reaped_child` reads, from a logged ``wait4``/``waitid``, which child the
primary reaped: the backup must reap that same child for real at that point,
or its zombie would be there to be waited for a second time after going live.
"""
from __future__ import annotations

import struct
from typing import Callable

WNOWAIT = 0x01000000
WEXITED = 0x00000004
WALL = 0x40000000
P_PID, P_PGID = 1, 2
CLD_EXITED, CLD_KILLED, CLD_DUMPED = 1, 2, 3
SI_CODE, SI_PID = 8, 16   # offsets in a siginfo_t on x86_64


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >> 31 else v


class PidMap:
    """Virtual pid <-> real pid of every process of the program the backup has run.

    Entries stay after a process exits (a zombie keeps its pid until reaped, and a group
    keeps its leader's id), and are replaced if the primary's kernel reused a pid.
    """

    def __init__(self):
        self._real: dict[int, int] = {}
        self._virtual: dict[int, int] = {}

    def add(self, vpid: int, pid: int) -> None:
        old = self._real.get(vpid)
        if old is not None:
            self._virtual.pop(old, None)
        self._real[vpid] = pid
        self._virtual[pid] = vpid

    def real(self, vpid: int) -> int | None:
        """The backup's pid for the primary's ``vpid`` (None: not a process of the program)."""
        return self._real.get(vpid)

    def to_real(self, v: int) -> int:
        """A pid argument (32-bit signed: > 0 a process, < -1 a process group, 0 and -1 as
        they are) translated to the backup's kernel."""
        v = _s32(v)
        if v > 0:
            return self._real.get(v, v)
        if v < -1:
            return -self._real.get(-v, -v)
        return v

    def to_virtual(self, pid: int) -> int:
        """A pid (or group id) the backup's kernel returned, as the program must see it."""
        pid = _s32(pid)
        if pid > 0:
            return self._virtual.get(pid, pid)
        return pid


def reaped_child(name: str, args, rec, exited: Callable[[int], bool]) -> int | None:
    """The virtual pid a logged ``wait4``/``waitid`` reaped (it is gone on the primary), or
    None (nothing reaped: WNOHANG with no child ready, a stopped or continued child,
    WNOWAIT, an error).  ``exited(vpid)``: whether the log says that process exited."""
    res = rec["res"]
    blobs = dict(zip(rec["addrs"], rec["blobs"]))
    if name == "wait4":
        if res <= 0:
            return None
        raw = blobs.get(args[1]) if args[1] else None
        if raw is not None and len(raw) >= 4:
            status = struct.unpack_from("<i", raw)[0]
            low = status & 0x7F
            return res if low != 0x7F and status & 0xFFFF != 0xFFFF else None   # not stopped/continued
        return res if exited(res) else None
    if name == "waitid":
        if res != 0 or args[3] & WNOWAIT:
            return None
        if not args[2]:
            # waitid(P_PID, pid, NULL, ...) reaps that pid if it exited; other forms say nothing.
            return _s32(args[1]) if args[0] == P_PID and exited(_s32(args[1])) else None
        raw = blobs.get(args[2])
        if raw is None or len(raw) < SI_PID + 4:
            return None
        code, = struct.unpack_from("<i", raw, SI_CODE)
        pid, = struct.unpack_from("<i", raw, SI_PID)
        return pid if pid > 0 and code in (CLD_EXITED, CLD_KILLED, CLD_DUMPED) else None
    return None

