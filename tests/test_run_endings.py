"""How a replicated run ends, as the operator and a script see it.

- An operator's stop (SIGTERM to ``tft run``) with a remote backup stops both
  replicas: the primary tells the backup before it goes, so the backup does
  not take the silence for a crash and go live (before: it printed on alone).
- After a remote failover, the primary's ``tft run`` says the program went on
  at the backup and exits :data:`EXIT_HANDED_OVER`, not "no replica finished
  the program" with status 1 while the backup finished it.
- A program that forked 200 children and never waited for them leaves no
  zombie behind ``tft record``, ``tft replay`` or ``tft run`` (before: 200, for
  1-3 s after tft exited, until init reaped them).
- A failover in the middle of a make leaves none of gcc's temporary files.
"""
from __future__ import annotations

import _thread
import os
import signal
import subprocess
import threading
import time

import pytest

from tft_lab import channel

from tft_lab.run import EXIT_HANDED_OVER, EXIT_INTERRUPTED
from tft_lab._process import start_cli
from tft_lab.testing import (assert_no_leftovers, build_program, free_port, processes,
                             reap_adopted_zombies, run_cli, wait_listening)

TIMEOUT = 120
LOOPBACK = "127.0.0.1"
KEY = bytes(range(32))


class Pair:
    """A ``tft backup --listen`` on loopback and the ``tft run`` that uses it; both killed at the end."""

    def __init__(self, key, tmpdir: str):
        self.key = key
        self.port = free_port()
        self.env = dict(os.environ, TMPDIR=tmpdir)
        self.procs: list[subprocess.Popen] = []
        self.backup = self._start(["backup", "--listen", f"{LOOPBACK}:{self.port}", "--key-file", key,
                                   "--accept-timeout", 60])
        wait_listening(self.port, self.backup)

    def _start(self, args) -> subprocess.Popen:
        p = start_cli(args, env=self.env)
        self.procs.append(p)
        return p

    def run(self, *args) -> subprocess.Popen:
        return self._start(["run", "--backup", f"tcp://{LOOPBACK}:{self.port}", "--key-file", self.key, *args])

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.communicate()


@pytest.fixture
def pair(key, tmp_path, pids_before):
    tmp = tmp_path / "tmpdir"
    tmp.mkdir()
    p = Pair(key, str(tmp))
    try:
        yield p
    finally:
        p.close()
    assert os.listdir(tmp) == []   # nothing left in $TMPDIR by either side
    reap_adopted_zombies()
    assert_no_leftovers(pids_before)


def read_lines(proc: subprocess.Popen, n: int) -> list[bytes]:
    lines = [proc.stdout.readline() for _ in range(n)]
    assert all(lines), f"the program printed fewer than {n} lines"
    return lines


# --- an operator's stop ----------------------------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=["TERM", "HUP", "INT"])
def test_an_operators_stop_stops_both_replicas(sig, pair, counter):
    primary = pair.run("--", counter, 100)        # a line every 100 ms: 10 s in all
    read_lines(primary, 5)
    primary.send_signal(sig)
    _, p_err = primary.communicate(timeout=TIMEOUT)
    started = time.monotonic()
    b_out, b_err = pair.backup.communicate(timeout=TIMEOUT)
    assert primary.returncode == EXIT_INTERRUPTED and p_err.endswith(b"tft: interrupted; the program was stopped\n"), p_err
    assert b_out == b"", f"the backup went live and ran the program on: {b_err!r} {p_err!r}"
    assert pair.backup.returncode == EXIT_INTERRUPTED, b_err
    assert b_err == (b"tft: backup: stopped with the primary: the operator stopped tft run: both replicas stop, "
                     b"the backup does not go live\n")
    assert time.monotonic() - started < 5, "the backup did not stop at once"


def test_a_write_interrupted_by_the_stop_leaves_the_stream_whole():
    """The stop often comes while the primary waits for a slow backup to take more bytes: the
    KeyboardInterrupt must not leave half a message on the wire, or the backup refuses the
    primary's last word (its end record) and takes that for a crash."""
    a, b = channel.socketpair_channel()
    receivers: list = []
    handshake = threading.Thread(target=lambda: receivers.append(channel.Receiver.from_socket(b, KEY)))
    handshake.start()
    sender = channel.Sender.from_socket(a, KEY)
    handshake.join(5)
    receiver = receivers[0]
    frame = bytes(range(256)) * 4096                     # 1 MiB
    # The stop, as the supervisor takes it, while send() waits on a full socket.
    previous = signal.signal(signal.SIGINT, lambda signum, _: channel.interrupt_when_safe())
    timer = threading.Timer(1.0, _thread.interrupt_main)
    sent = 0
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            for _ in range(200):                          # the backup does not read: 32 MiB queue, then full
                sender.send(frame)
                sent += 1
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    assert 0 < sent < 200
    got: list = []

    def drain():
        while (f := receiver.recv(timeout=10)) is not None:
            got.append(f)

    reader = threading.Thread(target=drain)
    reader.start()
    sender.send(b"the last word")
    sender.close(timeout=10)
    reader.join(30)
    receiver.close()
    assert receiver.closed_cleanly
    assert got[-1] == b"the last word"
    assert all(f == frame for f in got[:-1]) and len(got) - 1 in (sent, sent + 1)


# --- a remote failover ------------------------------------------------------------------------------

def counter_lines(out: bytes) -> list[str]:
    return out.decode().splitlines()


@pytest.mark.parametrize("how", ["killed", "fenced"])
def test_after_a_remote_failover_the_primary_says_where_the_program_went(how, pair, counter):
    if how == "killed":
        primary = pair.run("--fault", "primary@60", "--", counter, 30)
        p_out, p_err = primary.communicate(timeout=TIMEOUT)
        why = b"this primary stopped (killed by the injected fault)"
    else:
        primary = pair.run("--", counter, 30)
        first = read_lines(primary, 3)
        pair.backup.send_signal(signal.SIGSTOP)   # the backup falls silent: the primary fences itself
        try:
            p_out, p_err = primary.communicate(timeout=TIMEOUT)
        finally:
            pair.backup.send_signal(signal.SIGCONT)
        p_out = b"".join(first) + p_out
        why = b"this primary stopped (primary fenced itself: "   # the backup fell silent, or never acked
    b_out, b_err = pair.backup.communicate(timeout=TIMEOUT)
    assert b"no replica finished" not in p_err, p_err
    assert primary.returncode == EXIT_HANDED_OVER, p_err
    last = p_err.splitlines()[-1]
    assert last.startswith(b"tft: handed over: " + why), p_err
    assert f"the program goes on at the backup (tcp://{LOOPBACK}:{pair.port})".encode() in last
    # ... and so it did: the backup went live and finished it, every line once (one may repeat at
    # the seam: the output the primary made but could not confirm).
    assert pair.backup.returncode == 0 and b"goes live" in b_err, b_err
    a, b = counter_lines(p_out), counter_lines(b_out)
    seam = 1 if a and b and a[-1] == b[0] else 0
    together = a + b[seam:]
    assert [line.split()[0] for line in together] == [f"n={i}" for i in range(30)], together


# --- zombies ----------------------------------------------------------------------------------------

def adopted_zombies() -> int:
    me = os.getpid()
    return sum(1 for p in processes().values() if p.ppid == me and p.state == "Z")


@pytest.mark.parametrize("verb", ["record", "replay", "run"])
def test_children_never_waited_for_are_reaped_before_tft_exits(verb, tmp_path, pids_before):
    forkmany = str(build_program("forkmany"))
    log = tmp_path / "forkmany.log"
    if verb == "replay":
        assert run_cli(["record", "--log", log, "--", forkmany, 200], timeout=TIMEOUT).returncode == 0
        reap_adopted_zombies()
    args = {"record": ["record", "--log", log, "--", forkmany, 200], "replay": ["replay", log],
            "run": ["run", "--", forkmany, 200]}[verb]
    done = run_cli(args, timeout=TIMEOUT)
    zombies = adopted_zombies()   # at once: tft has exited, nobody else had time to reap them
    assert done.returncode == 0 and done.stdout.startswith(b"forked=200\n"), done.stderr
    assert zombies == 0, f"tft {verb} left {zombies} zombies to whoever adopted them"
    assert_no_leftovers(pids_before)


# --- nothing left behind by a failover in a build ---------------------------------------------------

HELLO_C = '#include <stdio.h>\nint main(void){ for (int i = 0; i < 3; i++) printf("hi %d\\n", i); return 0; }\n'
MAKEFILE = "hello: hello.c\n\tgcc -O1 -o hello hello.c\nrun: hello\n\t./hello\n"


@pytest.mark.parametrize("at", [400, 1500, 2500])
def test_a_make_that_fails_over_in_gcc_leaves_no_temporary_file(at, tmp_path, pids_before):
    """gcc keeps its assembler output and the linker's files in $TMPDIR while it runs; the
    primary's gcc dies before it removes them, so the backup's gcc, live, must remove them."""
    work, tmp = tmp_path / "src", tmp_path / "tmpdir"
    work.mkdir()
    tmp.mkdir()
    (work / "hello.c").write_text(HELLO_C)
    (work / "Makefile").write_text(MAKEFILE)
    done = run_cli(["run", "--fault", f"primary@{at}", "--", "make", "-s", "run"], cwd=work,
                   env=dict(os.environ, TMPDIR=str(tmp)), timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    assert b"failover" in done.stderr, done.stderr
    assert done.stdout == b"hi 0\nhi 1\nhi 2\n"
    assert sorted(os.listdir(tmp)) == []
    reap_adopted_zombies()
    assert_no_leftovers(pids_before)
