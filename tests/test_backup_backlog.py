"""A backup that falls behind its primary holds a bounded backlog, never the whole log.

A fresh backup catching up is sent the whole history at once and replays it far more
slowly; before the bound its receiving thread decoded and held every record (390 MB at
10^6 records in benchmarks/catchup.py).  Here nothing replays: the receiving thread must
stop at its bound, acknowledge no further, and lose nothing once the replay takes the rest.
Real sockets, a real channel.
"""
from __future__ import annotations

import concurrent.futures
import time

from tft_lab import backup, channel
from tft_lab import log as tft_log
from tft_lab.engine import Engine

BLOB = bytes(range(256)) * 16   # a 4 KiB read: fewer, bigger frames


def record(seq: int) -> bytes:
    return tft_log.encode({"t": "sys", "pid": 100, "seq": seq, "nr": 0, "res": len(BLOB),
                           "args": [3, 0x10000, len(BLOB)], "addrs": [0x10000]}, [BLOB])


FRAME = len(record(0))
# Twice the backlog: the rest fits in the channel's own bounded queue, so the sender is not held.
RECORDS = 2 * backup.BACKLOG_BYTES // FRAME


def connected_pair():
    a, b = channel.socketpair_channel()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        receiver = pool.submit(channel.Receiver.from_socket, b)
        sender = channel.Sender.from_socket(a)
        return sender, receiver.result(timeout=5)


def test_a_lagging_backup_holds_at_most_its_backlog_and_loses_nothing():
    sender, receiver = connected_pair()
    pump = backup._Pump(receiver)
    try:
        pump.start()
        for seq in range(RECORDS):
            sender.send(record(seq))
        sender.flush()
        deadline = time.monotonic() + 10
        while pump.q.qsize() * FRAME < backup.BACKLOG_BYTES and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.5)   # time enough to take more, if it would
        # It takes one more frame while it holds less than its backlog: never a second.
        assert pump.q.qsize() * FRAME < backup.BACKLOG_BYTES + FRAME
        assert sender.acked * FRAME < backup.BACKLOG_BYTES + FRAME   # the primary sees it is behind

        seqs = []   # the replay takes every record, in order: the rest follow and are acknowledged
        for _ in range(RECORDS):
            kind, rec = pump.take(timeout=10)
            assert kind == "rec"
            seqs.append(rec["seq"])
        assert seqs == list(range(RECORDS))
        sender.wait_acked(RECORDS, timeout=10)
        sender.close(10)
        assert pump.take(timeout=10) == ("end", None)
    finally:
        sender.abort()
        receiver.close()
        pump.join(5)
    assert not pump.is_alive()


def test_reading_ahead_takes_the_records_that_came_not_the_primarys_failure_behind_them():
    """The replay lane reads a backup's records ahead of its program (``Backup.reads_ahead``).
    It must stop at the primary's failure: taken early, the failure made the backup hold its
    own signals while it still replayed the dead primary's calls and deliver them again at
    go-live (corpus py-signals at fault-50 printed ``alarms 6``)."""
    sender, receiver = connected_pair()
    sender.send(tft_log.encode({"t": "header", "version": tft_log.VERSION, "argv": ["x"], "env": {}, "cwd": "/",
                                "exe": "/bin/true", "exe_sha256": "0" * 64, "epoch": 64, "arch": "x86_64",
                                "pid": 100, "fds": {}, "sigblk": 0, "sigign": 0, "created": "now"}))
    for seq in range(5):
        sender.send(record(seq))
    sender.flush()
    b = backup.Backup(receiver, warn=lambda msg: None)
    b.engine = Engine(b, keep_trace=False)   # what it would replay in (no program is started)
    try:
        sender.abort()   # the primary dies: its channel closes without a clean close
        deadline = time.monotonic() + 10
        while b.pump.q.qsize() < 6 and time.monotonic() < deadline:   # the 5 records, then the failure
            time.sleep(0.01)
        assert b.pump.q.qsize() == 6
        read = 0
        while b.reads_ahead() and b.pull():
            read += 1
        assert read == 5 and b.primary_state == "running"   # the failure is still in the pump
        assert [r["seq"] for r in b.streams[100].q] == list(range(5))
        assert not b.pull() and b.primary_state == "failed"   # noticed when the replay needs more
    finally:
        sender.close(timeout=1)
        receiver.close()
