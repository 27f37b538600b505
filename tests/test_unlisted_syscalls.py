"""A syscall tft_lab's table does not list is never run unseen.

Until the filter trapped every syscall but the table's untrapped ones, a syscall missing
from the table ran natively on each replica: gpg-agent's ``inotify_add_watch`` on the
replay's stand-in inotify fd failed where the primary's succeeded, and the agent took
another path (``close(7)`` where the log had ``clock_gettime``).  Now each such call is
in the table with its class, answered ENOSYS when it is newer than the table, or
refused in one line.
"""
from __future__ import annotations

import subprocess
import sys

from tft_lab.testing import assert_no_leftovers, record_and_replay, run_cli

INOTIFY = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.inotify_init1(0)
open("made.txt", "w").write("x")
wd = libc.inotify_add_watch(fd, b"made.txt", 0x400)       # IN_DELETE_SELF
print("watch", wd, "errno", ctypes.get_errno() if wd < 0 else 0)
print("removed", libc.inotify_rm_watch(fd, wd))
"""

NEWER = """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
print("syscall 500:", libc.syscall(500), "errno", ctypes.get_errno())
"""


def test_a_watch_on_a_file_the_recording_made_replays_as_recorded(tmp_path, pids_before):
    """The replay makes no file (it is an output) and its inotify fd is a stand-in: run
    natively, the watch failed there (``watch -1``)."""
    rec, rep, _ = record_and_replay([sys.executable, "-c", INOTIFY], tmp_path, cwd=tmp_path)
    assert rec.returncode == 0 and rec.stdout == b"watch 1 errno 0\nremoved 0\n", rec.stderr
    assert (rep.returncode, rep.stdout) == (0, rec.stdout), rep.stderr
    (tmp_path / "made.txt").unlink()
    rep = run_cli(["replay", str(next(tmp_path.glob("*.log")))], cwd=tmp_path)
    assert (rep.returncode, rep.stdout) == (0, rec.stdout), rep.stderr
    assert not (tmp_path / "made.txt").exists()
    assert_no_leftovers(pids_before)


def test_a_syscall_newer_than_the_table_is_enosys_on_record_replay_and_run(tmp_path):
    native = subprocess.run([sys.executable, "-c", NEWER], capture_output=True)
    rec, rep, _ = record_and_replay([sys.executable, "-c", NEWER], tmp_path)
    assert rec.stdout == rep.stdout == native.stdout == b"syscall 500: -1 errno 38\n", (rec.stderr, rep.stderr)
    run = run_cli(["run", "--", sys.executable, "-c", NEWER])
    assert (run.returncode, run.stdout) == (0, native.stdout), run.stderr


def _segments() -> list[str]:
    return subprocess.run(["ipcs", "-m"], capture_output=True, text=True).stdout.splitlines()


def test_system_v_shared_memory_is_refused_in_one_line_before_it_is_made(tmp_path, pids_before):
    before = _segments()
    for args in (["record", "--log", str(tmp_path / "s.log")], ["run"]):
        p = run_cli([*args, "--", "ipcmk", "-M", "4096"])
        lines = p.stderr.decode().strip().splitlines()
        assert p.returncode == 2 and p.stdout == b"", (args, p.stderr)
        assert lines[-1].startswith("tft: shmget is not supported by tft_lab"), lines
        assert "failover" not in p.stderr.decode()   # a refusal, not a failure
    assert _segments() == before   # refused at its entry: no segment was made
    assert_no_leftovers(pids_before)
