"""Threads: one at a time, switched at their own calls, the schedule in the log.

Each threaded guest of ``tests/programs/`` (a join, a mutex, a condition variable,
a barrier, a thread-directed signal) is recorded and replayed: the replay prints
what the recording printed.  One recording replayed ten times gives one result; two
recordings of a racy program take different schedules (the primary really decides).
A thread that spins on memory while others wait is named in an error, never a hang;
what threads cannot make replicable (a clone sharing memory without being a thread,
priority-inheritance futexes) is refused with a one-line message (processes that share
memory: tests/test_shared_memory_processes.py).  ``tft run`` replicates them:
the backup follows the schedule, and after the primary's death its threads go on live
(dense crash-point sweep of a chain written by three threads).
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

import tft_lab
from tft_lab import log as _log
from tft_lab import recorder
from tft_lab.errors import UnsupportedError
from tft_lab.testing import (PROGRAMS, assert_no_leftovers, build_program, native, new_log_path,
                             nothing_left_running, record, record_and_replay, replay, run_cli)

THREADED = ["threads", "thr_mutex", "thr_condvar", "thr_barrier", "thr_signal", "thr_exit", "thr_main_exit"]
TIMEOUT = 30   # each takes well under a second natively, a few under tft on a loaded machine


def switches(log) -> list[tuple]:
    return [(r["tid"], r["seq"], r["at"], r["to"]) for r in _log.read_log(log) if r.type == "switch"]


@pytest.mark.parametrize("program", THREADED)
def test_a_threaded_program_replays_what_it_printed(program, tmp_path, pids_before):
    prog = build_program(program)
    assert native([prog]).returncode == 0
    rec, rep, log = record_and_replay([prog], tmp_path, timeout=TIMEOUT)
    assert rec.returncode == 0, rec.stderr
    assert rec.stdout and rec.stderr == b""
    assert (rep.stdout, rep.stderr, rep.returncode) == (rec.stdout, rec.stderr, rec.returncode)
    assert switches(log), "two threads ran, the log holds no switch"
    assert_no_leftovers(pids_before)


def test_cpython_threading_a_pool_and_a_queue_replay_what_they_printed(tmp_path, pids_before):
    argv = [sys.executable, str(PROGRAMS / "py_threads.py")]
    rec, rep, log = record_and_replay(argv, tmp_path, timeout=TIMEOUT)
    assert rec.returncode == 0, rec.stderr
    assert b"total=19900\nsquares=2646700\n" in rec.stdout and b"items=100\n" in rec.stdout
    assert (rep.stdout, rep.stderr, rep.returncode) == (rec.stdout, rec.stderr, rec.returncode)
    assert len({r["to"] for r in _log.read_log(log) if r.type == "switch"}) >= 5   # main, 4 workers, 2 more
    assert_no_leftovers(pids_before)


def test_a_process_that_ends_while_a_thread_is_held_replays(tmp_path):
    """Regression: the main thread's exit_group came while the schedule held a thread whose
    call had completed on the primary; letting held threads go on at exit_group raced with
    their death (the replay's thread made another call than the log's).  Now the kernel kills
    them where they are held, on both replicas."""
    argv = [sys.executable, "-c", "import threading\nout = []\nt = threading.Thread(target=out.append, "
            "args=(1,))\nt.start(); t.join(); print(out)\n"]
    for _ in range(3):
        rec, rep, _ = record_and_replay(argv, tmp_path, timeout=TIMEOUT)
        assert rec.stdout == b"[1]\n", rec.stderr
        assert (rep.stdout, rep.stderr, rep.returncode) == (rec.stdout, rec.stderr, rec.returncode)


def test_the_thread_ids_a_replay_shows_are_the_primarys(tmp_path):
    """gettid, getpid in a thread, and the tid glibc keeps in pthread_t (written by clone)."""
    rec, rep, _ = record_and_replay([build_program("thr_signal")], tmp_path, timeout=TIMEOUT)
    lines = dict(line.split("=") for line in rec.stdout.decode().split())
    assert lines["handled_in_worker"] == "1" and lines["same_process"] == "1"
    assert lines["worker_tid"] != lines["main_tid"]
    assert rep.stdout == rec.stdout


def test_one_recording_replayed_ten_times_gives_one_result(tmp_path):
    log = new_log_path(tmp_path)
    rec = record([build_program("thr_mutex"), "6"], log, timeout=TIMEOUT)
    assert rec.returncode == 0, rec.stderr
    results = {replay(log, timeout=TIMEOUT).stdout for _ in range(10)}
    assert results == {rec.stdout}


def test_two_recordings_of_a_racy_program_take_different_schedules(tmp_path):
    """The sleepers wake in the order the primary's kernel decides: the order under the lock,
    and the logged schedule, differ from one recording to the next."""
    prog = build_program("thr_mutex")
    outs, schedules = set(), set()
    for _ in range(4):
        log = new_log_path(tmp_path)
        rec = record([prog, "8"], log, timeout=TIMEOUT)
        assert rec.returncode == 0, rec.stderr
        outs.add(rec.stdout)
        schedules.add(tuple(switches(log)))
        if len(outs) > 1 and len(schedules) > 1:
            break
    assert len(outs) > 1 and len(schedules) > 1


def test_the_trace_has_a_tid_column_and_switch_rows(tmp_path):
    status, engine = tft_lab.record([str(build_program("thr_barrier"))], tmp_path / "b.log")
    assert status == 0
    df = tft_lab.to_dataframe(engine.events)
    assert df["pid"].nunique() == 1                       # one process...
    assert df["tid"].nunique() == 4                       # ...of four threads
    sw = df[df["kind"] == "switch"]
    assert len(sw) > 0 and set(sw["syscall"]) <= {"block", "epoch", "exit"}
    assert set(sw["result"]) <= set(df["tid"]) and (sw["action"] == "switched").all()
    status, engine = tft_lab.replay(tmp_path / "b.log")
    replayed = tft_lab.to_dataframe(engine.events)
    cols = ["tid", "seq", "syscall", "result"]
    assert replayed[replayed["kind"] == "switch"][cols].values.tolist() == sw[cols].values.tolist()


def test_a_spinning_thread_is_named_not_a_hang(tmp_path, pids_before):
    spinner = build_program(PROGRAMS / "unreplicable" / "spinner.c", tmp_path / "spinner")
    assert native([spinner], timeout=10).stdout == b"released=1\n"
    started = time.monotonic()
    with pytest.raises(UnsupportedError) as err:
        recorder.record([str(spinner)], str(tmp_path / "spin.log"), spin_limit=1.0)
    assert time.monotonic() - started < 10
    msg = str(err.value)
    assert "without a system call" in msg and "spins on memory" in msg
    assert msg.startswith("thread ") and f"thread {err.value.pid} " in msg
    assert_no_leftovers(pids_before)


def test_the_spin_limit_is_set_for_every_supervisor_by_tft_spin_limit(tmp_path, pids_before):
    """``TFT_SPIN_LIMIT`` reaches the supervisors ``tft run`` starts: the spinner is named after
    ~1 s, not 10; the run ends with that one refusal (no failover).  A bad value is one line."""
    spinner = build_program(PROGRAMS / "unreplicable" / "spinner.c", tmp_path / "spinner")
    started = time.monotonic()
    p = run_cli(["run", "--heartbeat", "2", "--", spinner], env={**os.environ, "TFT_SPIN_LIMIT": "1"}, timeout=60)
    assert time.monotonic() - started < 8
    assert p.returncode == 2, p.stderr
    lines = p.stderr.decode().splitlines()
    assert len(lines) == 1 and "ran 1 s without a system call" in lines[0], p.stderr
    for bad in ("0", "soon", "inf"):
        p = run_cli(["record", "--log", tmp_path / "x.log", "--", spinner], env={**os.environ, "TFT_SPIN_LIMIT": bad})
        assert p.returncode == 2 and p.stderr.decode().splitlines() == [
            f"tft: TFT_SPIN_LIMIT={bad!r}: seconds, a positive number"], p.stderr
        assert not (tmp_path / "x.log").exists()
    assert_no_leftovers(pids_before)


SHARED_VM = r"""
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
static char stack[65536];
static int child(void *arg) { (void)arg; return 0; }
int main(void)
{
    int pid = clone(child, stack + sizeof stack, CLONE_VM | SIGCHLD, NULL);
    if (pid < 0) return 1;
    waitpid(pid, NULL, 0);
    printf("shared=1\n");
    return 0;
}
"""


def test_memory_shared_between_processes_is_refused_in_one_line(tmp_path, pids_before):
    src = tmp_path / "shared_vm.c"
    src.write_text(SHARED_VM)
    prog = build_program(src)
    rec = record([prog], tmp_path / "s.log", timeout=TIMEOUT)
    assert rec.returncode != 0
    lines = rec.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tft: ") and "memory shared between two processes" in lines[0]
    assert_no_leftovers(pids_before)


def test_a_process_shared_semaphore_in_one_process_is_not_refused(tmp_path):
    """A shared futex is refused only when another process of the program could share it."""
    src = tmp_path / "one_process_sem.c"
    src.write_text(ONE_PROCESS_SEM)
    rec, rep, _ = record_and_replay([build_program(src)], tmp_path, timeout=TIMEOUT)
    assert rec.returncode == 0 and rec.stdout == b"timed out as expected\n", rec.stderr
    assert (rep.stdout, rep.returncode) == (rec.stdout, rec.returncode), rep.stderr


ONE_PROCESS_SEM = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <semaphore.h>
#include <stdio.h>
#include <sys/mman.h>
#include <time.h>
int main(void)
{
    sem_t *sem = mmap(NULL, sizeof(sem_t), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sem == MAP_FAILED || sem_init(sem, 1, 0) != 0) return 1;
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    t.tv_nsec += 10000000;
    if (t.tv_nsec >= 1000000000) { t.tv_sec++; t.tv_nsec -= 1000000000; }
    if (sem_timedwait(sem, &t) == -1 && errno == ETIMEDOUT) printf("timed out as expected\n");
    return 0;
}
"""


def run_json(argv, tmp_path, *fault) -> tuple:
    """``tft run`` (with ``--fault`` if given): (the CompletedProcess, its result JSON)."""
    rj = tmp_path / f"run{len(list(tmp_path.iterdir()))}.json"
    p = run_cli(["run", "--heartbeat", "2", "--result-json", rj, *fault, "--", *argv], timeout=TIMEOUT)
    return p, json.loads(rj.read_text())


@pytest.mark.parametrize("program", ["thr_mutex", "thr_signal"])
def test_tft_run_replicates_a_threaded_program(program, tmp_path, pids_before):
    """The backup follows the primary's schedule to the end: outcome completed, the output once."""
    p, res = run_json([build_program(program)], tmp_path)
    assert p.returncode == 0, p.stderr
    assert res["outcome"] == "completed", res
    assert p.stdout.count(b"\n") == native([build_program(program)]).stdout.count(b"\n")
    assert_no_leftovers(pids_before)


@pytest.mark.parametrize("at", [40, 60, 80, 100])
def test_a_threaded_program_survives_its_primarys_death(at, tmp_path, pids_before):
    """The primary is killed at its N-th call; the backup replays the schedule it received and
    its threads go on live (counter and queue come out whole: the program's own checks)."""
    for program, want in (("thr_mutex", b"counter=200\n"), ("thr_condvar", b"items=200\n")):
        p, res = run_json([build_program(program)], tmp_path, "--fault", f"primary@{at}")
        assert p.returncode == 0, p.stderr
        assert want in p.stdout and b"left=" not in p.stdout or b"left=0\n" in p.stdout
        assert res["outcome"] in ("failover", "completed"), res   # completed: past the last call
    nothing_left_running(pids_before)


def test_a_sweep_of_a_chain_written_by_three_threads_is_green(tmp_path, pids_before):
    """Dense crash points over a chain whose lines come from several threads under a lock:
    every run's output is a valid chain (no gap, at most one duplicated line)."""
    check = f"{sys.executable} {Path(__file__).parent / 'chain_check.py'} 4"
    out = tmp_path / "sweep.csv"
    p = run_cli(["sweep", "--at", "every", "--workers", "2", "--heartbeat", "2", "--check", check, "--out", out,
                 "--", build_program("thr_chain"), "4", "3"], timeout=900)
    table = out.read_text().splitlines()
    assert p.returncode == 0, p.stderr.decode()[-2000:]
    assert len(table) > 30 and all(",masked," in row for row in table[1:]), table
    nothing_left_running(pids_before)   # the killed primaries' programs were adopted: reaped


def test_tft_trace_shows_every_threads_calls(tmp_path, pids_before):
    """``tft trace`` (strace-style, one line per call, ``[tid]`` first) on a threaded program:
    the program runs to its end and each of its three threads has its own lines, its
    clone3 and futex calls among them."""
    out = tmp_path / "trace.txt"
    p = run_cli(["trace", "-o", out, "--", build_program("thr_mutex"), "2"], timeout=TIMEOUT)
    assert p.returncode == 0 and b"counter=60\nexpected=60\n" in p.stdout, p.stderr
    lines = out.read_text().splitlines()
    tids = {ln[1:ln.index("]")] for ln in lines if ln.startswith("[")}
    assert len(tids) == 3, tids
    assert sum("clone3(" in ln for ln in lines) == 2 and any("futex(" in ln for ln in lines)
    assert_no_leftovers(pids_before)
