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



SI_USER, SI_QUEUE, SI_TKILL = 0, -1, -6
_SIGINFO_SIZE = 128


def sent_siginfo(name: str, signo: int, sender: int, uid: int, queued: bytes | None = None) -> bytes:
    """The siginfo a ``kill``/``tkill``/``tgkill`` by process ``sender`` (its virtual pid) puts
    on its target (``rt_sigqueueinfo``: the one the program gave, ``queued``)."""
    if queued is not None and len(queued) >= SI_PID + 8:
        info = bytearray(queued[:_SIGINFO_SIZE].ljust(_SIGINFO_SIZE, b"\0"))
        struct.pack_into("<i", info, 0, signo)
        return bytes(info)
    info = bytearray(_SIGINFO_SIZE)
    struct.pack_into("<iii", info, 0, signo, 0, SI_USER if name == "kill" else SI_TKILL)
    struct.pack_into("<iI", info, SI_PID, sender, uid)
    return bytes(info)


class SentSignals:
    """Signals that logged kills sent to processes of the program, which the log does not (yet)
    show them receiving: what a backup going live owes each process.

    Why: a kill from one process of the program to another (or to itself) is an output, made
    by the primary and skipped by the backup; its effect is inside the program, the target's
    signal, which the primary logs in the target's records when it delivers it.  The kill's
    record leaves at once (an output flushes the channel), the target's waits for the next
    output: a primary dying in between takes the signal with it, and the target, once live,
    never gets it (``sleep 5 & p=$!; kill $p; wait $p`` printed status 0 after a failover: the
    sleep ran its 5 s).  So each send is counted here, each logged delivery of a signal sent
    by a process (``SI_USER``, ``SI_QUEUE``, ``SI_TKILL``) cancels it, and going live the rest
    is delivered.

    A standard signal is pending at most once: one delivery receives every send before it.  A
    delivery may be logged before the kill that caused it (the primary's supervisor may see
    the target's stop first): it then cancels that later send.
    """

    def __init__(self):
        self._owed: dict[tuple[int, int], list] = {}   # (vpid, signo) -> [sends - deliveries, siginfo]

    def sent(self, vpid: int, signo: int, siginfo: bytes) -> None:
        entry = self._owed.setdefault((vpid, signo), [0, siginfo])
        entry[0] += 1
        entry[1] = siginfo

    def received(self, vpid: int, signo: int, siginfo: bytes) -> None:
        """A logged delivery to ``vpid``; only one a process sent (not the kernel's: a child's
        exit, a timer) counts."""
        if len(siginfo) < SI_CODE + 4 or struct.unpack_from("<i", siginfo, SI_CODE)[0] not in (SI_USER, SI_QUEUE,
                                                                                                SI_TKILL):
            return
        entry = self._owed.setdefault((vpid, signo), [0, siginfo])
        entry[0] = 0 if entry[0] > 0 else entry[0] - 1

    def owed(self, vpid: int) -> list[tuple[int, bytes]]:
        """The signals ``vpid`` was sent and did not receive, as (signo, siginfo); forgotten then."""
        out = []
        for key in [k for k in self._owed if k[0] == vpid]:
            count, info = self._owed.pop(key)
            if count > 0:
                out.append((key[1], info))
        return out
