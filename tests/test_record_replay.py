"""Record, then replay from the log: the program computes exactly the same thing.

Every guest program of ``tests/programs/`` (one per source of
non-determinism), CPython, coreutils and a shell pipeline are recorded with
``tft record`` and re-executed with ``tft replay``; the replay's stdout and
stderr equal the recording's byte for byte and its exit status is the
recorded one.  Two recordings of the same program differ, so the equality
cannot come from a program that happens to print the same thing every time.
Replay touches nothing outside (no file created or written), takes no input
(stdin is /dev/null).  Threaded programs have their own tests
(``tests/test_threads.py``).
"""
from __future__ import annotations

import os
import time

import pytest

import tft_lab
from tft_lab.testing import (PROGRAMS, assert_no_leftovers, build_program, native, new_log_path,
                             record, record_and_replay, replay)

#: Programs with a test of their own (exit status, threads: test_threads.py, benchmarks).
OWN_TESTS = {"threads", "thr_mutex", "thr_condvar", "thr_barrier", "thr_signal", "thr_exit", "thr_main_exit", "exitcode", "syscall_loop", "filejob", "moves", "dirs", "mm", "shared_procs"}   # + test_everyday_regressions
C_PROGRAMS = sorted(p.stem for p in PROGRAMS.glob("*.c") if p.stem not in OWN_TESTS)
#: Programs whose output differs from run to run natively (tests/programs/README.md says so).
NONDETERMINISTIC = ["clocks", "files", "ids", "kill_from_other", "multiproc", "randomness", "rdtsc",
                    "sleep_interrupt", "sockets", "sysinfo", "syscall_loop", "filejob"]
PY_SIGNAL_ITERATIONS = "3000"   # enough for ~40 timer signals; the default 20000 takes long under tft

#: Each line is one source of non-determinism CPython programs meet.
PY_SOURCES = """\
import datetime, os, random, time, uuid
print("time", time.time())
print("urandom", os.urandom(8).hex())
print("random", random.random())
print("uuid4", uuid.uuid4())
print("id", id(object()))
print("hash", hash("a string"))
print("datetime", datetime.datetime.now())
"""


def guest(name: str, workdir=None) -> list[str]:
    """The command line that runs guest program ``name`` (C, built on demand, or Python);
    ``workdir`` is the directory filejob fills."""
    if name.endswith(".py"):
        args = [PY_SIGNAL_ITERATIONS] if name == "py_signals.py" else []
        return ["python3", str(PROGRAMS / name), *args]
    args = {"syscall_loop": ["2000"], "filejob": [str(workdir)]}.get(name, [])
    return [str(build_program(name)), *args]


def assert_same_run(rec, rep) -> None:
    """The replay showed the world exactly what the recording did."""
    assert rep.stdout == rec.stdout
    assert rep.stderr == rec.stderr
    assert rep.returncode == rec.returncode


RUN_TIMEOUT = 8   # seconds; every program here takes well under 3 s under tft


@pytest.mark.parametrize("program", C_PROGRAMS + ["py_nondet.py", "py_signals.py"])
def test_replay_prints_what_the_recording_printed(program, tmp_path):
    rec, rep, _ = record_and_replay(guest(program), tmp_path, timeout=RUN_TIMEOUT)
    assert rec.returncode == 0, rec.stderr
    assert rec.stdout
    assert_same_run(rec, rep)


@pytest.mark.parametrize("program", NONDETERMINISTIC + ["py_nondet.py"])
def test_two_recordings_differ(program, tmp_path):
    """The sources are real: without the log, the same program prints something else."""
    first = record(guest(program, tmp_path), new_log_path(tmp_path))
    second = record(guest(program, tmp_path), new_log_path(tmp_path))
    assert first.returncode == second.returncode == 0
    assert first.stdout != second.stdout


@pytest.mark.parametrize("program", ["timer_signals", "py_signals.py"])
def test_timer_signals_land_differently_in_two_recordings(program, tmp_path):
    """With an epoch of one call a signal is delivered right after the call it arrived in,
    so the timer's phase shows.  (At the default epoch of 64 a slowed-down program finds
    a SIGALRM pending at every boundary, and two recordings often print the same.)"""
    first = record(guest(program), new_log_path(tmp_path), epoch=1)
    second = record(guest(program), new_log_path(tmp_path), epoch=1)
    assert first.stdout != second.stdout


def python_fields(stdout: bytes) -> dict[str, bytes]:
    return dict(line.split(b" ", 1) for line in stdout.splitlines())


def test_cpython_replays_time_randomness_ids_and_hashes(tmp_path):
    rec, rep, _ = record_and_replay(["python3", "-c", PY_SOURCES], tmp_path)
    assert rec.returncode == 0, rec.stderr
    assert set(python_fields(rec.stdout)) == {b"time", b"urandom", b"random", b"uuid4", b"id", b"hash",
                                              b"datetime"}
    assert_same_run(rec, rep)


def test_each_cpython_source_differs_between_recordings(tmp_path):
    first = python_fields(record(["python3", "-c", PY_SOURCES], new_log_path(tmp_path)).stdout)
    second = python_fields(record(["python3", "-c", PY_SOURCES], new_log_path(tmp_path)).stdout)
    varying = ["time", "urandom", "random", "uuid4", "datetime"]
    if "PYTHONHASHSEED" not in os.environ:
        varying.append("hash")
    # id() is an address: it varies natively (ASLR) but not under tft, which turns ASLR off.
    for name in varying:
        assert first[name.encode()] != second[name.encode()], name


@pytest.fixture
def shuffled_file(tmp_path):
    path = tmp_path / "lines.txt"
    path.write_text("".join(f"line {i}\n" for i in range(100)))
    return path


COREUTILS = {
    "date": ["date", "+%s.%N"],
    "ls_proc_self": ["ls", "-la", "/proc/self/"],
    "sort_random": ["sort", "-R", "{file}"],
    "od_urandom": ["od", "-N", "16", "-x", "/dev/urandom"],
    "shell_pipeline": ["sh", "-c", "date +%s%N; ls / | wc -l; echo $$"],
}


@pytest.mark.parametrize("name", COREUTILS)
def test_coreutils_and_a_shell_pipeline_replay(name, shuffled_file, tmp_path):
    argv = [a.format(file=shuffled_file) for a in COREUTILS[name]]
    rec, rep, _ = record_and_replay(argv, tmp_path)
    assert rec.returncode == 0, rec.stderr
    assert rec.stdout
    assert_same_run(rec, rep)


@pytest.mark.parametrize("name", ["date", "sort_random", "od_urandom", "shell_pipeline"])
def test_coreutils_output_differs_between_recordings(name, shuffled_file, tmp_path):
    argv = [a.format(file=shuffled_file) for a in COREUTILS[name]]
    assert record(argv, new_log_path(tmp_path)).stdout != record(argv, new_log_path(tmp_path)).stdout


# --- exit status ------------------------------------------------------------------------------

def status_of(p) -> int:
    """A shell's view of an exit status: 128+signal for a killed process."""
    return 128 - p.returncode if p.returncode < 0 else p.returncode


@pytest.mark.parametrize("mode, status, last_words", [
    ("7", 7, "exit"),
    ("0", 0, "exit"),
    ("segv", 128 + 11, "segfault"),
    ("abort", 128 + 6, "abort"),
])
def test_the_exit_status_is_the_programs_on_record_and_replay(mode, status, last_words, tmp_path):
    prog = build_program("exitcode")
    assert status_of(native([prog, mode])) == status
    rec, rep, _ = record_and_replay([prog, mode], tmp_path)
    assert rec.stdout == f"exitcode_mode={mode}\nabout_to={last_words}\n".encode()
    assert rec.returncode == status
    assert rep.returncode == status
    assert rep.stdout == rec.stdout


@pytest.mark.parametrize("mode", ["getppid", "clock", "read"])
def test_the_benchmark_loop_replays(mode, tmp_path):
    rec, rep, _ = record_and_replay([build_program("syscall_loop"), "2000", mode], tmp_path)
    assert rec.returncode == 0, rec.stderr
    assert f"mode={mode}\n".encode() in rec.stdout
    assert_same_run(rec, rep)


# --- input ------------------------------------------------------------------------------------

def test_stdin_is_replayed_from_the_log_not_read_again(tmp_path):
    data = os.urandom(200_000)
    rec, rep, _ = record_and_replay([build_program("stdin_echo")], tmp_path, stdin=data)
    assert b"length=200000\n" in rec.stdout
    assert_same_run(rec, rep)   # the replay's stdin was /dev/null


# --- replay touches nothing outside -------------------------------------------------------------

def snapshot(directory) -> dict:
    """Every entry under ``directory`` (and the directory itself) with its size and mtime."""
    out = {".": os.stat(directory).st_mtime_ns}
    for root, dirs, files in os.walk(directory):
        for name in dirs + files:
            path = os.path.join(root, name)
            st = os.lstat(path)
            out[os.path.relpath(path, directory)] = (st.st_size, st.st_mtime_ns)
    return out


def test_replay_of_a_file_heavy_job_writes_no_file(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    log = tmp_path / "filejob.log"
    rec = record([build_program("filejob"), work], log)
    assert rec.returncode == 0, rec.stderr
    before = snapshot(work)
    time.sleep(0.01)            # so that a write during replay would change an mtime
    rep = replay(log)
    assert snapshot(work) == before
    assert_same_run(rec, rep)


def test_replay_of_a_shell_redirect_creates_no_file(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    log = tmp_path / "redirect.log"
    rec = record(["sh", "-c", "echo hi > out.txt; cat out.txt"], log, cwd=work)
    assert (work / "out.txt").read_bytes() == b"hi\n"   # the recording really wrote it
    (work / "out.txt").unlink()
    before = snapshot(work)
    time.sleep(0.01)
    rep = replay(log)
    assert snapshot(work) == before
    assert not (work / "out.txt").exists()
    assert rec.stdout == b"hi\n"
    assert_same_run(rec, rep)


# --- the Python API ---------------------------------------------------------------------------

def test_the_python_api_records_and_replays_twice_in_a_row(tmp_path, capfd):
    prog = str(build_program("clocks"))
    for i in range(2):
        status, engine = tft_lab.record([prog], tmp_path / f"{i}.log")
        assert status == 0 and engine.events
        status, engine = tft_lab.replay(tmp_path / f"{i}.log")
        assert status == 0 and engine.events
