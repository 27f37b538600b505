"""Bytes in flight between two processes of the program survive a failover (class 19).

When the primary dies, what one process had written into a pipe, a socketpair or a
TCP loopback connection and the other had not read yet was in the dead primary's
kernel.  The backup that goes live must put those bytes back, so that the reader
gets exactly the rest.  The guest (``tests/programs/inflight.c``) writes three
chunks from a forked child; its parent reads one, and the log is cut just before
it reads the second: two chunks are in flight.  Before the fix the socketpair's
chunks were lost (the reader waited forever), and so were a connection's when the
process that had sent them was live on a thread other than its first (the bytes
were put back through a process id that names no process: ``memcached -t 2``
behind a bash client, the corpus' workload ``memcached-t2``).
"""
from __future__ import annotations

import re

import pytest

from tft_lab import log as _log
from tft_lab.syscalls import TABLE
from tft_lab.testing import build_program, record
from test_golive_regressions import TIMEOUT, _encode, _frames, backup_fed

WANT = "got chunk-1\ngot chunk-2\ngot chunk-3\nwriter status 0\n"
#: What the live backup prints: the rest (the replay does not print what the primary did).
REST = WANT[len("got chunk-1\n"):]


@pytest.fixture(scope="module")
def inflight():
    return str(build_program("inflight"))


def _recorded(inflight: str, mode: str, tmp_path) -> list:
    """Record the guest in ``mode`` (it must print WANT and exit 0); the log's records."""
    log = tmp_path / "rec.log"
    rec = record([inflight, mode], str(log), cwd=str(tmp_path), timeout=TIMEOUT)
    assert rec.returncode == 0 and rec.stdout.decode() == WANT, rec.stderr
    return _log.read_log(str(log))


def _before_second_read(records) -> int:
    """The index of the reader's (the first process') read that follows its first getppid."""
    root = records[0]["pid"]
    read, getppid = TABLE["read"].x64, TABLE["getppid"].x64
    first = next(i for i, r in enumerate(records) if r.type == "sys" and r["pid"] == root and r["nr"] == getppid)
    return next(i for i, r in enumerate(records) if i > first and r.type == "sys" and r["pid"] == root
                and r["nr"] == read)


def _chunks_written_before(records, cut: int) -> int:
    """How many of the writer's 8-byte chunks the log has before ``cut``."""
    root, write = records[0]["pid"], TABLE["write"].x64
    return sum(1 for r in records[:cut] if r.type == "sys" and r["pid"] != root and r["nr"] == write
               and r["res"] == 8)


@pytest.mark.parametrize("mode", ["pipe", "socketpair", "tcp", "tcp-thread"])
def test_the_reader_gets_exactly_the_rest(inflight, tmp_path, mode):
    records = _recorded(inflight, mode, tmp_path)
    cut = _before_second_read(records)
    # The reader slept 0.2 s after its first chunk: the writer had written all three by then.
    assert _chunks_written_before(records, cut) == 3
    backup, res = backup_fed(_frames(records, lambda _: cut), str(tmp_path))
    assert res["outcome"] == "live", backup
    # Exactly the rest: no chunk lost (the reader would wait forever), none twice.
    assert re.sub(r"tft: .*\n", "", backup) == REST, backup
    assert "reset" not in backup and "could not" not in backup, backup
    assert "put back 16 bytes" in backup or "(16 bytes in flight put back)" in backup, backup


@pytest.mark.parametrize("mode", ["pipe", "socketpair", "tcp", "tcp-thread"])
def test_bytes_read_before_the_writers_record_are_not_written_again(inflight, tmp_path, mode):
    # Found with zstd-T2 at fault-90 (`zstd -d -c big.zst | wc -l` counted 32099 or 33792 lines
    # of 32000): the supervisor saw the reader's exit stop before the writer's, so the reader's
    # record of bytes the write put in left the primary, the write's record died with it.  The
    # live writer wrote them again, and the reader read them twice.  The log here is the
    # primary's as it was then: the reader's read of chunk-2 is in it, the writer's write of
    # chunk-2 (and all the writer did after) is not.
    records = _recorded(inflight, mode, tmp_path)
    root, write = records[0]["pid"], TABLE["write"].x64
    cut = _second_getppid(records)
    first = next(i for i, r in enumerate(records) if r.type == "sys" and r["pid"] != root and r["nr"] == write)
    writer = {r["pid"] for r in records if r.type in ("sys", "exit") and r["pid"] != root}
    kept = [r for i, r in enumerate(records[:cut])
            if i <= first or not (r.type in ("sys", "exit", "tsc") and r["pid"] in writer
                                  or r.type == "sig" and r["signo"] == 17)]
    assert _chunks_written_before(kept, len(kept)) == 1
    backup, res = backup_fed([_encode(r) for r in kept], str(tmp_path))
    assert res["outcome"] == "live", backup
    # The reader read chunk-1 and chunk-2 on the primary: it reads chunk-3 next, and only it.
    assert re.sub(r"tft: .*\n", "", backup) == "got chunk-3\nwriter status 0\n", backup
    assert "leaves out the first 8 bytes" in backup, backup


def _second_getppid(records) -> int:
    """The index of the reader's second getppid (it has read and printed chunk-2)."""
    root, getppid = records[0]["pid"], TABLE["getppid"].x64
    return [i for i, r in enumerate(records) if r.type == "sys" and r["pid"] == root and r["nr"] == getppid][1]


def test_a_socket_set_up_halfway_is_created_again(inflight, tmp_path):
    # Found with memcached-t2 at fault-90 (the fault fell in memcached's start, between its
    # socket's bind and listen): the stand-in was reset, the live listen failed (EINVAL) and
    # the client never connected.  Cut before the guest's listen: its socket, bound to port 0,
    # must come back bound, so that the live listen and the rest of the program work.
    log = tmp_path / "rec.log"
    rec = record([inflight, "tcp"], str(log), cwd=str(tmp_path), timeout=TIMEOUT)
    assert rec.returncode == 0, rec.stderr
    records = _log.read_log(str(log))
    listen = TABLE["listen"].x64
    cut = next(i for i, r in enumerate(records) if r.type == "sys" and r["nr"] == listen)
    backup, res = backup_fed(_frames(records, lambda _: cut), str(tmp_path))
    assert res["outcome"] == "live", backup
    assert re.sub(r"tft: .*\n", "", backup) == WANT, backup
    assert "socket created again, bound to 127.0.0.1:0" in backup and "reset" not in backup, backup


def test_a_signal_a_thread_raised_is_delivered_after_the_failover(tmp_path):
    # memcached-t2's other hang: its worker thread raise()s SIGINT on "shutdown" (a tgkill to
    # itself), whose handler tells the main loop to stop.  The tgkill's record left the primary
    # at once (an output), the delivery's not: the primary died in between.  The signal was owed
    # to the process's first thread, the backup went live with the worker and never delivered
    # it: memcached never stopped, its client waited for it forever.
    guest = str(build_program("thr_raise"))
    log = tmp_path / "rec.log"
    rec = record([guest], str(log), cwd=str(tmp_path), timeout=TIMEOUT)
    assert rec.returncode == 0 and rec.stdout == b"stopped\n", rec.stderr
    records = _log.read_log(str(log))
    tgkill = TABLE["tgkill"].x64
    cut = 1 + next(i for i, r in enumerate(records) if r.type == "sys" and r["nr"] == tgkill)
    assert any(r.type == "sig" for r in records[cut:])   # the delivery, cut off
    backup, res = backup_fed(_frames(records, lambda _: cut), str(tmp_path))
    assert res["outcome"] == "live", backup
    assert "stopped\n" in backup and "SIGUSR1 sent by pid" in backup, backup


@pytest.mark.parametrize("sent", [0, 3])
def test_a_connection_not_accepted_yet_connects_again_to_its_listener(inflight, tmp_path, sent):
    # Found with python3 -m http.server and four clients at once (corpus py-http-server-clients
    # at fault-90: "Connection reset by peer" in a client): a client had connected to the
    # program's own listener, which had not accepted it when the primary died; the connection
    # waited in the dead kernel's backlog, and the backup reset it.  The log is cut before the
    # parent's accept, the child's records after its connect and its first `sent` writes gone:
    # the child's socket must connect again to the listener, live again, with the chunks it
    # had sent put back, and the reader must get all three, once.
    records = _recorded(inflight, "tcp", tmp_path)
    root = records[0]["pid"]
    accept = {TABLE["accept"].x64, TABLE["accept4"].x64}
    connect, write = TABLE["connect"].x64, TABLE["write"].x64
    child = next(r["pid"] for r in records if r.type == "sys" and r["nr"] == connect)
    accepted = next(i for i, r in enumerate(records) if r.type == "sys" and r["pid"] == root and r["nr"] in accept)
    mine = [i for i, r in enumerate(records) if r.type == "sys" and r["pid"] == child and r["nr"] in (connect, write)]
    last = mine[sent]   # the connect, then its writes
    kept = [r for i, r in enumerate(records[:max(last + 1, accepted)])
            if not (r.type in ("sys", "tsc", "sig") and (r["pid"] == root and i >= accepted
                                                         or r["pid"] == child and i > last))]
    assert any(r.type == "sys" and r["nr"] == connect for r in kept)
    backup, res = backup_fed([_encode(r) for r in kept], str(tmp_path))
    assert res["outcome"] == "live", backup
    assert re.sub(r"tft: .*\n", "", backup) == WANT, backup
    assert "connected again to its own program's listener" in backup and "reset" not in backup, backup
    if sent:
        assert f"({8 * sent} bytes in flight put back)" in backup, backup
