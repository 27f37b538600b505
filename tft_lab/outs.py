"""What a call wrote into the program's memory: evaluating the table's out-buffer sizes.

Used by the primary after a call returns, to copy exactly the bytes the
kernel filled (DESIGN.md §2); the backup writes them back at the same
addresses (ASLR is off, so they are the same on both replicas).
"""
from __future__ import annotations

import struct

from .engine import Call, Task
from .syscalls import RESTART_CODES, ioctl_out_size

MAX_OUT = 64 << 20


def capture(task: Task, call: Call) -> list[tuple[int, bytes]]:
    """(addr, bytes) pairs the completed ``call`` wrote.  Nothing for a failed call."""
    entry = call.entry
    res = call.result
    if entry is None or not entry.outs or (res < 0 and res not in RESTART_CODES):
        return []  # (an interrupted sleep has already written the time remaining)
    out: list[tuple[int, bytes]] = []
    args = call.args
    for idx, size in entry.outs:
        addr = args[idx]
        if not addr:
            continue
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
    """The bytes an output call (write, writev, pwrite, send) hands to the kernel, up to ``count``."""
    how = call.entry.writes if call.entry is not None else ""
    a = call.args
    if how == "buf":
        return task.read(a[1], min(count, a[2]))
    if how == "iov":
        return b"".join(data for _, data in _iov(task, a[1], a[2], count))
    if how == "msghdr":
        raw = task.read(a[1], 56)
        _n, _nl, iov, iovlen, *_ = struct.unpack("<QI4xQQQQi4x", raw)
        return b"".join(data for _, data in _iov(task, iov, iovlen, count))
    return b""
