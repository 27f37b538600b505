"""Processes that share memory mapped before a fork are scheduled as one (``sched.Domain``).

multiprocessing's locks, queues and Values are semaphores and counters in pages mapped
MAP_SHARED before its workers fork.  Scheduled apart, the processes would race on them
and the replay would diverge; scheduled as one (one task at a time, switched at the same
points as threads, the switches logged), they replay what they did.  A C program whose
children take a process-shared semaphore in turns prints the order they got it in (which
differs natively from run to run): the replay prints the same.  A Python program using
Pool, Queue, Process and a Value's lock, with a result bigger than a pipe holds, records,
replays, runs replicated and survives its primary's death.  Memory that processes map on
their own after a fork is still refused at its first futex call, in one line.
"""
from __future__ import annotations

import json
import sys

import pytest

from tft_lab import log as _log
from tft_lab.testing import (PROGRAMS, assert_no_leftovers, build_program, native, nothing_left_running,
                             record, record_and_replay, run_cli)

TIMEOUT = 90

#: Pool (map, apply_async, imap_unordered, a 300 KB result: more than a pipe holds), Queue,
#: Process and a Value incremented under its lock by three processes.  Its output is the same
#: on every run; how the processes interleave is not.
MP = """\
import multiprocessing as mp, os, time

def work(x):
    time.sleep((x * 7 % 5) / 1000)
    return x * x

def big(n):
    return "x" * n

def inc(v):
    for _ in range(50):
        with v.get_lock():
            v.value += 1

if __name__ == "__main__":
    ctx = mp.get_context("fork")
    with ctx.Pool(3) as p:
        print("sum", sum(p.map(work, range(30), chunksize=2)))
        print("async", p.apply_async(pow, (2, 10)).get())
        print("imap", sorted(p.imap_unordered(abs, [-1, -2, -3])))
        print("big", len(p.apply(big, (300000,))))
    q = ctx.Queue()
    ps = [ctx.Process(target=q.put, args=(i,)) for i in range(3)]
    for x in ps:
        x.start()
    print("queue", sorted(q.get() for _ in ps))
    for x in ps:
        x.join()
    v = ctx.Value("i", 0)
    ps = [ctx.Process(target=inc, args=(v,)) for _ in range(3)]
    for x in ps:
        x.start()
    for x in ps:
        x.join()
    print("value", v.value)
"""
MP_OUT = b"sum 8555\nasync 1024\nimap [1, 2, 3]\nbig 300000\nqueue [0, 1, 2]\nvalue 150\n"


def _switches(log) -> list:
    return [r for r in _log.read_log(log) if r.type == "switch"]


def _sys_pids(log) -> set:
    return {r["pid"] for r in _log.read_log(log) if r.type == "sys"}


def test_children_sharing_a_semaphore_replay_the_order_they_got_it_in(tmp_path, pids_before):
    prog = build_program("shared_procs")
    rec, rep, log = record_and_replay([prog], tmp_path, timeout=TIMEOUT)
    assert rec.returncode == 0, rec.stderr
    assert rec.stdout.startswith(b"order=") and b"turns=60\n" in rec.stdout
    assert (rep.stdout, rep.returncode) == (rec.stdout, rec.returncode), rep.stderr
    switches = _switches(log)
    # One schedule (named by the parent) over the children: switches between processes.
    assert len({s["pid"] for s in switches}) == 1, switches[:5]
    children = _sys_pids(log) - {switches[0]["pid"]}
    assert len({s["to"] for s in switches} & children) == 3, switches[:10]
    assert_no_leftovers(pids_before)


def test_multiprocessing_records_and_replays(tmp_path, pids_before):
    rec, rep, log = record_and_replay([sys.executable, "-c", MP], tmp_path, timeout=TIMEOUT)
    assert (rec.returncode, rec.stdout) == (0, MP_OUT), rec.stderr
    assert (rep.returncode, rep.stdout) == (0, MP_OUT), rep.stderr
    assert len(_switches(log)) > 10
    assert_no_leftovers(pids_before)


def _run(tmp_path, *fault) -> tuple:
    rj = tmp_path / f"run{len(list(tmp_path.glob('run*.json')))}.json"
    p = run_cli(["run", "--heartbeat", "2", "--respawn", "0", "--result-json", rj, *fault, "--",
                 sys.executable, "-c", MP], timeout=TIMEOUT, cwd=tmp_path)
    return p, json.loads(rj.read_text())


def test_multiprocessing_survives_its_primarys_death(tmp_path, pids_before):
    """Fault-free, the backup follows to the end; killed at 30, 60 and 90 % of its calls, the
    primary's program goes on live on the backup and prints the same, once."""
    p, res = _run(tmp_path)
    assert (p.returncode, p.stdout) == (0, MP_OUT), p.stderr
    assert res["outcome"] == "completed", res
    calls = res["primary"]["calls"]
    for share in (30, 60, 90):
        p, res = _run(tmp_path, "--fault", f"primary@{calls * share // 100}")
        assert (p.returncode, p.stdout) == (0, MP_OUT), (share, p.stderr.decode()[-3000:])
        assert res["outcome"] == "failover", (share, res)
    nothing_left_running(pids_before)


@pytest.mark.parametrize("verb", ["record", "run"])
def test_memory_two_processes_map_on_their_own_is_refused_in_one_line(verb, tmp_path, pids_before):
    """A process-shared semaphore in a file a parent and its child each map after the fork:
    one line at the first futex call on it, a refusal (not a failover), never a divergence."""
    sem = build_program(PROGRAMS / "unreplicable" / "shared_sem.c", tmp_path / "shared_sem")
    assert native([sem], timeout=10, cwd=tmp_path).stdout == b"child got it\nparent done\n"
    if verb == "record":
        p = record([sem], tmp_path / "s.log", cwd=tmp_path, timeout=TIMEOUT)
    else:
        p = run_cli(["run", "--", sem], cwd=tmp_path, timeout=TIMEOUT)
    assert p.returncode == 2, p.stderr
    lines = [ln for ln in p.stderr.decode().splitlines() if not ln.startswith("tft: warning:")]
    assert len(lines) == 1 and "futex on memory shared between processes that each mapped it" in lines[0], p.stderr
    assert "fail" not in lines[0] and "live" not in lines[0]
    assert_no_leftovers(pids_before)
