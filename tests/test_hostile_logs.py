"""Hostile and broken logs, a killed recorder, a full disk: one line, nothing hung, nothing left.

Whatever a log holds — forged with valid checksums, cut off, not a file at
all — ``tft replay`` ends with the replay the recording showed or with one
``tft:`` line and a non-zero exit, promptly, within bounded memory, leaving
no process behind.  A recorder that is killed leaves a log that replays what
it recorded, then says where it stops.  A full disk stops the recording with
one line.  A log does not keep the environment's secrets.
"""
from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

from test_bad_input import one_line_error, write_log
from tft_lab.errors import LogError
from tft_lab.log import MAGIC, LogReader, read_log
from tft_lab.syscalls import name_of
from tft_lab.recorder import is_secret
from tft_lab.testing import (assert_no_leftovers, build_program, nothing_left_running, record, replay,
                             run_cli)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import fuzz_logs  # noqa: E402

EXIT_DIVERGED = 3
LINES = ["/bin/sh", "-c", "for i in 1 2 3 4 5 6; do echo line $i; done; exit 4"]
#: Prints a line every 0.1 s for 5 s: long enough to be killed in the middle.
TICKER = ["/bin/sh", "-c", "i=0; while [ $i -lt 50 ]; do echo line $i; i=$((i+1)); sleep 0.1; done"]


@pytest.fixture(scope="module")
def lines_log(tmp_path_factory):
    """A sound log of a shell printing six lines with six writes (six outputs, in order)."""
    log = tmp_path_factory.mktemp("lines") / "lines.log"
    rec = record(LINES, log)
    assert rec.returncode == 4 and rec.stdout.count(b"line") == 6, rec.stderr
    return log


def forged(src: Path, dst: Path, change) -> Path:
    """``dst``: ``src``'s records, changed by ``change(records)``, with valid checksums."""
    records = read_log(src)
    change(records)
    write_log(dst, records)
    return dst


def outputs(records) -> list:
    return [r for r in records if r.type == "sys" and "oseq" in r]


# --- what is not a log file is refused before it is read -----------------------------------------

def test_a_device_a_fifo_and_a_folder_are_refused_at_once(tmp_path, pids_before):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path, what in (("/dev/zero", "not a regular file"), (fifo, "not a regular file"),
                       (tmp_path, "directory")):
        t0 = time.monotonic()
        line = one_line_error(replay(path, timeout=30))
        assert what in line and time.monotonic() - t0 < 20
    assert_no_leftovers(pids_before)


def _limited_memory():
    resource.setrlimit(resource.RLIMIT_AS, (512 << 20, 512 << 20))


def test_an_oversized_header_is_refused_before_it_is_read(tmp_path):
    """A 1 GiB sparse file whose first frame claims 60 MB: refused without reading it (the
    replay runs with 512 MB of address space; reading the file would need 1 GiB)."""
    big = tmp_path / "sparse.log"
    with open(big, "wb") as f:
        f.write(MAGIC + (60 << 20).to_bytes(4, "little") + bytes(4))
        f.truncate(1 << 30)
    p = subprocess.run([sys.executable, "-m", "tft_lab.cli", "replay", str(big)], capture_output=True,
                       timeout=60, preexec_fn=_limited_memory, stdin=subprocess.DEVNULL)
    assert "claims 62914560 bytes" in one_line_error(p)


def test_the_reader_holds_one_frame_at_a_time(lines_log):
    """The reader yields records as it reads them (a replay's memory is flat in the log's length)."""
    reader = LogReader(lines_log)
    first = next(reader)
    assert first.type == "header" and reader.count == 1 and reader.pos < os.path.getsize(lines_log)
    rest = list(reader)
    assert rest[-1].type == "end" and reader.ended and reader.pos == os.path.getsize(lines_log)


def _peak_kb(argv: list) -> int:
    """Run ``tft ARGV`` to its end; its peak memory (max RSS, KiB, of it and what it reaped)."""
    p = subprocess.Popen([sys.executable, "-m", "tft_lab.cli", *map(str, argv)], stdout=subprocess.DEVNULL,
                         stdin=subprocess.DEVNULL)
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    assert p.returncode == 0
    return usage.ru_maxrss


def test_replay_memory_does_not_grow_with_the_log(tmp_path):
    """A replay streams its log: 30 times the calls, the same memory (it held ~600 bytes per
    record when it read the log whole: 18 MB more here)."""
    prog = build_program("syscall_loop")
    peaks = []
    for n in (1000, 30000):
        log = tmp_path / f"{n}.log"
        assert record([prog, n, "clock"], log, timeout=300).returncode == 0
        peaks.append(_peak_kb(["replay", log]))
    assert peaks[1] - peaks[0] < 6 * 1024, peaks


# --- a recorder that dies ---------------------------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_a_killed_recorder_leaves_a_log_that_replays(sig, tmp_path, pids_before):
    log, shown = tmp_path / "killed.log", tmp_path / "shown.txt"
    with open(shown, "wb") as out:
        p = subprocess.Popen([sys.executable, "-m", "tft_lab.cli", "record", "--log", str(log), "--", *TICKER],
                             stdout=out, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while shown.read_bytes().count(b"\n") < 12 and time.monotonic() < deadline:
            time.sleep(0.05)
        p.send_signal(sig)
        _, err = p.communicate(timeout=30)
    assert p.returncode != 0
    if sig == signal.SIGTERM:
        assert err.decode().splitlines() == ["tft: interrupted; the program was stopped"]
    recorded = shown.read_bytes()
    assert 12 <= recorded.count(b"\n") < 50
    rep = replay(log, timeout=60)
    line = one_line_error(rep)
    assert "did not finish" in line or "truncated" in line
    assert "everything recorded before it was replayed" in line
    # Every line the program printed is in the log, but for at most the one whose write was
    # under way when the recorder died (its record not written yet).
    assert recorded.startswith(rep.stdout)
    assert rep.stdout.count(b"\n") >= recorded.count(b"\n") - 1
    nothing_left_running(pids_before)   # a killed recorder's program dies, adopted by us: reaped


def test_a_silent_program_s_log_reaches_the_file_as_it_runs(tmp_path, pids_before):
    """No output at all, and still every record made so far is on disk within 100 ms (plus the
    scheduler's delay on a busy machine): the writer flushes on a timer too."""
    log = tmp_path / "silent.log"
    p = subprocess.Popen([sys.executable, "-m", "tft_lab.cli", "record", "--small-log", "--log", str(log), "--",
                          "/bin/sh", "-c", "read x < /etc/hostname; sleep 60"], stdin=subprocess.DEVNULL)
    try:
        records, deadline = [], time.monotonic() + 20
        while not any(r.type == "exec" and r["path"].endswith("/sleep") for r in records) \
                and time.monotonic() < deadline:
            time.sleep(0.2)
            try:
                records = list(LogReader(log))
            except LogError:   # a frame being written as we read: look again
                pass
        # sleep is sleeping (its nanosleep's record comes when it returns): the log so far is on disk
        assert any(r.type == "exec" and r["path"].endswith("/sleep") for r in records)
        assert "read" in [name_of(r["nr"]) for r in records if r.type == "sys"]
    finally:
        p.kill()
        p.wait()
    nothing_left_running(pids_before)


def test_a_log_without_its_end_stops_where_the_program_needs_more(lines_log, tmp_path):
    cut = forged(lines_log, tmp_path / "no-end.log", lambda rs: rs.pop())
    rep = replay(cut)
    assert "did not finish" in one_line_error(rep) and rep.stdout.count(b"line") == 6


# --- a full disk ------------------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A 256 KiB file system (tmpfs), unmounted afterwards."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def test_a_full_disk_stops_the_recording_with_one_line(small_disk, pids_before):
    rec = record(TICKER, small_disk / "x.log", timeout=60)
    line = one_line_error(rec)
    assert "cannot write the log" in line and "No space left on device" in line
    assert "the program was stopped" in line
    assert rec.stdout.count(b"line") < 50
    assert_no_leftovers(pids_before)


def test_on_log_error_continue_lets_the_program_finish_unrecorded(small_disk, pids_before):
    """``--on-log-error continue``: the full disk is said once, the program runs to its end (all
    50 lines, in order), tft says the log is incomplete and exits non-zero; the log holds whole
    frames only, so its replay stops with one line, not a traceback."""
    log = small_disk / "x.log"
    rec = run_cli(["record", "--on-log-error", "continue", "--log", log, "--", *TICKER], timeout=60)
    assert rec.returncode == 2, rec.stderr
    assert rec.stdout.decode().splitlines() == [f"line {i}" for i in range(50)]
    lines = rec.stderr.decode().splitlines()
    assert len(lines) == 2, rec.stderr
    assert "No space left on device; the program goes on unrecorded" in lines[0]
    assert "is incomplete" in lines[1] and "exit status 0" in lines[1]
    assert oct(log.stat().st_mode & 0o777) == "0o600"
    rep = replay(log)
    assert rep.returncode != 0 and "Traceback" not in rep.stderr.decode()
    assert rep.stderr.decode().startswith("tft: ")
    assert_no_leftovers(pids_before)


def test_dev_full_as_the_log_is_one_line(pids_before):
    line = one_line_error(record(["/bin/true"], "/dev/full"))
    assert "cannot write the log /dev/full" in line
    assert_no_leftovers(pids_before)


# --- forged logs: an error, never a wait -------------------------------------------------------------

def test_a_forged_output_order_number_is_a_divergence_not_a_hang(lines_log, tmp_path, pids_before):
    def gap(records):
        outputs(records)[1]["oseq"] += 100     # its turn never comes

    def repeat(records):
        outputs(records)[2]["oseq"] = 1        # a turn that has passed

    for change, says, shown in ((gap, "every process waits to output", b"line 1\n"),
                                (repeat, "numbers two outputs", b"line 1\nline 2\n")):
        rep = replay(forged(lines_log, tmp_path / f"{change.__name__}.log", change), timeout=30)
        assert rep.returncode == EXIT_DIVERGED
        assert says in one_line_error(rep)
        assert rep.stdout == shown   # the outputs before the forged one
    assert_no_leftovers(pids_before)


@pytest.mark.parametrize("status", [256, 10**30, -1])
def test_an_out_of_range_exit_status_is_a_corrupt_log(status, lines_log, tmp_path):
    def change(records):
        records[-1]["status"] = status
    rep = replay(forged(lines_log, tmp_path / "status.log", change))
    assert rep.returncode == 2
    line = one_line_error(rep)
    assert "status" in line and "out of range" in line


def test_an_exit_status_the_program_did_not_give_is_a_divergence(lines_log, tmp_path):
    def change(records):
        records[-1]["status"] = 0
    rep = replay(forged(lines_log, tmp_path / "status0.log", change))
    assert rep.returncode == EXIT_DIVERGED
    assert "exited with status 4, the log's exit status is 0" in one_line_error(rep)


# --- what used to be tracebacks -----------------------------------------------------------------------

def _header_changed(lines_log, tmp_path, name, **fields):
    def change(records):
        records[0].update(fields)
    return forged(lines_log, tmp_path / f"{name}.log", change)


def test_a_header_with_an_empty_argv_is_a_corrupt_log(lines_log, tmp_path):
    line = one_line_error(replay(_header_changed(lines_log, tmp_path, "argv", argv=[])))
    assert "argv must be a non-empty list" in line


def test_deeply_nested_json_is_a_corrupt_log(lines_log, tmp_path):
    deep = b"[" * 100_000 + b"]" * 100_000
    payload = b"J" + len(deep).to_bytes(4, "little") + deep
    bad = tmp_path / "deep.log"
    data = lines_log.read_bytes()
    bad.write_bytes(data[:len(MAGIC)] + len(payload).to_bytes(4, "little")
                    + zlib.crc32(payload).to_bytes(4, "little") + payload + data[len(MAGIC):])
    assert "not a tft record" in one_line_error(replay(bad))


def test_an_out_buffer_address_outside_user_space_is_a_corrupt_log(lines_log, tmp_path):
    def change(records):
        call = next(r for r in records if r.type == "sys" and r["addrs"])
        call["addrs"][0] = 0xfffffffffffff000
    line = one_line_error(replay(forged(lines_log, tmp_path / "addr.log", change)))
    assert "out of range" in line or "out-buffer" in line


def test_a_replay_with_stdout_closed_is_one_line(lines_log):
    p = subprocess.run(["sh", "-c", 'exec "$@" >&-', "sh", sys.executable, "-m", "tft_lab.cli", "replay",
                        str(lines_log)], capture_output=True, timeout=60)
    assert "standard output is closed" in one_line_error(p)


def test_a_backup_nobody_connects_to_is_one_line(tmp_path):
    key = tmp_path / "k.key"
    assert run_cli(["keygen", key]).returncode == 0
    p = run_cli(["backup", "--listen", "127.0.0.1:0", "--key-file", key, "--accept-timeout", "0.5"])
    assert "no primary connected" in one_line_error(p)


def test_a_key_file_that_is_a_folder_is_one_line(tmp_path):
    p = run_cli(["backup", "--listen", "127.0.0.1:0", "--key-file", tmp_path])
    assert "not a regular file" in one_line_error(p)


# --- every verb on bad input: never a traceback --------------------------------------------------------

def _bad_inputs(tmp: Path) -> list[list[str]]:
    fifo = tmp / "fifo"
    os.mkfifo(fifo)
    garbage = tmp / "garbage.log"
    garbage.write_bytes(os.urandom(4096))
    empty = tmp / "empty.log"
    empty.write_bytes(b"")
    text = tmp / "notes.txt"
    text.write_text("words\n")
    key = tmp / "good.key"
    run_cli(["keygen", key])
    loose = tmp / "loose.key"
    loose.write_text("00" * 32)
    loose.chmod(0o644)
    t, missing = str(tmp), str(tmp / "missing")
    return [
        ["record", "--log", t, "--", "/bin/true"],
        ["record", "--log", f"{missing}/x.log", "--", "/bin/true"],
        ["record", "--log", "/dev/full", "--", "/bin/true"],
        ["record", "--log", f"{t}/a.log", "--", missing],
        ["record", "--log", f"{t}/b.log", "--", t],
        ["record", "--log", f"{t}/c.log", "--", str(text)],
        ["record", "--log", f"{t}/d.log", "--epoch", "0", "--", "/bin/true"],
        ["record", "--log", f"{t}/e.log", "--epoch", "x", "--", "/bin/true"],
        ["record", "--log", f"{t}/f.log"],
        ["replay", missing], ["replay", t], ["replay", "/dev/zero"], ["replay", str(fifo)],
        ["replay", str(garbage)], ["replay", str(empty)], ["replay", str(text)],
        ["replay", "--trace-out", t, str(garbage)],
        ["trace", "-o", t, "--", "/bin/true"], ["trace", "-o", f"{missing}/t", "--", "/bin/true"],
        ["trace", "--", missing], ["trace"],
        ["run", "--backup", "bogus", "--", "/bin/true"], ["run", "--fault", "bogus", "--", "/bin/true"],
        ["run", "--key-file", t, "--backup", "tcp://127.0.0.1:1", "--", "/bin/true"],
        ["run", "--epoch", "0", "--", "/bin/true"], ["run", "--", missing], ["run"],
        ["backup", "--listen", "nonsense", "--key-file", str(key)],
        ["backup", "--listen", "127.0.0.1:0", "--key-file", missing],
        ["backup", "--listen", "127.0.0.1:0", "--key-file", t],
        ["backup", "--listen", "127.0.0.1:0", "--key-file", str(loose)],
        ["backup", "--listen", "127.0.0.1:0", "--key-file", str(garbage)],
        ["backup", "--listen", "127.0.0.1:0", "--key-file", str(key), "--accept-timeout", "0.3"],
        ["backup", "--listen", "256.1.1.1:99999", "--key-file", str(key), "--accept-timeout", "0.3"],
        ["keygen", str(key)], ["keygen", t], ["keygen", f"{missing}/k"],
        ["demo", "--workdir", str(text)],
        ["nonsense-verb"],
    ]


def test_every_verb_on_bad_input_says_one_line_and_no_traceback(tmp_path, pids_before):
    failures = []
    for args in _bad_inputs(tmp_path):
        p = run_cli(args, timeout=60)
        err = p.stderr.decode(errors="replace")
        lines = err.splitlines()
        ok = p.returncode != 0 and "Traceback" not in err and lines and (
            (len(lines) == 1 and lines[0].startswith("tft: "))
            or lines[0].startswith("usage: tft"))   # argparse's own usage errors
        if not ok:
            failures.append(f"tft {' '.join(args)} -> {p.returncode}: {err.strip()[-300:]}")
    assert not failures, "\n".join(failures)
    assert_no_leftovers(pids_before)


# --- privacy ------------------------------------------------------------------------------------------

def test_a_log_keeps_no_secret_of_the_environment(tmp_path):
    env = dict(os.environ, TFT_TEST_SECRET="hunter2-token", LANG="C.UTF-8", GIT_AUTHOR_NAME="Ada")
    script = 'echo "${#TFT_TEST_SECRET} $LANG $GIT_AUTHOR_NAME"'
    for flag, kept in (([], False), (["--record-env"], True)):
        log = tmp_path / f"env{len(flag)}.log"
        rec = run_cli(["record", *flag, "--log", log, "--", "/bin/sh", "-c", script], env=env)
        assert rec.stdout == b"13 C.UTF-8 Ada\n"
        assert (b"hunter2-token" in log.read_bytes()) is kept
        assert oct(log.stat().st_mode & 0o777) == "0o600"
        header = read_log(log)[0]
        # configuration a program reads is kept: a replay must see what the recording saw
        assert header["env"]["LANG"] == "C.UTF-8" and header["env"]["GIT_AUTHOR_NAME"] == "Ada"
        assert header["env"]["TFT_TEST_SECRET"] == ("hunter2-token" if kept else "*" * 13)
        rep = replay(log)
        assert rep.returncode == 0 and rep.stdout == rec.stdout


def test_names_that_say_secret_are_masked_and_no_others():
    for name in ("GITHUB_TOKEN", "AWS_SECRET_ACCESS_KEY", "MYSQL_PWD", "npm_config__auth", "DB_PASSWORD",
                 "OPENAI_API_KEY", "session-cookie"):
        assert is_secret(name), name
    for name in ("PWD", "OLDPWD", "PATH", "HOME", "GIT_AUTHOR_NAME", "LANG", "KEYBOARD_LAYOUT", "PORT"):
        assert not is_secret(name), name


def test_a_trace_file_is_private(tmp_path):
    out = tmp_path / "trace.txt"
    assert run_cli(["trace", "-o", out, "--", "/bin/true"]).returncode == 0
    assert "<local>" in out.read_text() and oct(out.stat().st_mode & 0o777) == "0o600"


# --- the fuzzer ---------------------------------------------------------------------------------------

FUZZ_SECONDS = float(os.environ.get("TFT_FUZZ_SECONDS", "35"))
FUZZ_SEED = int(os.environ.get("TFT_FUZZ_SEED", "8"))


def test_mutated_real_logs_replay_identically_or_end_in_one_line(tmp_path, monkeypatch, pids_before):
    """The CI slice of scripts/fuzz_logs.py: every mutated log replays as the original did, or
    ends in one ``tft:`` line (or, its input forged consistently, replays another run), never in
    a hang, a traceback, the memory limit, a file written or a process left."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    work = tmp_path / "fuzz"
    work.mkdir()
    bases = fuzz_logs.record_bases(work)
    read = fuzz_logs.fuzz_reader(bases, work, cases=300, seed=7)
    assert sum(read.values()) == 300 and not [k for k in read if k[1] == "traceback"], read
    counts = fuzz_logs.fuzz(bases, work, cases=10_000, seconds=FUZZ_SECONDS, seed=FUZZ_SEED)
    print(f"\nseed {FUZZ_SEED}\n" + fuzz_logs.table(counts))
    bad = {k: v for k, v in counts.items() if k[1] not in fuzz_logs.GOOD}
    assert not bad, fuzz_logs.table(counts)
    assert sum(counts.values()) >= 10
    assert {o for _, o in counts} & {"error"}   # the mutations do reach the checks
    assert_no_leftovers(pids_before)


def test_a_record_after_the_end_record_is_a_corrupt_log(lines_log, tmp_path):
    def change(records):
        records.append(records[-2])   # the exit record again, after the end
    rep = replay(forged(lines_log, tmp_path / "trailing.log", change))
    assert rep.stdout.count(b"line") == 6
    assert "after the end record" in one_line_error(rep)


def test_an_input_placed_where_the_call_does_not_point_is_a_corrupt_log(tmp_path, pids_before):
    """Found by the long fuzz run: one bit of a read's out-buffer address flipped (checksum fixed)
    made the replay write the bytes 8 bytes off and the program print what its buffer held
    before, with exit status 0.  An out-buffer must be where the call's arguments point."""
    log = tmp_path / "read.log"
    assert record(["/bin/sh", "-c", 'read x < /etc/hostname; echo "got $x"'], log).returncode == 0

    def change(records):
        rec = next(r for r in records if r.type == "sys" and name_of(r["nr"]) == "read" and r["res"] > 0
                   and r["blobs"])
        rec["addrs"] = [rec["addrs"][0] + 8, *rec["addrs"][1:]]
    line = one_line_error(replay(forged(log, tmp_path / "moved.log", change)))
    assert "where its arguments do not point" in line and "corrupt log" in line
    assert_no_leftovers(pids_before)
