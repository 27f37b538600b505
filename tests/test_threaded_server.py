"""A real multi-threaded server from Debian's packages, replicated: memcached.

``memcached -t 2`` runs two libevent worker threads (connections are handed to them round
robin) beside its listener thread and its maintenance threads (LRU crawler and maintainer,
hash expander, slab rebalancer, logger).  Under ``tft run`` several clients, one connection
each, store keys (``set`` answered ``STORED``: the output rule let that answer out only once
the backup had the log up to it).  Then the primary's supervisor is SIGKILLed: the clients'
connections lived in the primary's program and are reset or closed; each client reconnects to
the same port, now served by the backup gone live, and stores more.  Every key a client was
told was STORED, before or after the failover, reads back with its value; ``shutdown`` stops
the server and tft exits 0, leaving no process; the fresh backup tft starts after the
failover follows the live replica without diverging.  ``python3 -m http.server`` (a thread
per request) serves files on across its primary's death too.

A recording of a short session (three clients at once, so both worker threads serve) replays
alone: the replay prints memcached's ``-vv`` protocol trace exactly as the recording did.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tft_lab.testing import (assert_no_leftovers, free_port, reap_adopted_zombies, replay, wait_listening)
from test_kvserver import process_listening_on, tracer_of

MEMCACHED = shutil.which("memcached")
pytestmark = pytest.mark.skipif(MEMCACHED is None, reason="memcached is not installed (scripts/setup.sh installs it)")

CLIENTS = 4
BEFORE = 15            # keys each client has stored before the kill
AFTER = 10             # keys each client stores on the live backup
RECONNECT_WITHIN = 20.0
TIMEOUT = 60


def memcached(port: int, *more: str) -> list[str]:
    """memcached with two worker threads on 127.0.0.1:port, TCP only, ``shutdown`` enabled.
    As root it must be told which user to be: root itself (no setuid to another user)."""
    user = ["-u", "root"] if os.geteuid() == 0 else []
    return [MEMCACHED, "-t", "2", "-U", "0", "-p", str(port), "-l", "127.0.0.1", "-A", *user, *more]


def tft(*args: str, stderr) -> subprocess.Popen:
    """``tft ARGS`` in the background (this package's tft), its stderr to a file."""
    return subprocess.Popen([sys.executable, "-m", "tft_lab.cli", *args], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=stderr)


class Connection:
    """One client connection speaking memcached's text protocol."""

    def __init__(self, port: int, timeout: float = 15):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def _until(self, end: bytes) -> bytes:
        while end not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("the server closed the connection")
            self.buf += data
        reply, _, self.buf = self.buf.partition(end)
        return reply + end

    def set(self, key: str, value: str) -> str:
        self.sock.sendall(f"set {key} 0 0 {len(value)}\r\n{value}\r\n".encode())
        return self._until(b"\r\n").decode()

    def get(self, key: str) -> str | None:
        self.sock.sendall(f"get {key}\r\n".encode())
        reply = self._until(b"END\r\n").decode()
        if reply == "END\r\n":
            return None
        header, value, end = reply.split("\r\n", 2)
        assert header.startswith(f"VALUE {key} 0 ") and end == "END\r\n", reply
        return value

    def shutdown(self) -> None:
        self.sock.sendall(b"shutdown\r\n")
        with pytest.raises((ConnectionError, EOFError)):   # it closes without a word
            self._until(b"\r\n")

    def close(self) -> None:
        self.sock.close()


def connect_within(port: int, seconds: float) -> Connection:
    """Connect and get an answer, retrying (bounded) while nobody serves the port."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            c = Connection(port, timeout=5)
            c.get("no-such-key")
            return c
        except (OSError, EOFError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class Client(threading.Thread):
    """Stores ``c{n}-{i}`` = ``v{n}-{i}`` for i = 0, 1, ... on its own connection, and keeps
    the keys it was told were STORED.  A broken connection (the failover) is counted and
    replaced by a new one; the set it was making when it broke is not acknowledged."""

    def __init__(self, n: int, port: int, stop: threading.Event):
        super().__init__(daemon=True)
        self.n, self.port, self.stop = n, port, stop
        self.acked: dict[str, str] = {}
        self.acked_after_break = 0
        self.breaks = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            conn, i = Connection(self.port), 0
            while not self.stop.is_set():
                key, value = f"c{self.n}-{i}", f"v{self.n}-{i}"
                try:
                    reply = conn.set(key, value)
                except (ConnectionError, EOFError):
                    conn.close()
                    self.breaks += 1
                    conn = connect_within(self.port, RECONNECT_WITHIN)
                    continue   # the same key again: it may or may not have been stored
                assert reply == "STORED\r\n", reply
                self.acked[key] = value
                self.acked_after_break += self.breaks > 0
                i += 1
                time.sleep(0.01)
            conn.close()
        except BaseException as e:   # the test thread reports it
            self.error = e


def wait_until(condition, seconds: float, what: str, proc: subprocess.Popen, said: Path, clients=()) -> None:
    """Poll ``condition`` until it holds; fail at once if a client failed or tft exited."""
    deadline = time.monotonic() + seconds
    while not condition():
        for c in clients:
            assert c.error is None, f"client {c.n}: {c.error!r}"
        assert proc.poll() is None, f"tft exited ({proc.returncode}) before {what}: {said.read_text()}"
        assert time.monotonic() < deadline, f"not within {seconds:g} s: {what}"
        time.sleep(0.05)


def test_acknowledged_sets_survive_the_primarys_death(tmp_path, pids_before):
    port, said = free_port(), tmp_path / "tft.err"
    with open(said, "wb") as err:
        run = tft("run", "--result-json", str(tmp_path / "run.json"), "--", *memcached(port), stderr=err)
    try:
        wait_listening(port, run, timeout=TIMEOUT)
        stop = threading.Event()
        clients = [Client(n, port, stop) for n in range(CLIENTS)]
        for c in clients:
            c.start()
        wait_until(lambda: all(len(c.acked) >= BEFORE for c in clients), TIMEOUT, "the first sets", run, said, clients)

        program = process_listening_on(port)
        assert len(os.listdir(f"/proc/{program}/task")) > 3, "memcached runs several threads"
        os.kill(tracer_of(program), signal.SIGKILL)

        wait_until(lambda: all(c.acked_after_break >= AFTER for c in clients), TIMEOUT,
                   "sets on the backup gone live", run, said, clients)
        stop.set()
        for c in clients:
            c.join(TIMEOUT)
            assert c.error is None, f"client {c.n}: {c.error!r}"
            assert c.breaks >= 1, f"client {c.n}: its connection never broke"

        reader = connect_within(port, RECONNECT_WITHIN)
        acked = {k: v for c in clients for k, v in c.acked.items()}
        assert {key: reader.get(key) for key in acked} == acked
        reader.shutdown()
        assert run.wait(TIMEOUT) == 0, said.read_text()
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert "primary failed" in said.read_text() and "went live" in said.read_text(), said.read_text()
    # The live replica's log is one a fresh backup follows: the run was protected again.
    backups = json.loads((tmp_path / "run.json").read_text())["backups"]
    assert len(backups) >= 2 and all(b["outcome"] != "diverged" for b in backups), said.read_text()
    reap_adopted_zombies()
    assert_no_leftovers(pids_before)


def test_a_recorded_session_with_three_clients_replays(tmp_path, pids_before):
    port, log = free_port(), tmp_path / "memcached.log"
    with open(tmp_path / "record.err", "wb") as err:
        rec = tft("record", "--log", str(log), "--", *memcached(port, "-vv"), stderr=err)
    try:
        wait_listening(port, rec, timeout=TIMEOUT)
        conns = [Connection(port) for _ in range(3)]
        for i in range(5):
            for n, c in enumerate(conns):
                assert c.set(f"k{n}-{i}", f"value {n} {i}") == "STORED\r\n"
        for n, c in enumerate(conns):
            assert c.get(f"k{(n + 1) % 3}-4") == f"value {(n + 1) % 3} 4"
            assert c.get("absent") is None
        conns[0].shutdown()
        for c in conns[1:]:
            c.close()
        assert rec.wait(TIMEOUT) == 0, (tmp_path / "record.err").read_text()
    finally:
        if rec.poll() is None:
            rec.kill()
            rec.wait()
    recorded = (tmp_path / "record.err").read_text()
    assert "<15 set k0-0 0 0 9" in recorded and ">17 STORED" in recorded and "Exiting normally" in recorded

    rep = replay(log, timeout=TIMEOUT)
    assert rep.returncode == 0, rep.stderr.decode()
    program = [line for line in rep.stderr.decode().splitlines(keepends=True) if not line.startswith("tft:")]
    assert "".join(program) == "".join(line for line in recorded.splitlines(keepends=True)
                                       if not line.startswith("tft:"))
    reap_adopted_zombies()
    assert_no_leftovers(pids_before)


def _get(port: int, path: str) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return r.read()


def _get_within(port: int, path: str, seconds: float) -> bytes:
    """GET, retrying (bounded) while nobody serves the port (the failover)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return _get(port, path)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_python_http_server_serves_across_the_primarys_death(tmp_path, pids_before):
    """``python3 -m http.server`` (a ThreadingHTTPServer: a thread per request) under ``tft run``
    serves files; its primary's supervisor is SIGKILLed; the same port, now served by the
    backup gone live, serves them on (a file made since included); Ctrl-C ends the run and
    leaves nothing behind."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "hello.txt").write_bytes(b"hello\n" * 1000)
    port, said = free_port(), tmp_path / "tft.err"
    with open(said, "wb") as err:
        run = tft("run", "--", sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                  "--directory", str(site), stderr=err)
    try:
        wait_listening(port, run, timeout=TIMEOUT)
        with ThreadPoolExecutor(3) as ex:   # requests at once: several server threads
            assert list(ex.map(lambda _: _get(port, "/hello.txt"), range(6))) == [b"hello\n" * 1000] * 6
        program = process_listening_on(port)
        os.kill(tracer_of(program), signal.SIGKILL)
        (site / "later.txt").write_bytes(b"made after the failover\n")
        assert _get_within(port, "/hello.txt", RECONNECT_WITHIN) == b"hello\n" * 1000
        with ThreadPoolExecutor(3) as ex:
            assert list(ex.map(lambda _: _get(port, "/later.txt"), range(6))) == [b"made after the failover\n"] * 6
        assert "went live" in said.read_text(), said.read_text()
        run.send_signal(signal.SIGINT)
        run.wait(TIMEOUT)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert "primary failed" in said.read_text(), said.read_text()
    reap_adopted_zombies()
    assert_no_leftovers(pids_before)
