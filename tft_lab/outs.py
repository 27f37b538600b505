"""What a call wrote into the program's memory: evaluating the table's out-buffer sizes.

Used by the primary after a call returns, to copy exactly the bytes the
kernel filled (docs/syscalls.md); the backup writes them back at the same
addresses (ASLR is off, so they are the same on both replicas).
"""
from __future__ import annotations

import os
import stat
import struct

from .guest import Call, Task
from .syscalls import RESTART_CODES, ioctl_out_size

MAX_OUT = 64 << 20
#: At most this many bytes are moved by one fd-to-fd output whose bytes are logged (the call's
#: length is clamped: the kernel may move fewer bytes than asked, and programs loop).
MAX_MOVED = 8 << 20
#: ``addr`` of an out-buffer that holds the bytes an fd-to-fd output moved (not memory).
MOVED = 0


def capture(task: Task, call: Call) -> list[tuple[int, bytes]]:
    """(addr, bytes) pairs the completed ``call`` wrote.  Nothing for a failed call."""
    entry = call.entry
    res = call.result
    if entry is None or not entry.outs or (res < 0 and res not in RESTART_CODES):
        return []  # (an interrupted sleep has already written the time remaining)
    out: list[tuple[int, bytes]] = []
    args = call.args
    for idx, size, addr in _pointed(call):
        if size == "iov":
            out.extend(_iov(task, addr, args[idx + 1], res))
        elif size == "msghdr":
            out.extend(_msghdr(task, addr, res))
        elif res >= 0 or size.isdigit():
            n = _size(task, size, args, res)
            if n > 0:
                n = min(n, MAX_OUT)
                out.append((addr, task.read(addr, n)))
    return out


def places(task: Task, call: Call) -> set[int]:
    """The addresses ``call`` may write at, from its arguments (and the iovecs and msghdrs they
    point to, as the program set them up before the call): every address :func:`capture`
    can return for it.  A replay checks a log's out-buffers against them."""
    found: set[int] = set()
    for idx, size, addr in _pointed(call):
        if size == "iov":
            found.update(_iov_bases(task, addr, call.args[idx + 1]))
        elif size == "msghdr":
            raw = task.read(addr, 56)
            name, _, iov, iovlen, control, _, _ = struct.unpack("<QI4xQQQQi4x", raw)
            found.update((addr, name, control, *_iov_bases(task, iov, iovlen)))
        else:
            found.add(addr)
    return found


def _pointed(call: Call):
    """(argument index, size expression, address) of each out-buffer the call was given (not NULL)."""
    if call.entry is None:
        return
    for idx, size in call.entry.outs:
        if call.args[idx]:
            yield idx, size, call.args[idx]


def _iov_bases(task: Task, iov_addr: int, count: int) -> list[int]:
    count = min(count, 1024)
    raw = task.read(iov_addr, 16 * count) if count else b""
    return [struct.unpack_from("<Q", raw, 16 * i)[0] for i in range(len(raw) // 16)]


def _size(task: Task, expr: str, args: tuple, res: int) -> int:
    if expr.isdigit():
        return int(expr)
    if expr == "ret":
        return res
    if expr.startswith("ret*"):
        return res * int(expr[4:])
    if expr == "fdset":
        return ((args[0] + 63) // 64) * 8
    if expr == "ioctl":
        return ioctl_out_size(args[1])
    if expr.startswith("*a"):
        ptr = args[int(expr[2:])]
        return task.mem.read_u32(ptr) if ptr else 0
    if expr.startswith("a"):
        base, _, mul = expr[1:].partition("*")
        return args[int(base)] * (int(mul) if mul else 1)
    raise ValueError(f"bad out-buffer size expression {expr!r}")


def _iov(task: Task, iov_addr: int, count: int, total: int) -> list[tuple[int, bytes]]:
    out = []
    count = min(count, 1024)
    raw = task.read(iov_addr, 16 * count)
    for i in range(count):
        if total <= 0:
            break
        base, length = struct.unpack_from("<QQ", raw, 16 * i)
        n = min(length, total)
        if n:
            out.append((base, task.read(base, n)))
        total -= n
    return out


def _msghdr(task: Task, addr: int, res: int) -> list[tuple[int, bytes]]:
    # struct msghdr { void *name; socklen_t namelen; iovec *iov; size_t iovlen;
    #                 void *control; size_t controllen; int flags; }  (56 bytes on x86_64)
    raw = task.read(addr, 56)
    name, namelen, iov, iovlen, control, controllen, _flags = struct.unpack("<QI4xQQQQi4x", raw)
    out = [(addr, raw)]  # the kernel updates namelen, controllen and flags in place
    if name and namelen:
        out.append((name, task.read(name, min(namelen, 128))))
    out.extend(_iov(task, iov, iovlen, res))
    if control and controllen:
        out.append((control, task.read(control, min(controllen, 4096))))
    return out


def gather(task: Task, call: Call, count: int) -> bytes:
    """The bytes an output call hands to the kernel, up to ``count``: from the program's memory,
    or, for an fd-to-fd move (``sendfile``, ``copy_file_range``, ``splice``, ``tee``), from the
    call's log record (``call.rec``), where the primary logged them; ``b""`` if it did not."""
    how = call.entry.writes if call.entry is not None else ""
    a = call.args
    if how == "fd":
        rec = call.rec
        if rec is None:
            return b""
        return b"".join(d for addr, d in zip(rec["addrs"], rec["blobs"]) if addr == MOVED)[:count]
    if how == "buf":
        return task.read(a[1], min(count, a[2]))
    if how == "iov":
        return b"".join(data for _, data in _iov(task, a[1], a[2], count))
    if how == "msghdr":
        raw = task.read(a[1], 56)
        _n, _nl, iov, iovlen, *_ = struct.unpack("<QI4xQQQQi4x", raw)
        return b"".join(data for _, data in _iov(task, iov, iovlen, count))
    return b""


def _offset_ptr(call: Call, fd_index: int) -> int:
    """The offset pointer of an fd-to-fd move's end ``fd_index``: the table's 8-byte out-buffer
    right after that fd argument (``loff_t *``), or 0 (the fd's own file position moves)."""
    if (fd_index + 1, "8") in call.entry.outs:
        return call.args[fd_index + 1]
    return 0


def _fd(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >> 31 else v


def _stat(pid: int, fd: int) -> os.stat_result | None:
    try:
        return os.stat(f"/proc/{pid}/fd/{fd}")
    except OSError:
        return None


def move_plan(task: Task, call: Call, shown: set) -> str:
    """At the entry of an fd-to-fd move on the primary: ``"log"`` if its bytes must be logged and
    can be (the destination is one the replay shows: a file in ``shown`` (device, inode), the
    inherited stdout/stderr, or a pipe, whose contents a backup accounts for at failover; and
    one end is a regular file, from which they are read back after the call), ``"refuse"`` if
    they must be and cannot be (pipe to pipe, socket to pipe: no copy survives the call), else
    ``"run"``."""
    entry = call.entry
    dst = _stat(task.pid, _fd(call.args[entry.fd_arg]))
    if dst is None:
        return "run"   # a bad fd: the kernel answers
    if not (stat.S_ISFIFO(dst.st_mode) or (dst.st_dev, dst.st_ino) in shown):
        return "run"
    src = _stat(task.pid, _fd(call.args[entry.src_arg]))
    if stat.S_ISREG(dst.st_mode) or (src is not None and stat.S_ISREG(src.st_mode)):
        return "log"
    return "refuse"


def moved(task: Task, call: Call, count: int) -> bytes | None:
    """After an fd-to-fd move of ``count`` bytes: those bytes, read back from whichever end is a
    regular file, just behind where the call left that end's offset.  None if neither can be."""
    entry = call.entry
    for idx in (entry.src_arg, entry.fd_arg):
        fd = _fd(call.args[idx])
        st = _stat(task.pid, fd)
        if st is None or not stat.S_ISREG(st.st_mode):
            continue
        ptr = _offset_ptr(call, idx)
        try:
            end = task.mem.read_u64(ptr) if ptr else _file_pos(task.pid, fd)
            f = os.open(f"/proc/{task.pid}/fd/{fd}", os.O_RDONLY)
            try:
                data = os.pread(f, count, end - count)
            finally:
                os.close(f)
        except (OSError, ValueError):
            continue
        if len(data) == count:
            return data
    return None


def _file_pos(pid: int, fd: int) -> int:
    with open(f"/proc/{pid}/fdinfo/{fd}") as f:
        for line in f:
            if line.startswith("pos:"):
                return int(line.split()[1])
    raise ValueError("no pos in fdinfo")
