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
