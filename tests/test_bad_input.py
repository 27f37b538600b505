"""Bad input and divergence: one line that says what is wrong, a non-zero exit, no process left.

A user who names a missing program, a file that is not executable or not a
program, or who replays a log that is missing, cut off, corrupted, foreign,
of another version or empty, gets one line on stderr starting ``tft: `` and a
non-zero exit status, and nothing is left running.  A log that was tampered
with, or a program that changed since it was recorded, is caught as a
divergence (exit status 3) whose message names the pid, the seq, the call the
log expected and the call the program made.
"""
from __future__ import annotations

import os
import shutil
import struct
import subprocess

import pytest

from tft_lab.log import MAGIC, encode, read_log
from tft_lab.syscalls import TABLE, name_of
from tft_lab.testing import (PROGRAMS, assert_no_leftovers, build_program, record, record_and_replay,
                             replay)

EXIT_DIVERGED = 3
FRAME_HEADER = struct.Struct("<II")   # length, crc32 (see tft_lab.log)


def one_line_error(p) -> str:
    """The single ``tft: ...`` line a failed run printed (asserting that it failed)."""
    assert p.returncode != 0
    lines = p.stderr.decode(errors="replace").splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("tft: ")
    return lines[0]


def test_the_leftover_check_sees_an_orphan(pids_before):
    """The control for every ``assert_no_leftovers`` below: an orphaned grandchild is found
    (and cleaned up)."""
    subprocess.run(["sh", "-c", "sleep 30 & exit 0"], check=True)
    with pytest.raises(AssertionError, match="sleep 30"):
        assert_no_leftovers(pids_before, grace=0.2)
    assert_no_leftovers(pids_before)


# --- the program -----------------------------------------------------------------------------

def test_a_missing_program(tmp_path, pids_before):
    line = one_line_error(record([tmp_path / "no-such-program"], tmp_path / "x.log"))
    assert "no-such-program" in line
    line = one_line_error(record(["no-such-command-anywhere"], tmp_path / "y.log"))
    assert "not found" in line
    assert_no_leftovers(pids_before)


def test_a_file_that_is_not_executable(tmp_path, pids_before):
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    line = one_line_error(record([script], tmp_path / "x.log"))
    assert "not executable" in line
    assert_no_leftovers(pids_before)


def test_an_executable_text_file_without_shebang(tmp_path, pids_before):
    text = tmp_path / "notes.txt"
    text.write_text("just some words\n")
    text.chmod(0o755)
    line = one_line_error(record([text], tmp_path / "x.log"))
    assert "not a program" in line
    assert_no_leftovers(pids_before)


def test_a_directory(tmp_path, pids_before):
    line = one_line_error(record([tmp_path], tmp_path / "x.log"))
    assert "directory" in line
    assert_no_leftovers(pids_before)


def test_a_log_that_cannot_be_written(tmp_path, pids_before):
    line = one_line_error(record(["/bin/true"], tmp_path / "no-such-dir" / "x.log"))
    assert "no-such-dir" in line
    assert_no_leftovers(pids_before)


# --- the log ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def good_log(tmp_path_factory):
    """A sound log of clocks (a program full of inputs), recorded once for the module."""
    tmp = tmp_path_factory.mktemp("good")
    log = tmp / "clocks.log"
    rec = record([build_program("clocks")], log)
    assert rec.returncode == 0, rec.stderr
    assert len(read_log(log)) > 10
    return log


def frame_spans(data: bytes) -> list[tuple[int, int]]:
    """(offset of the payload, its length) of every frame in a log file's bytes."""
    spans, pos = [], len(MAGIC)
    while pos < len(data):
        length, _ = FRAME_HEADER.unpack_from(data, pos)
        spans.append((pos + FRAME_HEADER.size, length))
        pos += FRAME_HEADER.size + length
    return spans


def write_log(path, records) -> None:
    """Re-encode records (as read_log returned them) into a log with valid checksums."""
    with open(path, "wb") as f:
        f.write(MAGIC)
        for r in records:
            fields = {k: v for k, v in r.items() if k != "blobs"}
            f.write(encode(fields, r["blobs"]))


def test_a_missing_log(tmp_path, pids_before):
    line = one_line_error(replay(tmp_path / "never-written.log"))
    assert "never-written.log" in line
    assert_no_leftovers(pids_before)


def test_a_log_cut_off_in_the_middle_of_a_frame(good_log, tmp_path, pids_before):
    data = good_log.read_bytes()
    start, length = frame_spans(data)[len(frame_spans(data)) // 2]
    cut = tmp_path / "cut.log"
    cut.write_bytes(data[:start + length // 2])
    line = one_line_error(replay(cut))
    assert "truncated" in line
    assert_no_leftovers(pids_before)


def test_a_log_with_one_flipped_byte(good_log, tmp_path, pids_before):
    data = bytearray(good_log.read_bytes())
    start, length = frame_spans(bytes(data))[len(frame_spans(bytes(data))) // 2]
    data[start + length // 2] ^= 0x01
    bad = tmp_path / "flipped.log"
    bad.write_bytes(bytes(data))
    line = one_line_error(replay(bad))
    assert "corrupt" in line
    assert_no_leftovers(pids_before)


def test_a_foreign_file(pids_before):
    line = one_line_error(replay("/etc/passwd"))
    assert "not a tft log" in line
    assert_no_leftovers(pids_before)


def test_an_empty_file(tmp_path, pids_before):
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    one_line_error(replay(empty))
    assert_no_leftovers(pids_before)


def test_a_log_of_an_unknown_version(good_log, tmp_path, pids_before):
    records = read_log(good_log)
    records[0]["version"] = 99
    future = tmp_path / "v99.log"
    write_log(future, records)
    line = one_line_error(replay(future))
    assert "version 99" in line
    assert_no_leftovers(pids_before)


def test_a_re_encoded_log_replays(good_log, tmp_path):
    """The control for the tampering tests: re-encoding alone changes nothing."""
    copy = tmp_path / "copy.log"
    write_log(copy, read_log(good_log))
    assert replay(copy).returncode == 0


# --- divergence --------------------------------------------------------------------------------

def middle_call(records, name: str):
    """The middle one of the log's ``sys`` records for syscall ``name``."""
    calls = [r for r in records if r.type == "sys" and name_of(r["nr"]) == name]
    assert calls, f"no {name} in the log"
    return calls[len(calls) // 2]


def tamper(rec, how: str) -> tuple[str, str]:
    """Change one record; return (what the log now expects, what the program will do)."""
    if how == "nr":
        rec["nr"] = TABLE["getppid"].x64
        return "getppid", "clock_gettime"
    if how == "args":
        rec["args"][0] = 5                       # CLOCK_REALTIME -> CLOCK_REALTIME_COARSE
        return "log (5", "clock_gettime"
    rec["res"] = 7                               # close() succeeded: 0 on both replicas
    return "7 on the primary", "close"


@pytest.mark.parametrize("how, call", [("nr", "clock_gettime"), ("args", "clock_gettime"),
                                       ("res", "close")])
def test_a_tampered_log_is_caught_as_divergence(how, call, good_log, tmp_path, pids_before):
    records = read_log(good_log)
    rec = middle_call(records, call)
    if how == "args":
        assert rec["args"][0] != 5
    expected, seen = tamper(rec, how)
    bad = tmp_path / f"tampered-{how}.log"
    write_log(bad, records)

    rep = replay(bad)
    assert rep.returncode == EXIT_DIVERGED
    line = one_line_error(rep)
    assert "diverged" in line
    assert f"pid {rec['pid']}" in line
    assert f"seq {rec['seq']}" in line
    assert expected in line and seen in line
    assert_no_leftovers(pids_before)


def test_a_changed_program_is_caught(tmp_path, pids_before):
    src = tmp_path / "exit_with.c"
    shutil.copy(PROGRAMS / "exitcode.c", src)
    prog = build_program(src)
    rec, rep, log = record_and_replay([prog], tmp_path)
    assert rec.returncode == rep.returncode == 7

    src.write_text(src.read_text().replace('argv[1] : "7"', 'argv[1] : "8"'))
    assert build_program(src, prog, force=True) == prog
    assert os.path.exists(prog)
    changed = replay(log)
    assert changed.returncode == EXIT_DIVERGED
    assert "changed" in one_line_error(changed)
    assert changed.stdout == b""
    assert_no_leftovers(pids_before)

