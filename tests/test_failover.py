"""Failover: kill the primary from outside, the backup goes live and the output goes on.

``chain K - 100`` prints one chained line every 100 ms (tests/programs/chain.c);
each line carries the pid the program sees, which is the primary's real pid.
That is how the test finds its victims without asking tft: the primary's
program is that pid, and the primary's supervisor is its tracer (TracerPid).
After a kill the next line must appear within a bounded time, the whole chain
must be on stdout (at most one line repeated: the uncertain output), tft must
exit 0, and nothing may be left running.  A killed *backup* must leave the
primary finishing alone, with a warning.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time

import pandas as pd
import pytest

from tft_lab.testing import reap_adopted_zombies, REPO, assert_no_leftovers, build_program, processes, run_cli

K = 30
SLEEP_MS = 100
NO_TIMER = "0"              # no SIGALRMs: they get a test of their own (..._amid_timer_signals_...)
FAILOVER_BOUND = 5.0        # seconds from the kill to the next line on stdout
CHAIN = re.compile(r"i=(\d+) v=\d+\.[0-9a-f]{16}\.(\d+)\.\d+ chain=([0-9a-f]{16})")


def fnv1a(text: str, h: int = 0xcbf29ce484222325) -> int:
    for b in text.encode():
        h = ((h ^ b) * 0x100000001b3) % 2**64
    return h


def check_chain(lines: list[str], k: int) -> int:
    """The chain i=0..k-1, each link right; returns the number of repeated lines (at most one,
    byte-identical to the line before it)."""
    prev, expected, repeats = 0, 0, 0
    for pos, line in enumerate(lines):
        if pos and line == lines[pos - 1]:
            repeats += 1
            continue
        m = CHAIN.fullmatch(line)
        assert m and int(m[1]) == expected, f"line {pos}: expected i={expected}: {line!r}"
        value = line.split(" ")[1][2:]
        assert int(m[3], 16) == fnv1a(f"{prev:016x} i={expected} v={value}"), f"line {pos}: broken link"
        prev, expected = int(m[3], 16), expected + 1
    assert expected == k, f"the chain stops at i={expected - 1}"
    assert repeats <= 1, f"{repeats} repeated lines"
    return repeats


class Background:
    """``tft run ARGS`` in the background; its stdout lines with the time each arrived."""

    def __init__(self, *args: str):
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.proc = subprocess.Popen([sys.executable, "-m", "tft_lab.cli", "run", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        self.lines: list[tuple[float, str]] = []
        self.err = b""
        self._threads = [threading.Thread(target=self._out, daemon=True),
                         threading.Thread(target=self._errs, daemon=True)]
        for t in self._threads:
            t.start()

    def _out(self):
        for raw in self.proc.stdout:
            self.lines.append((time.monotonic(), raw.decode(errors="replace").rstrip("\n")))

    def _errs(self):
        self.err = self.proc.stderr.read()

    def wait_for_line(self, n: int, timeout: float) -> float | None:
        """Wait until line n (0-based) has arrived; return its arrival time (None: timed out)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.lines) > n:
                return self.lines[n][0]
            if self.proc.poll() is not None and not self._threads[0].is_alive():
                return None
            time.sleep(0.01)
        return None

    def finish(self, timeout: float = 60) -> tuple[int, list[str], str]:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        for t in self._threads:
            t.join(10)
        return code, [line for _, line in self.lines], self.err.decode(errors="replace")


def tracer_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("TracerPid:"))


def primary_program(run: Background) -> int:
    """The primary's program: the pid the program prints (the backup's sees the same, virtual)."""
    assert run.wait_for_line(0, 20) is not None, "no output from tft run"
    pid = int(CHAIN.fullmatch(run.lines[0][1])[2])
    supervisor = tracer_of(pid)
    assert processes()[supervisor].ppid == run.proc.pid, "the primary's tracer is not a child of tft"
    return pid



def kill_and_time_the_next_line(run: Background, victim: int, after_line: int = 3) -> float:
    assert run.wait_for_line(after_line, 20) is not None
    seen = len(run.lines)
    killed = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    arrived = run.wait_for_line(seen, FAILOVER_BOUND + 10)
    assert arrived is not None, "no line after the kill"
    return arrived - killed


def assert_the_backup_finished_the_chain(run: Background, pids_before) -> None:
    code, lines, err = run.finish()
    assert code == 0, err
    assert "tft: failover: the backup went live" in err
    *chain, last = lines
    check_chain(chain, K)
    assert last.startswith("checksum=")
    reap_adopted_zombies()
    assert_no_leftovers(pids_before)


# --- the primary fails ---------------------------------------------------------------------------

def test_primary_supervisor_killed_the_backup_goes_live_within_the_bound(pids_before):
    run = Background("--", str(build_program("chain")), str(K), "-", str(SLEEP_MS), NO_TIMER)
    supervisor = tracer_of(primary_program(run))
    gap = kill_and_time_the_next_line(run, supervisor)
    assert gap < FAILOVER_BOUND, f"{gap:.2f} s from the kill to the next line"
    assert_the_backup_finished_the_chain(run, pids_before)


def test_primary_program_killed_from_outside_the_backup_goes_live(pids_before):
    run = Background("--", str(build_program("chain")), str(K), "-", str(SLEEP_MS), NO_TIMER)
    gap = kill_and_time_the_next_line(run, primary_program(run))
    assert gap < FAILOVER_BOUND, f"{gap:.2f} s from the kill to the next line"
    assert_the_backup_finished_the_chain(run, pids_before)


def test_primary_fails_after_one_second_on_its_own(tmp_path, pids_before):
    trace = tmp_path / "trace.parquet"
    run = Background("--fault", "primary@1.0s", "--trace", str(trace), "--", str(build_program("chain")),
                     str(K), "-", str(SLEEP_MS), NO_TIMER)
    primary_program(run)
    assert_the_backup_finished_the_chain(run, pids_before)
    df = pd.read_parquet(trace)
    went_live = df[(df["replica"] == "backup") & (df["kind"] == "failover")]["t_ns"] / 1e9
    assert len(went_live) == 1
    assert 0.5 < went_live.iloc[0] < 2.5, "the backup did not go live about 1 s into the run"


def test_the_file_a_failed_primary_was_writing_is_finished_by_the_backup(tmp_path, pids_before):
    out = tmp_path / "chain.txt"
    run = Background("--", str(build_program("chain")), str(K), str(out), str(SLEEP_MS), NO_TIMER)
    kill_and_time_the_next_line(run, tracer_of(primary_program(run)))
    code, lines, err = run.finish()
    assert code == 0, err
    written = out.read_text().splitlines()
    assert check_chain(written, K) + check_chain(lines[:-1], K) <= 1   # one failover, one repeat
    assert [w for i, w in enumerate(written) if not i or w != written[i - 1]] == \
           [line for i, line in enumerate(lines[:-1]) if not i or line != lines[i - 1]]
    reap_adopted_zombies()
    assert_no_leftovers(pids_before)


def test_the_trace_shows_what_the_live_backups_calls_returned(tmp_path):
    trace = tmp_path / "trace.parquet"
    p = run_cli(["run", "--fault", "primary@30", "--trace", trace, "--", build_program("chain"), "5", "-",
                 "0", NO_TIMER], timeout=60)
    assert p.returncode == 0, p.stderr
    df = pd.read_parquet(trace)
    live_writes = df[(df["replica"] == "backup") & (df["action"] == "live") & (df["syscall"] == "write")]
    assert len(live_writes) >= 1
    lengths = [int(args.split(", ")[2]) for args in live_writes["args"]]
    assert live_writes["result"].tolist() == lengths


def test_a_failover_amid_timer_signals_keeps_the_chain(pids_before):
    """The same kill, with chain's 1 ms timer interrupting every sleep: thousands of SIGALRMs,
    several delivered before one call.  The backup must have run the handler exactly as often
    as the primary, or its first live line links to a chain value the primary never printed."""
    run = Background("--", str(build_program("chain")), str(K), "-", str(SLEEP_MS), "1000")
    program = primary_program(run)
    kill_and_time_the_next_line(run, tracer_of(program), after_line=20)
    assert_the_backup_finished_the_chain(run, pids_before)


# --- the backup fails ----------------------------------------------------------------------------



BACKUP_CASES = {
    # syscall_loop makes 20000 getppid calls and prints only at the end: nothing to wait at
    "mid-stream": ("backup@30", "syscall_loop", "20000", "getppid"),
    "after-the-last-output": ("backup@10", "exitcode", "0"),
}


def run_with_backup_killed(case: str):
    fault, program, *args = BACKUP_CASES[case]
    return run_cli(["run", "--fault", fault, "--", build_program(program), *args], timeout=60)


@pytest.mark.parametrize("case", BACKUP_CASES)
def test_a_killed_backup_leaves_no_process_behind(case, pids_before):
    p = run_with_backup_killed(case)
    assert b"failover" not in p.stderr
    reap_adopted_zombies()
    assert_no_leftovers(pids_before)


def test_backup_killed_mid_stream_the_primary_finishes_alone():
    p = run_with_backup_killed("mid-stream")
    assert p.returncode == 0, p.stderr
    assert b"iterations=20000" in p.stdout
    assert b"ALONE" in p.stderr


def test_backup_killed_after_the_last_output_is_reported():
    p = run_with_backup_killed("after-the-last-output")
    assert p.returncode == 0
    assert p.stdout == b"exitcode_mode=0\nabout_to=exit\n"      # once: the primary alone
    assert b"ALONE" in p.stderr, "nothing tells the user the backup was lost"
