"""What a live backup's program reads from ``/proc``: its own (virtual) pids.

After go-live the program's processes have this replica's pids, but the program knows the
primary's (``getpid`` answers those).  A path under ``/proc/<pid>`` is already translated
(:func:`tft_lab.fdtable.proc_here`); this module rewrites what comes back *through* an fd
on ``/proc``, so that ``ps -p $$`` and ``cat /proc/self/stat`` show the pids the program
knows:

- ``getdents64`` on ``/proc`` itself: a directory entry named by a real pid of the program
  is renamed to its virtual pid;
- ``read``/``pread64`` of ``/proc/<pid>/stat`` (or ``task/<tid>/stat``): the pid, ppid,
  pgrp, session and tpgid fields; of ``.../status``: the ``Tgid``, ``Pid``, ``PPid``, and
  ``NS*`` lines.

Bounded and cheap: only fds on those paths are touched, only a read from offset 0 that got
the whole file (shorter than the buffer: one read, as ``ps`` and ``cat`` do) is rewritten,
and only when the rewritten bytes still fit the program's buffer; anything else passes as
the kernel gave it.  An id that names no process of the program passes unchanged.
"""
from __future__ import annotations

import re
import struct
from typing import Callable

_PID_FILE = re.compile(r"^/proc/(?:self|thread-self|\d+)(?:/task/\d+)?/(stat|status)$")
_STATUS_KEYS = (b"Tgid:", b"Pid:", b"PPid:", b"NStgid:", b"NSpid:", b"NSpgid:", b"NSsid:")
_STAT_PID_FIELDS = (0, 3, 4, 5, 7)   # pid, ppid, pgrp, session, tpgid (0-based, comm counted)
_DIRENT_HEAD = struct.Struct("<QqHB")   # d_ino, d_off, d_reclen, d_type; then the name, NUL


def view_of(path: str) -> str | None:
    """``"dir"`` for ``/proc``, ``"stat"``/``"status"`` for a process's or thread's pid file;
    else None (nothing to rewrite)."""
    if path.rstrip("/") == "/proc":
        return "dir"
    m = _PID_FILE.match(path)
    return m.group(1) if m else None


def rewrite_stat(data: bytes, to_virtual: Callable[[int], int]) -> bytes:
    """``/proc/<pid>/stat`` with its pid fields as the program knows them.  The command name
    (field 2, in parentheses) may hold spaces and parentheses: fields are split after its
    last ``)``."""
    close = data.rfind(b")")
    open_ = data.find(b" (")
    if close < 0 or open_ < 0:
        return data
    head = data[:open_]
    rest = data[close + 1:].split(b" ")   # rest[0] is b"" (the space after ')')
    if head.isdigit():
        head = str(to_virtual(int(head))).encode()
    for field in _STAT_PID_FIELDS[1:]:
        i = field - 1   # rest[1] is field 3 (state)
        if i < len(rest) and rest[i].lstrip(b"-").isdigit() and int(rest[i]) > 0:
            rest[i] = str(to_virtual(int(rest[i]))).encode()
    return head + data[open_:close + 1] + b" ".join(rest)


def rewrite_status(data: bytes, to_virtual: Callable[[int], int]) -> bytes:
    """``/proc/<pid>/status`` with its ``Tgid``/``Pid``/``PPid``/``NS*`` ids as the program
    knows them."""
    lines = data.split(b"\n")
    for n, line in enumerate(lines):
        key, _, values = line.partition(b"\t")
        if key in _STATUS_KEYS:
            ids = [str(to_virtual(int(v))).encode() if v.isdigit() and int(v) > 0 else v
                   for v in values.split(b"\t")]
            lines[n] = key + b"\t" + b"\t".join(ids)
    return b"\n".join(lines)


def rewrite_dirents(data: bytes, to_virtual: Callable[[int], int]) -> bytes:
    """``getdents64`` records of ``/proc`` with entries named by the program's real pids
    renamed to their virtual pids (each record re-sized, 8-byte aligned)."""
    out = bytearray()
    at = 0
    while at + _DIRENT_HEAD.size <= len(data):
        ino, off, reclen, dtype = _DIRENT_HEAD.unpack_from(data, at)
        if reclen == 0:
            return data   # not what we understand: leave it as the kernel gave it
        name = data[at + _DIRENT_HEAD.size:at + reclen].split(b"\0", 1)[0]
        if name.isdigit():
            name = str(to_virtual(int(name))).encode()
        size = (_DIRENT_HEAD.size + len(name) + 1 + 7) & ~7
        out += _DIRENT_HEAD.pack(ino, off, size, dtype) + name + b"\0" * (size - _DIRENT_HEAD.size - len(name))
        at += reclen
    return bytes(out)


_REWRITE = {"dir": rewrite_dirents, "stat": rewrite_stat, "status": rewrite_status}


def wanted(call, fds: dict) -> str | None:
    """At a live call's entry: the view this call's result must be rewritten for, or None.
    ``fds``: the process's fd table (:mod:`tft_lab.fdtable`)."""
    if call.name == "getdents64" or call.name in ("read", "pread64"):
        info = fds.get(call.args[0])
        if info is not None and info.kind == "file" and info.path.startswith("/proc"):
            view = view_of(info.path)
            if view is not None and (view == "dir") == (call.name == "getdents64"):
                if call.name == "pread64" and call.args[3] != 0:
                    return None
                if call.name == "read" and view != "dir" and info.offset != 0:
                    return None
                return view
    return None


def rewrite(task, call, res: int, view: str, to_virtual: Callable[[int], int]) -> int:
    """At the exit of a live call that :func:`wanted` named: rewrite the ``res`` bytes the
    kernel put in the program's buffer; return the result the program must see."""
    if res <= 0:
        return res
    count = call.args[2]
    if view != "dir" and res >= count:
        return res   # maybe not the whole file: a rewrite would shift what the next read gets
    data = task.read(call.args[1], res)
    new = _REWRITE[view](data, to_virtual)
    if new == data or len(new) > count:
        return res
    task.write(call.args[1], new)
    return len(new)
