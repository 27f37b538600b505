"""Everyday programs that used to replay wrongly, each reduced to what broke it.

Each test records a real program (coreutils, findutils, git, a shell, CPython,
or a guest of ``tests/programs/``) the way a user runs it, with stdout a
regular file where that mattered, and checks what a user would: the replay
prints the same bytes with the same status, in the recording's folder (where
the primary already did its ``mkdir``) and in a fresh one (where nothing the
program made exists); a replicated run keeps its backup to the end.

- bytes moved fd to fd (``sendfile``, ``copy_file_range``, ``splice``) are
  outputs whose bytes the replay shows;
- directory fds, ``fchdir`` and ``chdir`` into directories the program made
  follow the recorded working directory;
- ``AT_FDCWD`` passed as a 32-bit int is the working directory;
- user ids inside ``unshare -r`` are the primary's;
- a fault past the program's last call is reported, not silently skipped.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tft_lab.run import run as tft_run
from tft_lab.testing import assert_no_leftovers, build_program, run_cli

TIMEOUT = 60


def _tft(args, *, cwd, stdout_file: Path | None = None) -> subprocess.CompletedProcess:
    """``tft ARGS`` with stdout a regular file (``stdout_file``) and stdin /dev/null."""
    with open(stdout_file, "wb") if stdout_file else open("/dev/null", "wb") as out:
        p = subprocess.run([sys.executable, "-m", "tft_lab.cli", *map(str, args)], cwd=cwd,
                           stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.PIPE, timeout=TIMEOUT)
    return p


def record_replay_to_files(argv, folder: Path, *, fresh: bool = False, setup=None):
    """Record ``argv`` in ``folder`` with stdout a regular file, then replay it (in the same
    folder, or with ``fresh`` in a new empty one, the recording's folder emptied); returns
    (recorded stdout, replayed stdout, record result, replay result)."""
    work = folder / "work"
    work.mkdir()
    if setup:
        setup(work)
    log = folder / "run.log"
    rec = _tft(["record", "--log", log, "--", *argv], cwd=work, stdout_file=folder / "rec.out")
    if fresh:
        shutil.rmtree(work)
        work.mkdir()
    rep = _tft(["replay", log], cwd=work, stdout_file=folder / "rep.out")
    return (folder / "rec.out").read_bytes(), (folder / "rep.out").read_bytes(), rec, rep


def assert_replayed(result) -> None:
    rec_out, rep_out, rec, rep = result
    assert rec.returncode == 0, rec.stderr
    assert rep.returncode == rec.returncode, rep.stderr
    assert b"diverged" not in rep.stderr, rep.stderr
    assert rep_out == rec_out


def tree(work: Path) -> None:
    (work / "src" / "sub").mkdir(parents=True)
    (work / "src" / "sub" / "f").write_text("x\n")
    (work / "src" / "g").write_text("y\n")
    (work / "in.txt").write_text("hello\n")


# -- class 1: output moved fd to fd ------------------------------------------------------------

def test_cat_to_a_regular_file_replays_its_output(tmp_path):
    """cat moves a file to a regular-file stdout with copy_file_range: the replay prints it."""
    result = record_replay_to_files(["cat", "/etc/hostname"], tmp_path)
    assert result[0] == Path("/etc/hostname").read_bytes()
    assert_replayed(result)


def test_a_shell_that_writes_then_cats_a_file_replays_where_the_file_is_gone(tmp_path):
    result = record_replay_to_files(["sh", "-c", "echo data > out.txt; cat out.txt"], tmp_path, fresh=True)
    assert result[0] == b"data\n"
    assert_replayed(result)


@pytest.mark.parametrize("stdout", ["file", "pipe"])
def test_sendfile_copy_file_range_and_splice_show_the_recorded_bytes(tmp_path, stdout):
    """The source is random bytes the program wrote and removed: only the log has them."""
    moves = build_program("moves")
    if stdout == "file":
        rec_out, rep_out, rec, rep = record_replay_to_files([moves], tmp_path, fresh=True)
    else:
        log = tmp_path / "m.log"
        rec = run_cli(["record", "--log", log, "--", moves], cwd=tmp_path, timeout=TIMEOUT)
        rep = run_cli(["replay", log], cwd=tmp_path, timeout=TIMEOUT)
        rec_out, rep_out = rec.stdout, rep.stdout
    assert rec.returncode == 0, rec.stderr
    lines = rec_out.decode().splitlines()
    random_hex = lines[0].split(": ")[1]
    assert len(random_hex) == 24
    if stdout == "file":   # every move reached the file; tee (pipe to pipe) fell back: EINVAL
        assert [line.split(": ")[1] for line in lines if ": " in line] == [random_hex] * 3
        assert "tee=-1 errno=22" in lines[-1]
    assert rep.returncode == 0, rep.stderr
    assert rep_out == rec_out


# -- classes 2, 3 and 8: directories, the working directory, AT_FDCWD as 32 bits --------------

EVERYDAY = {
    "find": ["find", ".", "-maxdepth", "0"],
    "mkdir -p": ["mkdir", "-p", "a/b"],
    "cp -r": ["cp", "-r", "src", "dst"],
    "ls -l": ["ls", "-l", "src"],
    "sed -i": ["sed", "-i", "s/hello/bye/", "in.txt"],
    "stat": ["stat", "-c", "%n %s", "in.txt"],
    "tar czf": ["tar", "czf", "x.tgz", "src"],
    "grep -r": ["grep", "-r", "x", "src"],
    "git init": ["git", "init", "-q", "repo"],
}


@pytest.mark.parametrize("name", list(EVERYDAY))
def test_everyday_commands_on_directories_replay_in_the_recording_folder(tmp_path, name):
    if shutil.which(EVERYDAY[name][0]) is None:
        pytest.skip(f"{EVERYDAY[name][0]} is not installed")
    assert_replayed(record_replay_to_files(EVERYDAY[name], tmp_path, setup=tree))


@pytest.mark.parametrize("name", ["find", "mkdir -p"])
def test_everyday_commands_replay_in_a_fresh_folder(tmp_path, name):
    assert_replayed(record_replay_to_files(EVERYDAY[name], tmp_path, fresh=True, setup=tree))


@pytest.mark.parametrize("fresh", [False, True])
def test_a_program_that_enters_directories_it_made_replays(tmp_path, fresh):
    """mkdir, an O_DIRECTORY fd, fchdir, chdir into a directory it made, opens relative to the
    new working directory, to the directory fd and with AT_FDCWD as 0xffffff9c."""
    result = record_replay_to_files([build_program("dirs")], tmp_path, fresh=fresh)
    out = result[0].decode()
    for fact in ("dirfd=1", "fchdir=0", "chdir_inner=0", "getcwd_tail=/inner", "openat_32bit=1 read=2",
                 "openat_dirfd=1", "chdir_up=0", "chdir_gone=-1"):
        assert fact in out
    assert_replayed(result)


def test_a_program_the_recording_made_and_ran_is_named_when_missing(tmp_path):
    """A replay elsewhere cannot run what the recorded program built: it says so, loudly."""
    rec_out, rep_out, rec, rep = record_replay_to_files(
        ["sh", "-c", "mkdir b && cp /bin/true b/t && cd b && ./t && echo ran"], tmp_path, fresh=True)
    assert rec.returncode == 0 and rec_out == b"ran\n"
    assert rep.returncode != 0
    assert b"execve of " in rep.stderr and b"/work/b/t failed here" in rep.stderr, rep.stderr


def test_a_file_opened_by_relative_path_and_mapped_keeps_the_backup(tmp_path, pids_before):
    """The open (AT_FDCWD as 32 bits) must be the real file on the backup, or its mmap fails."""
    (tmp_path / "mm.txt").write_text("hello\n")
    res = tft_run([str(build_program("mm"))], cwd=str(tmp_path), workdir=str(tmp_path))
    assert res.returncode == 0
    assert "diverged" not in str(res.backup.get("error")), res.backup
    assert res.backup.get("outcome") in ("replayed", "live"), res.backup   # live: a lost heartbeat
    assert_no_leftovers(pids_before)


# -- class 4: link/unlink patterns (a named semaphore) ---------------------------------------

def test_a_multiprocessing_lock_replays(tmp_path):
    """sem_open writes a temporary file, maps it shared, links it to its name and unlinks it:
    the replay maps the logged content of that file (its own file is a stand-in)."""
    code = 'import multiprocessing as m; m.get_context("fork").Lock(); print("ok")'
    result = record_replay_to_files(["python3", "-c", code], tmp_path)
    assert result[0] == b"ok\n"
    assert_replayed(result)


# -- class 10: a user namespace --------------------------------------------------------------

def test_ids_inside_unshare_r_are_the_primarys(tmp_path):
    probe = subprocess.run(["unshare", "-r", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("unshare -r is not allowed here")
    result = record_replay_to_files(["unshare", "-r", "id", "-u"], tmp_path)
    assert result[0] == b"0\n"
    assert_replayed(result)


# -- class 11: a fault that cannot happen ----------------------------------------------------

def test_a_fault_past_the_last_call_is_reported(tmp_path, pids_before):
    p = run_cli(["run", "--fault", "primary@100000", "--", "true"], cwd=tmp_path, timeout=TIMEOUT)
    assert p.returncode == 0
    assert b"fault primary@100000 was not injected" in p.stderr
    res = tft_run(["true"], faults=["primary@100000"], cwd=str(tmp_path), workdir=str(tmp_path))
    assert res.returncode == 0   # (the outcome may say a loaded machine lost the backup's heartbeat)
    assert res.primary["faults_not_injected"] == [
        f"fault primary@100000 was not injected: the primary made only {res.primary['calls']} intercepted calls"]
    assert_no_leftovers(pids_before)
