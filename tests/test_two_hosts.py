"""Two hosts: a primary in one network namespace, its backup in another.

Each test builds its own little network: two namespaces joined by a veth pair,
10.199.0.1/24 in A and 10.199.0.2/24 in B (the addresses exist only inside
those namespaces, and a finalizer always deletes both).  ``tft backup --listen
10.199.0.2:PORT --key-file K`` waits in B; ``tft run --backup
tcp://10.199.0.2:PORT --key-file K -- PROG`` runs in A.  The output appears
once, on the primary's host, with the program's status; a primary holding the
wrong key is refused with an error about authentication and no program runs;
and when A's link goes down mid-run, the backup goes live in B and finishes the
program while the primary fences itself, so the two never both print a line
(beyond the one uncertain output).
"""
from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from tft_lab._build import example
from tft_lab.run import EXIT_HANDED_OVER
from tft_lab.testing import reap_adopted_zombies, REPO, assert_no_leftovers, build_program, run_cli

pytestmark = pytest.mark.netns

ADDR_A, ADDR_B = "10.199.0.1", "10.199.0.2"
PORT = 7400
LIVE_WITHIN = 5.0           # link down -> the backup's first live line (default heartbeat 0.5 s)
_numbers = itertools.count()


def netns_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    if shutil.which("ip") is None:
        return "needs the ip command (apt-get install iproute2)"
    if subprocess.run(["ip", "netns", "list"], check=False, capture_output=True).returncode != 0:
        return "'ip netns' does not work here"
    return None


def ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], check=False, capture_output=True, text=True, timeout=20)
    assert done.returncode == 0, f"ip {' '.join(args)}: {done.stderr.strip()}"


class Hosts:
    """Two namespaces, A (the primary's host) and B (the backup's), joined by a veth pair."""

    def __init__(self):
        n = f"{os.getpid() % 100000}{next(_numbers)}"
        self.a, self.b = f"tft-a{n}", f"tft-b{n}"
        self.veth_a, self.veth_b = f"tfta{n}"[:15], f"tftb{n}"[:15]
        self.procs: list[subprocess.Popen] = []
        # Each host's own temporary directory: a host that is crashed (its tft SIGKILLed) leaves
        # its work folder there, as a real host would in its /tmp; it goes with the host.
        self.tmp = {ns: tempfile.mkdtemp(prefix=f"host-{ns[4]}-") for ns in (self.a, self.b)}

    def create(self) -> None:
        ip("netns", "add", self.a)
        ip("netns", "add", self.b)
        ip("link", "add", self.veth_a, "type", "veth", "peer", "name", self.veth_b)
        ip("link", "set", self.veth_a, "netns", self.a)
        ip("link", "set", self.veth_b, "netns", self.b)
        for ns, dev, addr in ((self.a, self.veth_a, ADDR_A), (self.b, self.veth_b, ADDR_B)):
            ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            ip("-n", ns, "link", "set", dev, "up")
            ip("-n", ns, "link", "set", "lo", "up")

    def destroy(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        for ns in (self.a, self.b):
            pids = subprocess.run(["ip", "netns", "pids", ns], check=False, capture_output=True,
                                  text=True).stdout.split()
            for pid in pids:     # only our own processes can be in a namespace we made
                try:
                    os.kill(int(pid), 9)
                except (OSError, ValueError):
                    pass
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)
        for folder in self.tmp.values():
            shutil.rmtree(folder, ignore_errors=True)

    def tft(self, ns: str, *args) -> subprocess.Popen:
        """``tft ARGS`` inside namespace ``ns`` (``ip netns exec`` execs it: same pid)."""
        p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-m", "tft_lab.cli", *map(str, args)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=dict(os.environ, PYTHONPATH=str(REPO), TMPDIR=self.tmp[ns]))
        self.procs.append(p)
        return p

    def backup(self, key: Path, *args) -> subprocess.Popen:
        p = self.tft(self.b, "backup", "--listen", f"{ADDR_B}:{PORT}", "--key-file", key,
                     "--accept-timeout", 30, *args)
        wait_listening(p, PORT)
        return p

    def primary(self, key: Path, *prog) -> subprocess.Popen:
        return self.tft(self.a, "run", "--backup", f"tcp://{ADDR_B}:{PORT}", "--key-file", key, "--", *prog)


def wait_listening(p: subprocess.Popen, port: int, timeout: float = 30) -> None:
    """Until ``p`` listens on ``port`` (its own namespace's /proc/PID/net/tcp, state 0A)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert p.poll() is None, f"the backup exited: {p.stderr.read().decode()}"
        try:
            with open(f"/proc/{p.pid}/net/tcp") as f:
                if any(line.split()[3] == "0A" and int(line.split()[1].split(":")[1], 16) == port
                       for line in list(f)[1:]):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port} after {timeout} s")


def finish(p: subprocess.Popen, timeout: float = 60) -> tuple[int, bytes, bytes]:
    out, err = p.communicate(timeout=timeout)
    return p.returncode, out, err


class Lines(list):
    """A process's stdout lines as (arrival time, text), read by a thread; stderr kept whole."""

    def __init__(self, p: subprocess.Popen):
        super().__init__()
        self.p, self.err = p, b""
        self.threads = [threading.Thread(target=self._out, daemon=True),
                        threading.Thread(target=self._err, daemon=True)]
        for t in self.threads:
            t.start()

    def _out(self):
        for raw in self.p.stdout:
            self.append((time.monotonic(), raw.decode(errors="replace").rstrip("\n")))

    def _err(self):
        self.err = self.p.stderr.read()

    def wait_for(self, n: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while len(self) < n and self.p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        return len(self) >= n

    def finish(self, timeout: float = 60) -> tuple[int, bytes]:
        code = self.p.wait(timeout)
        for t in self.threads:
            t.join(10)
        return code, self.err



def fnv_sums(lines: list[str]) -> None:
    """counter.c's lines n=0,1,... with every running FNV-1a ``sum`` right (a gap breaks it)."""
    h = 0xcbf29ce484222325
    for n, line in enumerate(lines):
        text, _, digest = line.rpartition(" sum=")
        assert text.startswith(f"n={n} "), f"expected n={n}: {line!r}"
        for b in text.encode():
            h = ((h ^ b) * 0x100000001b3) % 2**64
        assert digest == f"{h:016x}", f"line {n}: the running sum breaks: {line!r}"


@pytest.fixture
def hosts():
    reason = netns_unavailable()
    if reason:
        pytest.skip(reason)
    h = Hosts()
    try:
        h.create()
        yield h
    finally:
        h.destroy()


# --- the tests -------------------------------------------------------------------------------------

def test_a_backup_on_another_host_output_once_with_the_programs_status(hosts, key, pids_before):
    backup = hosts.backup(key)
    code, out, err = finish(hosts.primary(key, build_program("exitcode"), "7"))
    assert (code, out) == (7, b"exitcode_mode=7\nabout_to=exit\n"), err
    b_code, b_out, b_err = finish(backup)
    assert b_out == b""                       # the backup replayed: it printed nothing itself
    assert b_code == 7, b_err                 # ... and knows how the program ended
    reap_adopted_zombies()
    assert_no_leftovers(pids_before)


def test_a_primary_with_the_wrong_key_is_refused_and_nothing_runs(hosts, key, tmp_path, pids_before):
    backup = hosts.backup(key)
    wrong = tmp_path / "wrong.key"
    assert run_cli(["keygen", wrong]).returncode == 0
    code, out, err = finish(hosts.primary(wrong, build_program("exitcode"), "7"))
    assert code != 0
    assert out == b""                         # the program never ran
    assert b"authentication" in err, err
    # The backup started no program: it either waits on, childless, or gives up with an error.
    time.sleep(0.5)
    if backup.poll() is None:
        assert not Path(f"/proc/{backup.pid}/task/{backup.pid}/children").read_text().split()
        backup.kill()
    b_code, b_out, b_err = finish(backup)
    assert b_out == b""
    if b_code not in (-9,):
        assert b_code != 0 and b"authentication" in b_err, b_err
    reap_adopted_zombies()
    assert_no_leftovers(pids_before)


def test_when_the_primarys_link_goes_down_the_backup_finishes_and_the_primary_fences(hosts, key,
                                                                                      pids_before):
    backup = hosts.backup(key)
    primary = Lines(hosts.primary(key, example("counter"), "50"))
    b_lines = Lines(backup)      # the backup's stdout, each line with the time it came
    assert primary.wait_for(10, 30), "the primary printed fewer than 10 lines"   # ~1 s of output

    cut = time.monotonic()
    ip("-n", hosts.a, "link", "set", hosts.veth_a, "down")

    code, err = primary.finish()
    fenced = time.monotonic() - cut
    assert code == EXIT_HANDED_OVER                      # it did not finish the program ...
    assert b"fell silent" in err and b"primary stops" in err, err   # ... it fenced itself
    assert err.splitlines()[-1].startswith(b"tft: handed over: this primary stopped (primary fenced itself"), err
    assert fenced < LIVE_WITHIN, f"the primary ran on for {fenced:.1f} s after the cut"

    b_code, b_err = b_lines.finish()
    assert b_code == 0, b_err
    assert b"goes live" in b_err
    assert b_lines, "the backup printed nothing"
    assert b_lines[0][0] - cut < LIVE_WITHIN, f"first live line {b_lines[0][0] - cut:.1f} s after the cut"
    a_lines = [line for _, line in primary]
    # Together: the whole run, n=0..49, each line once but for at most one repeated at the seam.
    backup_lines = [line for _, line in b_lines]
    seam = 1 if a_lines and backup_lines and a_lines[-1] == backup_lines[0] else 0
    fnv_sums(a_lines + backup_lines[seam:])
    assert len(a_lines) + len(backup_lines) - seam == 50
    reap_adopted_zombies()
    assert_no_leftovers(pids_before)


KV_CLIENT = r"""
import socket, sys, time
host, port, mode, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
deadline = time.monotonic() + 20
while True:                      # the server (or, after a failover, its backup) may not be up yet
    try:
        s = socket.create_connection((host, port), timeout=5)
        f = s.makefile("rw")
        def ask(line):
            f.write(line + "\n"); f.flush()
            answer = f.readline()
            if not answer:
                raise ConnectionResetError
            return answer.strip()
        if mode == "set":
            print(" ".join(ask(f"SET key{i} value{i}") for i in range(n)))
        else:
            print(" ".join(ask(f"GET key{i}") for i in range(n)))
            ask("SHUTDOWN")
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.1)
"""


def test_a_server_whose_primary_host_dies_serves_on_the_backups_address(hosts, key, tmp_path, pids_before):
    """The server listened on the primary's address; that address died with its host, so the
    backup re-creates the listener on its own, same port, with every acknowledged write."""
    client = tmp_path / "client.py"
    client.write_text(KV_CLIENT)
    kv_port = PORT + 1
    backup = hosts.backup(key)
    primary = hosts.primary(key, sys.executable, REPO / "tft_lab" / "examples" / "kvserver.py",
                            kv_port, "--host", ADDR_A)

    def kv(ns, host, mode):
        done = subprocess.run(["ip", "netns", "exec", ns, sys.executable, client, host, str(kv_port), mode, "5"],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    assert kv(hosts.b, ADDR_A, "set") == ["OK"] * 5          # from the backup's host, over the link
    for pid in subprocess.run(["ip", "netns", "pids", hosts.a], capture_output=True,
                              text=True).stdout.split():
        os.kill(int(pid), 9)                                  # the primary's host dies: all of it
    primary.wait(10)
    assert kv(hosts.b, ADDR_B, "get") == [f"value{i}" for i in range(5)]
    code, out, err = finish(backup)
    assert code == 0, err
    assert f"listening again on 0.0.0.0:{kv_port}".encode() in err, err
    reap_adopted_zombies()
    assert_no_leftovers(pids_before)
