"""The syscall table is the one source of truth, and it is right.

Every number in :data:`tft_lab.syscalls.TABLE` is the kernel's (checked
against ``asm/unistd_64.h``), every class is one of the replication classes,
the seccomp filter is derived from the table (every syscall is trapped but the
table's untrapped ones; one the table does not have is refused or ENOSYS), a
recording intercepts only trapped calls, and the documentation table lists
every entry.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from tft_lab import syscalls
from tft_lab._backend.ptrace import seccomp_program
from tft_lab.recorder import record as tft_record
from tft_lab.syscalls import CLASSES, TABLE, markdown_table, untrapped, untrapped_if
from tft_lab.testing import build_program

UNISTD_64 = Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")


def kernel_numbers() -> dict[str, int]:
    if not UNISTD_64.exists():
        pytest.skip(f"{UNISTD_64} is missing (install linux-libc-dev)")
    return {m[1]: int(m[2]) for m in re.finditer(r"#define __NR_(\w+)\s+(\d+)", UNISTD_64.read_text())}


def test_every_number_is_the_kernels():
    kernel = kernel_numbers()
    wrong = {name: (s.x64, kernel.get(name)) for name, s in TABLE.items() if kernel.get(name) != s.x64}
    assert not wrong, f"table vs __NR_ in {UNISTD_64}: {wrong}"


def test_names_and_numbers_are_unique():
    assert all(name == s.name for name, s in TABLE.items())
    numbers = [s.x64 for s in TABLE.values()]
    assert len(numbers) == len(set(numbers))


def test_every_class_is_a_replication_class():
    assert {s.cls for s in TABLE.values()} <= set(CLASSES)
    assert all(s.enosys is False for s in TABLE.values() if s.cls != "unsupported")


def test_out_buffers_name_real_arguments():
    for s in TABLE.values():
        for arg, size in s.outs:
            assert 0 <= arg < 6, s
            assert isinstance(size, str) and size, s


def test_the_filter_lets_through_exactly_the_tables_untrapped_calls():
    allowed = untrapped()
    assert set(allowed) == {s.x64 for s in TABLE.values() if not s.trap}
    prog = seccomp_program(allowed, untrapped_if())
    compared = {k for code, jt, jf, k in prog if code == 0x15 and jf == 0}   # BPF_JEQ|BPF_K, one per number
    assert compared == set(allowed) | set(untrapped_if())


def test_every_syscall_of_the_kernel_is_in_the_table_or_answered_enosys():
    """A syscall tft_lab knows nothing of is trapped and refused (or ENOSYS), never run unseen:
    run natively it could answer the replicas differently (gpg-agent's inotify_add_watch did)."""
    kernel = kernel_numbers()
    for name, nr in kernel.items():
        entry = syscalls.lookup(nr)
        if name == "restart_syscall":
            assert entry is None
            continue
        assert entry is not None, name
        assert entry.name == name or (entry.cls == "unsupported" and entry.enosys), name
    assert syscalls.lookup(max(kernel.values()) + 40).enosys   # newer than the table: ENOSYS
    x32 = syscalls.lookup(0x40000000 + 1)
    assert x32.cls == "unsupported" and not x32.enosys and "x32" in x32.name


def test_a_recording_intercepts_only_subscribed_calls(tmp_path, capfd):
    status, engine = tft_record([str(build_program("clocks"))], tmp_path / "c.log")
    assert status == 0
    seen = {e.syscall for e in engine.events if e.kind == "syscall"}
    trapped = {s.name for s in TABLE.values() if s.trap}
    assert "clock_gettime" in seen
    assert seen <= trapped
    assert "brk" not in seen   # untrapped: it ran at native speed
    mmaps = [e.args.split(", ") for e in engine.events if e.syscall == "mmap"]
    assert mmaps and not any(int(a[3], 0) & 0x20 for a in mmaps)   # only file-backed mmaps stop


def test_the_documentation_table_lists_every_entry():
    doc = markdown_table()
    rows = {line.split("|")[1].strip(): line for line in doc.splitlines()[2:]}
    assert set(rows) == set(TABLE)
    for name, s in TABLE.items():
        assert f"| {s.x64} | {s.cls} |" in rows[name]


def test_the_facts_policies_act_on_are_consistent_rows_of_the_table():
    for s in TABLE.values():
        if s.writes:
            assert s.cls == "output" and s.fd_arg is not None, s
            assert s.writes in ("buf", "iov", "msghdr", "fd"), s
        assert (s.src_arg is not None) == (s.writes == "fd") == (s.count_arg is not None), s
        if s.path is not None:
            dirfd, path = s.path
            assert 0 <= path < 6 and (dirfd is None or 0 <= dirfd < 6), s
        assert not s.opens or (s.creates_fd and s.path is not None), s
    assert {n for n, s in TABLE.items() if s.noreturn} == {"exit", "exit_group"}
    assert {n for n, s in TABLE.items() if s.forks} == {"fork", "vfork", "clone", "clone3"}
    # every call that moves bytes to an output is an output call that says where its bytes are
    for name in ("write", "writev", "pwrite64", "pwritev", "pwritev2", "sendto", "sendmsg",
                 "sendfile", "copy_file_range", "splice", "tee"):
        assert TABLE[name].writes, name


def test_the_documentation_shows_the_facts():
    doc = markdown_table()
    rows = {line.split("|")[1].strip(): line for line in doc.splitlines()[2:]}
    assert "blocks" in rows["read"] and "noreturn" in rows["exit_group"]
    assert "writes=fd" in rows["copy_file_range"] and "forks" in rows["clone"]
