"""The tracer: observe every system call and print it strace-style, with its class.

Decoding and argument formatting are python-ptrace's (its ``PtraceSyscall``),
fed through a small adapter over our own stop loop; the class comes from our table.
"""
from __future__ import annotations

import ctypes
import sys
from typing import TextIO

from ptrace.func_call import FunctionCallOptions
from ptrace.syscall import PtraceSyscall

from ._backend import ptrace as pt
from .engine import Engine, Policy, SignalAction
from .guest import Call, Task, signed


class _ProcessView:
    """What python-ptrace's formatter asks of a process, answered from /proc/PID/mem."""

    def __init__(self, task: Task):
        self.task = task
        self.pid = task.pid

    def getregs(self):
        return pt.get_regs(self.pid)

    def getreg(self, name):
        return getattr(pt.get_regs(self.pid), name)

    def readBytes(self, address, size):  # noqa: N802 - python-ptrace's interface
        return self.task.mem.read(address, size)

    def readWord(self, address):  # noqa: N802
        return self.task.mem.read_u64(address)

    def readCString(self, address, max_size, chunk_length=256):  # noqa: N802
        data = self.task.mem.read_cstring(address, max_size + 1)
        return data[:max_size], len(data) > max_size

    def readStruct(self, address, struct):  # noqa: N802
        raw = self.task.mem.read(address, ctypes.sizeof(struct))
        return struct.from_buffer_copy(raw)

    def readArray(self, address, basetype, count):  # noqa: N802
        raw = self.task.mem.read(address, ctypes.sizeof(basetype) * count)
        return (basetype * count).from_buffer_copy(raw)


class Tracer(Policy):
    """Observes every syscall (subscribes to all) and writes one line per call."""

    replica = "tracer"
    trap_all = True

    def __init__(self, out: TextIO = sys.stderr):
        self.out = out
        self.options = FunctionCallOptions(write_types=False, write_argname=False, string_max_length=64)
        self._pending: dict[int, PtraceSyscall] = {}

    def on_entry(self, task: Task, call: Call) -> None:
        try:
            regs = pt.get_regs(task.pid)   # one GETREGS serves both
            sc = PtraceSyscall(_ProcessView(task), self.options, regs)
            sc.enter(regs)
            self._pending[task.pid] = sc
        except Exception:  # formatting must never stop the program  # noqa: BLE001
            self._pending.pop(task.pid, None)
        task.run(to_exit=not (call.entry is not None and call.entry.noreturn))

    def on_exit(self, task: Task, call: Call) -> None:
        sc = self._pending.pop(task.pid, None)
        text = None
        if sc is not None:
            try:
                if call.to_exit:
                    sc.exit()
                text = sc.format()
            except Exception:  # noqa: BLE001
                text = None
        if text is None:
            text = f"{call.name}({', '.join(hex(a) for a in call.args)})"
        result = signed(call.result)
        res_text = sc.result_text if sc is not None and sc.result_text else str(result)
        tail = f" = {res_text}" if call.to_exit else " = ?"
        self.out.write(f"[{task.vpid}] {text}{tail}  <{call.cls}>\n")

    def on_signal(self, task: Task, signo: int, siginfo: bytes) -> SignalAction:
        from .engine import _signame

        self.out.write(f"[{task.vpid}] --- {_signame(signo)} ---\n")
        return SignalAction.DELIVER


def trace(argv: list[str], out: TextIO = sys.stderr) -> tuple[int, Engine]:
    engine = Engine(Tracer(out), epoch=1 << 30, keep_trace=False)   # the lines are the trace
    engine.start(argv)
    return engine.run(), engine
