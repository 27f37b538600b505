"""The ``tft`` command line, as a user at a terminal meets it.

``tft trace`` prints one strace-style line per intercepted call with the
call's replication class in angle brackets and exits with the program's
status; ``tft record``/``tft replay`` pass the program's output and status
through and can write the trace as a table; a command with no program is a
usage error, not a traceback.
"""
from __future__ import annotations

import re

import pandas as pd

from tft_lab.syscalls import CLASSES
from tft_lab.trace import COLUMNS
from tft_lab.testing import run_cli

TRACE_LINE = re.compile(r"^\[(\d+)\] (\w+)\(.*\) = .+  <(\w+)>$")


def trace_lines(text: str) -> list[re.Match]:
    return [m for m in map(TRACE_LINE.match, text.splitlines()) if m]


def test_trace_prints_each_call_with_its_class():
    p = run_cli(["trace", "--", "/bin/true"])
    assert p.returncode == 0
    calls = trace_lines(p.stderr.decode())
    assert len(calls) > 5
    assert {m[3] for m in calls} <= set(CLASSES)
    names = {m[2]: m[3] for m in calls}
    assert names["exit_group"] == "local"
    assert "<input>" in p.stderr.decode()          # ld.so reads and stats files
    assert p.stdout == b""


def test_trace_to_a_file_and_with_the_programs_status(tmp_path):
    out = tmp_path / "trace.txt"
    p = run_cli(["trace", "-o", out, "--", "sh", "-c", "echo traced; exit 5"])
    assert p.returncode == 5
    assert p.stdout == b"traced\n"
    assert any(m[2] == "write" and m[3] == "output" for m in trace_lines(out.read_text()))


def test_record_without_a_program_is_a_usage_error(tmp_path):
    p = run_cli(["record", "--log", tmp_path / "x.log"])
    assert p.returncode != 0
    assert p.stderr.decode().startswith("tft: ")
    assert "usage" in p.stderr.decode()
    assert b"Traceback" not in p.stderr
    assert not (tmp_path / "x.log").exists()


def test_commands_without_their_arguments_are_usage_errors():
    for args in (["replay"], ["trace"], []):
        p = run_cli(args)
        assert p.returncode != 0, args
        assert b"usage" in p.stderr.lower() and b"Traceback" not in p.stderr, args


def test_an_epoch_below_one_is_refused(tmp_path):
    p = run_cli(["record", "--epoch", "0", "--log", tmp_path / "x.log", "--", "/bin/true"])
    assert p.returncode != 0
    assert b"--epoch" in p.stderr


def test_every_usage_error_exits_2(tmp_path):
    for args in (["replay"], ["record", "--log", tmp_path / "x.log"], ["trace"],
                 ["record", "--epoch", "0", "--log", tmp_path / "x.log", "--", "/bin/true"]):
        assert run_cli(args).returncode == 2, args


def test_record_and_replay_write_the_trace_as_a_table(tmp_path):
    log, rec_csv, rep_csv = tmp_path / "x.log", tmp_path / "rec.csv", tmp_path / "rep.csv"
    rec = run_cli(["record", "--log", log, "--trace-out", rec_csv, "--", "sh", "-c", "date; exit 4"])
    rep = run_cli(["replay", "--trace-out", rep_csv, log])
    assert rec.returncode == rep.returncode == 4
    assert rep.stdout == rec.stdout != b""
    primary, backup = pd.read_csv(rec_csv), pd.read_csv(rep_csv)
    assert tuple(primary.columns) == tuple(backup.columns) == COLUMNS
    assert set(primary.replica) == {"primary"} and set(backup.replica) == {"backup"}
    assert primary.pid.nunique() == 2                 # sh and date
    assert calls_per_process(primary) == calls_per_process(backup)


def calls_per_process(df) -> dict[int, list[str]]:
    """Each process's calls in order (processes interleave differently from run to run)."""
    calls = df[df.kind == "syscall"].sort_values(["pid", "seq"])
    return {pid: list(g.syscall) for pid, g in calls.groupby("pid")}


def test_help_names_the_commands():
    p = run_cli(["--help"])
    assert p.returncode == 0
    for cmd in (b"record", b"replay", b"trace"):
        assert cmd in p.stdout
