"""The syscall table: every system call tft_lab knows, declared once, as data.

Each entry gives the x86_64 number, the replication class and the output
buffers the kernel fills, so that the recorder knows what to copy and the
replayer what to write back, and the facts the policies act on (``blocks``,
``writes``, ``kills``, ``opens``, ``noreturn``, ``forks``...: see the fields of
:class:`Syscall`); no policy keeps its own list of syscall names.  Everything else is derived from it: the
seccomp subscription (:func:`subscription`), the recorder's copy list, the
documentation table (:func:`markdown_table`), and the tests, which check the
numbers against the kernel headers.

Classes (what the primary / the backup does):

``local``     run / run, and the result must equal the log's (divergence check)
``input``     run, log result and out-buffers / skip, write them back
``identity``  run, log / skip and inject the primary's value (pids)
``output``    run under the output rule, log / skip, set the primary's result
``resource``  run, log / skip; fd-creating ones get a stand-in fd
``unsupported`` fail closed with a clear message, or ENOSYS (``enosys=True``)

``outs`` is a tuple of ``(arg_index, size)`` pairs.  ``size`` is a tiny
expression, evaluated after the call on the primary:

``"16"``        a fixed number of bytes
``"ret"``       the call's result, in bytes (``read``)
``"ret*12"``    the result times a record size (``epoll_wait``)
``"a2"``        the value of argument 2 (``a2*8``: times 8)
``"*a5"``       the 32-bit integer argument 5 points to, after the call (socklen)
``"fdset"``     an fd_set sized by argument 0 (``select``)
``"iov"``       an iovec array (base in this arg, count in the next), ``ret`` bytes scattered
``"msghdr"``    a struct msghdr: name, iovecs (``ret`` bytes), control and flags
``"ioctl"``     decided by the ioctl request (see :func:`ioctl_out_size`)
"""
from __future__ import annotations

from typing import NamedTuple

CLASSES = ("local", "input", "identity", "output", "resource", "unsupported")


class Syscall(NamedTuple):
    # A NamedTuple, not a frozen dataclass: importing dataclasses (and the inspect module it
    # pulls in) costs ~5 ms on every tft command.
    name: str
    """The kernel's name (``__NR_<name>``)."""
    x64: int
    """Number on x86_64."""
    cls: str
    """Replication class, one of :data:`CLASSES`."""
    outs: tuple = ()
    """Output buffers as ``(arg_index, size_expr)``."""
    trap: bool = True
    """Whether the replicating policies subscribe to it (``False``: runs natively on both)."""
    fd_arg: int | None = None
    """Index of the argument that is a file descriptor the call acts on."""
    creates_fd: bool = False
    """The result (or an out-buffer) is a new file descriptor."""
    check: bool = True
    """For ``local``: compare the backup's result with the log's."""
    enosys: bool = False
    """For ``unsupported``: answer ENOSYS (programs fall back) instead of stopping."""
    nargs: int = 6
    """How many arguments the divergence check compares (pointers are equal: ASLR is off)."""
    blocks: bool = False
    """May wait a long time: signals held back are delivered before it (or a program waiting
    for input would never see a signal that arrived while it computed), and in a process with
    several threads another thread may run while it waits (a thread switch point,
    :mod:`tft_lab.sched`)."""
    writes: str = ""
    """For outputs that move bytes to ``fd_arg``, where the bytes are: ``buf`` (argument 1,
    count in argument 2), ``iov`` (an iovec array in argument 1, count in 2), ``msghdr``
    (argument 1) or ``fd`` (read by the kernel from the fd in ``src_arg``: the replayer has no
    copy of them, so the primary logs them where the replay shows the destination)."""
    src_arg: int | None = None
    """For ``writes="fd"``: the argument that is the source file descriptor."""
    count_arg: int | None = None
    """For ``writes="fd"``: the argument that is the number of bytes to move."""
    disposes: bool = False
    """Changes how a signal (argument 0) is handled: held-back signals of that number are
    delivered before it, where the program would have taken them natively (a handler that
    is removed next would otherwise meet a signal that arrived while it was installed)."""
    kills: bool = False
    """Sends a signal (argument 0 is the target; for ``tgkill`` argument 1)."""
    opens: bool = False
    """Opens a path and returns a new fd (``open``, ``openat``, ``creat``)."""
    path: tuple | None = None
    """``(dirfd_arg, path_arg)``: a path the call resolves, relative to the fd in ``dirfd_arg``
    (``None``: the working directory) when it is relative.  Given for the calls the replayer
    may run for real, whose paths it resolves against the recorded working directory, for
    those with a ``redo`` fact (the path a backup checks when it redoes one), and for the calls
    that look a path up (stat, access, readlink...): live, a ``/proc/<pid>`` path of the
    program names the primary's pid and is made this replica's (``ps -p $$`` after a failover)."""
    chdir: bool = False
    """Changes the working directory (to ``path``, or to the directory open as ``fd_arg``)."""
    noreturn: bool = False
    """Never returns to the program when it succeeds (``exit``, ``exit_group``): no exit stop."""
    forks: bool = False
    """Creates a process (or a thread): the child's id comes from the primary."""
    execs: bool = False
    """Replaces the program (``execve``, ``execveat``)."""
    resets: bool = False
    """Uses a connection: on one that lived in a dead primary's kernel it fails with ECONNRESET."""
    redo: str = ""
    """What doing the call a second time finds, when a backup going live redoes the output the
    primary may have done just before it died: ``""`` the same outcome (a write at an offset,
    chmod, truncate: harmless), ``creates`` EEXIST (mkdir, link, an ``O_CREAT|O_EXCL`` open),
    ``removes`` ENOENT (unlink, rmdir), ``renames`` ENOENT (rename: its source is gone).
    The path it acts on is ``path``."""
    untrapped_if: tuple[int, int] | None = None
    """``(arg_index, bits)``: the seccomp filter lets the call run untrapped when that argument
    has any of these bits set (an anonymous mmap costs nothing; a file-backed one is input)."""
    answered: str = ""
    """How the primary answers the call itself at its seccomp stop, without running it (one
    stop instead of two; logged as if it had run, so the backup and the replay do not change):
    ``pid`` (the task's own pid), ``stat`` (a field of ``/proc/PID/stat``), ``clock`` (the
    supervisor reads the same system-wide clock), ``gettimeofday``, ``time``, ``random``
    (getrandom: bytes the supervisor draws).  Only where its answer is the kernel's; otherwise
    the call runs (see :mod:`tft_lab.answers`)."""

    @property
    def flags(self) -> tuple[str, ...]:
        """The names of the boolean facts set on this row, and ``writes=...``, for the docs."""
        names = [f for f in ("blocks", "disposes", "kills", "opens", "chdir", "noreturn", "forks", "execs", "resets")
                 if getattr(self, f)]
        if self.writes:
            names.append(f"writes={self.writes}" + (f"(fd a{self.src_arg})" if self.src_arg is not None else ""))
        if self.redo:
            names.append(f"redo={self.redo}")
        if self.answered:
            names.append(f"answered={self.answered}")
        if self.path is not None:
            d, p = self.path
            names.append(f"path=a{p}" + (f"@a{d}" if d is not None else ""))
        return tuple(names)


def _t(*entries):
    return {e.name: e for e in entries}


S = Syscall
# fmt: off
TABLE: dict[str, Syscall] = _t(
    # --- local: both replicas run them; they change only the process's own state -----------
    S("close", 3, "local", fd_arg=0, nargs=1),
    S("close_range", 436, "local", nargs=3),
    S("dup", 32, "local", fd_arg=0, creates_fd=True, nargs=1),
    S("dup2", 33, "local", fd_arg=0, creates_fd=True, nargs=2),
    S("dup3", 292, "local", fd_arg=0, creates_fd=True, nargs=3),
    S("pipe", 22, "local", outs=((0, "8"),), creates_fd=True, nargs=1),   # int pipe(int fds[2])
    S("pipe2", 293, "local", outs=((0, "8"),), creates_fd=True, nargs=2),
    S("socketpair", 53, "local", outs=((3, "8"),), creates_fd=True, nargs=4),
    S("eventfd2", 290, "local", creates_fd=True, nargs=2),
    S("epoll_create", 213, "local", creates_fd=True, nargs=1),
    S("epoll_create1", 291, "local", creates_fd=True, nargs=1),
    S("epoll_ctl", 233, "resource", fd_arg=0, nargs=3),   # its fd may be a stand-in on the backup
    S("memfd_create", 319, "local", creates_fd=True, nargs=2),
    S("timerfd_create", 283, "local", creates_fd=True, nargs=2),
    S("signalfd4", 289, "local", creates_fd=True, nargs=3),
    S("execve", 59, "local", nargs=3, execs=True, path=(None, 0)),
    S("execveat", 322, "local", nargs=5, execs=True, path=(0, 1)),
    S("exit", 60, "local", nargs=1, noreturn=True),
    S("exit_group", 231, "local", nargs=1, noreturn=True),
    # the working directory is the primary's (recorded): run where it exists, its answer
    S("chdir", 80, "local", check=False, nargs=1, chdir=True, path=(None, 0)),
    S("fchdir", 81, "local", fd_arg=0, check=False, nargs=1, chdir=True),
    S("umask", 95, "local", nargs=1),
    # credentials: in a user namespace whose maps the replay did not write (outputs), the
    # kernel may refuse what it granted the primary: run, and answer the primary's result
    S("setuid", 105, "local", check=False, nargs=1),
    S("setgid", 106, "local", check=False, nargs=1),
    S("setreuid", 113, "local", check=False, nargs=2),
    S("setregid", 114, "local", check=False, nargs=2),
    S("setgroups", 116, "local", check=False, nargs=2),
    S("setresuid", 117, "local", check=False, nargs=3),
    S("setresgid", 119, "local", check=False, nargs=3),
    S("setpgid", 109, "local", check=False, nargs=0),     # pids differ: run, take the primary's answer
    S("setsid", 112, "local", check=False, nargs=0),
    S("fcntl", 72, "local", fd_arg=0, check=False, nargs=2),  # F_GETFL on a stand-in differs: primary's answer
    S("prctl", 157, "local", nargs=2),                     # PR_SET_TSC is refused (determinism)
    S("arch_prctl", 158, "local", nargs=1),                # ARCH_SET_CPUID is refused
    S("setitimer", 38, "local", outs=((2, "32"),), check=False, nargs=2),  # old value: primary's
    S("alarm", 37, "local", check=False, nargs=1),         # remaining seconds: primary's
    S("timer_create", 222, "local", outs=((2, "4"),), check=False, nargs=2),
    S("timer_settime", 223, "local", outs=((3, "32"),), check=False, nargs=3),
    S("rt_sigaction", 13, "local", disposes=True, nargs=1),
    S("rt_sigprocmask", 14, "local", trap=False),
    S("rt_sigreturn", 15, "local", trap=False),
    S("sigaltstack", 131, "local", trap=False),
    S("brk", 12, "local", trap=False),
    S("mmap", 9, "local", untrapped_if=(3, 0x20), nargs=6),   # MAP_ANONYMOUS; a file's content is input
    S("munmap", 11, "local", trap=False),
    S("mprotect", 10, "local", trap=False),
    S("mremap", 25, "local", trap=False),
    S("madvise", 28, "local", trap=False),
    # the thread's own id as the primary's (identity), its clear-at-exit address set for real
    S("set_tid_address", 218, "local", check=False, nargs=1),
    S("set_robust_list", 273, "local", trap=False),
    S("rseq", 334, "local", trap=False),
    # the process's own memory, scheduling and limits, run natively (the same request gets the
    # same answer on both replicas of one machine): hints, locks, policies, keys
    *(S(name, nr, "local", trap=False) for name, nr in (
        ("msync", 26), ("mincore", 27), ("mlock", 149), ("munlock", 150), ("mlockall", 151),
        ("munlockall", 152), ("mlock2", 325), ("readahead", 187), ("fadvise64", 221),
        ("sync_file_range", 277), ("remap_file_pages", 216), ("membarrier", 324), ("pkey_mprotect", 329),
        ("pkey_alloc", 330), ("pkey_free", 331), ("set_mempolicy", 238), ("get_mempolicy", 239),
        ("mbind", 237), ("set_mempolicy_home_node", 450), ("modify_ldt", 154), ("set_thread_area", 205),
        ("get_thread_area", 211), ("get_robust_list", 274), ("personality", 135), ("capget", 125),
        ("capset", 126), ("setfsuid", 122), ("setfsgid", 123), ("setrlimit", 160), ("unshare", 272),
        ("seccomp", 317), ("landlock_create_ruleset", 444), ("landlock_add_rule", 445),
        ("landlock_restrict_self", 446), ("sched_setaffinity", 203), ("sched_setparam", 142),
        ("sched_setscheduler", 144), ("sched_setattr", 314), ("sched_getparam", 143),
        ("sched_getattr", 315), ("sched_get_priority_max", 146), ("sched_get_priority_min", 147),
        ("sched_rr_get_interval", 148), ("setpriority", 141), ("ioprio_set", 251), ("ioprio_get", 252))),
    S("sched_yield", 24, "local", nargs=0, blocks=True),   # a thread switch point

    # --- input: answers from outside the address space ---------------------------------------
    S("read", 0, "input", outs=((1, "ret"),), fd_arg=0, nargs=3, blocks=True, resets=True),
    # waits and wakes between threads: the primary's results (who was woken, a timeout) are input,
    # the replay never waits in its kernel; argument 2 (the expected value) may hold a tid
    S("futex", 202, "input", nargs=2, blocks=True),
    S("futex_waitv", 449, "unsupported", enosys=True),      # glibc and CPython do not use it
    S("pread64", 17, "input", outs=((1, "ret"),), fd_arg=0, nargs=4, resets=True),
    S("readv", 19, "input", outs=((1, "iov"),), fd_arg=0, nargs=3, blocks=True, resets=True),
    S("preadv", 295, "input", outs=((1, "iov"),), fd_arg=0, nargs=4),
    S("preadv2", 327, "input", outs=((1, "iov"),), fd_arg=0, nargs=5),
    S("recvfrom", 45, "input", outs=((1, "ret"), (4, "*a5"), (5, "4")), fd_arg=0, nargs=4,
      blocks=True, resets=True),
    S("recvmsg", 47, "input", outs=((1, "msghdr"),), fd_arg=0, nargs=3, blocks=True, resets=True),
    S("lseek", 8, "input", fd_arg=0, nargs=3),           # offsets of stand-ins differ
    S("clock_gettime", 228, "input", outs=((1, "16"),), nargs=1, answered="clock"),
    S("clock_getres", 229, "input", outs=((1, "16"),), nargs=1),
    S("gettimeofday", 96, "input", outs=((0, "16"), (1, "8")), nargs=0, answered="gettimeofday"),
    S("time", 201, "input", outs=((0, "8"),), nargs=0, answered="time"),
    S("getrandom", 318, "input", outs=((0, "ret"),), nargs=3, answered="random"),
    S("uname", 63, "input", outs=((0, "390"),), nargs=0),
    S("sysinfo", 99, "input", outs=((0, "112"),), nargs=0),
    S("getrusage", 98, "input", outs=((1, "144"),), nargs=1),
    S("times", 100, "input", outs=((0, "32"),), nargs=0),
    S("getcpu", 309, "input", outs=((0, "4"), (1, "4")), nargs=0),
    S("stat", 4, "input", outs=((1, "144"),), nargs=2, path=(None, 0)),
    S("fstat", 5, "input", outs=((1, "144"),), fd_arg=0, nargs=2),
    S("lstat", 6, "input", outs=((1, "144"),), nargs=2, path=(None, 0)),
    S("newfstatat", 262, "input", outs=((2, "144"),), nargs=4, path=(0, 1)),
    S("statx", 332, "input", outs=((4, "256"),), nargs=4, path=(0, 1)),
    S("statfs", 137, "input", outs=((1, "120"),), nargs=2, path=(None, 0)),
    S("fstatfs", 138, "input", outs=((1, "120"),), fd_arg=0, nargs=2),
    S("access", 21, "input", nargs=2, path=(None, 0)),
    S("faccessat", 269, "input", nargs=3, path=(0, 1)),
    S("faccessat2", 439, "input", nargs=4, path=(0, 1)),
    S("readlink", 89, "input", outs=((1, "ret"),), nargs=3, path=(None, 0)),
    S("readlinkat", 267, "input", outs=((2, "ret"),), nargs=4, path=(0, 1)),
    S("getcwd", 79, "input", outs=((0, "ret"),), nargs=2),
    S("getdents", 78, "input", outs=((1, "ret"),), fd_arg=0, nargs=3),
    S("getdents64", 217, "input", outs=((1, "ret"),), fd_arg=0, nargs=3),
    S("poll", 7, "input", outs=((0, "a1*8"),), nargs=3, blocks=True),
    S("ppoll", 271, "input", outs=((0, "a1*8"), (2, "16")), nargs=2, blocks=True),
    S("select", 23, "input", outs=((1, "fdset"), (2, "fdset"), (3, "fdset"), (4, "16")), nargs=1,
      blocks=True),
    S("pselect6", 270, "input", outs=((1, "fdset"), (2, "fdset"), (3, "fdset"), (4, "16")), nargs=1,
      blocks=True),
    S("epoll_wait", 232, "input", outs=((1, "ret*12"),), fd_arg=0, nargs=3, blocks=True),
    S("epoll_pwait", 281, "input", outs=((1, "ret*12"),), fd_arg=0, nargs=3, blocks=True),
    S("epoll_pwait2", 441, "input", outs=((1, "ret*12"),), fd_arg=0, nargs=3, blocks=True),
    S("wait4", 61, "input", outs=((1, "4"), (3, "144")), nargs=3, blocks=True),
    S("waitid", 247, "input", outs=((2, "128"), (4, "144")), nargs=4, blocks=True),
    S("nanosleep", 35, "input", outs=((1, "16"),), nargs=1, blocks=True),
    S("clock_nanosleep", 230, "input", outs=((3, "16"),), nargs=3, blocks=True),
    S("pause", 34, "input", nargs=0, blocks=True),
    S("rt_sigsuspend", 130, "input", nargs=0, blocks=True),
    S("rt_sigtimedwait", 128, "input", outs=((1, "128"),), nargs=0, blocks=True),
    S("sched_getaffinity", 204, "input", outs=((2, "ret"),), nargs=2),
    S("prlimit64", 302, "input", outs=((3, "16"),), nargs=3),
    S("getrlimit", 97, "input", outs=((1, "16"),), nargs=1),
    S("ioctl", 16, "input", outs=((2, "ioctl"),), fd_arg=0, nargs=2),
    S("getsockname", 51, "input", outs=((1, "*a2"), (2, "4")), fd_arg=0, nargs=1),
    S("getpeername", 52, "input", outs=((1, "*a2"), (2, "4")), fd_arg=0, nargs=1),
    S("getsockopt", 55, "input", outs=((3, "*a4"), (4, "4")), fd_arg=0, nargs=3),
    S("getitimer", 36, "input", outs=((1, "32"),), nargs=1),
    S("flock", 73, "input", fd_arg=0, nargs=2),              # locks are the primary's to take
    S("getxattr", 191, "input", outs=((2, "ret"),), nargs=4, path=(None, 0)),
    S("lgetxattr", 192, "input", outs=((2, "ret"),), nargs=4, path=(None, 0)),
    S("fgetxattr", 193, "input", outs=((2, "ret"),), fd_arg=0, nargs=4),
    S("listxattr", 194, "input", outs=((1, "ret"),), nargs=3),
    S("llistxattr", 195, "input", outs=((1, "ret"),), nargs=3),
    S("flistxattr", 196, "input", outs=((1, "ret"),), fd_arg=0, nargs=3),
    S("timer_gettime", 224, "input", outs=((1, "32"),), nargs=1),
    S("sched_getscheduler", 145, "input", nargs=0),
    S("getpriority", 140, "input", nargs=0),
    S("rt_sigpending", 127, "input", outs=((0, "8"),), nargs=2),   # held-back signals are not the kernel's
    S("timerfd_gettime", 287, "input", outs=((1, "32"),), fd_arg=0, nargs=1),
    S("timer_getoverrun", 225, "input", nargs=1),
    # a watch on a path: the replay's inotify fd is a stand-in, its answer is the primary's
    S("inotify_add_watch", 254, "input", fd_arg=0, nargs=3, path=(None, 1)),
    S("inotify_rm_watch", 255, "input", fd_arg=0, nargs=2),

    # --- identity: process ids, virtualized ---------------------------------------------------
    S("getpid", 39, "identity", nargs=0, answered="pid"),
    S("getppid", 110, "identity", nargs=0, answered="stat"),
    S("gettid", 186, "identity", nargs=0, answered="pid"),
    S("getpgrp", 111, "identity", nargs=0, answered="stat"),
    S("getpgid", 121, "identity", nargs=0, answered="stat"),
    S("getsid", 124, "identity", nargs=0, answered="stat"),
    # user and group ids: a user namespace's maps are written through files (outputs, skipped
    # by the replay), so what the kernel answers is the primary's to say
    S("getuid", 102, "identity", nargs=0),
    S("geteuid", 107, "identity", nargs=0),
    S("getgid", 104, "identity", nargs=0),
    S("getegid", 108, "identity", nargs=0),
    S("getresuid", 118, "identity", outs=((0, "4"), (1, "4"), (2, "4")), nargs=0),
    S("getresgid", 120, "identity", outs=((0, "4"), (1, "4"), (2, "4")), nargs=0),
    S("getgroups", 115, "identity", outs=((1, "ret*4"),), nargs=1),
    S("fork", 57, "identity", nargs=0, forks=True),         # runs on both; the child's pid is the primary's
    S("vfork", 58, "identity", nargs=0, forks=True),
    S("clone", 56, "identity", nargs=1, forks=True),
    S("clone3", 435, "identity", nargs=0, forks=True),

    # --- output: effects on the outside world -------------------------------------------------
    S("write", 1, "output", fd_arg=0, nargs=3, writes="buf", resets=True),
    S("pwrite64", 18, "output", fd_arg=0, nargs=4, writes="buf", resets=True),
    S("writev", 20, "output", fd_arg=0, nargs=3, writes="iov", resets=True),
    S("pwritev", 296, "output", fd_arg=0, nargs=4, writes="iov"),
    S("pwritev2", 328, "output", fd_arg=0, nargs=5, writes="iov"),
    S("sendto", 44, "output", fd_arg=0, nargs=3, writes="buf", resets=True),
    S("sendmsg", 46, "output", fd_arg=0, nargs=3, writes="msghdr", resets=True),
    S("sendfile", 40, "output", outs=((2, "8"),), fd_arg=0, nargs=4, writes="fd", src_arg=1, count_arg=3,
      resets=True),
    S("kill", 62, "output", nargs=0, kills=True),             # the signal is replayed from the target's own log
    S("tkill", 200, "output", nargs=0, kills=True),
    S("tgkill", 234, "output", nargs=0, kills=True),
    S("rt_sigqueueinfo", 129, "output", nargs=0, kills=True),
    S("fsync", 74, "output", fd_arg=0, nargs=1),
    S("fdatasync", 75, "output", fd_arg=0, nargs=1),
    S("truncate", 76, "output", nargs=2),
    S("ftruncate", 77, "output", fd_arg=0, nargs=2),
    S("fallocate", 285, "output", fd_arg=0, nargs=4),
    S("rename", 82, "output", nargs=2, redo="renames", path=(None, 1)),
    S("renameat", 264, "output", nargs=4, redo="renames", path=(2, 3)),
    S("renameat2", 316, "output", nargs=5, redo="renames", path=(2, 3)),
    S("mkdir", 83, "output", nargs=2, redo="creates", path=(None, 0)),
    S("mkdirat", 258, "output", nargs=3, redo="creates", path=(0, 1)),
    S("rmdir", 84, "output", nargs=1, redo="removes", path=(None, 0)),
    S("link", 86, "output", nargs=2, redo="creates", path=(None, 1)),
    S("linkat", 265, "output", nargs=5, redo="creates", path=(2, 3)),
    S("unlink", 87, "output", nargs=1, redo="removes", path=(None, 0)),
    S("unlinkat", 263, "output", nargs=3, redo="removes", path=(0, 1)),
    S("symlink", 88, "output", nargs=2, redo="creates", path=(None, 1)),
    S("symlinkat", 266, "output", nargs=3, redo="creates", path=(1, 2)),
    S("chmod", 90, "output", nargs=2),
    S("fchmod", 91, "output", fd_arg=0, nargs=2),
    S("fchmodat", 268, "output", nargs=3),
    S("chown", 92, "output", nargs=3),
    S("fchown", 93, "output", fd_arg=0, nargs=3),
    S("lchown", 94, "output", nargs=3),
    S("fchownat", 260, "output", nargs=5),
    S("utimensat", 280, "output", nargs=4),
    S("mknodat", 259, "output", nargs=4, redo="creates", path=(0, 1)),
    S("mknod", 133, "output", nargs=3, redo="creates", path=(None, 0)),
    S("utime", 132, "output", nargs=2),
    S("utimes", 235, "output", nargs=2),
    S("futimesat", 261, "output", nargs=3),
    S("setxattr", 188, "output", nargs=5),
    S("lsetxattr", 189, "output", nargs=5),
    S("fsetxattr", 190, "output", fd_arg=0, nargs=5),
    S("removexattr", 197, "output", nargs=2),
    S("lremovexattr", 198, "output", nargs=2),
    S("fremovexattr", 199, "output", fd_arg=0, nargs=2),
    S("sync", 162, "output", nargs=0),
    S("syncfs", 306, "output", fd_arg=0, nargs=1),
    # copy_file_range(fd_in, *off_in, fd_out, *off_out, len, flags): the offsets are updated in place
    S("copy_file_range", 326, "output", outs=((1, "8"), (3, "8")), fd_arg=2, nargs=6, writes="fd", src_arg=0,
      count_arg=4),
    # splice(fd_in, *off_in, fd_out, *off_out, len, flags); tee(fd_in, fd_out, len, flags): one end
    # is a pipe.  The bytes are logged from the end that is a regular file where the replay shows
    # the destination; where neither end is one the primary answers EINVAL (programs fall back).
    S("splice", 275, "output", outs=((1, "8"), (3, "8")), fd_arg=2, nargs=6, writes="fd", src_arg=0,
      count_arg=4, blocks=True),
    S("tee", 276, "output", fd_arg=1, nargs=4, writes="fd", src_arg=0, count_arg=2, blocks=True),

    # --- resource: OS objects that differ between replicas ----------------------------------
    S("open", 2, "resource", creates_fd=True, nargs=3, opens=True, path=(None, 0), redo="creates"),       # read-only opens run on both
    S("openat", 257, "resource", creates_fd=True, nargs=4, opens=True, path=(0, 1), redo="creates"),
    S("creat", 85, "resource", creates_fd=True, nargs=2, opens=True, path=(None, 0)),
    S("socket", 41, "resource", creates_fd=True, nargs=3),
    S("accept", 43, "resource", outs=((1, "*a2"), (2, "4")), fd_arg=0, creates_fd=True, nargs=1,
      blocks=True),
    S("accept4", 288, "resource", outs=((1, "*a2"), (2, "4")), fd_arg=0, creates_fd=True, nargs=1,
      blocks=True),
    S("bind", 49, "resource", fd_arg=0, nargs=3),
    S("listen", 50, "resource", fd_arg=0, nargs=2),
    S("connect", 42, "resource", fd_arg=0, nargs=3, blocks=True, resets=True),
    S("shutdown", 48, "resource", fd_arg=0, nargs=2, resets=True),
    S("setsockopt", 54, "resource", fd_arg=0, nargs=3),
    S("inotify_init1", 294, "resource", creates_fd=True, nargs=1),
    S("inotify_init", 253, "resource", creates_fd=True, nargs=0),
    S("eventfd", 284, "local", creates_fd=True, nargs=1),
    S("signalfd", 282, "local", creates_fd=True, nargs=3),
    S("timerfd_settime", 286, "local", fd_arg=0, outs=((3, "32"),), check=False, nargs=3),
    S("timer_delete", 226, "local", nargs=1),

    # --- unsupported --------------------------------------------------------------------------
    S("io_uring_setup", 425, "unsupported", enosys=True),   # as rr does: programs fall back
    S("io_uring_enter", 426, "unsupported", enosys=True),
    S("io_uring_register", 427, "unsupported", enosys=True),
    S("openat2", 437, "unsupported", enosys=True),          # glibc falls back to openat
    S("recvmmsg", 299, "unsupported"),
    S("sendmmsg", 307, "unsupported"),
    S("ptrace", 101, "unsupported"),
    S("process_vm_readv", 310, "unsupported"),
    S("process_vm_writev", 311, "unsupported"),
    S("userfaultfd", 323, "unsupported"),
    S("perf_event_open", 298, "unsupported", enosys=True),
    S("vmsplice", 278, "unsupported"),
    S("shmat", 30, "unsupported"),   # memory shared between processes is not replicated
    # System V IPC and POSIX message queues: state shared with other processes, in the kernel
    *(S(name, nr, "unsupported") for name, nr in (
        ("shmget", 29), ("shmctl", 31), ("shmdt", 67), ("semget", 64), ("semop", 65), ("semctl", 66),
        ("semtimedop", 220), ("msgget", 68), ("msgsnd", 69), ("msgrcv", 70), ("msgctl", 71),
        ("mq_open", 240), ("mq_unlink", 241), ("mq_timedsend", 242), ("mq_timedreceive", 243),
        ("mq_notify", 244), ("mq_getsetattr", 245))),
    # Another process's memory or fds, the machine's state, namespaces and mounts
    *(S(name, nr, "unsupported") for name, nr in (
        ("kcmp", 312), ("pidfd_getfd", 438), ("process_madvise", 440), ("process_mrelease", 448),
        ("migrate_pages", 256), ("move_pages", 279), ("setns", 308), ("chroot", 161), ("pivot_root", 155),
        ("mount", 165), ("umount2", 166), ("open_tree", 428), ("move_mount", 429), ("fsopen", 430),
        ("fsconfig", 431), ("fsmount", 432), ("fspick", 433), ("mount_setattr", 442),
        ("name_to_handle_at", 303), ("open_by_handle_at", 304), ("fanotify_init", 300),
        ("fanotify_mark", 301), ("settimeofday", 164), ("clock_settime", 227), ("sethostname", 170),
        ("setdomainname", 171), ("swapon", 167), ("swapoff", 168), ("reboot", 169), ("acct", 163),
        ("kexec_load", 246), ("kexec_file_load", 320), ("init_module", 175), ("finit_module", 313),
        ("delete_module", 176), ("iopl", 172), ("ioperm", 173), ("vhangup", 153), ("quotactl", 179),
        ("quotactl_fd", 443), ("bpf", 321), ("memfd_secret", 447), ("rt_tgsigqueueinfo", 297))),
    # Programs fall back when these fail with ENOSYS (as on a kernel without them)
    *(S(name, nr, "unsupported", enosys=True) for name, nr in (
        ("pidfd_open", 434), ("pidfd_send_signal", 424), ("io_setup", 206), ("io_destroy", 207),
        ("io_getevents", 208), ("io_submit", 209), ("io_cancel", 210), ("io_pgetevents", 333),
        ("add_key", 248), ("request_key", 249), ("keyctl", 250), ("adjtimex", 159), ("clock_adjtime", 305),
        ("syslog", 103), ("lookup_dcookie", 212), ("uselib", 134), ("ustat", 136), ("sysfs", 139))),
)
# fmt: on
del S

BY_NUMBER: dict[int, Syscall] = {s.x64: s for s in TABLE.values()}

#: Restart codes the kernel returns inside an interrupted call; never seen by the program.
ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND, ERESTART_RESTARTBLOCK = 512, 513, 514, 516
RESTART_CODES = frozenset((-ERESTARTSYS, -ERESTARTNOINTR, -ERESTARTNOHAND, -ERESTART_RESTARTBLOCK))
NR_RESTART_SYSCALL = 219


_UNKNOWN: dict[int, Syscall] = {}


def lookup(nr: int) -> Syscall | None:
    """The table entry for syscall number ``nr`` on x86_64 (None for ``restart_syscall``).

    A number the table does not have is ``unsupported``: a syscall newer than the table is
    answered ENOSYS (programs fall back, as on an older kernel), an x32 one stops the program.
    The filter traps every syscall the table does not run untrapped, so none of them runs
    unseen on one replica and differently on the other."""
    entry = BY_NUMBER.get(nr)
    if entry is None and nr != NR_RESTART_SYSCALL:
        entry = _UNKNOWN.get(nr)
        if entry is None:
            x32 = nr >= 0x40000000
            name = f"x32 syscall {nr - 0x40000000}" if x32 else name_of(nr)
            entry = _UNKNOWN[nr] = Syscall(name, nr, "unsupported", enosys=not x32)
    return entry


def name_of(nr: int) -> str:
    """A syscall's name, from the table or else python-ptrace's list."""
    entry = BY_NUMBER.get(nr)
    if entry is not None:
        return entry.name
    if nr == NR_RESTART_SYSCALL:
        return "restart_syscall"
    from ptrace.syscall import SYSCALL_NAMES

    return SYSCALL_NAMES.get(nr, f"syscall_{nr}")


_NUMBERS: dict[str, int] | None = None


def number(name: str) -> int:
    """The x86_64 number of syscall ``name``, in the table or not: a call the program never
    makes through us (``pidfd_open``, which the backup injects) is python-ptrace's fact.
    KeyError for a name no list has."""
    entry = TABLE.get(name)
    if entry is not None:
        return entry.x64
    global _NUMBERS
    if _NUMBERS is None:
        from ptrace.syscall import SYSCALL_NAMES

        _NUMBERS = {v: k for k, v in SYSCALL_NAMES.items()}
    return _NUMBERS[name]


def untrapped_if() -> dict[int, tuple[int, int]]:
    """Syscall number -> (argument, bits) with which the filter lets a trapped call through."""
    return {s.x64: s.untrapped_if for s in TABLE.values() if s.trap and s.untrapped_if}


def untrapped() -> list[int]:
    """The syscall numbers the replicating policies' filter lets through: the table's
    ``trap=False`` entries.  Every other syscall is trapped (see :func:`lookup`)."""
    return sorted(s.x64 for s in TABLE.values() if not s.trap)


# ioctl requests whose out-buffer size is not encoded in the number (legacy tty ones).
_LEGACY_IOCTL_OUT = {0x5401: 36, 0x5413: 8, 0x541B: 4, 0x540F: 4, 0x5429: 4}  # TCGETS TIOCGWINSZ FIONREAD TIOCGPGRP TIOCGSID
_IOC_READ = 2


def ioctl_out_size(request: int) -> int:
    """Bytes an ioctl writes to its third argument, from the request's encoding or the legacy list."""
    request &= 0xFFFFFFFF
    if request in _LEGACY_IOCTL_OUT:
        return _LEGACY_IOCTL_OUT[request]
    direction = request >> 30
    size = (request >> 16) & 0x3FFF
    return size if direction & _IOC_READ else 0


def markdown_table() -> str:
    """The syscall table as Markdown, for the docs."""
    rows = ["| syscall | x86_64 | class | trapped | out-buffers | facts |", "|---|---|---|---|---|---|"]
    for s in sorted(TABLE.values(), key=lambda s: (CLASSES.index(s.cls), s.name)):
        outs = ", ".join(f"arg{i}: {size}" for i, size in s.outs)
        trapped = "yes" if s.trap else "no"
        if s.trap and s.untrapped_if:
            trapped = f"unless arg{s.untrapped_if[0]} & {s.untrapped_if[1]:#x}"
        rows.append(f"| {s.name} | {s.x64} | {s.cls} | {trapped} | {outs} | {', '.join(s.flags)} |")
    return "\n".join(rows)
