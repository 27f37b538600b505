"""What a program reads through mmap is input: the log holds it, the replay maps it.

Before, a replay mapped whatever the local file held: after the file changed
it printed the *new* content with exit 0, and a dynamic program's log broke
when a library or /etc/ld.so.cache changed.  Now each mapped content is in
the log once, and the replay maps the logged bytes, so the files may change or
vanish.  ``--small-log`` keeps only hashes, and a replay against other content
stops with an error naming the file.
"""
from __future__ import annotations

import collections
import os
import shutil
import socket
import subprocess
import sys
import time
import zlib

import pytest

from tft_lab import syscalls
from tft_lab._backend.ptrace import AUDIT_ARCH_X86_64, SECCOMP_RET_ALLOW, SECCOMP_RET_TRACE, seccomp_program
from tft_lab.cli import EXIT_DIVERGED
from tft_lab.log import MAGIC, encode, read_log
from tft_lab.recorder import record as record_in_process
from tft_lab.testing import REPO, assert_no_leftovers, build_program, native, new_log_path, replay, run_cli

LIBC = "/lib/x86_64-linux-gnu/libc.so.6"


@pytest.fixture(scope="module")
def mapfile():
    return str(build_program("mapfile"))


def record(argv, log, *extra):
    return run_cli(["record", "--log", log, *extra, "--", *argv])


def blobs_by_content(log) -> collections.Counter:
    """How many times each content starts in the log (its piece at offset 0)."""
    return collections.Counter(r["sha256"] for r in read_log(log) if r.type == "blob" and r["offset"] == 0)


def test_a_replay_maps_the_recorded_content_after_the_file_changed(mapfile, tmp_path, pids_before):
    data = tmp_path / "data.txt"
    data.write_text("recorded content")
    log = new_log_path(tmp_path)
    rec = record([mapfile, data], log)
    assert rec.returncode == 0, rec.stderr
    assert b"content=recorded content\n" in rec.stdout
    data.write_text("NEW content here")
    assert b"NEW content" in native([mapfile, data]).stdout   # the change is real
    rep = replay(log)
    assert rep.returncode == 0, rep.stderr
    assert rep.stdout == rec.stdout
    assert_no_leftovers(pids_before)


def test_a_replay_works_where_the_mapped_file_does_not_exist(mapfile, tmp_path):
    data = tmp_path / "gone.txt"
    data.write_text("here while recording")
    log = new_log_path(tmp_path)
    rec = record([mapfile, data], log)
    assert rec.returncode == 0, rec.stderr
    data.unlink()
    rep = replay(log)
    assert rep.returncode == 0, rep.stderr
    assert rep.stdout == rec.stdout


def test_a_changed_library_is_replayed_from_the_log(tmp_path):
    prog = str(build_program("strerror"))
    lib = tmp_path / "lib"
    lib.mkdir()
    shutil.copy(LIBC, lib / "libc.so.6")
    argv = ["/usr/bin/env", f"LD_LIBRARY_PATH={lib}", prog]
    log = new_log_path(tmp_path)
    rec = record(argv, log)
    assert rec.returncode == 0, rec.stderr
    assert rec.stdout == b"enoent=No such file or directory\n"
    # Change a message inside the copied libc (same length: it still loads).
    raw = (lib / "libc.so.6").read_bytes()
    assert b"No such file or directory" in raw
    (lib / "libc.so.6").write_bytes(raw.replace(b"No such file or directory", b"No such file or DIRECTORY"))
    assert native(argv).stdout == b"enoent=No such file or DIRECTORY\n"   # natively: the new libc
    rep = replay(log)
    assert rep.returncode == 0, rep.stderr
    assert rep.stdout == rec.stdout                                       # replayed: the recorded one
    shutil.rmtree(lib)
    gone = replay(log)
    assert gone.returncode == 0, gone.stderr
    assert gone.stdout == rec.stdout


def test_small_log_keeps_hashes_and_a_changed_file_stops_the_replay_naming_it(mapfile, tmp_path, pids_before):
    data = tmp_path / "small.txt"
    data.write_text("small log content")
    small, full = new_log_path(tmp_path), new_log_path(tmp_path)
    rec = record([mapfile, data], small, "--small-log")
    assert rec.returncode == 0, rec.stderr
    assert record([mapfile, data], full).returncode == 0
    assert not blobs_by_content(small)            # hashes only
    assert os.path.getsize(small) * 10 < os.path.getsize(full)
    same = replay(small)
    assert same.returncode == 0 and same.stdout == rec.stdout
    data.write_text("changed content!!")
    rep = replay(small)
    assert rep.returncode == EXIT_DIVERGED
    err = rep.stderr.decode().strip()
    assert len(err.splitlines()) == 1 and err.startswith("tft: ")
    assert str(data) in err and "--small-log" in err
    assert b"content=" not in rep.stdout
    assert_no_leftovers(pids_before)


def test_each_content_is_logged_once(mapfile, tmp_path):
    data = tmp_path / "twice.txt"
    data.write_text("mapped twice by each of two processes")
    log = new_log_path(tmp_path)
    rec = record(["/bin/sh", "-c", f"{mapfile} {data}; {mapfile} {data}"], log)
    assert rec.returncode == 0, rec.stderr
    assert rec.stdout.count(b"second_mapping=same") == 2
    recs = read_log(log)
    maps = [r for r in recs if r.type == "map"]
    by_path = collections.Counter(r["path"] for r in maps)
    assert by_path[str(data)] == 4                            # 2 mappings x 2 processes
    libc = os.path.realpath(LIBC)
    assert by_path[libc] >= 3 * 4                              # sh and two mapfiles, 4+ segments each
    assert set(blobs_by_content(log).values()) == {1}          # ...but every content once
    assert {r["sha256"] for r in maps} == set(blobs_by_content(log))
    rep = replay(log)
    assert rep.returncode == 0 and rep.stdout == rec.stdout


def test_a_shared_writable_mapping_replays_and_tft_run_warns_about_it(mapfile, tmp_path):
    data = tmp_path / "shared.txt"
    data.write_text("shared content")
    log = new_log_path(tmp_path)
    rec = record([mapfile, data, "shared"], log)
    assert rec.returncode == 0, rec.stderr
    assert rec.stderr == b""           # a replay keeps those writes in its own copy: nothing to warn
    data.write_text("shared content")
    run = run_cli(["run", "--", mapfile, data, "shared"])
    assert run.returncode == 0, run.stderr
    assert b"shared and writable" in run.stderr and str(data).encode() in run.stderr   # a failover would lose them
    assert data.read_text() == "#hared content"               # the primary's write reached the file
    data.write_text("shared content")
    rep = replay(log)
    assert rep.returncode == 0, rep.stderr
    assert rep.stdout == rec.stdout
    assert data.read_text() == "shared content"               # a replay has no outside effect


def test_a_live_backup_maps_the_contents_it_was_sent(mapfile, tmp_path):
    data = tmp_path / "live.txt"
    data.write_text("sent over the channel")
    res = run_cli(["run", "--", mapfile, data])
    assert res.returncode == 0, res.stderr
    assert b"content=sent over the channel" in res.stdout
    assert b"diverged" not in res.stderr and b"ALONE" not in res.stderr


def _listening(port: int) -> bool:
    with open("/proc/net/tcp") as f:
        return any(line.split()[1].endswith(f":{port:04X}") and line.split()[3] == "0A" for line in f)


def test_a_backup_on_a_host_with_another_file_maps_the_primarys_content(mapfile, tmp_path, pids_before):
    """The backup runs where the file holds something else (a private mount hides the primary's),
    and goes live after the primary's first line: it still prints the primary's content."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare for a private mount namespace")
    shown = tmp_path / "shown"
    shown.mkdir()
    data = shown / "d.txt"
    data.write_text("the primary's file")
    # The fault: at the entry of the program's second write (its first has gone out).
    _, engine = record_in_process([mapfile, str(data)], str(tmp_path / "count.log"), keep_trace=True)
    calls = [e.syscall for e in engine.events if e.kind == "syscall"]
    second_write = [i for i, name in enumerate(calls, 1) if name == "write"][1]
    key = tmp_path / "key"
    assert run_cli(["keygen", key]).returncode == 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    other_host = (f"mount -t tmpfs tmpfs {shown} && printf 'THE BACKUP HOST FILE' > {data} && "
                  f"exec {sys.executable} -m tft_lab.cli backup --listen 127.0.0.1:{port} --key-file {key} "
                  "--accept-timeout 30")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    backup = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", other_host],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 30
        while not _listening(port) and backup.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        primary = run_cli(["run", "--backup", f"tcp://127.0.0.1:{port}", "--key-file", key,
                           "--fault", f"primary@{second_write}", "--", mapfile, data])
        out, err = backup.communicate(timeout=60)
    finally:
        if backup.poll() is None:
            backup.kill()
            backup.wait()
    assert primary.stdout == b"content=the primary's file\n", primary.stderr
    assert b"goes live" in err, err
    assert out == b"second_mapping=same\nagain=the primary's file\n", err
    assert data.read_text() == "the primary's file"
    assert_no_leftovers(pids_before)


def test_a_changed_program_binary_is_still_a_divergence(tmp_path):
    prog = tmp_path / "strerror"
    shutil.copy(build_program("strerror"), prog)
    log = new_log_path(tmp_path)
    assert record([prog], log).returncode == 0
    with open(prog, "ab") as f:
        f.write(b"\0")
    rep = replay(log)
    assert rep.returncode == EXIT_DIVERGED
    assert "changed" in rep.stderr.decode()


def test_a_log_whose_content_does_not_match_its_hash_is_refused(mapfile, tmp_path, pids_before):
    data = tmp_path / "tampered.txt"
    data.write_text(os.urandom(8).hex())          # a content no earlier replay has materialised
    log = new_log_path(tmp_path)
    assert record([mapfile, data], log).returncode == 0
    lie = zlib.compress(b"x" * len(data.read_text()))
    frames = list(_records_of(log, data, lie))
    with open(log, "wb") as f:
        f.write(MAGIC + b"".join(frames))
    rep = replay(log)
    assert rep.returncode != 0
    err = rep.stderr.decode()
    assert "does not match its sha256" in err and len(err.strip().splitlines()) == 1
    assert b"content=" not in rep.stdout
    assert_no_leftovers(pids_before)


def _records_of(log, data, lie):
    """The log's frames, with the content of ``data`` replaced by ``lie`` (sizes kept consistent)."""
    records = read_log(log)
    target = {r["sha256"] for r in records if r.type == "map" and r["path"] == str(data)}
    for r in records:
        fields = {k: v for k, v in r.items() if k != "blobs"}
        blobs = r["blobs"]
        if r.type == "blob" and r["sha256"] in target:
            fields["zsize"] = len(lie)
            blobs = [lie]
        yield encode(fields, blobs)


def test_a_changed_program_run_by_a_child_is_a_divergence(tmp_path, pids_before):
    """The header checks the first program; each exec record checks the one a process runs."""
    prog = tmp_path / "child"
    shutil.copy(build_program("strerror"), prog)
    log = new_log_path(tmp_path)
    rec = record(["/bin/sh", "-c", f"{prog}; echo done"], log)
    assert rec.returncode == 0 and rec.stdout.endswith(b"done\n")
    assert replay(log).returncode == 0
    with open(prog, "ab") as f:
        f.write(b"\0")            # still runs the same: only the hash can tell
    rep = replay(log)
    assert rep.returncode == EXIT_DIVERGED
    assert str(prog) in rep.stderr.decode() and "changed" in rep.stderr.decode()
    assert_no_leftovers(pids_before)


# --- the filter: only file-backed mmaps stop ---------------------------------------------------

def run_bpf(prog, nr, args=(0,) * 6, arch=AUDIT_ARCH_X86_64) -> int:
    """Interpret our classic-BPF subset over one seccomp_data."""
    import struct

    data = struct.pack("<iIQ6Q", nr, arch, 0, *args)
    acc, pc = 0, 0
    while True:
        code, jt, jf, k = prog[pc]
        pc += 1
        if code == 0x20:
            acc = struct.unpack_from("<I", data, k)[0]
        elif code == 0x06:
            return k
        elif code in (0x15, 0x35, 0x45):
            hit = {0x15: acc == k, 0x35: acc >= k, 0x45: bool(acc & k)}[code]
            pc += jt if hit else jf
        else:
            raise AssertionError(f"unknown instruction {code:#x}")


def test_the_filter_traps_file_backed_mmaps_only():
    prog = seccomp_program(syscalls.untrapped(), syscalls.untrapped_if())
    nrs = [s.x64 for s in syscalls.TABLE.values() if s.trap]
    mmap = syscalls.TABLE["mmap"].x64
    anon = (0, 4096, 3, 0x22, (1 << 64) - 1, 0)
    assert run_bpf(prog, mmap, anon) == SECCOMP_RET_ALLOW
    assert run_bpf(prog, mmap, (0, 4096, 1, 0x02, 3, 0)) == SECCOMP_RET_TRACE
    assert run_bpf(prog, mmap, (0, 4096, 1, 0x01, 3, 0)) == SECCOMP_RET_TRACE
    for nr in nrs:
        assert run_bpf(prog, nr) == SECCOMP_RET_TRACE, nr
    assert run_bpf(prog, syscalls.TABLE["brk"].x64) == SECCOMP_RET_ALLOW
    assert run_bpf(prog, syscalls.TABLE["fadvise64"].x64) == SECCOMP_RET_ALLOW
    assert run_bpf(prog, 500) == SECCOMP_RET_TRACE                   # not in the table: trapped
    assert run_bpf(prog, 0x40000000 + 1) == SECCOMP_RET_TRACE          # x32
    assert run_bpf(prog, syscalls.TABLE["brk"].x64, arch=0x40000003) == SECCOMP_RET_TRACE   # i386
