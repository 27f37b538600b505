"""``tft backup --listen``: a backup on another host, for ``tft run --backup tcp://HOST:PORT``.

It waits for one authenticated primary, then is its backup in this very process
(:func:`~tft_lab.run.supervise_backup`).  With ``--rejoin tcp://HOST:PORT``, once it has
gone live it is the primary, and it keeps trying that address until a fresh ``tft backup
--listen`` there answers (the failed host, back): it streams it its whole log and follows it
(:mod:`tft_lab.reintegration`), so a run goes A -> B -> A.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time

from . import channel as _channel
from .errors import ChannelError, PeerFailed
from .faults import Fault, parse_fault
from .run import (EXIT_HANDED_OVER, EXIT_REFUSED, RECEIVER_TIMEOUT_FACTOR, SENDER_TIMEOUT_FACTOR, _read_json,
                  supervise_backup)
from .trace import event_file
from .trace import load as load_trace
from .trace import save as save_trace

#: ``tft backup --listen`` prints this many refused peers one by one, then only their number.
REFUSALS_SHOWN = 10
#: Seconds between a live ``tft backup --rejoin``'s attempts to reach its fresh backup.
REJOIN_RETRY = 0.5


def serve_backup(host: str, port: int, key: bytes, *, faults=(), trace: str | None = None,
                 heartbeat: float = 0.5, accept_timeout: float | None = None, ready=None,
                 rejoin: tuple[str, int] | None = None, commit: str = "output",
                 arbiter: str | None = None, lease_ttl: int | None = None) -> int:
    """``tft backup --listen HOST:PORT``: wait for one primary, then be its backup in this process.

    ``rejoin`` (``--rejoin tcp://HOST:PORT``): once this backup is live it is the primary; it
    connects to a fresh ``tft backup --listen`` at that address as soon as one is there (the
    failed host, restarted), catches it up from its log and follows under ``commit``.

    Returns the program's status (the primary's, or its own after going live);
    :data:`EXIT_REFUSED` with a one-line ``tft: backup:`` message if the primary refused the
    program; :data:`EXIT_HANDED_OVER` if it stood down because the primary, alive, kept the
    ``arbiter``'s key (the program goes on there).  Its temporary directory is removed on every path.
    """
    faults = [f if isinstance(f, Fault) else parse_fault(f) for f in faults]
    if arbiter is not None:
        from .arbiter import Etcd

        Etcd.from_spec(arbiter).check()   # a clear error before waiting for a primary
    listener = _channel.listen(host, port, key, heartbeat=heartbeat, timeout_factor=RECEIVER_TIMEOUT_FACTOR)
    deadline = None if accept_timeout is None else time.monotonic() + accept_timeout
    refused = 0
    try:
        if ready is not None:
            ready(listener.address)
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                receiver = listener.accept(left)
                break
            except ChannelError as e:
                # A peer that is not our primary changes nothing (its handshake held up no
                # other): refuse it and keep waiting.  A flood is summed up, not printed whole.
                refused += 1
                if refused <= REFUSALS_SHOWN:
                    print(f"tft: backup: refused a peer: {e}", file=sys.stderr, flush=True)
                if deadline is not None and time.monotonic() >= deadline:
                    raise
    finally:
        listener.close()
        if refused > REFUSALS_SHOWN:
            print(f"tft: backup: refused {refused} peers in all ({refused - REFUSALS_SHOWN} not shown)",
                  file=sys.stderr, flush=True)
    work = tempfile.mkdtemp(prefix="tft-backup-")
    try:
        result_path = os.path.join(work, "backup.result.json")
        trace_path = event_file(work, "backup") if trace else None
        relay = None
        if rejoin is not None:
            from .reintegration import History, Relay

            relay = Relay(History(os.path.join(work, "backup.history")), _rejoin_at(*rejoin, key, heartbeat),
                          warn=lambda msg: print(f"tft: backup: {msg}", file=sys.stderr, flush=True))
        code = supervise_backup(receiver, faults=faults, trace_path=trace_path, result_path=result_path,
                                relay=relay, commit=commit, fence_after=heartbeat * SENDER_TIMEOUT_FACTOR,
                                arbiter=arbiter, lease_ttl=lease_ttl)
        if trace:
            save_trace(load_trace([trace_path]), trace)
        result = _read_json(result_path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if result.get("outcome") == "refused":
        how = "stopped with the primary" if result.get("by") == "primary" else "stopped the program"
        print(f"tft: backup: {how}: {result.get('error')}", file=sys.stderr, flush=True)
        return EXIT_REFUSED
    if result.get("outcome") == "stopped":
        print(f"tft: backup: stopped with the primary: {result.get('error')}", file=sys.stderr, flush=True)
    if result.get("outcome") == "stood-down":
        print(f"tft: backup: {result.get('error')}", file=sys.stderr, flush=True)
        return EXIT_HANDED_OVER
    return code


def _rejoin_at(host: str, port: int, key: bytes, heartbeat: float):
    """How a live ``tft backup --rejoin tcp://HOST:PORT`` gets a fresh backup: it connects to a
    ``tft backup --listen`` there, trying again every :data:`REJOIN_RETRY` seconds until one
    answers (the operator starts it when the failed host is back) or the program ends."""

    def get_sender(stop):
        told = False
        while not stop.is_set():
            try:
                return _channel.connect(host, port, key, heartbeat, timeout_factor=SENDER_TIMEOUT_FACTOR)
            except (ChannelError, PeerFailed) as e:   # nobody there yet, or a peer that is not our backup
                if not told:
                    print(f"tft: backup: live, waiting for a fresh backup at {host}:{port} ({e})",
                          file=sys.stderr, flush=True)
                    told = True
            stop.wait(REJOIN_RETRY)
        return None

    return get_sender
