"""A threaded program's failover leaves a log a fresh backup can follow, and its thread names.

After the primary dies, the backup goes live and logs on after what it received; a fresh
backup (``tft run`` respawns one) replays all of it from the start and must catch up without
diverging, or the run is never protected again.  A thread the dead primary's schedule held at
the entry of a blocking call (its ``switch`` record received) runs live when the live
replica schedules it: the fresh backup must follow the live replica's own switches at that
same point, and the call the dead primary had made already (its record received) is answered
once, from that record.  ``thr_chain`` (three threads, a lock, a short sleep per line) has
threads at such entries at any crash point.
"""
from __future__ import annotations

import json

import pytest

from tft_lab.testing import build_program, nothing_left_running, run_cli

K = 30


@pytest.mark.parametrize("at", [30, 45, 60, 75, 90, 110])
def test_the_fresh_backup_follows_the_live_replica_of_a_threaded_program(at, tmp_path, pids_before):
    rj = tmp_path / "run.json"
    p = run_cli(["run", "--heartbeat", "2", "--result-json", rj, "--fault", f"primary@{at}", "--",
                 build_program("thr_chain"), str(K), "3"], timeout=120)
    assert p.returncode == 0, p.stderr.decode()
    assert p.stdout.count(b"\n") in (K, K + 1), p.stdout   # at most one line repeated
    res = json.loads(rj.read_text())
    assert res["outcome"] == "failover", res
    fresh = res["backups"][1:]
    assert fresh and all(b["outcome"] != "diverged" for b in fresh), [b.get("error") for b in fresh]
    assert b"diverged" not in p.stderr, p.stderr.decode()
    nothing_left_running(pids_before)


def test_a_thread_named_by_another_keeps_its_name_on_the_backup(tmp_path, pids_before):
    """memcached names its threads from the first one: glibc writes the name to
    ``/proc/self/task/<tid>/comm`` with the tid ``pthread_t`` holds, the primary's.  The backup
    names its own thread so while replaying, and reads it back once live (``thr_name``
    prints the name every 100 ms; the primary dies after 1 s)."""
    p = run_cli(["run", "--heartbeat", "2", "--fault", "primary@1s", "--", build_program("thr_name"), "20"],
                timeout=120)
    assert p.returncode == 0, p.stderr.decode()
    lines = p.stdout.decode().splitlines()
    assert lines[-1] == "done" and set(lines[:-1]) == {"name=worker-7"} and len(lines) in (21, 22), lines
    assert b"primary failed" in p.stderr and b"could not be rebuilt" not in p.stderr, p.stderr.decode()
    nothing_left_running(pids_before)
