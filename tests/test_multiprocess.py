"""Programs of several processes: every process is followed, logged and replayed.

fork, vfork+exec, pipes between children and a shell pipeline are recorded
with one log stream per process, keyed by the pid the process had when it was
recorded; the replay prints the recorded pids (not its own) and the same
output.  The trace shows each process's rows under its own pid.
"""
from __future__ import annotations

import collections

import pytest

from tft_lab import to_dataframe
from tft_lab.log import read_log
from tft_lab.recorder import record as tft_record
from tft_lab.replayer import replay as tft_replay
from tft_lab.syscalls import name_of
from tft_lab.testing import build_program, outcome, record, record_and_replay, run_cli

PIPELINE = ["sh", "-c", "date +%s%N; ls / | wc -l; echo $$"]


def workload(name: str) -> list[str]:
    return PIPELINE if name == "pipeline" else [str(build_program(name))]


@pytest.mark.parametrize("name, processes", [("ids", 2), ("multiproc", 4), ("pipeline", 4)])
def test_every_process_is_logged_under_its_recorded_pid_and_replayed(name, processes, tmp_path):
    rec, rep, log = record_and_replay(workload(name), tmp_path)
    assert rec.returncode == 0, rec.stderr
    assert outcome(rep) == outcome(rec)
    records = read_log(log)
    pids = {r["pid"] for r in records if r.type == "sys"}
    assert len(pids) >= processes
    exits = {r["pid"] for r in records if r.type == "exit"}
    assert exits == pids                      # every process's end is in the log
    forks = [r for r in records if r.type == "sys" and name_of(r["nr"]) in ("fork", "vfork", "clone", "clone3")]
    assert {r["res"] for r in forks if r["res"] > 0} == pids - {records[0]["pid"]}


def test_the_replay_prints_the_recorded_pids_not_its_own(tmp_path, capfd):
    log = tmp_path / "ids.log"
    rec = record([build_program("ids")], log)
    fields = dict(line.split("=", 1) for line in rec.stdout.decode().splitlines())
    recorded_pid = read_log(log)[0]["pid"]
    assert int(fields["pid"]) == recorded_pid
    assert int(fields["child_pid"]) == int(fields["fork_ret"]) != recorded_pid

    status, engine = tft_replay(log)
    assert status == 0
    assert capfd.readouterr().out == rec.stdout.decode()
    assert engine.root.vpid == recorded_pid
    assert engine.root.pid != recorded_pid          # the replay really ran as another process


def test_children_exec_other_programs_and_each_exec_is_logged(tmp_path):
    _, _, log = record_and_replay(PIPELINE, tmp_path)
    execs = collections.Counter(r["path"].rsplit("/", 1)[-1] for r in read_log(log) if r.type == "exec")
    assert {"date", "ls", "wc"} <= set(execs)


def test_a_trace_of_a_fork_shows_two_pids(tmp_path, capfd):
    status, engine = tft_record([str(build_program("ids"))], tmp_path / "ids.log")
    assert status == 0
    df = to_dataframe(engine.events)
    assert df.pid.nunique() == 2
    parent = engine.root.vpid
    child = (set(df.pid) - {parent}).pop()
    fork = df[(df.pid == parent) & df.syscall.isin(["fork", "clone", "clone3", "vfork"])]
    assert list(fork.result) == [child]          # the parent's fork returned the child's pid
    assert (df[df.pid == child].kind == "exit").any()


def test_tft_trace_follows_the_child(tmp_path):
    p = run_cli(["trace", "--", build_program("ids")])
    assert p.returncode == 0
    pids = {line.split("]", 1)[0] for line in p.stderr.decode().splitlines() if line.startswith("[")}
    assert len(pids) == 2
