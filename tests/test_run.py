"""``tft run``: one program, two replicas, and the user sees one run of it.

A primary and a backup run the program at the same time (the backup fed from
the primary's log), yet the output appears once and tft exits with the
program's status, whatever the backup (local, none) and the output-commit
policy (output, epoch, none).  ``--trace`` writes both replicas' rows to a
parquet file; signals land at the same epoch boundary on both replicas; bad
input is refused with one line and leaves nothing running.
"""
from __future__ import annotations

import os
import re

import pandas as pd
import pytest

from tft_lab.testing import assert_no_leftovers, build_program, native, run_cli

COLUMNS = ["replica", "pid", "seq", "epoch", "syscall", "args", "result", "cls", "action", "signal",
           "t_ns", "wait_ns"]
CHAIN = re.compile(r"i=(\d+) v=(\S+) chain=([0-9a-f]{16})")


def tft_run(*args, stdin=None, timeout=60):
    return run_cli(["run", *map(str, args)], stdin=stdin, timeout=timeout)


def fnv1a(text: str, h: int = 0xcbf29ce484222325) -> int:
    for b in text.encode():
        h = ((h ^ b) * 0x100000001b3) % 2**64
    return h


def assert_one_chain(stdout: bytes, k: int) -> None:
    """chain.c's output, each line once: i=0..k-1, every link right, then the checksum."""
    *lines, last = stdout.decode().splitlines()
    prev = 0
    for i, line in enumerate(lines):
        m = CHAIN.fullmatch(line)
        assert m and int(m[1]) == i, f"line {i}: {line!r}"
        assert int(m[3], 16) == fnv1a(f"{prev:016x} i={i} v={m[2]}"), f"line {i}: broken link"
        prev = int(m[3], 16)
    assert len(lines) == k
    assert last == f"checksum={fnv1a(''.join(lines)):016x}"


# --- output once, status passed through ---------------------------------------------------------

@pytest.mark.parametrize("mode, status, last_words", [("7", 7, "exit"), ("segv", 139, "segfault")])
def test_output_appears_once_and_tft_exits_with_the_programs_status(mode, status, last_words,
                                                                      pids_before):
    p = tft_run("--", build_program("exitcode"), mode)
    assert p.stdout == f"exitcode_mode={mode}\nabout_to={last_words}\n".encode()
    assert p.returncode == status
    assert b"failover" not in p.stderr
    assert_no_leftovers(pids_before)


@pytest.mark.parametrize("options", [["--backup", "none"], ["--commit", "output"], ["--commit", "epoch"],
                                     ["--commit", "none"]], ids=" ".join)
def test_every_backup_and_commit_choice_gives_the_native_output(options, pids_before):
    data = os.urandom(100_000)
    prog = build_program("stdin_echo")
    p = tft_run(*options, "--", prog, stdin=data)
    assert p.returncode == 0, p.stderr
    assert p.stdout == native([prog], stdin=data).stdout
    assert b"length=100000\n" in p.stdout
    assert_no_leftovers(pids_before)


@pytest.mark.parametrize("commit", ["output", "epoch", "none"])
def test_a_nondeterministic_program_prints_its_chain_once_under_each_commit_policy(commit, tmp_path):
    out = tmp_path / "chain.txt"
    p = tft_run("--commit", commit, "--epoch", 8, "--", build_program("chain"), 15, out)
    assert p.returncode == 0, p.stderr
    assert_one_chain(p.stdout, 15)
    assert out.read_bytes().splitlines() == p.stdout.splitlines()[:-1]   # the file once, too


# --- the trace -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def chain_trace(tmp_path_factory):
    path = tmp_path_factory.mktemp("trace") / "run.parquet"
    p = tft_run("--trace", path, "--", build_program("chain"), 10)
    assert p.returncode == 0, p.stderr
    return pd.read_parquet(path)


def test_the_trace_file_holds_both_replicas_rows(chain_trace):
    df = chain_trace
    assert set(COLUMNS) <= set(df.columns)
    assert set(df["replica"]) == {"primary", "backup"}
    calls = df[df["kind"] == "syscall"]
    primary = calls[calls["replica"] == "primary"][["pid", "seq", "syscall"]].astype(str)
    backup = calls[calls["replica"] == "backup"][["pid", "seq", "syscall"]].astype(str)
    assert len(primary) > 50
    assert primary.values.tolist() == backup.values.tolist()   # the same calls, in the same order


def test_the_primary_waits_for_the_backup_before_its_outputs(chain_trace):
    df = chain_trace
    outputs = df[(df["replica"] == "primary") & (df["cls"] == "output")]
    assert len(outputs) == 10 + 1                       # ten lines and the checksum
    assert (outputs["wait_ns"] > 0).any()
    assert (df[df["replica"] == "backup"]["wait_ns"] == 0).all()


def test_the_epoch_policys_waits_show_in_the_trace(tmp_path):
    path = tmp_path / "epoch.parquet"
    p = tft_run("--commit", "epoch", "--epoch", 8, "--trace", path, "--", build_program("chain"), 10)
    assert p.returncode == 0, p.stderr
    df = pd.read_parquet(path)
    primary = df[(df["replica"] == "primary") & (df["kind"] == "syscall")]
    assert (primary["wait_ns"] > 0).any()


def test_signals_are_delivered_at_the_same_epoch_boundaries_on_both_replicas(tmp_path):
    path = tmp_path / "signals.parquet"
    p = tft_run("--epoch", 7, "--trace", path, "--", build_program("timer_signals"), 3000)
    assert p.returncode == 0, p.stderr
    df = pd.read_parquet(path)
    delivered = df[(df["kind"] == "signal") & (df["action"] == "delivered")]
    at = {r: delivered[delivered["replica"] == r][["pid", "seq", "syscall"]].astype(str).values.tolist()
          for r in ("primary", "backup")}
    assert len(at["primary"]) >= 5
    assert at["primary"] == at["backup"]
    assert ((delivered["seq"] + 1) % 7 == 0).all()      # right after the call that ends an epoch
    handled = int(re.search(rb"handled_total=(\d+)", p.stdout)[1])
    assert handled == len(at["primary"])                 # each delivery ran the handler once
    arrived = df[(df["replica"] == "primary") & (df["kind"] == "signal") & (df["action"] == "deferred")]
    assert len(arrived) >= len(at["primary"])           # held back on arrival, not delivered then


# --- bad input --------------------------------------------------------------------------------------

EXIT_USAGE = 2              # the cli module's documented status for bad usage or input
BAD_INPUT = {
    "missing-program": (["--", "/nonexistent/prog"], "/nonexistent/prog"),
    "bad-fault": (["--fault", "primary@soon", "--", "/bin/true"], "primary@soon"),
    "bad-backup": (["--backup", "tcp:/nowhere", "--", "/bin/true"], "--backup"),
}


@pytest.mark.parametrize("case", BAD_INPUT)
def test_bad_input_is_refused_with_one_line_and_nothing_left_running(case, pids_before):
    args, words = BAD_INPUT[case]
    p = tft_run(*args, timeout=20)
    assert p.returncode == EXIT_USAGE
    assert p.stdout == b""
    lines = p.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tft: ") and words in lines[0], p.stderr
    assert_no_leftovers(pids_before)
