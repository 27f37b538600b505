"""Crash-point sweeps: kill a replica at every intercepted call, the output stays one chain.

``tests/programs/chain.c`` prints K lines ``i=<n> v=<value> chain=<hash>``: each
value mixes the time, getrandom, the pid and a count of timer signals, and each
chain value hashes the previous one with this line, so a lost, repeated,
reordered or altered line shows.  It writes every line to stdout and appends it
to a file.  With ``--epoch 8`` the timer's SIGALRMs are delivered at many epoch
boundaries, so the signal count changes along the run too.

``tft run --fault primary@N`` kills the primary (supervisor and program at once)
when it reaches its N-th intercepted call.  For every such N the backup must go
live and finish: stdout and the file each hold the whole chain, every line once,
except at most one line performed twice (the uncertain output), byte-identical
and adjacent to the first.  ``--fault backup@N`` kills the backup instead: the
primary finishes alone, with a warning, and nothing is duplicated.

The cases run two at a time in a thread pool (a module fixture runs every
selected case up front); each N is still its own test, so a failure names it.
"""
from __future__ import annotations

import re
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import pandas as pd
import pytest

from tft_lab.testing import (
    reap_adopted_zombies,
    adopt_orphans,
    assert_no_leftovers,
    build_program,
    current_pids,
    run_cli,
)

K = 20                  # lines the program prints
EPOCH = 8               # short epochs: timer signals land at many boundaries
DENSE = 60              # every call up to here is a crash point ...
PRIMARY_STRIDE = 3      # ... then every 3rd (all of them if the program makes <= 150 calls)
BACKUP_STRIDE = 4       # the backup sweep is coarser
WORKERS = 2             # cases run in parallel (the VM has 2 cores)
CASE_TIMEOUT = 60

LINE = re.compile(r"i=(\d+) v=(\S+) chain=([0-9a-f]{16})")


def fnv1a(text: str, h: int = 0xcbf29ce484222325) -> int:
    for b in text.encode():
        h = ((h ^ b) * 0x100000001b3) % 2**64
    return h


def check_chain(lines: list[str], k: int = K) -> int:
    """Assert ``lines`` are the chain i=0..k-1 with every link right; return how many
    lines were repeats (a repeat must be byte-identical to the line just before it)."""
    prev, expected, repeats = 0, 0, 0
    for pos, line in enumerate(lines):
        if pos and line == lines[pos - 1]:
            repeats += 1
            continue
        m = LINE.fullmatch(line)
        assert m, f"line {pos} is not a chain line: {line!r}"
        i, value, chain = int(m[1]), m[2], int(m[3], 16)
        assert i == expected, f"line {pos}: expected i={expected}, got {line!r} (a gap or a reordering)"
        assert chain == fnv1a(f"{prev:016x} i={i} v={value}"), f"line {pos}: broken link: {line!r}"
        prev, expected = chain, expected + 1
    assert expected == k, f"the chain stops at i={expected - 1}; expected {k} lines"
    assert repeats <= 1, f"{repeats} repeated lines; at most one duplicate per failover"
    return repeats


def distinct(lines: list[str]) -> list[str]:
    return [line for pos, line in enumerate(lines) if not pos or line != lines[pos - 1]]


class Case(NamedTuple):
    returncode: int
    stdout: list[str]
    stderr: str
    file: list[str]
    seconds: float


def run_chain(work: Path, name: str, *options: str) -> Case:
    out = work / f"{name}.txt"
    started = time.monotonic()
    p = run_cli(["run", "--epoch", str(EPOCH), *options, "--", chain_program(), str(K), out],
                timeout=CASE_TIMEOUT)
    file = out.read_text().splitlines() if out.exists() else []
    return Case(p.returncode, p.stdout.decode(errors="replace").splitlines(),
                p.stderr.decode(errors="replace"), file, time.monotonic() - started)


def chain_program() -> str:
    return str(build_program("chain"))


# --- the fault-free reference run (also decides the crash points, at collection) ---------------

class Reference(NamedTuple):
    case: Case
    primary_calls: int
    backup_calls: int


_reference: Reference | None = None


def reference() -> Reference:
    global _reference
    if _reference is None:
        work = Path(tempfile.mkdtemp(prefix="tft-sweep-ref-"))
        try:
            case = run_chain(work, "reference", "--trace", str(work / "trace.parquet"))
            assert case.returncode == 0, f"the fault-free run failed: {case.stderr}"
            df = pd.read_parquet(work / "trace.parquet")
        finally:
            shutil.rmtree(work, ignore_errors=True)
        calls = (df[df["kind"] == "syscall"].groupby("replica", observed=True).size())
        _reference = Reference(case, int(calls["primary"]), int(calls["backup"]))
    return _reference


def crash_points(calls: int, dense: int, stride: int) -> list[int]:
    """Every call up to ``dense``, then every ``stride``-th, and always the last one."""
    return sorted(set(range(1, min(dense, calls) + 1)) | set(range(max(dense, 1), calls + 1, stride)) | {calls})


def pytest_generate_tests(metafunc):
    if "primary_n" in metafunc.fixturenames:
        calls = reference().primary_calls
        metafunc.parametrize("primary_n", crash_points(calls, calls if calls <= 150 else DENSE, PRIMARY_STRIDE))
    if "backup_n" in metafunc.fixturenames:
        metafunc.parametrize("backup_n", crash_points(reference().backup_calls, 0, BACKUP_STRIDE))


# --- the sweeps: every selected case, run in a pool of two --------------------------------------

def selected(request, param: str) -> list[int]:
    return sorted({item.callspec.params[param] for item in request.session.items
                   if hasattr(item, "callspec") and param in item.callspec.params})


@pytest.fixture(scope="module")
def sweep_pids():
    adopt_orphans()
    return current_pids()


def run_sweep(request, tmp_path_factory, param: str, replica: str) -> dict[int, Case]:
    work = tmp_path_factory.mktemp(f"{replica}-sweep")
    points = selected(request, param)
    with ThreadPoolExecutor(WORKERS) as pool:
        cases = pool.map(lambda n: run_chain(work, f"{replica}{n}", "--fault", f"{replica}@{n}"), points)
        return dict(zip(points, cases))


@pytest.fixture(scope="module")
def primary_sweep(request, tmp_path_factory, sweep_pids):
    return run_sweep(request, tmp_path_factory, "primary_n", "primary")


@pytest.fixture(scope="module")
def backup_sweep(request, tmp_path_factory, sweep_pids):
    return run_sweep(request, tmp_path_factory, "backup_n", "backup")


# --- the tests ---------------------------------------------------------------------------------

def test_the_fault_free_run_prints_the_chain_once_and_writes_it_to_the_file():
    ref = reference().case
    assert ref.returncode == 0
    assert ref.stdout[-1] == f"checksum={fnv1a(''.join(ref.stdout[:-1])):016x}"
    assert check_chain(ref.stdout[:-1]) == 0
    assert ref.file == ref.stdout[:-1]
    assert "failover" not in ref.stderr and "ALONE" not in ref.stderr


def test_the_chain_really_depends_on_the_inputs():
    """Two fault-free runs print different chains: the values are not constants."""
    with tempfile.TemporaryDirectory() as work:
        again = run_chain(Path(work), "again")
    assert again.returncode == 0
    check_chain(again.stdout[:-1])
    assert set(again.stdout).isdisjoint(reference().case.stdout)


def test_primary_killed_at_call(primary_n, primary_sweep):
    case = primary_sweep[primary_n]
    assert case.returncode == 0, case.stderr
    assert "tft: failover: the backup went live" in case.stderr
    # stdout: the whole chain, at most one line twice; the checksum line last, once.
    *lines, last = case.stdout
    out_repeats = check_chain(lines)
    assert last == f"checksum={fnv1a(''.join(distinct(lines))):016x}"
    # The file: the same lines as stdout (same run, same values), as many as a fault-free run.
    file_repeats = check_chain(case.file)
    assert distinct(case.file) == distinct(lines)
    assert len(distinct(case.file)) == len(reference().case.file)
    # One failover, one uncertain output: never a repeat in both places.
    assert out_repeats + file_repeats <= 1


def test_backup_killed_at_call(backup_n, backup_sweep):
    case = backup_sweep[backup_n]
    assert case.returncode == 0, case.stderr
    assert "ALONE" in case.stderr, f"no warning that the primary runs alone: {case.stderr!r}"
    assert "failover" not in case.stderr
    *lines, last = case.stdout
    assert check_chain(lines) == 0            # exactly once: the primary alone never repeats
    assert last == f"checksum={fnv1a(''.join(lines)):016x}"
    assert case.file == lines


def test_the_sweeps_fit_in_their_time_budget_and_leave_nothing_behind(primary_sweep, backup_sweep,
                                                                       sweep_pids):
    slowest = max((c.seconds for c in [*primary_sweep.values(), *backup_sweep.values()]), default=0)
    assert slowest < 20, f"one crash case took {slowest:.1f} s"
    reap_adopted_zombies()
    assert_no_leftovers(sweep_pids)

