"""The backup's fd table: what each file descriptor of a replayed process stands for.

While replaying, the backup's kernel holds stand-ins (``/dev/null``) for the
files the primary wrote, the sockets it made and the connections it accepted,
and real files whose offsets never moved (their reads were fed from the log).
This table remembers what the primary had — path, flags, offset, socket
address, epoll registrations — so that going live can rebuild it (and so
that the replayer knows which fd is the inherited stdout).

It follows the kernel's two levels exactly: an fd (:class:`Fd`) has only its
close-on-exec flag and points at an *open file description*
(:class:`Description`), which holds the offset, the status flags and what the
file is.  ``dup``/``dup2``/``dup3``/``F_DUPFD*`` and ``fork`` share the
description, so a shell that saves stdout with ``F_DUPFD``, redirects it with
``dup2`` and restores it gets back the very description it saved, and a write
through any fd (in any process) moves the one offset they all see.

The working directory is part of this state: it is the directory the kernel
names ``AT_FDCWD`` in the ``*at`` calls, so the table keeps it under that key,
as an entry of kind ``cwd`` whose ``path`` is the primary's working directory.
Paths the replay resolves (a relative open, a chdir) are resolved against
these recorded directories, never against whatever the replaying machine has
(the program's ``mkdir`` is an output: the replay skips it).
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import struct

O_ACCMODE, O_CREAT, O_EXCL, O_TRUNC, O_APPEND, O_CLOEXEC = 0o3, 0o100, 0o200, 0o1000, 0o2000, 0o2000000
SEEK_SET, SEEK_CUR, SEEK_END = 0, 1, 2
F_DUPFD, F_GETFD, F_SETFD, F_GETFL, F_SETFL, F_DUPFD_CLOEXEC, FD_CLOEXEC = 0, 1, 2, 3, 4, 1030, 1
#: Status flags F_SETFL may change (O_APPEND O_ASYNC O_DIRECT O_NOATIME O_NONBLOCK).
SETFL_MASK = 0o2000 | 0o20000 | 0o40000 | 0o1000000 | 0o4000
CLOSE_RANGE_CLOEXEC = 1 << 2
AT_FDCWD = -100
EINPROGRESS = 115
#: ``addr`` of a logged out-buffer that is not in the program's memory (as ``outs.MOVED``): the
#: bytes are what the primary logged beside the call (a listener's bound address).
LOGGED = 0


class Description:
    """One open file description as the primary had it (shared by every fd that refers to it).

    A plain slotted class, not a dataclass: importing dataclasses (and the inspect module it
    pulls in) costs ~5 ms on every tft command.  Compared by identity: two fds share one
    description exactly when they are the same object.

    ``kind``: ``stdin``/``stdout``/``stderr`` (inherited), ``file`` (opened by path: a regular
    file or a directory; ``path`` is absolute when it was resolved against the recorded
    directories), ``pipe``, ``socket``, ``listen``, ``conn`` (a connection: lived in the
    primary's kernel), ``dead`` (a reset connection), ``epoll``, ``other``; and ``cwd``, the
    working directory, kept under the key ``AT_FDCWD`` (per process: a fork copies it, a chdir
    replaces it).
    ``standin``: the backup's kernel holds ``/dev/null`` here, not the real object.
    ``addr``: a socket's own address (bound, or the primary's kernel's answer: see
    :func:`local_address`).  ``peer``: a connection's peer address, as the primary's kernel had
    it (logged at accept and connect).  ``epoll``: for kind "epoll", fd -> (events u32, data u64).
    ``own``: a file of the ``/proc`` entry of one of the program's own processes, open for real
    here (see :func:`own_proc_path`): what is written to it changes that process's kernel state,
    so the backup writes it too.
    """

    __slots__ = ("kind", "standin", "path", "flags", "offset", "domain", "type", "proto", "addr", "peer",
                 "backlog", "sockopts", "epoll", "own")

    def __init__(self, kind: str, standin: bool = False, path: str = "", flags: int = 0, offset: int = 0,
                 domain: int = 0, type: int = 0, proto: int = 0, addr: bytes = b"", peer: bytes = b"",
                 backlog: int = 0, sockopts: list | None = None, epoll: dict | None = None, own: bool = False):
        self.kind, self.standin, self.path, self.flags, self.offset = kind, standin, path, flags, offset
        self.domain, self.type, self.proto, self.addr, self.peer = domain, type, proto, addr, peer
        self.backlog = backlog
        self.sockopts = [] if sockopts is None else sockopts
        self.epoll = {} if epoll is None else epoll
        self.own = own

    def __repr__(self) -> str:
        return "Description(" + ", ".join(f"{f}={getattr(self, f)!r}" for f in self.__slots__) + ")"


_DESC_FIELDS = Description.__slots__


class Fd:
    """One descriptor: its close-on-exec flag and the description it refers to.

    ``Fd(kind, **description_fields, cloexec=...)`` makes a new description; the description's
    fields read and write through the fd (``info.offset += n`` moves the shared offset).
    """

    __slots__ = ("desc", "cloexec")

    def __init__(self, kind: str = "other", *, cloexec: bool = False, desc: Description | None = None, **kw):
        object.__setattr__(self, "desc", desc if desc is not None else Description(kind, **kw))
        object.__setattr__(self, "cloexec", bool(cloexec))

    def dup(self, cloexec: bool = False) -> "Fd":
        """Another fd for the same description (dup, dup2, F_DUPFD, fork)."""
        return Fd(desc=self.desc, cloexec=cloexec)

    def __getattr__(self, name: str):
        if name in _DESC_FIELDS:
            return getattr(self.desc, name)
        raise AttributeError(name)

    def __setattr__(self, name: str, value) -> None:
        if name in _DESC_FIELDS:
            setattr(self.desc, name, value)
        else:
            object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        return f"Fd({self.desc!r}, cloexec={self.cloexec})"


_libc = None
_NR_PIDFD_GETFD = 438


@contextlib.contextmanager
def borrowed(pid: int, fd: int):
    """A copy, in this process, of fd ``fd`` of process ``pid`` (``pidfd_getfd``: a tracer may
    take one), closed on exit; None if it cannot be had.  The program sees nothing."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        yield None
        return
    try:
        mine = _libc.syscall(_NR_PIDFD_GETFD, pidfd, fd, 0)
    finally:
        os.close(pidfd)
    if mine < 0:
        yield None
        return
    try:
        yield mine
    finally:
        os.close(mine)


def local_address(pid: int, fd: int, peer: bool = False) -> bytes | None:
    """The address socket ``fd`` of process ``pid`` is bound to (a ``struct sockaddr``, as
    ``getsockname`` gives it; ``peer``: the address it is connected to, as ``getpeername``),
    or None if it cannot be read.

    Why: a listener bound to port 0 gets its port from the primary's kernel at ``bind``; the
    program may never ask (``getsockname``), yet its clients know that port (another process
    told them, ``ss`` showed it).  The primary logs it with the ``listen``, so that a backup
    going live listens on that same port.  Both ends of a connection tell a backup which two
    of the program's sockets were connected to each other."""
    with borrowed(pid, fd) as mine:
        if mine is None:
            return None
        buf = ctypes.create_string_buffer(128)
        size = ctypes.c_uint32(128)
        if (_libc.getpeername if peer else _libc.getsockname)(mine, buf, ctypes.byref(size)) < 0:
            return None
        return buf.raw[:min(size.value, 128)]


def let_port_be_taken_over(pid: int, fd: int) -> None:
    """Set ``SO_REUSEADDR`` on TCP listener ``fd`` of process ``pid`` (the primary's).

    Why: on Linux a ``bind`` conflicts with every socket on that port that lacks
    ``SO_REUSEADDR`` — the dead primary's listener's accepted connections, in TIME_WAIT for
    60 s or not yet closed — whatever the new socket sets.  A backup on the same host could
    then not listen on the port again until they are gone.  Accepted sockets inherit the flag
    from their listener, so setting it at ``listen`` covers them all.  What the program may
    notice: ``getsockopt(SO_REUSEADDR)`` answers 1 (on both replicas: it is logged), and a
    bind of its own to a port in TIME_WAIT succeeds (as any server that sets it)."""
    with borrowed(pid, fd) as mine:
        if mine is None:
            return
        import socket   # here: only a program with a listener needs it (the CLI starts faster)

        s = socket.socket(fileno=mine)
        try:
            if s.type == socket.SOCK_STREAM and s.family in (socket.AF_INET, socket.AF_INET6):
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        except OSError:
            pass
        finally:
            s.detach()


_STATX_CTIME, _STATX_BTIME, _AT_SYMLINK_NOFOLLOW = 0x80, 0x800, 0x100


def changed_at(path: str, born: bool = False) -> float | None:
    """When ``path`` (not followed if a symlink) last changed (its ctime), or with ``born`` when
    it was created (its birth time, where the file system keeps one, else its ctime); None if
    it is not there.  A directory's ctime moves whenever an entry is added: its birth time
    says when it was made."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(256)
    if _libc.statx(AT_FDCWD, path.encode(errors="surrogateescape"), _AT_SYMLINK_NOFOLLOW,
                   _STATX_CTIME | _STATX_BTIME, buf) < 0:
        return None
    mask, = struct.unpack_from("<I", buf.raw, 0)
    sec, nsec = struct.unpack_from("<qI", buf.raw, 0x50)    # stx_btime
    if not (born and mask & _STATX_BTIME and sec > 0):       # (some file systems answer 0)
        sec, nsec = struct.unpack_from("<qI", buf.raw, 0x60)   # stx_ctime
    return sec + nsec / 1e9


def open_call(call) -> tuple[int, int]:
    """(index of the path argument, flags) of an open, openat or creat call."""
    a = call.args
    if call.name == "openat":
        return 1, a[2]
    if call.name == "open":
        return 0, a[1]
    return 0, O_CREAT | O_TRUNC | 1   # creat(path, mode)


def dirfd(value: int) -> int:
    """A dirfd argument as the kernel reads it: a signed 32-bit int (``AT_FDCWD`` may reach us as
    ``0xffffff9c``, the upper half of the register left zero by the program)."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >> 31 else value


def set_cwd(fds: dict[int, Fd], path: str) -> None:
    """Record ``path`` (absolute) as the working directory."""
    fds[AT_FDCWD] = Fd("cwd", path=path)


def resolve(fds: dict[int, Fd], at: int, path: str) -> str | None:
    """``path`` as the primary resolved it: absolute, joined to the recorded directory ``at``
    names (``AT_FDCWD`` or a directory fd).  None when that directory is not known (an fd
    inherited from outside): the kernel must resolve it.

    Not normalized on purpose: ``a/..`` resolved from ``/d`` is what ``/d/a/..`` resolves
    to (physically, through symlinks), while ``/d`` might not be.
    """
    if path.startswith("/"):
        return path
    info = fds.get(dirfd(at))
    if info is None or not info.path.startswith("/"):
        return None
    base = info.path.rstrip("/") or ""
    parts = [p for p in path.split("/") if p not in ("", ".")]   # "." and "//" never change it
    return "/".join([base, *parts]) if parts else (base or "/")


def resolve_call(task, fds: dict[int, Fd], call) -> str | None:
    """The absolute path a path-taking call of ``task`` (its table ``path`` fact) names, as the
    primary resolved it (``fds``: the task's table); None if it takes no path or its directory
    is not known."""
    entry = call.entry
    if entry is None or entry.path is None:
        return None
    at_arg, path_arg = entry.path
    raw = task.mem.read_cstring(call.args[path_arg]).decode(errors="surrogateescape")
    return resolve(fds, AT_FDCWD if at_arg is None else call.args[at_arg], raw)


def lowest_free(fds: dict[int, "Fd"]) -> int:
    """The fd number the kernel gives the next new fd of a process whose table is ``fds``."""
    n = 0
    while n in fds:
        n += 1
    return n


#: Entries of ``/proc/<pid>/`` that are links to other files (``/proc/self/fd/1`` is the
#: program's stdout, not its own state): what is written through them is output.
_PROC_LINKS = frozenset(("fd", "cwd", "root", "exe", "map_files"))


def proc_here(task, path: str) -> str | None:
    """If ``path`` is under the ``/proc`` entry of one of the program's own processes —
    ``/proc/self``, ``/proc/thread-self``, or ``/proc/<pid>`` for a pid of the program (the
    primary's pid: the one the program knows), a thread's ``task/<tid>`` under it too — the same
    path for this replica's process and thread; else None (not under ``/proc``, or another
    process's entry: the outside world)."""
    if not path.startswith("/proc/"):
        return None
    parts = path.split("/")
    who = parts[2]
    if who not in ("self", "thread-self"):
        if not who.isdigit() or (real := _real_id(task, who)) is None:
            return None
        parts[2] = real
    if len(parts) > 4 and parts[3] == "task" and parts[4].isdigit():
        # /proc/self/task/<tid>: glibc names another thread so (pthread_setname_np), with the
        # tid pthread_t holds: the primary's.
        parts[4] = _real_id(task, parts[4]) or parts[4]
    return "/".join(parts)


def _real_id(task, vid: str) -> str | None:
    """This replica's pid or tid for the primary's ``vid`` (a process or thread of the program)."""
    return next((str(t.pid) for t in task.engine.tasks.values() if t.vpid == int(vid)), None)


def own_proc_path(task, path: str) -> str | None:
    """If ``path`` (as the primary resolved it) names a file of the ``/proc`` entry of one of
    the program's own processes (see :func:`proc_here`), the same file for this replica's
    process; else None.

    Why: such a file is the process's own kernel state (``uid_map``, ``setgroups`` and
    ``gid_map`` after ``unshare(CLONE_NEWUSER)``, ``oom_score_adj``, ``comm``, ``mem``).
    A write to it is not an output to the world but a change of the process itself, like a
    local call: the backup's process must make it too, or it differs from the primary's
    (``unshare -r id -u`` printed 65534 after a failover: no uid map).  The links under an
    entry (``fd/1``, ``cwd/...``, ``exe``) name other files and are not its state."""
    here = proc_here(task, path)
    if here is None:
        return None
    rest = path.split("/")[3:]
    if rest[:1] == ["task"]:
        rest = rest[2:]
    if rest[:1] and rest[0] in _PROC_LINKS:
        return None
    return here


def inherited() -> dict[int, Fd]:
    return {0: Fd("stdin"), 1: Fd("stdout"), 2: Fd("stderr")}


def copy_table(fds: dict[int, Fd]) -> dict[int, Fd]:
    """A child's table after fork: new fds (same close-on-exec flags) for the same descriptions."""
    return {fd: info.dup(info.cloexec) for fd, info in fds.items()}


def after_exec(fds: dict[int, Fd]) -> None:
    for fd in [fd for fd, info in fds.items() if info.cloexec]:
        del fds[fd]


def _dup_to(fds: dict[int, Fd], src: int, dst: int, cloexec: bool) -> None:
    info = fds.get(src)
    # An fd we know nothing of (inherited beyond 0-2, say): a new "other", never a guess.
    fds[dst] = info.dup(cloexec) if info is not None else Fd("other", cloexec=cloexec)


def _moved(fds: dict[int, Fd], fd: int, n: int) -> None:
    """The file position of ``fd``'s description moved by ``n`` bytes."""
    info = fds.get(fd)
    if info is not None and info.kind == "file" and n > 0:
        info.offset += n



def _logged(call) -> list[bytes]:
    """The blobs the primary logged beside ``call`` (at :data:`LOGGED`), in order."""
    rec = getattr(call, "rec", None)
    if rec is None:
        return []
    return [data for addr, data in zip(rec["addrs"], rec["blobs"]) if addr == LOGGED]


def _connected(info: Fd, call) -> None:
    info.kind = "conn"
    ends = _logged(call)
    if len(ends) == 2:
        info.addr, info.peer = ends


def update(task, fds: dict[int, Fd], call, res: int, standin: bool) -> None:
    """Apply a completed call of ``task`` (as the primary saw it: ``res``) to its table ``fds``."""
    if call.name == "connect" and res == -EINPROGRESS and call.args[0] in fds:
        _connected(fds[call.args[0]], call)   # non-blocking: connected (or failing) later
    if res < 0:
        return
    a = call.args
    name = call.name
    if call.entry is not None and call.entry.opens:
        path_arg, flags = open_call(call)
        path = resolve_call(task, fds, call) or task.mem.read_cstring(a[path_arg]).decode(errors="surrogateescape")
        fds[res] = Fd("file", standin=standin, path=path, flags=flags, cloexec=bool(flags & O_CLOEXEC),
                      own=not standin and own_proc_path(task, path) is not None)
    elif call.entry is not None and call.entry.chdir:
        if name == "fchdir":
            where = fds[a[0]].path if a[0] in fds and fds[a[0]].path.startswith("/") else None
        else:
            where = resolve_call(task, fds, call)
        if where is None:   # a directory we know nothing of: the kernel's answer (ran for real)
            try:
                where = os.readlink(f"/proc/{task.pid}/cwd")
            except OSError:
                return
        set_cwd(fds, where)
    elif name == "dup":
        _dup_to(fds, a[0], res, False)
    elif name == "fcntl" and a[1] in (F_DUPFD, F_DUPFD_CLOEXEC):
        _dup_to(fds, a[0], res, a[1] == F_DUPFD_CLOEXEC)
    elif name in ("dup2", "dup3"):
        if a[0] != a[1]:   # dup2(fd, fd) changes nothing (dup3 refuses it)
            _dup_to(fds, a[0], a[1], bool(name == "dup3" and a[2] & O_CLOEXEC))
    elif name == "fcntl" and a[1] == F_SETFD and a[0] in fds:
        fds[a[0]].cloexec = bool(a[2] & FD_CLOEXEC)
    elif name == "fcntl" and a[1] == F_SETFL and a[0] in fds:
        info = fds[a[0]]
        info.flags = (info.flags & ~SETFL_MASK) | (a[2] & SETFL_MASK)
    elif name == "close":
        fds.pop(a[0], None)
    elif name == "close_range":
        last = a[1] & 0xFFFFFFFF
        for fd in [fd for fd in fds if a[0] <= fd <= last]:
            if a[2] & CLOSE_RANGE_CLOEXEC:
                fds[fd].cloexec = True
            else:
                del fds[fd]
    elif name == "socket":
        fds[res] = Fd("socket", standin=standin, domain=a[0], type=a[1] & 0xF, proto=a[2],
                      cloexec=bool(a[1] & O_CLOEXEC))
    elif name in ("accept", "accept4"):
        fds[res] = Fd("conn", standin=standin, cloexec=bool(name == "accept4" and a[3] & O_CLOEXEC))
        _connected(fds[res], call)
    elif name == "bind" and a[0] in fds:
        fds[a[0]].addr = task.read(a[1], min(a[2], 128))
    elif name == "getsockname" and a[0] in fds and fds[a[0]].kind in ("socket", "listen") and a[1]:
        # The address the kernel gave the primary (a bind to port 0): a re-created
        # listener must come back on that port, the one its clients were told.
        fds[a[0]].addr = task.read(a[1], min(task.mem.read_u32(a[2]), 128))
    elif name == "listen" and a[0] in fds:
        fds[a[0]].kind = "listen"
        fds[a[0]].backlog = a[1]
        for data in _logged(call)[:1]:
            fds[a[0]].addr = data   # the address the primary's kernel bound (port 0 resolved)
    elif name == "connect" and a[0] in fds:
        _connected(fds[a[0]], call)
    elif name == "setsockopt" and a[0] in fds and a[4] <= 64:
        fds[a[0]].sockopts.append((a[1], a[2], task.read(a[3], a[4])))
    elif name in ("pipe", "pipe2", "socketpair"):
        raw = task.read(a[3] if name == "socketpair" else a[0], 8)
        r, w = struct.unpack("<ii", raw)
        flags = a[1] if name in ("pipe2", "socketpair") else 0
        kind = "pipe" if name != "socketpair" else "socketpair"
        try:   # the backup's own pipe (pipes run for real): "pipe:[inode]" names it
            ident = os.readlink(f"/proc/{task.pid}/fd/{r}")
        except OSError:
            ident = ""
        fds[r] = Fd(kind, path=ident, cloexec=bool(flags & O_CLOEXEC))
        fds[w] = Fd(kind, path=ident, cloexec=bool(flags & O_CLOEXEC))
    elif name in ("epoll_create", "epoll_create1"):
        fds[res] = Fd("epoll", cloexec=bool(name == "epoll_create1" and a[0] & O_CLOEXEC))
    elif name == "epoll_ctl" and a[0] in fds:
        reg = fds[a[0]].epoll
        if a[1] == 2:     # EPOLL_CTL_DEL
            reg.pop(a[2], None)
        elif a[3]:
            reg[a[2]] = task.read(a[3], 12)
    elif name in ("memfd_create", "eventfd2", "timerfd_create", "signalfd4", "inotify_init1"):
        fds[res] = Fd("other")
    # the file position, as the primary's calls moved it (pread/pwrite never move it)
    elif name in ("read", "readv", "write", "writev"):
        _moved(fds, a[0], res)
    elif name in ("preadv2", "pwritev2") and a[3] & 0xFFFFFFFFFFFFFFFF == 0xFFFFFFFFFFFFFFFF:
        _moved(fds, a[0], res)   # offset -1: "use and move the file position"
    elif name == "sendfile":
        _moved(fds, a[0], res)
        if not a[2]:
            _moved(fds, a[1], res)
    elif name == "copy_file_range":
        if not a[1]:
            _moved(fds, a[0], res)
        if not a[3]:
            _moved(fds, a[2], res)
    elif name == "lseek" and a[0] in fds:
        fds[a[0]].offset = res
