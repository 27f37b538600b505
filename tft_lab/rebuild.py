"""Go-live: the objects a process's fds stood for on the primary, rebuilt in the backup's own
kernel (called by :meth:`tft_lab.backup.Backup.reconcile`, one fd at a time).

Each function works on one process stopped at a syscall entry, through calls it injects
there (:meth:`tft_lab.guest.Task.inject`), and updates the fd's :class:`~tft_lab.fdtable.Fd`
to say it is real now.  What cannot be rebuilt raises :class:`~tft_lab.errors.DivergenceError`.
"""
from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
import struct
import time

from . import fdtable, pairs
from .errors import DivergenceError
from .guest import Task
from .syscalls import number

NR = {name: number(name) for name in ("openat", "lseek", "dup3", "close", "socket", "setsockopt", "fcntl", "chdir",
                                      "bind", "listen", "socketpair", "pidfd_open", "pidfd_getfd")}
AT_FDCWD = -100
SOL_SOCKET, SO_REUSEADDR = 1, 2


def enter_cwd(task: Task) -> str:
    """The process's own working directory becomes the recorded one: while replaying it could
    not follow a chdir into a directory missing here then (made by the program's mkdir, an
    output the replay skips); live, the program's relative paths must resolve where the
    primary's did.  Returns a note ("" when nothing had to move)."""
    info = task.policy_state.fds.get(fdtable.AT_FDCWD)
    if info is None or not info.path.startswith("/"):
        return ""
    try:
        if os.readlink(f"/proc/{task.pid}/cwd") == info.path:
            return ""
    except OSError:
        return ""
    res = task.inject(NR["chdir"], (task.scratch(info.path.encode(errors="surrogateescape") + b"\0"),))
    if res < 0:
        return f"cannot enter the working directory {info.path}: {os.strerror(-res)}"
    return f"working directory {info.path}"


def share(task: Task, fd: int, info: fdtable.Fd, rebuilt: dict, tasks) -> bool:
    """Make ``fd`` refer to the object already rebuilt for its description (dup'ed fds in
    one process, fds inherited across fork in another: pidfd_getfd), so that they share
    one offset as they did on the primary.  False if that object is gone."""
    owner, ofd = rebuilt[info.desc]
    held = owner.policy_state.fds.get(ofd)
    if owner.pid not in tasks or held is None or held.desc is not info.desc:
        return False   # the process that holds it exited, or closed or replaced that fd
    if owner is task:
        if ofd != fd:
            task.inject(NR["dup3"], (ofd, fd, fdtable.O_CLOEXEC if info.cloexec else 0))
        return True
    pidfd = task.inject(NR["pidfd_open"], (owner.tgid, 0))   # (a thread's own id names no process)
    if pidfd < 0:
        return False
    tmp = task.inject(NR["pidfd_getfd"], (pidfd, ofd, 0))
    task.inject(NR["close"], (pidfd,))
    if tmp < 0:
        return False
    pairs.dup_into(task, tmp, fd, info.cloexec)
    return True


def reopen(task: Task, fd: int, info: fdtable.Fd) -> str:
    """A file the primary had open: opened again here (create and truncate dropped), at its
    offset unless appending, on the same fd.  Returns a note.

    A FIFO is opened without waiting for its other end (which may have been in the dead
    primary's kernel, and never come: valgrind's vgdb FIFO, opened non-blocking and then
    made blocking), then given the status flags it had; a write end with no reader yet is
    opened read-write, which never waits."""
    flags = info.flags & ~(fdtable.O_CREAT | fdtable.O_TRUNC | fdtable.O_EXCL)
    path_addr = task.scratch(info.path.encode(errors="surrogateescape") + b"\0")
    fifo = _is_fifo(task, info.path)
    note = f"reopened the FIFO {info.path}" if fifo else f"reopened {info.path} at offset {info.offset}"
    tmp = task.inject(NR["openat"], (AT_FDCWD, path_addr, flags | (os.O_NONBLOCK if fifo else 0), 0))
    if fifo and tmp == -errno.ENXIO:
        tmp = task.inject(NR["openat"], (AT_FDCWD, path_addr, flags & ~fdtable.O_ACCMODE | os.O_RDWR | os.O_NONBLOCK, 0))
        note += " (read-write: no reader yet)"
    if tmp < 0:
        raise DivergenceError(f"cannot reopen {info.path}: {os.strerror(-tmp)}")
    if fifo and not flags & os.O_NONBLOCK:
        task.inject(NR["fcntl"], (tmp, fdtable.F_SETFL, flags & fdtable.SETFL_MASK))
    if not fifo and not info.flags & fdtable.O_APPEND:
        task.inject(NR["lseek"], (tmp, info.offset, fdtable.SEEK_SET))
    pairs.dup_into(task, tmp, fd, info.cloexec)
    info.standin = False
    return f"fd {fd}: {note}"


def _here(task: Task, path: str) -> str:
    """``path`` as the supervisor reaches it (relative: to ``task``'s working directory)."""
    return os.path.join(f"/proc/{task.pid}/cwd", path)


def _is_fifo(task: Task, path: str) -> bool:
    """Whether ``path`` (relative: to ``task``'s working directory) is a FIFO here."""
    try:
        return stat.S_ISFIFO(os.stat(_here(task, path)).st_mode)
    except OSError:
        return False


def relisten(task: Task, fd: int, info: fdtable.Fd) -> str:
    """A listening socket: created again with its options, bound to the same address (on
    another host: the same port on the backup's addresses), listening, on the same fd."""
    tmp, where = _socket_again(task, info, reuse=True)
    task.inject(NR["listen"], (tmp, info.backlog))
    pairs.dup_into(task, tmp, fd, info.cloexec)
    info.standin = False
    return f"fd {fd}: listening again on {where}"


def resocket(task: Task, fd: int, info: fdtable.Fd) -> str:
    """A socket neither listening nor connected yet (the program was setting it up): created
    again with its options and status flags, bound if it was, on the same fd; the program
    goes on with its setup (a reset socket would fail its bind or listen)."""
    tmp, where = _socket_again(task, info, reuse=False)
    pairs.dup_into(task, tmp, fd, info.cloexec)
    info.standin = False
    return f"fd {fd}: socket created again" + (f", bound to {where}" if where else "")


def _socket_again(task: Task, info: fdtable.Fd, reuse: bool) -> tuple[int, str]:
    """A new socket like ``info``'s (domain, type, options, status flags), bound to its address
    if it has one (``reuse``: with SO_REUSEADDR, so that the dead primary's connections on
    that port do not keep it): its fd in ``task`` and the address ("" if unbound)."""
    tmp = task.inject(NR["socket"], (info.domain, info.type, info.proto))
    if tmp < 0:
        raise DivergenceError(f"cannot create a socket: {os.strerror(-tmp)}")
    if reuse:
        one = task.scratch(struct.pack("<i", 1))
        task.inject(NR["setsockopt"], (tmp, SOL_SOCKET, SO_REUSEADDR, one, 4))
    for level, name, value in info.sockopts:
        task.inject(NR["setsockopt"], (tmp, level, name, task.scratch(value), len(value)))
    if info.flags & fdtable.SETFL_MASK:
        task.inject(NR["fcntl"], (tmp, fdtable.F_SETFL, info.flags & fdtable.SETFL_MASK))   # O_NONBLOCK
    addr = info.addr
    if not addr:
        return tmp, ""
    where = fmt_sockaddr(addr)
    for attempt in range(50):
        res = task.inject(NR["bind"], (tmp, task.scratch(addr), len(addr)))
        if res == -errno.EADDRNOTAVAIL and info.domain == socket.AF_INET:
            addr = addr[:4] + bytes(4) + addr[8:]   # another host: the backup's addresses
            where = fmt_sockaddr(addr)
            continue
        if res == -errno.EADDRINUSE and info.domain == socket.AF_UNIX:
            if _take_over_unix_path(task, addr, info.type):
                continue
            break
        if res == -errno.EADDRINUSE:
            time.sleep(0.05)   # the dead primary's socket is still being torn down
            continue
        break
    if res < 0:
        task.inject(NR["close"], (tmp,))
        raise DivergenceError(f"cannot bind {where}: {os.strerror(-res)}")
    return tmp, where


def _take_over_unix_path(task: Task, addr: bytes, kind: int) -> bool:
    """A Unix socket's file left by the dead primary's process (nobody listens on it: a
    connection is refused) is removed, so that the live replica binds it again (gpg-agent's
    sockets).  False if it is not such a file: someone listens there, or it is abstract."""
    raw = addr[2:].split(b"\0", 1)[0]
    if not raw:
        return False   # abstract (or unnamed): the dead kernel took it
    path = _here(task, os.fsdecode(raw))
    probe = socket.socket(socket.AF_UNIX, kind & 0xF)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return True
    except OSError:
        return False
    finally:
        probe.close()
    return False   # a live socket: not ours to take


def reset(task: Task, fd: int, info: fdtable.Fd) -> None:
    """A connection that lived in the dead kernel: one end of a fresh socket pair whose other
    end is closed, so reads and writes on it fail as on a reset connection."""
    pair = task.scratch(bytes(8))
    if task.inject(NR["socketpair"], (socket.AF_UNIX, socket.SOCK_STREAM, 0, pair)) < 0:
        return
    a, b = struct.unpack("<ii", task.read(pair, 8))
    pairs.dup_into(task, a, fd, info.cloexec)
    task.inject(NR["close"], (b,))
    info.kind = "dead"
    info.standin = False


def fmt_sockaddr(addr: bytes) -> str:
    if len(addr) >= 8 and int.from_bytes(addr[:2], "little") == socket.AF_INET:
        port = int.from_bytes(addr[2:4], "big")
        return f"{socket.inet_ntoa(addr[4:8])}:{port}"
    if len(addr) > 2 and int.from_bytes(addr[:2], "little") == socket.AF_UNIX:
        raw = addr[2:]
        if raw[:1] == b"\0":   # abstract: no file, shown as ss shows it
            return "@" + raw[1:].split(b"\0", 1)[0].decode(errors="backslashreplace")
        return raw.split(b"\0", 1)[0].decode(errors="backslashreplace")
    return addr.hex()
