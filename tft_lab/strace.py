"""Events as strace prints them: the one formatter of calls, arguments and results.

The trace views (:mod:`tft_lab.stepping`, :mod:`tft_lab.plots`) and the
replayer's divergence messages use it, so a call reads the same everywhere.
Plain Python (no pandas): the supervisors import it too.
"""
from __future__ import annotations

import errno
import os
from typing import Iterable

#: Calls whose result is an address (printed in hex).
_ADDRESS_RESULTS = ("mmap", "brk", "mremap")


def format_args(args: Iterable[int]) -> str:
    """Raw argument registers, comma-separated: pointer-sized values (over 4096) in hex."""
    return ", ".join(hex(a) if a > 4096 else str(a) for a in args)


def format_result(syscall: str, result) -> str:
    """A return value as strace prints it: ``-1 ENOENT (No such file or directory)``; ``?`` if unknown."""
    if result is None:
        return "?"
    try:
        result = int(result)
    except (TypeError, ValueError):   # NaN, pandas' NA: a replica that has no row for it
        return "?"
    if -4096 < result < 0:
        code = errno.errorcode.get(-result, str(-result))
        return f"-1 {code} ({os.strerror(-result)})"
    if syscall in _ADDRESS_RESULTS and result > 0:
        return hex(result)
    return str(result)


def format_call(row) -> str:
    """One event, strace-style: ``read(3, "ab", 2) = 2``; ``--- SIGALRM delivered after seq 3 ---``.

    ``row`` is a mapping or a namedtuple with the trace's columns
    (:class:`tft_lab.trace.TraceEvent`).
    """
    get = row.get if hasattr(row, "get") else lambda k, d=None: getattr(row, k, d)
    kind, name, args, result = get("kind"), get("syscall"), get("args", ""), get("result", 0)
    args = "" if args is None or (isinstance(args, float) and args != args) else str(args)
    if kind == "signal":
        what = get("signal")
        where = "after seq" if what in ("arrived", "delivered") else "at seq"
        return f"--- {name} {what} {where} {get('seq')} ---"
    if kind == "exit":
        return f"+++ exited with {result} +++"
    if kind == "rdtsc":
        return f"{name} = {result}"
    if kind == "switch":   # the thread that gives way; ``syscall`` says why, ``result`` who runs next
        why = {"block": "blocks in its call", "epoch": "reached an epoch boundary", "exit": "exited"}.get(name, name)
        return f"--- thread {get('tid')} {why} after seq {get('seq')}: thread {result} runs ---"
    return f"{name}({args}) = {format_result(name, result)}"
