"""One log, many replays, one result.

Replaying the same log five times gives exactly one distinct (stdout, stderr,
exit status), and it is the recording's: nothing the replica's own kernel
says (time, pids, randomness, signal timing, scheduling of children) leaks
into a replay.
"""
from __future__ import annotations

import pytest

from tft_lab.testing import PROGRAMS, build_program, new_log_path, outcome, record, replay

REPLAYS = 5

WORKLOADS = {
    "randomness": lambda: [build_program("randomness")],
    "kill_from_other": lambda: [build_program("kill_from_other")],    # signals from a child
    "sockets": lambda: [build_program("sockets")],                    # a child, TCP, poll/epoll
    "multiproc": lambda: [build_program("multiproc")],                # fork, vfork+exec, a pipe
    "shell_pipeline": lambda: ["sh", "-c", "date +%s%N; ls / | wc -l; echo $$"],
    "py_nondet": lambda: ["python3", str(PROGRAMS / "py_nondet.py")],
}


@pytest.mark.parametrize("workload", WORKLOADS)
def test_one_log_replayed_five_times_gives_one_result(workload, tmp_path):
    log = new_log_path(tmp_path)
    rec = record(WORKLOADS[workload](), log)
    assert rec.returncode == 0, rec.stderr
    results = {outcome(replay(log)) for _ in range(REPLAYS)}
    assert len(results) == 1
    assert results == {outcome(rec)}
