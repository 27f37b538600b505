"""Calls the primary answers at the seccomp stop get the kernel's answers.

``tft record`` (and a ``tft run`` primary) skips getpid, getppid, the clock
calls and getrandom at their seccomp stop and writes the answer itself (one
stop instead of two).  The program must not be able to tell: the guest
``answered`` checks every such answer against what the kernel says by other
means (``/proc/self``, other clocks), and the error cases the kernel must still
answer (NULL buffers, bad clock ids and flags).  It prints the same natively,
recorded and replayed, including inside a new pid namespace, where the
supervisor's pids are not the program's and it must let the calls run.
"""
from __future__ import annotations

import shutil
import subprocess

import pytest

from tft_lab import log as tft_log
from tft_lab.syscalls import TABLE
from tft_lab.testing import build_program, native, new_log_path, record, replay


@pytest.fixture(scope="module")
def answered():
    return str(build_program("answered"))


def _checks(stdout: bytes) -> list[bytes]:
    return [line for line in stdout.splitlines() if not line.startswith(b"checksum=")]


def test_answers_are_the_kernels(answered, tmp_path):
    nat = native([answered])
    assert nat.returncode == 0, nat.stdout.decode()
    log = new_log_path(tmp_path)
    rec = record([answered], log)
    assert rec.returncode == 0, rec.stdout.decode() + rec.stderr.decode()
    assert b"all_ok=1" in rec.stdout
    assert _checks(rec.stdout) == _checks(nat.stdout)   # every check ok, as natively
    rep = replay(log)
    assert (rep.stdout, rep.returncode) == (rec.stdout, rec.returncode)


def test_answered_calls_are_logged_as_if_they_ran(answered, tmp_path):
    """The log holds one sys record per answered call, with its result and out-buffer, as it
    would had the call run: what the backup and the replay are fed does not change."""
    log = new_log_path(tmp_path)
    assert record([answered], log).returncode == 0
    sys_recs = [r for r in tft_log.read_log(log) if r["t"] == "sys"]
    by_nr = {}
    for r in sys_recs:
        by_nr.setdefault(r["nr"], []).append(r)
    clock = [r for r in by_nr[TABLE["clock_gettime"].x64] if r["res"] == 0 and r["args"][0] == 1]
    assert len(clock) >= 2 and all(len(r["blobs"]) == 1 and len(r["blobs"][0]) == 16 for r in clock)
    first, second = (int.from_bytes(r["blobs"][0][:8], "little") * 10**9
                     + int.from_bytes(r["blobs"][0][8:], "little") for r in clock[:2])
    assert 0 < first <= second
    rnd = [r for r in by_nr[TABLE["getrandom"].x64] if r["res"] == 16]
    assert rnd and len(rnd[0]["blobs"][0]) == 16
    efault = [r for r in by_nr[TABLE["getrandom"].x64] if r["res"] == -14]
    assert efault and efault[0]["blobs"] == []   # the kernel's EFAULT, logged as such
    pids = by_nr[TABLE["getpid"].x64]
    assert len({r["res"] for r in pids}) == 1 and pids[0]["res"] > 0


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (util-linux)")
def test_in_a_new_pid_namespace_the_calls_run(answered, tmp_path):
    """Inside a new pid namespace getpid is 1 and getppid 0: the supervisor, which sees other
    pids, must let those calls run rather than answer them."""
    argv = ["unshare", "--pid", "--fork", "--mount-proc", answered]
    nat = subprocess.run(argv, capture_output=True)
    if nat.returncode != 0 and b"all_ok" not in nat.stdout:
        pytest.skip(f"cannot make a pid namespace here: {nat.stderr.decode().strip()}")
    assert b"all_ok=1" in nat.stdout
    log = new_log_path(tmp_path)
    rec = record(argv, log)
    assert rec.returncode == 0, rec.stdout.decode() + rec.stderr.decode()
    assert _checks(rec.stdout) == _checks(nat.stdout)
    rep = replay(log)
    assert (rep.stdout, rep.returncode) == (rec.stdout, rec.returncode)
