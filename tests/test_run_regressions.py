"""``tft run`` regressions found by the everyday-programs corpus (tests/corpus/).

Class 12: a run leaves nothing behind in ``$TMPDIR`` -- not its working
directory (the supervisors' results and event streams), not on a failover,
an interrupt or an error, not from ``tft backup --listen``, the notebook API or
``tft demo``.  Class 13: a program the primary refuses (it starts a thread) is
stopped on both replicas: one ``tft:`` line, exit status 2, no failover, the
backup runs nothing of the program on its own.  Also: a ``backup@N`` fault past
the program's last call is reported, and logs and traces are mode 0600 even
when they replace an older file.
"""
from __future__ import annotations

import gc
import os
import stat
import tempfile
import time

import pytest

from tft_lab import channel
from tft_lab import log as tft_log
from tft_lab import session
from tft_lab._process import start_cli
from tft_lab.errors import LogError
from tft_lab.run import EXIT_REFUSED
from tft_lab.run import run as tft_run
from tft_lab.testing import (PROGRAMS, assert_no_leftovers, build_program, free_port, reap_adopted_zombies, run_cli,
                             wait_listening)

TIMEOUT = 120
#: A server that makes a call tft refuses once it listens (it was the corpus's py-http-server,
#: refused for its thread until threads were replicated).  Before the fix the primary's last
#: records were lost with it, the backup took the refusal for a crash and went live early: it
#: ran the program on by itself (``listen: OSError``) and reported a failover.
HTTP_SERVER = ("import ctypes, socket\n"
               "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n"
               "ctypes.CDLL(None).syscall(310, 0, 0, 0, 0, 0, 0)   # process_vm_readv: refused\n"
               "print(s.getsockname()[1])\n")
REFUSAL = b"tft: process_vm_readv is not supported"


@pytest.fixture
def tmpdir_env(tmp_path):
    """An empty ``$TMPDIR`` for the tft under test (and for :mod:`tempfile` in this process)."""
    tmp = tmp_path / "tmpdir"
    tmp.mkdir()
    saved = tempfile.tempdir
    tempfile.tempdir = str(tmp)
    try:
        yield tmp, dict(os.environ, TMPDIR=str(tmp))
    finally:
        tempfile.tempdir = saved


def left_in(tmp) -> list[str]:
    return sorted(os.listdir(tmp))


# -- class 12: nothing left behind ---------------------------------------------------------------

@pytest.mark.parametrize("options", [[], ["--fault", "primary@30"], ["--trace", "{tmp}/t.parquet"],
                                     ["--backup", "none"]], ids=["plain", "failover", "trace", "alone"])
def test_a_run_leaves_no_working_directory(options, counter, tmp_path, tmpdir_env, pids_before):
    tmp, env = tmpdir_env
    options = [o.replace("{tmp}", str(tmp_path)) for o in options]
    p = run_cli(["run", *options, "--", counter, "6", tmp_path / "count.txt"], env=env, timeout=TIMEOUT)
    assert p.returncode == 0, p.stderr
    assert (b"failover" in p.stderr) == ("--fault" in options), p.stderr
    assert left_in(tmp) == []
    assert_no_leftovers(pids_before)


def test_a_run_stopped_by_sigterm_leaves_no_working_directory(tmpdir_env, pids_before):
    tmp, env = tmpdir_env
    proc = start_cli(["run", "--", "sleep", "60"], env=env)
    try:
        deadline = time.monotonic() + 30
        while not left_in(tmp) and time.monotonic() < deadline:   # the run has started
            time.sleep(0.05)
        assert left_in(tmp), "tft run never made its working directory"
        time.sleep(1)
        proc.terminate()
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert left_in(tmp) == []
    reap_adopted_zombies()
    assert_no_leftovers(pids_before)


def test_a_run_whose_backup_cannot_be_reached_leaves_nothing(tmp_path, tmpdir_env, pids_before):
    tmp, env = tmpdir_env
    key = tmp_path / "key"
    assert run_cli(["keygen", key]).returncode == 0
    p = run_cli(["run", "--backup", f"tcp://127.0.0.1:{free_port()}", "--key-file", key, "--", "true"],
                env=env, timeout=TIMEOUT)
    assert p.returncode != 0
    assert left_in(tmp) == []
    assert_no_leftovers(pids_before)


def test_the_python_api_keeps_the_trace_but_not_the_directory(tmp_path, tmpdir_env, pids_before):
    tmp, _ = tmpdir_env
    res = tft_run([str(build_program("clocks"))], trace=str(tmp_path / "t.parquet"), cwd=str(tmp_path))
    assert res.returncode == 0
    assert left_in(tmp) == []
    assert set(res.trace["replica"]) == {"primary", "backup"}   # read before the directory went
    assert res.trace_files == []
    assert_no_leftovers(pids_before)


def test_a_named_workdir_is_the_callers_and_stays(tmp_path, tmpdir_env):
    tmp, _ = tmpdir_env
    work = tmp_path / "work"
    res = tft_run(["true"], workdir=str(work), cwd=str(tmp_path))
    assert res.returncode == 0
    assert {"primary.result.json", "backup.result.json"} <= set(os.listdir(work))
    assert len(res.trace) > 0 and left_in(tmp) == []


def test_the_notebook_api_leaves_nothing(tmp_path, tmpdir_env, pids_before):
    tmp, _ = tmpdir_env
    r = session.run(["true"], progress=False, timeout=TIMEOUT)
    assert r.returncode == 0 and len(r.trace) > 0
    assert left_in(tmp) == []
    rec = session.record(["echo", "hi"], progress=False, timeout=TIMEOUT)
    assert rec.returncode == 0 and os.path.exists(rec.log)
    rep = session.replay(rec.log, progress=False, timeout=TIMEOUT)
    assert rep.stdout == "hi\n"
    assert len(left_in(tmp)) == 1, "the record's temporary log lives as long as its Run"
    del rec
    gc.collect()
    assert left_in(tmp) == []
    mine = tmp_path / "mine.log"
    assert session.record(["true"], str(mine), progress=False, timeout=TIMEOUT).returncode == 0
    assert mine.exists() and left_in(tmp) == []
    live = session.live(["true"])
    assert live.result().returncode == 0
    live.close()
    assert left_in(tmp) == []
    assert_no_leftovers(pids_before)


def test_tft_backup_listen_leaves_nothing(tmp_path, tmpdir_env, pids_before):
    tmp, env = tmpdir_env
    key = tmp_path / "key"
    assert run_cli(["keygen", key]).returncode == 0
    port = free_port()
    backup = start_cli(["backup", "--listen", f"127.0.0.1:{port}", "--key-file", key, "--accept-timeout", "60"],
                       env=env)
    try:
        wait_listening(port, backup)
        primary = run_cli(["run", "--backup", f"tcp://127.0.0.1:{port}", "--key-file", key, "--",
                           "echo", "hi"], env=env, timeout=TIMEOUT)
        out, err = backup.communicate(timeout=TIMEOUT)
    finally:
        if backup.poll() is None:
            backup.kill()
            backup.wait()
    assert primary.returncode == 0 and primary.stdout == b"hi\n", primary.stderr
    assert backup.returncode == 0, err
    assert left_in(tmp) == []
    assert_no_leftovers(pids_before)


def test_tft_demo_leaves_nothing(tmpdir_env, pids_before):
    tmp, env = tmpdir_env
    p = run_cli(["demo"], env=env, timeout=2 * TIMEOUT)
    assert p.returncode == 0 and p.stdout.endswith(b"demo: ok\n"), p.stdout[-2000:]
    assert left_in(tmp) == []
    reap_adopted_zombies()
    assert_no_leftovers(pids_before)


# -- class 13: a refusal is not a failover ---------------------------------------------------------

@pytest.mark.parametrize("program", ["py-server", "refused.c"])
def test_a_refused_program_stops_both_replicas(program, tmp_path, tmpdir_env, pids_before):
    tmp, env = tmpdir_env
    if program == "refused.c":
        argv, before = [build_program(PROGRAMS / "unreplicable" / "refused.c", tmp_path / "refused")], \
            b"before=a refused call next\n"
    else:
        argv, before = ["python3", "-c", HTTP_SERVER], b""
    p = run_cli(["run", "--", *argv], env=env, cwd=tmp_path, timeout=TIMEOUT)
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(REFUSAL), p.stderr
    assert p.returncode == EXIT_REFUSED
    assert p.stdout == before   # once: the backup does not run the program on
    assert left_in(tmp) == []
    reap_adopted_zombies()
    assert_no_leftovers(pids_before)


def test_the_refusal_reaches_the_backup_in_the_end_record(tmp_path, tmpdir_env, pids_before):
    res = tft_run(["python3", "-c", HTTP_SERVER], cwd=str(tmp_path), workdir=str(tmp_path / "work"))
    assert res.outcome == "refused" and res.returncode == EXIT_REFUSED
    assert res.primary["outcome"] == res.backup["outcome"] == "refused"
    assert res.error.startswith("process_vm_readv is not supported")
    backup_rows = res.trace[res.trace["replica"] == "backup"]
    assert not (backup_rows["action"] == "live").any(), "the backup ran the program on, live"
    assert not (backup_rows["kind"] == "failover").any()
    assert_no_leftovers(pids_before)


def test_a_remote_backup_stops_with_the_primary(tmp_path, tmpdir_env, pids_before):
    tmp, env = tmpdir_env
    key = tmp_path / "key"
    assert run_cli(["keygen", key]).returncode == 0
    port = free_port()
    backup = start_cli(["backup", "--listen", f"127.0.0.1:{port}", "--key-file", key, "--accept-timeout", "60"],
                       env=env)
    try:
        wait_listening(port, backup)
        primary = run_cli(["run", "--backup", f"tcp://127.0.0.1:{port}", "--key-file", key, "--",
                           "python3", "-c", HTTP_SERVER], env=env, cwd=tmp_path, timeout=TIMEOUT)
        out, err = backup.communicate(timeout=TIMEOUT)
    finally:
        if backup.poll() is None:
            backup.kill()
            backup.wait()
    assert primary.returncode == EXIT_REFUSED and primary.stderr.startswith(REFUSAL), primary.stderr
    assert len(primary.stderr.splitlines()) == 1, primary.stderr
    assert backup.returncode == EXIT_REFUSED and out == b"", err
    # (the backup may reach the thread itself before the primary's end record: both stop it)
    assert err.startswith(b"tft: backup: stopped") and b"process_vm_readv is not supported" in err, err
    assert len(err.splitlines()) == 1, err
    assert left_in(tmp) == []
    assert_no_leftovers(pids_before)


def test_a_backup_told_of_a_refusal_stops_at_once(tmp_path, tmpdir_env, pids_before):
    """A primary (played by the test over a real channel) sends its header, then an end record
    that names a refusal: the backup stops at its program's first call, without going live
    (it would print "hi") and without taking the end of the log for a divergence."""
    tmp, env = tmpdir_env
    log = tmp_path / "echo.log"
    assert run_cli(["record", "--log", log, "--", "echo", "hi"], timeout=TIMEOUT).returncode == 0
    header = dict(tft_log.read_log(log)[0])
    header.pop("blobs", None)
    key = tmp_path / "key"
    assert run_cli(["keygen", key]).returncode == 0
    port = free_port()
    backup = start_cli(["backup", "--listen", f"127.0.0.1:{port}", "--key-file", key, "--accept-timeout", "60"],
                       env=env)
    try:
        wait_listening(port, backup)
        with channel.connect("127.0.0.1", port, channel.load_key(key), 0.5) as sender:
            sender.send(tft_log.encode(header))
            sender.send(tft_log.encode({"t": "end", "status": 1, "refused": "threads are not supported yet [canned]"}))
        out, err = backup.communicate(timeout=TIMEOUT)
    finally:
        if backup.poll() is None:
            backup.kill()
            backup.wait()
    assert (backup.returncode, out) == (EXIT_REFUSED, b""), err
    assert err == b"tft: backup: stopped with the primary: threads are not supported yet [canned]\n"
    assert left_in(tmp) == []
    assert_no_leftovers(pids_before)


def test_the_end_record_carries_a_refusal_as_text():
    frame = tft_log.encode({"t": "end", "status": 1, "refused": "threads are not supported yet"})
    assert tft_log.decode_frame(frame)["refused"] == "threads are not supported yet"
    with pytest.raises(LogError, match="refused"):
        tft_log.decode_frame(tft_log.encode({"t": "end", "status": 1, "refused": 7}))


# -- a backup fault that cannot happen ------------------------------------------------------------

def test_a_backup_fault_past_the_last_call_is_reported(tmp_path, pids_before):
    p = run_cli(["run", "--fault", "backup@100000", "--", "true"], cwd=tmp_path, timeout=TIMEOUT)
    assert p.returncode == 0
    assert b"fault backup@100000 was not injected: the backup made only" in p.stderr, p.stderr
    res = tft_run(["true"], faults=["backup@100000"], cwd=str(tmp_path))
    assert res.returncode == 0
    calls = res.backup["faults_not_injected"][0].rsplit("only ", 1)[1].split()[0]
    assert res.backup["faults_not_injected"] == [
        f"fault backup@100000 was not injected: the backup made only {calls} intercepted calls"]
    assert int(calls) > 0
    assert_no_leftovers(pids_before)


# -- modes ----------------------------------------------------------------------------------------

def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_logs_and_traces_are_0600_even_over_an_older_file(tmp_path):
    log, trace, csv = tmp_path / "l", tmp_path / "t.parquet", tmp_path / "t.csv"
    for f in (log, trace, csv):
        f.write_bytes(b"old")
        f.chmod(0o644)
    assert run_cli(["record", "--log", log, "--trace-out", csv, "--", "true"], timeout=TIMEOUT).returncode == 0
    assert run_cli(["run", "--trace", trace, "--", "true"], timeout=TIMEOUT).returncode == 0
    assert [mode(f) for f in (log, trace, csv)] == [0o600] * 3


def test_a_log_written_to_a_device_leaves_its_mode_alone(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to make a device node")
    null = tmp_path / "null"
    os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))   # a /dev/null of our own
    os.chmod(null, 0o666)
    assert run_cli(["record", "--log", null, "--", "true"], timeout=TIMEOUT).returncode == 0
    assert mode(null) == 0o666
