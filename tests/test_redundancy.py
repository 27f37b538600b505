"""Redundancy restored: after each failover a fresh backup catches up and follows the new primary.

``tft run`` (local backup) kills the primary three times in one run (``--fault primary@N``,
repeated: each applies to whichever replica is primary then).  Each time the live replica
goes on as the primary, logging after what it had received, and a fresh backup replays
that whole log from the start, catches up, and masks the next failure as the first
backup masked the first: the output is one valid chain, with at most one repeated line
per failover.  A key-value server keeps every acknowledged write through two failovers.
``--respawn 0`` is the old behaviour: one failover, then the program runs alone.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from tft_lab.plots import epoch_timeline
from tft_lab.stepping import step_table

from tft_lab.testing import REPO, assert_no_leftovers, build_program, free_port, reap_adopted_zombies, run_cli

sys.path.insert(0, str(Path(__file__).parent))
from chain_check import problem  # noqa: E402
from test_kvserver import Client, connect_within, process_listening_on, tracer_of, KVSERVER, PYTHON  # noqa: E402

K = 45
SLEEP_MS = "100"   # a line every 100 ms: a fresh backup (~1 s to start and catch up) is ready by the next fault
NO_TIMER = "0"
#: chain K - 100 0 makes ~30 calls before its first line, then 5 per line (the 5th its write):
#: the faults fall before lines 8, 22 and 36, 1.4 s apart.
FAULTS = ("primary@70", "primary@140", "primary@210")


def dedup(lines: list[str]) -> tuple[list[str], int]:
    """The lines without those repeated right after themselves, and how many those were."""
    kept = [line for pos, line in enumerate(lines) if not pos or line != lines[pos - 1]]
    return kept, len(lines) - len(kept)


def chain_run(tmp_path, *options: str) -> tuple[subprocess.CompletedProcess, pd.DataFrame, dict]:
    trace = tmp_path / "trace.parquet"
    result = tmp_path / "result.json"
    p = run_cli(["run", "--trace", trace, "--result-json", result, *options, "--",
                 build_program("chain"), str(K), "-", SLEEP_MS, NO_TIMER], timeout=120)
    return p, pd.read_parquet(trace), json.loads(result.read_text())


def test_three_primary_failures_are_each_masked_by_a_fresh_backup(tmp_path, pids_before):
    p, df, res = chain_run(tmp_path, *(a for f in FAULTS for a in ("--fault", f)))
    err = p.stderr.decode()
    assert p.returncode == 0, err
    lines, repeats = dedup(p.stdout.decode().splitlines())
    assert problem(lines, K) is None, problem(lines, K)
    assert repeats <= 3, "more than one repeated line per failover"
    assert res["failovers"] == 3 and "3 failovers" in err
    # Each primary went at its call, counted from the program's start whichever replica ran it:
    # the go-lives are 70 calls apart, as the faults are.
    seqs = sorted(df[df["kind"] == "failover"]["seq"])
    assert len(seqs) == 3 and seqs[1] - seqs[0] == 70 == seqs[2] - seqs[1] and 60 < seqs[0] < 70, seqs
    # Each new primary started a fresh backup; the first two caught up before the next fault.
    steps = df[df["kind"] == "reintegration"]
    assert (steps["syscall"] == "catch-up").sum() == 3
    assert (steps["syscall"] == "caught-up").sum() >= 2
    assert res["backups"][-1]["outcome"] == "replayed", res["backups"]   # the last fresh backup followed to the end
    # Each fresh backup has its own name in the trace, and the timeline marks every step.
    assert {"primary", "backup", "backup2", "backup3", "backup4"} <= set(df["replica"].astype(str))
    (marks,) = [d for d in epoch_timeline(df).data if d.name == "redundancy"]
    assert sorted(marks.text).count("go-live") == 3 and list(marks.text).count("catch-up") == 3
    steps = step_table(df)   # the steppers' steps: each go-live and catch-up is one
    assert (steps["syscall"] == "go-live").sum() == 3 and (steps["syscall"] == "catch-up").sum() == 3
    reap_adopted_zombies()
    assert_no_leftovers(pids_before)


def test_respawn_0_is_one_failover_then_alone(tmp_path, pids_before):
    p, df, res = chain_run(tmp_path, "--respawn", "0", "--fault", FAULTS[0], "--fault", FAULTS[1])
    err = p.stderr.decode()
    assert p.returncode == 0, err
    lines, repeats = dedup(p.stdout.decode().splitlines())
    assert problem(lines, K) is None and repeats <= 1
    assert "tft: failover: the backup went live and finished the program" in err
    assert res["failovers"] == 1 and len(res["backups"]) == 1
    assert (df["kind"] == "failover").sum() == 1
    assert not (df["kind"] == "reintegration").any()   # nobody caught up: the program ran alone
    reap_adopted_zombies()
    assert_no_leftovers(pids_before)


def test_respawn_1_bounds_the_fresh_backups(tmp_path, pids_before):
    p, df, res = chain_run(tmp_path, "--respawn", "1", "--fault", FAULTS[0], "--fault", FAULTS[1])
    assert p.returncode == 0, p.stderr.decode()
    lines, repeats = dedup(p.stdout.decode().splitlines())
    assert problem(lines, K) is None and repeats <= 2
    assert res["failovers"] == 2 and len(res["backups"]) == 2   # the first backup, one fresh one
    assert ((df["kind"] == "reintegration") & (df["syscall"] == "catch-up")).sum() == 1
    reap_adopted_zombies()
    assert_no_leftovers(pids_before)


def test_the_notebook_api_takes_respawn_faults_and_pauses(pids_before):
    """``session.run`` (and so ``%tft run``) passes ``--respawn``, repeated faults and pauses."""
    from tft_lab import session

    argv = [str(build_program("chain")), str(K), "-", SLEEP_MS, NO_TIMER]
    r = session.run(argv, fault=list(FAULTS[:2]), respawn=1, progress=False, timeout=120)
    assert r.returncode == 0, r.stderr
    lines, repeats = dedup(r.stdout.splitlines())
    assert problem(lines, K) is None and repeats <= 2
    assert r.details["failovers"] == 2
    assert set(r.trace["replica"]) >= {"primary", "backup", "backup2"}
    r = session.run(argv, pause="backup@1s:0.2s", respawn=0, progress=False, timeout=120)
    assert r.returncode == 0 and r.outcome == "completed", r.stderr
    reap_adopted_zombies()
    assert_no_leftovers(pids_before)


def test_signals_held_at_the_failover_are_delivered_once_and_logged_right(tmp_path, pids_before):
    """A 1 ms timer: SIGALRMs that arrive while the backup replays after the failure are held
    (several times the same one).  The new primary must hold a standard signal once, as the
    kernel does: a duplicate made its first live call a bogus record, the fresh backup took
    it for the primary's failure and went live too (two live replicas)."""
    for attempt in range(5):
        result = tmp_path / f"result{attempt}.json"
        p = run_cli(["run", "--epoch", "8", "--result-json", result, "--fault", "primary@34", "--",
                     build_program("chain"), "20", tmp_path / f"out{attempt}.txt"], timeout=120)
        assert p.returncode == 0, p.stderr.decode()
        res = json.loads(result.read_text())
        assert res["failovers"] == 1, (attempt, p.stderr.decode())
        assert res["backups"][-1]["outcome"] == "replayed", res["backups"]
        lines, repeats = dedup(p.stdout.decode().splitlines())
        assert problem(lines, 20) is None and repeats <= 1
    reap_adopted_zombies()
    assert_no_leftovers(pids_before)


def caught_up(events: Path) -> bool:
    """Whether the live replica whose event stream is ``events`` has a fresh backup caught up."""
    if not events.exists():
        return False
    for line in events.read_text().splitlines():
        try:
            ev = json.loads(line)
        except ValueError:
            continue   # a line being written
        if ev[4] == "reintegration" and ev[5] == "caught-up":
            return True
    return False


def test_acknowledged_writes_survive_two_failovers(tmp_path, pids_before):
    port = free_port()
    journal, workdir = tmp_path / "kv.journal", tmp_path / "work"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    server = subprocess.Popen([sys.executable, "-m", "tft_lab.cli", "run", "--workdir", str(workdir), "--",
                               PYTHON, str(KVSERVER), str(port), "--journal", str(journal)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        client = connect_within(port, 60)
        acked, n = {}, 0
        for failover in (1, 2):
            for _ in range(10):
                n += 1
                assert client(f"SET key{n} value {n}") == "OK"
                acked[f"key{n}"] = f"value {n}"
            if failover == 2:
                # The next failure is masked only once the fresh backup has the whole log: keep
                # the server busy (its calls carry the news to the trace) until it has.
                deadline = time.monotonic() + 60
                while not caught_up(workdir / "backup.trace.jsonl"):   # the first backup, live now
                    assert time.monotonic() < deadline, "the fresh backup never caught up"
                    n += 1
                    assert client(f"SET key{n} value {n}") == "OK"
                    acked[f"key{n}"] = f"value {n}"
                    time.sleep(0.2)
            os.kill(tracer_of(process_listening_on(port)), signal.SIGKILL)
            client.close()
            client = connect_within(port, 20)
            assert {key: client(f"GET {key}") for key in acked} == acked
        sets, repeats = dedup(journal.read_text().splitlines())
        assert sets == [f"SET {k} {v}" for k, v in acked.items()] and repeats <= 2
        assert client("SHUTDOWN") == "BYE"
        out, err = server.communicate(timeout=60)
        assert server.returncode == 0, err.decode()
        assert out.decode() == f"listening on 127.0.0.1:{port}\nkvserver stopped\n"
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()
    reap_adopted_zombies()
    assert_no_leftovers(pids_before)
