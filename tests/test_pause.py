"""A pause fault: a replica's supervisor is stopped for a while, then resumed (``--pause``).

A long GC pause, a frozen VM, a partition that heals: the replica is not dead, only silent.
A primary paused past the backup's patience finds on waking that the backup went live
without it; it must then stop (fence) and never print again, though what it sees of its
channel looks like a backup that died (a broken pipe).  The output stays one valid chain,
with at most the one repeated line of a failover.  A backup paused past the primary's
patience makes the primary fence; a short pause changes nothing.
"""
from __future__ import annotations

import sys
from pathlib import Path

from tft_lab.testing import assert_no_leftovers, build_program, reap_adopted_zombies, run_cli

sys.path.insert(0, str(Path(__file__).parent))
from chain_check import problem  # noqa: E402

K = 40
CHAIN = ["--", None, str(K), "-", "100", "0"]   # a line every 100 ms, no timer signals


def paused_run(spec: str):
    argv = list(CHAIN)
    argv[1] = build_program("chain")
    p = run_cli(["run", "--pause", spec, *argv], timeout=120)
    lines = p.stdout.decode().splitlines()
    return p, lines, p.stderr.decode()


def test_a_primary_paused_past_the_timeout_fences_and_never_prints_again(pids_before):
    p, lines, err = paused_run("primary@1.5s:4s")
    assert p.returncode == 0, err
    assert problem(lines, K) is None, (problem(lines, K), err)   # no line printed twice by two primaries
    assert "goes live" in err
    assert "this primary sent nothing for" in err and "this primary stops" in err, err
    reap_adopted_zombies()
    assert_no_leftovers(pids_before)


def test_a_backup_paused_past_the_timeout_makes_the_primary_fence(pids_before):
    p, lines, err = paused_run("backup@1.5s:3s")
    assert p.returncode == 0, err
    assert problem(lines, K) is None, (problem(lines, K), err)
    assert "the backup fell silent" in err and "this primary stops" in err, err
    reap_adopted_zombies()
    assert_no_leftovers(pids_before)


def test_a_short_pause_changes_nothing(pids_before):
    p, lines, err = paused_run("primary@1s:0.3s")
    assert p.returncode == 0, err
    assert problem(lines, K) is None
    assert "failover" not in err and "goes live" not in err, err
    reap_adopted_zombies()
    assert_no_leftovers(pids_before)


def test_a_bad_pause_is_one_line_and_nothing_runs():
    p = run_cli(["run", "--pause", "primary@soon", "--", "/bin/true"])
    assert p.returncode == 2
    assert p.stderr.decode().startswith("tft: ") and "primary@Ts:Ds" in p.stderr.decode()
    assert p.stdout == b""
    p = run_cli(["run", "--backup", "none", "--pause", "backup@1s:1s", "--", "/bin/true"])
    assert p.returncode == 2 and b"needs the local backup" in p.stderr and p.stdout == b""
