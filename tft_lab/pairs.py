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

Going live, such a pair becomes a new connection (over TCP on loopback for a TCP one, else
a Unix socket pair), one end in each fd (``pidfd_getfd`` carries the other end into the
other process), and the bytes the primary's processes had sent each other and not yet read
(followed from the log, as for pipes: :class:`Flow`) are put back in.  What the program may
notice: ``getsockname``/``getpeername`` answer the new connection's loopback addresses.
A connection the program made to its own listener that was not accepted yet (it waited in
the dead kernel's backlog) connects again to that listener (:func:`connect_again`).
"""
from __future__ import annotations

import fcntl
import os
import socket
import struct

from . import fdtable
from .guest import Call, Task
from .outs import gather
from .syscalls import number

NR = {name: number(name) for name in ("socketpair", "dup3", "close", "pidfd_open", "pidfd_getfd", "socket", "connect",
                                      "fcntl", "bind", "listen", "getsockname", "accept4")}
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

    def owed(self) -> int:
        """Bytes the reader read that no logged write put in: the record of the write that did
        died with the primary (the supervisor saw the reader's exit stop first)."""
        return self.consumed - self.written


class InFlight:
    """The bytes in flight between the program's own processes, followed from the log while
    replaying: per pipe (its identity, ``pipe:[ino]``), per direction of a socketpair (its
    identity and the receiving end) and per direction of a connection (its (sender,
    receiver) addresses).

    Why: the backup runs no output into them (the primary did), and feeds their reads from
    the log, so its own kernel's pipes and socketpairs are empty; what the primary's reader
    had not read yet died with the primary's kernel."""

    def __init__(self):
        self.pipes: dict[str, Flow] = {}
        self.conns: dict[tuple[bytes, bytes], Flow] = {}
        self.pairs: dict[tuple[str, int], Flow] = {}   # (the pair's identity, the receiving end)
        self.owing = False   # some reader read more than the log says was written (:meth:`trim`)

    def account(self, task: Task, call: Call) -> None:
        """Follow a replayed call that put bytes into (an output) or took them out of a pipe, a
        socketpair or a connection.  Precondition: its record applied (``call.result`` is the
        primary's)."""
        entry = call.entry
        if entry is None or entry.fd_arg is None or call.result <= 0:
            return
        writing = entry.cls == "output" and bool(entry.writes)
        if not (writing or call.name in READS):
            return
        flow = self._flow(task, call.args[entry.fd_arg], writing, make=True)
        if flow is None:
            return
        if writing:
            flow.wrote(gather(task, call, call.result))
        else:
            flow.read(call.result)

    def _flow(self, task: Task, fd: int, writing: bool, make: bool) -> Flow | None:
        """The flow a write (or a read) through ``task``'s ``fd`` moves bytes in; None if ``fd``
        is no pipe, socketpair or connection the primary's addresses name (or, without
        ``make``, if nothing moved through it yet)."""
        info = task.policy_state.fds.get(fd)
        if info is None:
            return None
        if info.kind == "conn":   # a connection: both ends may be the program's
            flows, key = self.conns, direction(info, writing)
        elif info.kind == "pipe" and info.path:
            flows, key = self.pipes, info.path
        elif info.kind == "socketpair" and info.path:
            end = _end(task, fd, info)
            # Bytes written through one end wait in the other's queue: a flow per receiving end.
            flows, key = self.pairs, None if end is None else (info.path, 1 - end if writing else end)
        else:
            return None
        if key is None:
            return None
        return flows.setdefault(key, Flow()) if make else flows.get(key)

    def between_ours(self, task: Task, call: Call) -> bool:
        """Whether ``call`` reads from a flow a process of the program wrote into, or writes
        into one a process of the program read from, as the log has it."""
        entry = call.entry
        if entry is None or entry.fd_arg is None:
            return False
        writing = entry.cls == "output" and bool(entry.writes)
        if not (writing or call.name in READS):
            return False
        flow = self._flow(task, call.args[entry.fd_arg], writing, make=False)
        return flow is not None and (flow.consumed if writing else flow.written) > 0

    def trim(self, task: Task, call: Call) -> int:
        """At the entry of a live output: the bytes the dead primary's same output had put in a
        pipe, socketpair or connection *and its reader had read* (the reader's record came
        before the writer's, which died with the primary) are not written again.  The call
        is made to write only the rest; returns how many bytes it skips (0: it runs as it is),
        which its exit adds to the result.  Precondition: after :meth:`refill`."""
        entry = call.entry
        if not self.owing or entry is None or entry.cls != "output" or entry.fd_arg is None:
            return 0
        flow = self._flow(task, call.args[entry.fd_arg], True, make=False)
        owed = flow.owed() if flow is not None else 0
        if owed <= 0:
            return 0
        trimmed = _skip_bytes(task, call, owed)
        if trimmed is None:
            return 0
        args, skipped = trimmed
        task.redirect(call.nr, args)
        flow.written += skipped
        return skipped

    def untrim(self, task: Task, call: Call, skipped: int) -> None:
        """A trimmed output failed: the bytes it left out are owed again, by the output the
        program makes next (after a full pipe's EAGAIN, say)."""
        self._flow(task, call.args[call.entry.fd_arg], True, make=False).written -= skipped

    def refill(self, tasks, warn) -> None:
        """Put back what the primary had written to its pipes and socketpairs and not yet read,
        through the first of ``tasks`` that holds each (never blocks); ``warn`` says what was
        put back.  (A connection's bytes go back when it is connected again: :func:`reconnect`.)"""
        tasks = list(tasks)
        self.owing = any(f.owed() > 0 for flows in (self.pipes, self.conns, self.pairs) for f in flows.values())
        for ident, flow in self.pipes.items():
            data = flow.leftover()
            holder = _holder(tasks, lambda t, fd, info: info.kind == "pipe" and info.path == ident)
            if data and holder is not None:
                t, fd = holder
                try:
                    w = os.open(f"/proc/{t.tgid}/fd/{fd}", os.O_WRONLY | os.O_NONBLOCK)
                    try:
                        _room_for(w, len(data))
                        n = os.write(w, data)
                    finally:
                        os.close(w)
                    _said(warn, n, len(data), ident)
                except OSError as e:
                    warn(f"could not put back {len(data)} bytes into {ident}: {e.strerror}")
        for (ident, end), flow in self.pairs.items():
            data = flow.leftover()
            # Sent through the other end, as the primary's writer did.
            holder = _holder(tasks, lambda t, fd, info: info.kind == "socketpair" and info.path == ident
                             and _end(t, fd, info) == 1 - end)
            if data and holder is not None:
                n = _send(holder[0], holder[1], data)
                if n < 0:
                    warn(f"could not put back {len(data)} bytes into {ident} (not a stream socket)")
                else:
                    _said(warn, n, len(data), ident)


def _holder(tasks, holds) -> tuple[Task, int] | None:
    """The first (task, fd) of ``tasks`` for which ``holds(task, fd, info)``."""
    for t in tasks:
        for fd, info in sorted(t.policy_state.fds.items()):
            if holds(t, fd, info):
                return t, fd
    return None


def _room_for(pipe: int, n: int) -> None:
    """Grow ``pipe``'s buffer to hold ``n`` bytes if it is smaller: the primary's pipe held them
    (a full buffer, and what its reader took and had no record of), so may this one."""
    try:
        if fcntl.fcntl(pipe, fcntl.F_GETPIPE_SZ) < n:
            fcntl.fcntl(pipe, fcntl.F_SETPIPE_SZ, n)
    except OSError:
        pass   # above the system's bound: what does not fit is said lost


def _skip_bytes(task: Task, call: Call, skip: int) -> tuple[tuple, int] | None:
    """The arguments of output ``call`` with its first ``skip`` bytes (at most all it writes)
    left out, and how many that leaves out; None for an fd-to-fd move (its source cannot be
    moved on without reading it)."""
    how = call.entry.writes
    args = list(call.args)
    if how == "buf":
        n = min(skip, args[2])
        args[1] += n
        args[2] -= n
        return tuple(args), n
    if how == "iov":
        iov, n = _skip_iov(task, args[1], args[2], skip)
        args[1], args[2] = task.scratch(iov), len(iov) // 16
        return tuple(args), n
    if how == "msghdr":
        raw = bytearray(task.read(args[1], 56))
        base, count = struct.unpack_from("<QQ", raw, 16)
        iov, n = _skip_iov(task, base, count, skip)
        at = task.scratch(bytes(64) + iov)   # a copy of the header, then its new iovecs
        struct.pack_into("<QQ", raw, 16, at + 64, len(iov) // 16)
        task.write(at, bytes(raw))
        args[1] = at
        return tuple(args), n
    return None


def _skip_iov(task: Task, addr: int, count: int, skip: int) -> tuple[bytes, int]:
    """The iovec array at ``addr`` (``count`` entries) with its first ``skip`` bytes left out
    (packed), and how many bytes that leaves out."""
    count = min(count, 1024)
    raw = task.read(addr, 16 * count) if count else b""
    out = bytearray()
    left = skip
    for i in range(count):
        base, length = struct.unpack_from("<QQ", raw, 16 * i)
        n = min(left, length)
        left -= n
        if length > n:
            out += struct.pack("<QQ", base + n, length - n)
    return bytes(out), skip - left


def _said(warn, n: int, want: int, ident: str) -> None:
    if n == want:
        warn(f"put back {n} bytes the primary had left in {ident}")
    else:
        warn(f"put back {n} of the {want} bytes the primary had left in {ident} (its buffer is full)")


def _end(task: Task, fd: int, info: fdtable.Fd) -> int | None:
    """Which end of its socketpair ``task``'s ``fd`` is: 0 the first (whose identity names the
    pair, ``info.path``), 1 the other.  The backup's socketpairs are real: its kernel says."""
    try:
        return 0 if os.readlink(f"/proc/{task.tgid}/fd/{fd}") == info.path else 1
    except OSError:
        return None


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
    ends = _stream_pair(task, info.domain)
    if ends is None:
        return ""
    a, b = ends
    other = peer.policy_state.fds[pfd]
    dup_into(task, a, fd, info.cloexec)
    if peer is task:
        dup_into(task, b, pfd, other.cloexec)
    else:
        pidfd = peer.inject(NR["pidfd_open"], (task.tgid, 0))   # (a thread's own id names no process)
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


def _stream_pair(task: Task, domain: int) -> tuple[int, int] | None:
    """Two connected stream sockets in ``task`` (its fds): over TCP on loopback for a TCP
    connection (the program may set TCP options on it, or ask its addresses), else a Unix
    socket pair.  Precondition: ``task`` at a syscall entry (the calls are injected)."""
    if domain in (socket.AF_INET, socket.AF_INET6):
        here = b"\x7f\0\0\x01" if domain == socket.AF_INET else bytes(15) + b"\x01"
        size = 16 if domain == socket.AF_INET else 28
        addr = bytearray(size)
        addr[0:2] = domain.to_bytes(2, "little")
        addr[4:8] = here if domain == socket.AF_INET else bytes(4)
        if domain == socket.AF_INET6:
            addr[8:24] = here
        lst = task.inject(NR["socket"], (domain, socket.SOCK_STREAM, 0))
        if lst >= 0:
            try:
                where, length = task.scratch(bytes(addr) + bytes(4)), size
                task.write(where + size, length.to_bytes(4, "little"))
                if (task.inject(NR["bind"], (lst, where, size)) == 0 and task.inject(NR["listen"], (lst, 1)) == 0
                        and task.inject(NR["getsockname"], (lst, where, where + size)) == 0):
                    a = task.inject(NR["socket"], (domain, socket.SOCK_STREAM, 0))
                    if a >= 0 and task.inject(NR["connect"], (a, where, size)) == 0:
                        b = task.inject(NR["accept4"], (lst, 0, 0, 0))
                        if b >= 0:
                            return a, b
                    if a >= 0:
                        task.inject(NR["close"], (a,))
            finally:
                task.inject(NR["close"], (lst,))
    pair = task.scratch(bytes(8))
    if task.inject(NR["socketpair"], (socket.AF_UNIX, socket.SOCK_STREAM, 0, pair)) < 0:
        return None
    return int.from_bytes(task.read(pair, 4), "little"), int.from_bytes(task.read(pair + 4, 4), "little")


def own_listener(info: fdtable.Fd, tasks) -> bool:
    """Whether connection ``info`` was made to a socket the program listens on (its peer is a
    listener's address, or the listener's port on a wildcard address): not accepted when the
    primary died, it waited in the dead kernel's backlog (:func:`connect_again`)."""
    peer = info.peer
    if len(peer) < 4:
        return False
    for t in tasks:
        for other in t.policy_state.fds.values():
            addr = other.addr
            if other.kind == "listen" and addr[:4] == peer[:4] and (addr == peer or not addr[4:].strip(b"\0")):
                return True
    return False


def connect_again(task: Task, fd: int, info: fdtable.Fd, flows: dict) -> str:
    """Make ``task``'s ``fd`` a new connection to the address it had connected to (the program's
    own listener, listening again), with the bytes it had sent and nobody had read put back;
    the program's ``accept`` takes it.  Precondition: ``task`` at a syscall entry.  Returns a
    note for the go-live message ("" if it could not connect)."""
    s = task.inject(NR["socket"], (info.domain, info.type, info.proto))
    if s < 0:
        return ""
    addr = info.peer
    res = task.inject(NR["connect"], (s, task.scratch(addr), len(addr)))
    if res < 0:
        task.inject(NR["close"], (s,))
        return ""
    if info.flags & fdtable.SETFL_MASK:
        task.inject(NR["fcntl"], (s, fdtable.F_SETFL, info.flags & fdtable.SETFL_MASK))
    dup_into(task, s, fd, info.cloexec)
    info.standin = False
    moved = _put_back(task, fd, flows.get(direction(info, True)))
    note = f"fd {fd}: connected again to its own program's listener (it was not accepted yet)"
    return note + (f" ({moved} bytes in flight put back)" if moved else "")


def _put_back(task: Task, fd: int, flow: Flow | None) -> int:
    """Send, through ``task``'s end ``fd``, what the primary had sent through it and its peer
    had not read.  Never blocks (a full buffer keeps what it took)."""
    data = flow.leftover() if flow is not None else b""
    return max(0, _send(task, fd, data)) if data else 0


def _send(task: Task, fd: int, data: bytes) -> int:
    """Send ``data`` through ``task``'s stream socket ``fd`` without blocking: the bytes sent
    (what a full buffer took), -1 if ``fd`` is not a stream socket (a datagram's boundaries are
    not known) or cannot be had."""
    with fdtable.borrowed(task.tgid, fd) as mine:   # the process's id: a thread's names none
        if mine is None:
            return -1
        s = socket.socket(fileno=mine)
        try:
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE) != socket.SOCK_STREAM:
                return -1
            return s.send(data, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return 0
        except OSError:
            return -1
        finally:
            s.detach()


def dup_into(task: Task, tmp: int, fd: int, cloexec: bool) -> None:
    """Move ``task``'s fd ``tmp`` to ``fd`` (dup3, then close ``tmp``), with ``cloexec``.
    Precondition: ``task`` at a syscall entry (the calls are injected)."""
    if tmp != fd:
        task.inject(NR["dup3"], (tmp, fd, fdtable.O_CLOEXEC if cloexec else 0))
        task.inject(NR["close"], (tmp,))
