"""A backup that falls behind its primary holds a bounded backlog, never the whole log.

A fresh backup catching up is sent the whole history at once and replays it far more
slowly; before the bound its receiving thread decoded and held every record (394 MB at
10^6 records in benchmarks/catchup.py).  Here nothing replays: the receiving thread must
stop at its bound, acknowledge no further, and lose nothing once the replay takes the rest.
Real sockets, a real channel.
"""
from __future__ import annotations

import concurrent.futures
import time

from tft_lab import backup, channel
from tft_lab import log as tft_log

RECORDS = 3 * backup.BACKLOG_RECORDS


def record(seq: int) -> bytes:
    return tft_log.encode({"t": "sys", "pid": 100, "seq": seq, "nr": 39, "res": 100, "args": [], "addrs": []})


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
        while pump.q.qsize() < backup.BACKLOG_RECORDS and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.5)   # time enough to take more, if it would
        assert pump.q.qsize() <= backup.BACKLOG_RECORDS
        assert sender.acked <= backup.BACKLOG_RECORDS   # the primary sees the backup is behind

        seqs = []   # the replay takes every record, in order: the rest follow and are acknowledged
        for _ in range(RECORDS):
            kind, rec = pump.q.get(timeout=10)
            assert kind == "rec"
            seqs.append(rec["seq"])
        assert seqs == list(range(RECORDS))
        sender.wait_acked(RECORDS, timeout=10)
        sender.close(10)
        assert pump.q.get(timeout=10) == ("end", None)
    finally:
        sender.abort()
        receiver.close()
        pump.join(5)
    assert not pump.is_alive()
