"""Failover on everyday programs: the bugs real software found (issue 7), one test each.

Each test runs a real program (bash, CPython's subprocess, a tiny C guest) under
``tft run``, kills the primary at several points spread over the program's
calls (``--fault primary@N``, N a fraction of a fault-free run's count), and
checks what a user would: the bytes in the output file, the statuses the
program saw, that tft came back at all.

- an fd saved, redirected with ``dup2`` and restored (every shell redirect) is
  rebuilt as the file it is *now*, at the offset its open file description has:
  never NUL bytes, never the redirect's file;
- ``exec 3>file`` in a shell, written by the shell and by its children: one
  offset, shared, as in the kernel;
- an inherited stdout opened for appending keeps what was there;
- children started before the failover are waited for after it, with their
  real status (CPython's ``subprocess``); a signal the program sent its own
  processes before the failover reaches them after it;
- no run hangs (a stress loop, each try bounded);
- a write to the process's own ``/proc`` entry (``unshare -r``'s uid map) is made by the
  backup too: it is the process's state, not an output; a path looked up under it
  (``test -e /proc/$$/stat``, ``readlink``) is this replica's entry;
- a FIFO open at the failover is opened again without waiting for a writer (valgrind);
- a backup that diverges fails the run loudly: ``backup-lost``, exit status 3,
  one message naming the seq.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tft_lab.testing import REPO, build_program

FRACTIONS = (0.1, 0.3, 0.5, 0.7, 0.9)
TRY_TIMEOUT = 60          # seconds: a try that takes longer has hung
PY_SUBPROCS = str(REPO / "tests" / "programs" / "py_subprocs.py")


def tft_run(argv, cwd, *, fault: str | None = None, stdout=None, timeout: float = TRY_TIMEOUT):
    """``tft run [--fault F] -- argv`` in ``cwd``; stdout to the open file ``stdout`` (or captured).
    Returns (CompletedProcess, the run's result JSON)."""
    result = os.path.join(cwd, "result.json")
    # A slow heartbeat: these tests kill the primary (its channel closes at once), and on a
    # loaded machine a 0.5 s one can make a primary fence itself before its backup is up.
    args = ["run", "--heartbeat", "2", "--result-json", result] + (["--fault", fault] if fault else [])
    args += ["--", *argv]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    p = subprocess.run([sys.executable, "-m", "tft_lab.cli", *args], cwd=cwd, env=env, timeout=timeout,
                       stdout=stdout if stdout is not None else subprocess.PIPE, stderr=subprocess.PIPE)
    with open(result) as f:
        return p, json.load(f)


def fault_points(argv, cwd) -> list[int]:
    """Where to kill the primary: fractions of the calls of a fault-free run."""
    p, res = tft_run(argv, cwd)
    assert p.returncode == 0 and res["outcome"] == "completed", p.stderr
    calls = res["primary"]["calls"]
    return sorted({max(1, int(calls * f)) for f in FRACTIONS})


def once_each(lines: list[str], want: list[str]) -> None:
    """``lines`` are ``want`` in order, at most one of them twice in a row (the uncertain output)."""
    distinct = [l for i, l in enumerate(lines) if i == 0 or l != lines[i - 1]]
    assert distinct == want, lines
    assert len(lines) - len(distinct) <= 1, f"more than one duplicated output: {lines}"


def run_with_file_stdout(argv, tmp_path, fault, *, mode="wb", before=b""):
    out = tmp_path / "out.txt"
    out.write_bytes(before)
    with open(out, "ab" if mode == "ab" else "wb") as f:
        p, res = tft_run(argv, str(tmp_path), fault=fault, stdout=f)
    return p, res, out.read_bytes()


# -- class 5: the fd table follows dup/dup2/F_DUPFD/close, offsets per open file description -------

REDIRECT_RESTORED = ["bash", "-c", "echo hello >/dev/null; /bin/echo one; /bin/echo two"]


def test_an_fd_restored_after_a_redirect_is_rebuilt_as_the_file_it_is_now(tmp_path):
    for n in fault_points(REDIRECT_RESTORED, str(tmp_path)):
        p, res, data = run_with_file_stdout(REDIRECT_RESTORED, tmp_path, f"primary@{n}")
        assert p.returncode == 0, (n, p.stderr)
        assert b"\0" not in data, f"primary@{n}: NUL bytes in the output file: {data!r}"
        once_each(data.decode().splitlines(), ["one", "two"])


EXEC_FD3 = ["bash", "-c", "exec 3>f.txt; echo a >&3; (echo b >&3); /bin/echo c >&3; echo d >&3; "
                          "exec 3>&-; /bin/echo done"]


def test_exec_3_to_a_file_shares_one_offset_between_the_shell_and_its_children(tmp_path):
    for n in fault_points(EXEC_FD3, str(tmp_path)):
        p, res, data = run_with_file_stdout(EXEC_FD3, tmp_path, f"primary@{n}")
        assert p.returncode == 0, (n, p.stderr)
        f = (tmp_path / "f.txt").read_bytes()
        assert b"\0" not in f, f"primary@{n}: NUL bytes in f.txt: {f!r}"
        once_each(f.decode().splitlines(), ["a", "b", "c", "d"])
        once_each(data.decode().splitlines(), ["done"])


APPENDED = ["bash", "-c", "/bin/echo one; echo two; /bin/echo three"]


def test_an_inherited_stdout_opened_for_appending_keeps_what_was_there(tmp_path):
    for n in fault_points(APPENDED, str(tmp_path)):
        p, res, data = run_with_file_stdout(APPENDED, tmp_path, f"primary@{n}", mode="ab", before=b"before\n")
        assert p.returncode == 0, (n, p.stderr)
        assert b"\0" not in data
        once_each(data.decode().splitlines(), ["before", "one", "two", "three"])


# -- class 6: children started before the failover are waitable after it -------------------------

WAITED = """
import subprocess
for i in range(3):
    r = subprocess.run(["/bin/sh", "-c", f"echo child {i}; /bin/true; exit {5 + i}"])
    print(f"rc={r.returncode}", flush=True)
"""


def test_children_started_before_a_failover_are_waited_for_with_their_status(tmp_path):
    """A kill between a child's first output and its parent's wait used to leave the parent,
    live, waiting for a pid its kernel did not know: ECHILD, and CPython reports rc 0."""
    argv = [sys.executable, "-c", WAITED]
    want = ["child 0", "rc=5", "child 1", "rc=6", "child 2", "rc=7"]
    p, res = tft_run(argv, str(tmp_path))
    calls = res["primary"]["calls"]
    start = calls * 9 // 10       # CPython's start-up is most of the run: the children come last
    for n in range(start, calls + 10, max(1, (calls - start) // 20)):
        p, res = tft_run(argv, str(tmp_path), fault=f"primary@{n}")
        assert p.returncode == 0, (n, p.stderr)
        once_each(p.stdout.decode().splitlines(), want)


KILLED = ["bash", "-c", "sleep 5 & p=$!; kill $p; wait $p; echo status=$?; "
                        "trap 'echo caught' USR1; kill -USR1 $$; echo after"]


def test_a_signal_the_program_sent_before_a_failover_is_received_after_it(tmp_path):
    """The kill's record leaves at once (an output), the target's delivery waits for the next
    output: a primary killed in between took the signal with it, the backup's sleep, live, ran
    its 5 s and ``wait`` gave 0, not 143 (corpus workload sh-trap).  A kill to itself likewise."""
    p, res = tft_run(KILLED, str(tmp_path))
    calls = res["primary"]["calls"]
    for n in range(calls // 2, calls + 1, max(1, calls // 30)):
        t0 = time.monotonic()
        p, res = tft_run(KILLED, str(tmp_path), fault=f"primary@{n}")
        assert p.returncode == 0, (n, p.stderr)
        once_each(p.stdout.decode().splitlines(), ["status=143", "caught", "after"])
        assert time.monotonic() - t0 < 4.5, f"primary@{n}: the sleep was not killed"


def test_a_sent_signal_is_owed_until_the_log_shows_it_delivered():
    from tft_lab.pidmap import SentSignals, sent_siginfo

    term = sent_siginfo("kill", 15, 100, 0)
    chld = bytearray(sent_siginfo("kill", 17, 101, 0))
    chld[8:12] = (1).to_bytes(4, "little")       # CLD_EXITED: the kernel's, not a kill's
    s = SentSignals()
    s.sent(101, 15, term)
    assert s.owed(101) == [(15, term)] and s.owed(101) == []          # owed once, then forgotten
    s.sent(101, 15, term)
    s.sent(101, 15, term)
    s.received(101, 15, term)                    # a standard signal: one delivery takes both
    assert s.owed(101) == []
    s.received(101, 15, term)                    # logged before the kill that sent it
    s.sent(101, 15, term)
    assert s.owed(101) == []
    s.sent(101, 17, term)
    s.received(101, 17, bytes(chld))             # a child's exit is not that kill's delivery
    assert s.owed(101) == [(17, term)]
    assert sent_siginfo("tgkill", 10, 100, 0)[8:12] == (-6).to_bytes(4, "little", signed=True)


def test_tar_with_gzip_after_a_failover_waits_for_gzip_and_the_archive_is_whole(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    for i in range(1, 21):
        (src / f"f{i}.txt").write_text("".join(f"{k}\n" for k in range(i, 1000)))
    (src / "sub" / "note").write_text("a file in a subdirectory\n")
    argv = ["bash", "-c", "tar czf a.tgz src && tar tzf a.tgz | sort | head -3"]
    for n in fault_points(argv, str(tmp_path)):
        (tmp_path / "a.tgz").unlink(missing_ok=True)
        p, res = tft_run(argv, str(tmp_path), fault=f"primary@{n}")
        assert p.returncode == 0, (n, p.stderr)
        assert b"Cannot waitpid" not in p.stderr
        once_each(p.stdout.decode().splitlines(), ["src/", "src/f1.txt", "src/f10.txt"])
        out = tmp_path / f"x{n}"
        out.mkdir()
        subprocess.run(["tar", "xzf", str(tmp_path / "a.tgz"), "-C", str(out)], check=True)
        assert subprocess.run(["diff", "-r", str(src), str(out / "src")]).returncode == 0, f"primary@{n}"


def test_make_with_gcc_after_a_failover_builds_a_working_program(tmp_path):
    (tmp_path / "hello.c").write_text('#include <stdio.h>\nint main(void) { puts("hello from make"); return 0; }\n')
    (tmp_path / "Makefile").write_text("hello: hello.c\n\tgcc -O0 -o hello hello.c\n")
    argv = ["bash", "-c", "make -s && ./hello"]
    for n in fault_points(argv, str(tmp_path)):
        (tmp_path / "hello").unlink(missing_ok=True)
        p, res = tft_run(argv, str(tmp_path), fault=f"primary@{n}", timeout=2 * TRY_TIMEOUT)
        assert p.returncode == 0, (n, p.stderr)
        assert b"No child processes" not in p.stderr
        once_each(p.stdout.decode().splitlines(), ["hello from make"])


# -- class 7: no hang after a failover (stress, every try bounded) -------------------------------

STRESS_TRIES = int(os.environ.get("TFT_STRESS_TRIES", "12"))


def test_failovers_amid_subprocesses_and_pipes_never_hang(tmp_path):
    """Subprocesses through pipes (CPython) and command substitutions (bash), the primary killed
    at points spread over the run: every try must finish, right, within TRY_TIMEOUT.  A hang
    was the backup's live shell waiting for a child while the zombies of children the primary
    had already reaped were handed to it instead (and its live children rebuilt from a stale
    fd table)."""
    programs = [
        # "python3" as a user types it: where it is a shell-script shim (pyenv), the failover
        # lands in nested command substitutions; this hung in 3 of 59 tries, then in all.
        ["python3", PY_SUBPROCS, "1"],
        ["bash", "-c", 'for i in 1 2 3; do x=$(echo in $i); y=$(/bin/echo "$x" | cat); echo "got $y"; done'],
    ]
    hangs, wrong, tries = [], [], 0
    for argv in programs:
        want = subprocess.run(argv, stdout=subprocess.PIPE, check=True).stdout.decode().splitlines()
        p, res = tft_run(argv, str(tmp_path))
        calls = res["primary"]["calls"]
        per = max(1, STRESS_TRIES // len(programs))
        for k in range(per):
            n = 1 + (calls * (2 * k + 1)) // (2 * per)
            tries += 1
            t0 = time.monotonic()
            try:
                p, res = tft_run(argv, str(tmp_path), fault=f"primary@{n}")
            except subprocess.TimeoutExpired:
                hangs.append((argv[-1], n))
                continue
            try:
                assert p.returncode == 0
                once_each(p.stdout.decode().splitlines(), want)
            except AssertionError:
                wrong.append((argv[-1], n, p.returncode, p.stdout[-200:], time.monotonic() - t0))
    assert not hangs, f"{len(hangs)} of {tries} tries hung: {hangs}"
    assert not wrong, f"{len(wrong)} of {tries} tries went wrong: {wrong}"


# -- class 10: writes to the process's own /proc entry change the process, not the world ----------

def test_a_user_namespace_keeps_its_uid_map_after_a_failover(tmp_path):
    """unshare -r writes /proc/self/uid_map, setgroups and gid_map: the backup skipped them as
    outputs, so once live its namespace had no map and ``id -u`` printed 65534."""
    if subprocess.run(["unshare", "-r", "true"], capture_output=True).returncode != 0:
        pytest.skip("unshare -r is not allowed here")
    argv = ["unshare", "-r", "id", "-u"]
    for n in fault_points(argv, str(tmp_path)):
        p, res = tft_run(argv, str(tmp_path), fault=f"primary@{n}")
        assert p.returncode == 0, (n, p.stderr)
        assert p.stdout == b"0\n", (n, p.stdout, p.stderr)


OOM = ["bash", "-c", "echo 500 > /proc/$$/oom_score_adj; /bin/echo one; /bin/echo two; "
                     "cat /proc/self/oom_score_adj"]


def test_a_write_to_proc_pid_of_the_program_is_made_by_the_backup_too(tmp_path):
    """``/proc/$$`` names the primary's pid: replaying, the backup writes its own process's
    entry; live, the path is translated to its own (not ENOENT for the dead primary's pid).
    cat inherits the shell's oom_score_adj, so it prints what the shell set."""
    for n in fault_points(OOM, str(tmp_path)):
        p, res = tft_run(OOM, str(tmp_path), fault=f"primary@{n}")
        assert p.returncode == 0, (n, p.stderr)
        assert b"No such file" not in p.stderr, (n, p.stderr)
        lines = p.stdout.decode().splitlines()
        once_each(lines, ["one", "two", "500"])


LOOKUPS = ["bash", "-c", "/bin/echo start; test -e /proc/$$/stat && echo stat-ok; readlink /proc/$$/exe; "
                      "ps -o comm= -p $PPID >/dev/null; [ -r /proc/$$/status ] && echo access-ok"]


def test_a_path_looked_up_under_proc_pid_of_the_program_is_this_replicas(tmp_path):
    """Found with ``ps``: live, the calls that look a path up (stat, access, readlink...) ran with
    the primary's pid in ``/proc/<pid>`` and failed (ENOENT), so ``test -e /proc/$$/stat`` was
    false, ``readlink /proc/$$/exe`` printed nothing and ps stopped with ``lookup self``.
    Like open, they now take this replica's entry."""
    for n in fault_points(LOOKUPS, str(tmp_path)):
        p, res = tft_run(LOOKUPS, str(tmp_path), fault=f"primary@{n}")
        assert p.returncode == 0, (n, p.stderr)
        assert b"lookup self" not in p.stderr, (n, p.stderr)
        once_each(p.stdout.decode().splitlines(), ["start", "stat-ok", "/usr/bin/bash", "access-ok"])


FIFO = [sys.executable, "-c", """
import fcntl, os, time
os.mkfifo("vgdb.fifo")
fd = os.open("vgdb.fifo", os.O_RDONLY | os.O_NONBLOCK)   # as valgrind opens its vgdb FIFO
fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)   # then blocking
for i in range(100):
    print(i, flush=True)
os.close(fd)
os.unlink("vgdb.fifo")
print("done")
"""]


def test_a_fifo_open_at_the_failover_is_opened_again_without_waiting_for_a_writer(tmp_path):
    """Reopened at go-live with its flags of the moment (blocking), a FIFO nobody writes to
    blocked the open forever: valgrind hung after every failover past its start."""
    for n in fault_points(FIFO, str(tmp_path)):
        p, res = tft_run(FIFO, str(tmp_path), fault=f"primary@{n}")
        assert p.returncode == 0, (n, p.stderr)
        once_each(p.stdout.decode().splitlines(), [*map(str, range(100)), "done"])
        assert not (tmp_path / "vgdb.fifo").exists()


def test_only_the_programs_own_proc_state_is_its_own():
    """Which paths are the process's own kernel state (written by the backup too): its entry,
    by self, thread-self or its pid; not the links under it, not another process's entry."""
    from types import SimpleNamespace

    from tft_lab.fdtable import own_proc_path, proc_here

    me = SimpleNamespace(pid=2000, vpid=1000)
    task = SimpleNamespace(engine=SimpleNamespace(tasks={2000: me, 2001: SimpleNamespace(pid=2001, vpid=1001)}))
    assert own_proc_path(task, "/proc/self/uid_map") == "/proc/self/uid_map"
    assert own_proc_path(task, "/proc/thread-self/comm") == "/proc/thread-self/comm"
    assert own_proc_path(task, "/proc/1000/oom_score_adj") == "/proc/2000/oom_score_adj"
    assert own_proc_path(task, "/proc/1001/task/1001/comm") == "/proc/2001/task/2001/comm"
    assert own_proc_path(task, "/proc/self/task/1001/comm") == "/proc/self/task/2001/comm"   # a thread named by another
    assert own_proc_path(task, "/proc/self/fd/1") is None             # the program's stdout: output
    assert own_proc_path(task, "/proc/1000/task/1000/fd/3") is None
    assert own_proc_path(task, "/proc/self/cwd/out.txt") is None
    assert own_proc_path(task, "/proc/77/oom_score_adj") is None      # not the program's
    assert own_proc_path(task, "/proc/sys/vm/overcommit_memory") is None
    assert own_proc_path(task, "/procfs/self/x") is None
    assert proc_here(task, "/proc/1000/fd/1") == "/proc/2000/fd/1"    # live, any path is translated


# -- a backup slow to start is not a failed backup -------------------------------------------------

SLOW_IMPORT = """
import sys, time

class _Slow:
    def find_spec(self, name, path=None, target=None):
        if name == "tft_lab.backup":
            time.sleep(3)        # the backup's supervisor, importing on a loaded machine
        return None

sys.meta_path.insert(0, _Slow())
"""


def test_a_backup_slow_to_start_does_not_make_the_primary_fence_itself(tmp_path):
    """The primary's first output waits for the backup's acknowledgement; the backup answers
    only once its supervisor has started (imports, ptrace set-up).  A 3 s start, far over the
    1 s the primary gives a backup that stopped answering, is not a failure: no fencing, no
    failover, the backup replays to the end."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SLOW_IMPORT)
    result = tmp_path / "result.json"
    env = dict(os.environ, PYTHONPATH=f"{site}{os.pathsep}{REPO}")
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "tft_lab.cli", "run", "--result-json", str(result), "--",
                        "/bin/echo", "hello"], cwd=tmp_path, env=env, capture_output=True, timeout=TRY_TIMEOUT)
    assert time.monotonic() - t0 > 3, "the backup was not slowed down: the test proves nothing"
    res = json.loads(result.read_text())
    assert p.returncode == 0, p.stderr
    assert p.stdout == b"hello\n"
    assert res["outcome"] == "completed", (res, p.stderr)
    assert b"fell silent" not in p.stderr and b"ALONE" not in p.stderr, p.stderr


# -- a backup that diverges fails the run, loudly ------------------------------------------------

def test_a_diverged_backup_fails_the_run_and_says_where(tmp_path):
    # Not among tests/programs/*.c: those are all expected to replay.
    racy = build_program(REPO / "tests" / "programs" / "unreplicable" / "racy_shared.c", tmp_path / "racy")
    p, res = tft_run([str(racy)], str(tmp_path))
    assert res["outcome"] == "backup-lost", res
    assert p.returncode == 3, p.stderr
    assert p.stdout.count(b"decisions=") == 1          # the primary's output, once
    last = p.stderr.decode().strip().splitlines()[-1]
    assert last.startswith("tft: redundancy lost: the backup diverged at seq "), last
    assert "ALONE" in last and "exit status 3" in last
    assert res["redundancy_lost"].startswith("the backup diverged at seq ")


# -- the process-tree bookkeeping, on canned records ---------------------------------------------

def _rec(res, addrs=(), blobs=()):
    return {"res": res, "addrs": list(addrs), "blobs": list(blobs)}


def test_a_logged_wait_names_the_child_it_reaped_and_only_that():
    import struct

    from tft_lab.pidmap import reaped_child

    never = lambda vpid: False       # noqa: E731 - "the log has no exit record"
    status = lambda st: struct.pack("<i", st)   # noqa: E731
    assert reaped_child("wait4", (-1, 0x1000, 0), _rec(42, [0x1000], [status(5 << 8)]), never) == 42
    assert reaped_child("wait4", (-1, 0x1000, 0), _rec(42, [0x1000], [status(9)]), never) == 42      # killed
    assert reaped_child("wait4", (-1, 0x1000, 2), _rec(42, [0x1000], [status(0x137f)]), never) is None  # stopped
    assert reaped_child("wait4", (-1, 0x1000, 8), _rec(42, [0x1000], [status(0xffff)]), never) is None  # continued
    assert reaped_child("wait4", (-1, 0, 1), _rec(0), never) is None                                 # WNOHANG
    assert reaped_child("wait4", (42, 0, 0), _rec(42), lambda v: v == 42) == 42                       # status NULL
    assert reaped_child("wait4", (42, 0, 0), _rec(-10), never) is None                                # ECHILD
    info = bytearray(128)
    struct.pack_into("<iiii", info, 0, 17, 0, 1, 0)      # SIGCHLD, CLD_EXITED
    struct.pack_into("<i", info, 16, 42)
    assert reaped_child("waitid", (0, 0, 0x2000, 4), _rec(0, [0x2000], [bytes(info)]), never) == 42
    assert reaped_child("waitid", (0, 0, 0x2000, 4 | 0x01000000), _rec(0, [0x2000], [bytes(info)]), never) is None


def test_pids_translate_both_ways_and_foreign_ids_pass_unchanged():
    from tft_lab.pidmap import PidMap

    pids = PidMap()
    pids.add(1000, 2000)
    assert pids.to_real(1000) == 2000 and pids.to_real(-1000 & 0xFFFFFFFF) == -2000   # a process, its group
    assert pids.to_real(0) == 0 and pids.to_real(-1 & 0xFFFFFFFF) == -1
    assert pids.to_real(77) == 77 and pids.to_virtual(77) == 77                       # not the program's
    assert pids.to_virtual(2000) == 1000
    pids.add(1000, 3000)                                                               # the pid came back
    assert pids.to_real(1000) == 3000 and pids.to_virtual(2000) == 2000
