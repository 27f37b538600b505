"""A replicated key-value server keeps every acknowledged write through a failover.

``tft_lab/examples/kvserver.py`` runs under ``tft run``.  A client stores keys,
each SET acknowledged with OK (the output rule let that OK out only once the
backup had the log up to it).  Then the primary's supervisor is SIGKILLed.  The
client's connection lived in the primary's program: it is reset or closed.  The
client reconnects to the same port, now served by the backup gone live, and
reads back every key it was told was stored.  The journal file holds every
acknowledged SET once (one line may be repeated: the uncertain output).  The
server shuts down on request and tft exits 0, having printed the server's two
lines once each.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from tft_lab.testing import reap_adopted_zombies, REPO, assert_no_leftovers, processes

KVSERVER = REPO / "tft_lab" / "examples" / "kvserver.py"
#: The interpreter itself, not a ``python3`` found on PATH: that may be a shell-script shim
#: (pyenv) whose dozens of helper processes only slow the test down.
PYTHON = os.path.realpath(sys.executable)
N = 30
RECONNECT_WITHIN = 5.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Client:
    """One connection to the server; one reply line per command."""

    def __init__(self, port: int, timeout: float = 10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def __call__(self, line: str) -> str:
        self.sock.sendall(line.encode() + b"\n")
        while b"\n" not in self.buf:
            data = self.sock.recv(4096)
            if not data:
                raise EOFError("the server closed the connection")
            self.buf += data
        reply, _, self.buf = self.buf.partition(b"\n")
        return reply.decode()

    def close(self):
        self.sock.close()


def connect_within(port: int, seconds: float) -> Client:
    """Connect and get an answer, retrying (bounded) while nobody serves the port."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            client = Client(port, timeout=2)
            client("GET no-such-key")
            return client
        except (OSError, EOFError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def listening_inodes(port: int) -> set[str]:
    """Socket inodes listening on 127.0.0.1:port (state 0A in /proc/net/tcp)."""
    found = set()
    with open("/proc/net/tcp") as f:
        for line in list(f)[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.split(":")[1], 16) == port:
                found.add(inode)
    return found


def process_listening_on(port: int) -> int:
    """The process that really listens on the port: the primary's program (the backup's holds
    a stand-in until it goes live)."""
    inodes = listening_inodes(port)
    for pid in processes():
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                return pid
    raise AssertionError(f"nobody listens on port {port}")


def tracer_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("TracerPid:"))



class Server:
    """``tft run [OPTIONS] -- python3 kvserver.py PORT [ARGS]`` in the background."""

    def __init__(self, port: int, *options: str, args=()):
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tft_lab.cli", "run", *options, "--", PYTHON, str(KVSERVER), str(port),
             *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        self.out: list[str] = []
        self.err = b""
        self.readers = [threading.Thread(target=self._read_out, daemon=True),
                        threading.Thread(target=self._read_err, daemon=True)]
        for t in self.readers:
            t.start()

    def _read_out(self):
        for line in self.proc.stdout:
            self.out.append(line.decode(errors="replace"))

    def _read_err(self):
        self.err = self.proc.stderr.read()

    def wait_listening(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not any(line.startswith("listening on") for line in self.out):
            assert self.proc.poll() is None, f"tft exited: {self.err.decode()}"
            assert time.monotonic() < deadline, "the server never said it was listening"
            time.sleep(0.05)

    def finish(self, timeout: float = 60) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            for t in self.readers:
                t.join(10)


@pytest.fixture
def server_factory():
    started = []

    def start(*options, args=()):
        port = free_port()
        server = Server(port, *options, args=args)
        started.append(server)
        server.wait_listening()
        return server, port

    yield start
    for server in started:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()


@pytest.mark.parametrize("commit", ["output", "epoch"])
def test_acknowledged_writes_survive_the_primarys_death(commit, server_factory, tmp_path, pids_before):
    journal = tmp_path / "kv.journal"
    server, port = server_factory("--commit", commit, args=["--journal", str(journal)])

    client = Client(port)
    acked = {}
    for i in range(N):
        assert client(f"SET key{i} value {i} of {N}") == "OK"
        acked[f"key{i}"] = f"value {i} of {N}"

    os.kill(tracer_of(process_listening_on(port)), signal.SIGKILL)

    with pytest.raises((ConnectionError, EOFError)):   # reset, or closed: not an answer
        client("GET key0")
    client.close()

    again = connect_within(port, RECONNECT_WITHIN)
    assert {key: again(f"GET {key}") for key in acked} == acked
    assert again("SET after failover") == "OK"
    assert again("GET after") == "failover"

    sets = journal.read_text().splitlines()
    expected = [f"SET {key} {value}" for key, value in acked.items()] + ["SET after failover"]
    repeated = [line for pos, line in enumerate(sets) if pos and line == sets[pos - 1]]
    assert len(repeated) <= 1
    assert [line for pos, line in enumerate(sets) if not pos or line != sets[pos - 1]] == expected

    assert again("SHUTDOWN") == "BYE"
    assert server.finish() == 0, server.err.decode()
    assert server.out == [f"listening on 127.0.0.1:{port}\n", "kvserver stopped\n"]
    assert b"failover" in server.err
    reap_adopted_zombies()
    assert_no_leftovers(pids_before)


def test_without_a_failure_the_server_serves_and_stops_cleanly(server_factory, pids_before):
    server, port = server_factory()
    client = Client(port)
    assert client("SET greeting hello world") == "OK"
    assert client("GET greeting") == "hello world"
    assert client("GET missing") == "NONE"
    assert client("SHUTDOWN") == "BYE"
    assert server.finish() == 0, server.err.decode()
    assert server.out == [f"listening on 127.0.0.1:{port}\n", "kvserver stopped\n"]
    assert b"failover" not in server.err
    reap_adopted_zombies()
    assert_no_leftovers(pids_before)


def test_a_server_on_port_0_keeps_the_port_it_was_given():
    server = Server(0)
    try:
        server.wait_listening()
        port = int(server.out[0].rsplit(":", 1)[1])
        assert Client(port)("SET a 1") == "OK"
        os.kill(tracer_of(process_listening_on(port)), signal.SIGKILL)
        again = connect_within(port, RECONNECT_WITHIN)
        assert again("GET a") == "1"
        assert again("SHUTDOWN") == "BYE"
        assert server.finish() == 0
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
        server.finish()
        reap_adopted_zombies()
