"""The program's own streams — pipes and connections between two of its processes — when a
backup goes live: the bytes in flight in them (:class:`InFlight`), and connections rebuilt.

A connection whose peer lived in the dead primary's kernel is lost: the backup
reports it reset.  But when both ends belong to the program (a pre-forking
server and a client it forked, a process talking to its child over TCP), both
ends are on the backup too, and nothing outside was part of it: it can go on.
The primary logs both addresses of every connection it accepts or makes
(:func:`tft_lab.fdtable.local_address`), so the backup knows which two of its
stand-ins were the two ends of one connection: an end whose address is the
other's peer and whose peer is the other's address.

Going live, such a pair becomes a connected ``AF_UNIX`` stream socket pair,
one end in each fd (``pidfd_getfd`` carries the other end into the other
process), and the bytes the primary's processes had sent each other and not
yet read (followed from the log, as for pipes: :class:`Flow`) are put back in.
What the program may notice: ``getsockname``/``getpeername`` now answer an
``AF_UNIX`` address, and TCP-level socket options fail.
"""
from __future__ import annotations

import os
import socket

from . import fdtable
from .guest import Call, Task
from .outs import gather
from .syscalls import number

NR = {name: number(name) for name in ("socketpair", "dup3", "close", "pidfd_open", "pidfd_getfd")}
#: Calls that take bytes out of a connection (the table's ``writes`` fact says which put them in).
READS = frozenset(("read", "readv", "recvfrom", "recvmsg"))


class Flow:
    """Bytes through one direction of a stream (a pipe, a connection) as the primary moved them."""

    KEEP = 1 << 20

    def __init__(self):
        self.written = 0
        self.consumed = 0
        self.tail = bytearray()   # the last KEEP bytes written

    def wrote(self, data: bytes) -> None:
        self.written += len(data)
        self.tail += data
        if len(self.tail) > self.KEEP:
            del self.tail[:len(self.tail) - self.KEEP]

    def read(self, n: int) -> None:
        self.consumed += n

    def leftover(self) -> bytes:
        n = self.written - self.consumed
        return bytes(self.tail[-n:]) if n > 0 else b""


class InFlight:
    """The bytes in flight between the program's own processes, followed from the log while
    replaying: per pipe (its identity, ``pipe:[ino]``) and per direction of a connection
    (its (sender, receiver) addresses)."""

    def __init__(self):
        self.pipes: dict[str, Flow] = {}
        self.conns: dict[tuple[bytes, bytes], Flow] = {}

    def account(self, task: Task, call: Call) -> None:
        """Follow a replayed call that put bytes into (an output) or took them out of a pipe or a
        connection.  Precondition: its record applied (``call.result`` is the primary's)."""
        entry = call.entry
        if entry is None or entry.fd_arg is None or call.result <= 0:
            return
        info = task.policy_state.fds.get(call.args[entry.fd_arg])
        if info is None:
            return
        if info.kind == "conn":   # a connection: both ends may be the program's
            writing = entry.cls == "output" and bool(entry.writes)
            key = direction(info, writing)
            if key is None or not (writing or call.name in READS):
                return
            flow = self.conns.setdefault(key, Flow())
        elif info.kind == "pipe" and info.path:
            flow = self.pipes.setdefault(info.path, Flow())
        else:
            return
        if entry.cls == "output":
            flow.wrote(gather(task, call, call.result))
        elif call.name in READS:
            flow.read(call.result)

    def refill_pipes(self, tasks, warn) -> None:
        """Put back what the primary had written to its pipes and not yet read, through the first
        of ``tasks`` that holds each pipe (never blocks); ``warn`` says what was put back."""
        for ident, flow in self.pipes.items():
            data = flow.leftover()
            if not data:
                continue
            for t in tasks:
                fd = next((fd for fd, info in t.policy_state.fds.items()
                           if info.kind == "pipe" and info.path == ident), None)
                if fd is None:
                    continue
                try:
                    w = os.open(f"/proc/{t.pid}/fd/{fd}", os.O_WRONLY | os.O_NONBLOCK)
                    try:
                        os.write(w, data)
                    finally:
                        os.close(w)
                    warn(f"put back {len(data)} bytes the primary had left in {ident}")
                except OSError as e:
                    warn(f"could not put back {len(data)} bytes into {ident}: {e.strerror}")
                break


def direction(info: fdtable.Fd, writing: bool) -> tuple[bytes, bytes] | None:
    """The key of the flow a write (or read) through connection ``info`` moves: (the sender's
    address, the receiver's).  None if the primary's addresses are not known."""
    if info.kind != "conn" or not info.addr or not info.peer:
        return None
    return (info.addr, info.peer) if writing else (info.peer, info.addr)


def find_peer(info: fdtable.Fd, tasks, rebuilt) -> tuple[Task, int] | None:
    """The (task, fd) of the other end of connection ``info`` among ``tasks`` (processes stopped
    at a system call entry), not rebuilt yet; None if it is not in the program."""
    if not info.addr or not info.peer:
        return None
    for t in tasks:
        for fd, other in sorted(t.policy_state.fds.items()):
            if (other.kind == "conn" and other.desc is not info.desc and other.desc not in rebuilt
                    and other.addr == info.peer and other.peer == info.addr):
                return t, fd
    return None


def reconnect(task: Task, fd: int, info: fdtable.Fd, peer: Task, pfd: int, flows: dict) -> str:
    """Make ``task``'s ``fd`` and ``peer``'s ``pfd`` the two ends of a new connected stream pair,
    with the bytes in flight put back.  Precondition: both tasks at a syscall entry.
    Returns a note for the go-live message."""
    pair = task.scratch(bytes(8))
    if task.inject(NR["socketpair"], (socket.AF_UNIX, socket.SOCK_STREAM, 0, pair)) < 0:
        return ""
    a, b = int.from_bytes(task.read(pair, 4), "little"), int.from_bytes(task.read(pair + 4, 4), "little")
    other = peer.policy_state.fds[pfd]
    dup_into(task, a, fd, info.cloexec)
    if peer is task:
        dup_into(task, b, pfd, other.cloexec)
    else:
        pidfd = peer.inject(NR["pidfd_open"], (task.pid, 0))
        got = peer.inject(NR["pidfd_getfd"], (pidfd, b, 0)) if pidfd >= 0 else -1
        if pidfd >= 0:
            peer.inject(NR["close"], (pidfd,))
        task.inject(NR["close"], (b,))
        if got < 0:
            return ""
        dup_into(peer, got, pfd, other.cloexec)
    info.standin = other.standin = False
    moved = _put_back(task, fd, flows.get(direction(info, True))) + _put_back(peer, pfd, flows.get(direction(other, True)))
    note = f"fd {fd}: connected again to fd {pfd} of pid {peer.vpid}"
    return note + (f" ({moved} bytes in flight put back)" if moved else "")


def _put_back(task: Task, fd: int, flow: Flow | None) -> int:
    """Send, through ``task``'s end ``fd``, what the primary had sent through it and its peer
    had not read.  Never blocks (a full buffer keeps what it took)."""
    data = flow.leftover() if flow is not None else b""
    if not data:
        return 0
    with fdtable.borrowed(task.pid, fd) as mine:
        if mine is None:
            return 0
        s = socket.socket(fileno=mine)
        try:
            return s.send(data, socket.MSG_DONTWAIT)
        except OSError:
            return 0
        finally:
            s.detach()


def dup_into(task: Task, tmp: int, fd: int, cloexec: bool) -> None:
    """Move ``task``'s fd ``tmp`` to ``fd`` (dup3, then close ``tmp``), with ``cloexec``.
    Precondition: ``task`` at a syscall entry (the calls are injected)."""
    if tmp != fd:
        task.inject(NR["dup3"], (tmp, fd, fdtable.O_CLOEXEC if cloexec else 0))
        task.inject(NR["close"], (tmp,))
