"""The ptrace mechanism: raw requests, typed stops, registers, memory, spawning.

This module never imports a policy.  It turns ``waitpid`` statuses into stop
values (:func:`decode`), performs ptrace requests through libc, and translates
their failures once, here, into :class:`~tft_lab.errors.TracingError`.

Costs measured on our VMs (benchmarks/README.md) drive the choices: registers through
one GETREGS/SETREGS pair, syscall number and arguments through
PTRACE_GET_SYSCALL_INFO, memory through ``/proc/PID/mem`` with pread/pwrite.

The per-stop requests (:func:`decode`, :func:`syscall_info`, :func:`get_regs`,
:func:`set_regs`, :func:`resume`) are defined here in Python and, when
:mod:`tft_lab._backend` selected the compiled core, rebound to its C versions: the same
contracts, the same errors (``BACKEND`` says which path runs).
"""
from __future__ import annotations

import ctypes
import errno
import os
import signal
import struct
from typing import NamedTuple

from ..errors import ProgramError, TracingError
from . import BACKEND, core as _core  # noqa: F401 - BACKEND: re-exported, say which runs

_libc = ctypes.CDLL(None, use_errno=True)
_ptrace = _libc.ptrace
_ptrace.argtypes = (ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p)
_ptrace.restype = ctypes.c_long
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long

# ptrace requests and options (linux/ptrace.h)
PTRACE_TRACEME = 0
PTRACE_CONT = 7
PTRACE_KILL = 8
PTRACE_GETREGS = 12
PTRACE_SETREGS = 13
PTRACE_SETOPTIONS = 0x4200
PTRACE_GETEVENTMSG = 0x4201
PTRACE_GETSIGINFO = 0x4202
PTRACE_SETSIGINFO = 0x4203
PTRACE_SYSCALL = 24
PTRACE_DETACH = 17
PTRACE_GET_SYSCALL_INFO = 0x420E

O_TRACESYSGOOD = 0x01
O_TRACEFORK = 0x02
O_TRACEVFORK = 0x04
O_TRACECLONE = 0x08
O_TRACEEXEC = 0x10
O_TRACEEXIT = 0x40
O_TRACESECCOMP = 0x80
O_EXITKILL = 0x100000

EVENT_FORK, EVENT_VFORK, EVENT_CLONE, EVENT_EXEC, EVENT_VFORK_DONE, EVENT_EXIT, EVENT_SECCOMP = 1, 2, 3, 4, 5, 6, 7

OPTIONS = (O_TRACESYSGOOD | O_TRACEFORK | O_TRACEVFORK | O_TRACECLONE | O_TRACEEXEC
           | O_TRACESECCOMP | O_EXITKILL)

WALL = 0x40000000
SYSCALL_INFO_ENTRY, SYSCALL_INFO_EXIT, SYSCALL_INFO_SECCOMP = 1, 2, 3
SIGINFO_SIZE = 128

# seccomp / prctl / personality
PR_SET_NO_NEW_PRIVS = 38
PR_SET_TSC = 26
PR_TSC_SIGSEGV = 2
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
PR_SET_CHILD_SUBREAPER = 36
PR_SET_PDEATHSIG = 1
ADDR_NO_RANDOMIZE = 0x0040000
SECCOMP_RET_TRACE = 0x7FF00000
SECCOMP_RET_ALLOW = 0x7FFF0000
AUDIT_ARCH_X86_64 = 0xC000003E
NR_TGKILL = 234



class user_regs_struct(ctypes.Structure):
    """x86_64 ``struct user_regs_struct`` (sys/user.h), what GETREGS/SETREGS move.

    Declared here rather than taken from python-ptrace: importing that package costs
    ~15 ms (logging, its C-library bindings) on every ``tft`` command."""
    _fields_ = tuple((name, ctypes.c_ulonglong) for name in (
        "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx", "rsi", "rdi",
        "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base", "gs_base", "ds", "es", "fs", "gs"))


# --- stops: values, matched on -------------------------------------------------------------

class SeccompStop(NamedTuple):
    """The tracee is at the entry of a subscribed syscall (PTRACE_EVENT_SECCOMP)."""
    pid: int
    nr: int
    args: tuple


class SyscallExitStop(NamedTuple):
    """The tracee is at the exit of a syscall it was resumed into with PTRACE_SYSCALL."""
    pid: int
    result: int


class SignalStop(NamedTuple):
    """Signal-delivery-stop: ``sig`` is about to be delivered (or suppressed by us)."""
    pid: int
    sig: int


class ForkStop(NamedTuple):
    """fork/vfork/clone event in the parent; ``child`` is the new task's pid."""
    pid: int
    child: int
    kind: int


class ExecStop(NamedTuple):
    """PTRACE_EVENT_EXEC: the new image is loaded; execve has not returned yet."""
    pid: int


class OtherEventStop(NamedTuple):
    """An event stop we take no decision on (VFORK_DONE, EXIT)."""
    pid: int
    event: int


class Exited(NamedTuple):
    """The task is gone: ``status`` as ``waitpid`` gave it."""
    pid: int
    code: int | None
    killed_by: int | None


Stop = SeccompStop | SyscallExitStop | SignalStop | ForkStop | ExecStop | OtherEventStop | Exited


# --- raw requests ---------------------------------------------------------------------------

def _check(rc: int, what: str, pid: int) -> int:
    if rc == -1:
        e = ctypes.get_errno()
        if e:
            raise TracingError(f"ptrace {what} failed: {os.strerror(e)}", pid=pid)
    return rc


def request(req: int, pid: int, addr=None, data=None, what: str = "request") -> int:
    ctypes.set_errno(0)
    return _check(_ptrace(req, pid, addr, data), what, pid)


def resume(pid: int, sig: int = 0, to_exit: bool = False) -> None:
    """Continue a stopped tracee; with ``to_exit`` it stops again at the syscall's exit."""
    ctypes.set_errno(0)
    rc = _ptrace(PTRACE_SYSCALL if to_exit else PTRACE_CONT, pid, None, sig)
    if rc == -1 and ctypes.get_errno() != errno.ESRCH:  # ESRCH: killed meanwhile (SIGKILL)
        _check(rc, "resume", pid)


def set_options(pid: int, options: int = OPTIONS) -> None:
    request(PTRACE_SETOPTIONS, pid, None, options, "SETOPTIONS")


def event_msg(pid: int) -> int:
    value = ctypes.c_ulong()
    request(PTRACE_GETEVENTMSG, pid, None, ctypes.byref(value), "GETEVENTMSG")
    return value.value


def get_regs(pid: int, regs: user_regs_struct | None = None) -> user_regs_struct:
    regs = regs if regs is not None else user_regs_struct()
    request(PTRACE_GETREGS, pid, None, ctypes.byref(regs), "GETREGS")
    return regs


def set_regs(pid: int, regs: user_regs_struct) -> None:
    request(PTRACE_SETREGS, pid, None, ctypes.byref(regs), "SETREGS")


def get_siginfo(pid: int) -> bytes:
    buf = ctypes.create_string_buffer(SIGINFO_SIZE)
    request(PTRACE_GETSIGINFO, pid, None, buf, "GETSIGINFO")
    return buf.raw


def set_siginfo(pid: int, info: bytes) -> None:
    buf = ctypes.create_string_buffer(bytes(info), SIGINFO_SIZE)
    request(PTRACE_SETSIGINFO, pid, None, buf, "SETSIGINFO")


class SigInfo(NamedTuple):
    signo: int
    errno: int
    code: int
    pid: int
    uid: int

    @classmethod
    def parse(cls, raw: bytes) -> "SigInfo":
        signo, err, code, _pad, pid, uid = struct.unpack_from("<iiiiiI", raw)
        return cls(signo, err, code, pid, uid)


_INFO_BUF = ctypes.create_string_buffer(88)


def syscall_info(pid: int) -> tuple[int, int, tuple]:
    """(op, nr-or-result, args) through PTRACE_GET_SYSCALL_INFO (~1 µs, cheaper than GETREGS)."""
    request(PTRACE_GET_SYSCALL_INFO, pid, 88, _INFO_BUF, "GET_SYSCALL_INFO")
    raw = _INFO_BUF.raw
    op = raw[0]
    if op in (SYSCALL_INFO_ENTRY, SYSCALL_INFO_SECCOMP):
        vals = struct.unpack_from("<Q6Q", raw, 24)
        return op, vals[0], tuple(vals[1:])
    if op == SYSCALL_INFO_EXIT:
        (rval,) = struct.unpack_from("<q", raw, 24)
        return op, rval, ()
    return op, 0, ()


def tgkill(tgid: int, tid: int, sig: int) -> None:
    ctypes.set_errno(0)
    if _syscall(NR_TGKILL, ctypes.c_int(tgid), ctypes.c_int(tid), ctypes.c_int(sig)) == -1:
        raise TracingError(f"tgkill failed: {os.strerror(ctypes.get_errno())}", pid=tid)


def kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


# --- waiting --------------------------------------------------------------------------------

def decode(pid: int, status: int) -> Stop:
    """Turn a waitpid status into a stop value (and read what the stop needs)."""
    if os.WIFEXITED(status):
        return Exited(pid, os.WEXITSTATUS(status), None)
    if os.WIFSIGNALED(status):
        return Exited(pid, None, os.WTERMSIG(status))
    sig = os.WSTOPSIG(status)
    event = status >> 16
    if sig == signal.SIGTRAP | 0x80:
        op, value, args = syscall_info(pid)
        if op == SYSCALL_INFO_EXIT:
            return SyscallExitStop(pid, value)
        return SeccompStop(pid, value, args)  # an entry stop is treated like a seccomp stop
    if sig == signal.SIGTRAP and event:
        if event == EVENT_SECCOMP:
            _op, nr, args = syscall_info(pid)
            return SeccompStop(pid, nr, args)
        if event in (EVENT_FORK, EVENT_VFORK, EVENT_CLONE):
            return ForkStop(pid, event_msg(pid), event)
        if event == EVENT_EXEC:
            return ExecStop(pid)
        return OtherEventStop(pid, event)
    return SignalStop(pid, sig)


if _core is not None:
    # The compiled core (see tft_lab/_backend/__init__.py): the same contracts and the same
    # errors as the functions above, one C call each instead of ctypes round trips.
    _core.setup(TracingError, SeccompStop, SyscallExitStop, SignalStop, ForkStop, ExecStop,
                OtherEventStop, Exited)
    decode = _core.decode            # noqa: F811
    syscall_info = _core.syscall_info  # noqa: F811
    resume = _core.resume            # noqa: F811
    _regs = _core.regs

    def get_regs(pid: int, regs: user_regs_struct | None = None) -> user_regs_struct:  # noqa: F811
        regs = regs if regs is not None else user_regs_struct()
        _regs(pid, regs, False)
        return regs

    def set_regs(pid: int, regs: user_regs_struct) -> None:  # noqa: F811
        _regs(pid, regs, True)


def wait_any(block: bool = True) -> tuple[int, int] | None:
    """waitpid(-1, WALL); None when nothing is ready (non-blocking) or no child is left."""
    try:
        pid, status = os.waitpid(-1, WALL | (0 if block else os.WNOHANG))
    except ChildProcessError:
        return None
    except InterruptedError:
        return None
    if pid == 0:
        return None
    return pid, status


# --- memory ---------------------------------------------------------------------------------

class Memory:
    """A tracee's address space through /proc/PID/mem (reopen after every exec)."""

    def __init__(self, pid: int):
        self.pid = pid
        self.fd = os.open(f"/proc/{pid}/mem", os.O_RDWR | os.O_CLOEXEC)

    def read(self, addr: int, size: int) -> bytes:
        if size <= 0:
            return b""
        try:
            data = os.pread(self.fd, size, addr)
        except OSError as e:
            raise TracingError(f"cannot read {size} bytes at {addr:#x}: {e.strerror}", pid=self.pid)
        return data

    def write(self, addr: int, data: bytes) -> None:
        if not data:
            return
        try:
            os.pwrite(self.fd, data, addr)
        except OSError as e:
            raise TracingError(f"cannot write {len(data)} bytes at {addr:#x}: {e.strerror}", pid=self.pid)

    def read_cstring(self, addr: int, limit: int = 4096) -> bytes:
        out = b""
        while len(out) < limit:
            chunk_len = 256 - (addr + len(out)) % 256
            try:
                chunk = os.pread(self.fd, chunk_len, addr + len(out))
            except OSError:
                break
            if not chunk:
                break
            nul = chunk.find(b"\0")
            if nul >= 0:
                return out + chunk[:nul]
            out += chunk
        return out

    def read_u64(self, addr: int) -> int:
        return struct.unpack("<Q", self.read(addr, 8))[0]

    def read_u32(self, addr: int) -> int:
        return struct.unpack("<I", self.read(addr, 4))[0]

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


# --- seccomp filter and spawning -----------------------------------------------------------

class _SockFilter(ctypes.Structure):
    _fields_ = (("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint))


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter)))


_BPF_LD_W_ABS = 0x20
_BPF_JEQ_K = 0x15
_BPF_JGE_K = 0x35
_BPF_JSET_K = 0x45
_BPF_RET_K = 0x06


def seccomp_program(allowed: list[int], allowed_if: dict[int, tuple[int, int]] | None = None
                    ) -> list[tuple[int, int, int, int]]:
    """A classic BPF program: SECCOMP_RET_ALLOW for the syscalls in ``allowed``, TRACE for every
    other one (all of them if both are empty).

    ``allowed_if`` maps more numbers to ``(arg_index, bits)``: such a call is allowed when the
    low 32 bits of that argument have any of those bits set, else traced (mmap with
    MAP_ANONYMOUS: only file-backed mappings cost a stop).
    Trapping by default is what makes a syscall tft_lab has no entry for a clear refusal
    instead of a silent difference between the replicas.  A foreign architecture or an x32
    syscall is always trapped, so the supervisor can refuse it.
    """
    conds = {nr: c for nr, c in (allowed_if or {}).items() if nr not in allowed}
    order = [*allowed, *conds]   # conditional numbers last: their check blocks follow the list
    if len(order) > 250:
        raise ValueError("too many syscalls for a linear filter")
    prog = [(_BPF_LD_W_ABS, 0, 0, 4)]  # seccomp_data.arch
    if not order:
        return prog + [(_BPF_RET_K, 0, 0, SECCOMP_RET_TRACE)]
    n = len(order)
    # jt/jf are relative to the next instruction; after the list: TRACE (the default), ALLOW.
    prog.append((_BPF_JEQ_K, 0, n + 2, AUDIT_ARCH_X86_64))       # foreign arch -> TRACE
    prog.append((_BPF_LD_W_ABS, 0, 0, 0))                          # seccomp_data.nr
    prog.append((_BPF_JGE_K, n, 0, 0x40000000))                    # x32 -> TRACE
    blocks = []
    for i, nr in enumerate(order):
        if nr in conds:   # -> its block: load the argument, ALLOW if any bit is set, else TRACE
            jump = n - i + 1 + len(blocks)                         # -> its block (4 instructions each)
            arg, bits = conds[nr]
            blocks += [(_BPF_LD_W_ABS, 0, 0, 16 + 8 * arg),        # seccomp_data.args[arg], low word
                       (_BPF_JSET_K, 0, 1, bits),
                       (_BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
                       (_BPF_RET_K, 0, 0, SECCOMP_RET_TRACE)]
        else:
            jump = n - i                                           # -> ALLOW
        if jump > 255:
            raise ValueError("filter too long for a forward jump")
        prog.append((_BPF_JEQ_K, jump, 0, nr))
    prog.append((_BPF_RET_K, 0, 0, SECCOMP_RET_TRACE))
    prog.append((_BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW))
    return prog + blocks


def _install_filter(prog: list[tuple[int, int, int, int]]) -> None:
    arr = (_SockFilter * len(prog))(*[_SockFilter(*ins) for ins in prog])
    fprog = _SockFprog(len(prog), arr)
    if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")
    if _libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_SECCOMP")


def check_program(path: str) -> None:
    """Raise ProgramError if ``path`` cannot be what execve runs."""
    if not os.path.exists(path):
        raise ProgramError(f"{path}: no such file")
    if os.path.isdir(path):
        raise ProgramError(f"{path}: is a directory, not a program")
    if not os.access(path, os.X_OK):
        raise ProgramError(f"{path}: not executable (chmod +x?)")
    with open(path, "rb") as f:
        head = f.read(4)
    if head != b"\x7fELF" and not head.startswith(b"#!"):
        raise ProgramError(f"{path}: not a program (neither an ELF binary nor a #! script)")


#: Signals whose mask or disposition a program cannot set (SIGKILL, SIGSTOP) or that glibc
#: keeps for itself (32, 33: thread cancellation and setxid).
_FIXED = (signal.SIGKILL, signal.SIGSTOP, 32, 33)


def _set_signals(blocked: int, ignored: int) -> None:
    """In a child before exec: block and ignore exactly these signal sets (bit n-1: signal n)."""
    sigs = [n for n in range(1, signal.NSIG) if n not in _FIXED]
    for n in sigs:
        signal.signal(n, signal.SIG_IGN if ignored >> (n - 1) & 1 else signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [n for n in sigs if blocked >> (n - 1) & 1])


def signal_sets(pid: int) -> tuple[int, int]:
    """The signals ``pid`` blocks and ignores (bit n-1: signal n), from /proc/PID/status."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("SigBlk", "SigIgn"):
                fields[key] = int(value, 16)
    return fields["SigBlk"], fields["SigIgn"]


def _bits(*sigs: int) -> int:
    return sum(1 << (n - 1) for n in sigs)


#: What our process inherited, taken when this module is first imported, before tft installs
#: any handler (the supervisors catch SIGTERM and SIGHUP, ignore SIGINT): the program starts
#: with it, as it would have started without tft (``nohup tft run ...`` keeps SIGHUP ignored).
#: Python itself ignores SIGPIPE and SIGXFSZ at start-up; those go back to the default, as
#: ``subprocess`` does.
_blocked, _ignored = signal_sets(os.getpid())
INHERITED_SIGNALS = (_blocked, _ignored & ~_bits(signal.SIGPIPE, signal.SIGXFSZ))


def spawn(path: str, argv: list[str], env: dict[str, str], cwd: str, allowed: list[int],
          allowed_if: dict[int, tuple[int, int]] | None = None,
          signals: tuple[int, int] | None = None) -> int:
    """Start ``path`` traced, with ASLR off, rdtsc faulting and the seccomp filter that traps
    every syscall but ``allowed`` (and ``allowed_if``'s, see :func:`seccomp_program`).

    The program starts blocking and ignoring the signals :data:`INHERITED_SIGNALS` says, or,
    given ``signals`` (blocked, ignored: a recording's), those.  Returns the pid, stopped
    before execve (options set).  The caller resumes it and must ignore its stops until the
    first :class:`ExecStop`.
    """
    prog = seccomp_program(allowed, allowed_if)
    errr, errw = os.pipe2(os.O_CLOEXEC)
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # child: only async-signal-safe-ish work, then execve
        try:
            # A supervisor killed before it set PTRACE_O_EXITKILL must not leave us stopped
            # for good (an orphan in SIGSTOP): we die with it.
            _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if os.getppid() != parent:
                os._exit(127)
            os.close(errr)
            os.chdir(cwd)
            persona = _libc.personality(0xFFFFFFFF)
            _libc.personality(persona | ADDR_NO_RANDOMIZE)
            _set_signals(*(signals or INHERITED_SIGNALS))
            os.closerange(3, errw)
            os.closerange(errw + 1, 65536)
            if _ptrace(PTRACE_TRACEME, 0, None, None) != 0:
                raise OSError(ctypes.get_errno(), "PTRACE_TRACEME")
            os.kill(os.getpid(), signal.SIGSTOP)
            _install_filter(prog)
            # ld.so itself reads the TSC: from here on rdtsc faults and the tracer emulates it.
            _libc.prctl(PR_SET_TSC, PR_TSC_SIGSEGV, 0, 0, 0)
            os.execve(path, argv, env)
        except OSError as e:
            os.write(errw, f"{e.errno or 0}:{e.strerror or e}".encode())
        except BaseException as e:  # noqa: BLE001 - nothing may escape a forked child
            os.write(errw, f"0:{e}".encode())
        os._exit(127)
    os.close(errw)
    try:
        _, status = os.waitpid(pid, WALL)
        if not os.WIFSTOPPED(status):
            raise TracingError("program did not stop for the tracer", pid=pid)
        set_options(pid)
    except BaseException:
        kill_quietly(pid)
        os.close(errr)
        raise
    return pid, errr


def read_spawn_error(fd: int) -> str | None:
    """After the first exec stop (or the child's exit): the child's error, if execve failed."""
    try:
        data = os.read(fd, 4096)
    finally:
        os.close(fd)
    if not data:
        return None
    _, _, message = data.decode(errors="replace").partition(":")
    return message


def set_subreaper() -> None:
    """Orphans of the supervised program become our children, so none is ever left behind."""
    _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _which(prog: str, search: str) -> str | None:
    """The first executable file ``prog`` in the ``search`` path (as execvp looks; an empty
    entry is the working directory).  Not shutil.which: importing shutil costs a few ms."""
    for d in search.split(os.pathsep):
        cand = os.path.join(d or ".", prog)
        if os.access(cand, os.X_OK) and not os.path.isdir(cand):
            return cand
    return None


def find_program(argv, env: dict | None = None, cwd: str | None = None) -> str:
    """The absolute path execve will run for ``argv[0]`` (searched in PATH unless it has a
    slash); ProgramError if there is none, or it is not an executable program."""
    if not argv:
        raise ProgramError("no program given")
    env = os.environ if env is None else env
    prog = argv[0]
    path = prog if "/" in prog else _which(prog, env.get("PATH", os.defpath))
    if path is None:
        raise ProgramError(f"{prog}: command not found")
    path = path if os.path.isabs(path) else os.path.join(cwd or os.getcwd(), path)
    check_program(path)
    return path
