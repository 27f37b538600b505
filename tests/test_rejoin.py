"""Two hosts, A -> B -> A: the failed host comes back as the backup of the live one, and takes over again.

Host A runs the primary (``tft run --backup tcp://B:PORT``); host B runs ``tft backup
--listen B:PORT --rejoin tcp://A:PORT``.  A's primary dies (its ``tft run`` is SIGKILLed,
as a host crash does): B goes live and prints the rest of the program's output.  Then A
comes back: ``tft backup --listen A:PORT`` started there is found by B (it keeps trying
that address), catches up from B's log and follows B.  B dies in turn: A goes live and
finishes the program.  The three hosts' outputs, put end to end, are the program's output
once, but for at most one repeated line at each seam.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tft_lab._build import example
from tft_lab.testing import assert_no_leftovers, reap_adopted_zombies

sys.path.insert(0, str(Path(__file__).parent))
from test_two_hosts import ADDR_A, ADDR_B, PORT, fnv_sums, hosts  # noqa: E402,F401

pytestmark = pytest.mark.netns

N = 80   # counter lines, one every ~100 ms


class Watched:
    """A process's stdout and stderr, line by line as they come (each read by a thread)."""

    def __init__(self, p: subprocess.Popen):
        self.p, self.out, self.err = p, [], []
        self.threads = [threading.Thread(target=self._read, args=(p.stdout, self.out), daemon=True),
                        threading.Thread(target=self._read, args=(p.stderr, self.err), daemon=True)]
        for t in self.threads:
            t.start()

    @staticmethod
    def _read(stream, into: list) -> None:
        for raw in stream:
            into.append(raw.decode(errors="replace").rstrip("\n"))

    def wait(self, what, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not what():
            assert time.monotonic() < deadline, f"timed out; stderr so far: {self.err}"
            time.sleep(0.05)

    def finish(self, timeout: float = 60) -> int:
        code = self.p.wait(timeout)
        for t in self.threads:
            t.join(10)
        return code


def end_to_end(*parts: list[str]) -> list[str]:
    """The outputs one after the other, the first line of each dropped if it repeats the last one."""
    whole: list[str] = []
    for part in parts:
        whole += part[1:] if whole and part and part[0] == whole[-1] else part
    return whole


def test_the_failed_host_rejoins_as_backup_and_takes_over_again(hosts, key, pids_before):
    b = Watched(hosts.backup(key, "--rejoin", f"tcp://{ADDR_A}:{PORT}"))
    a = Watched(hosts.primary(key, example("counter"), str(N)))
    a.wait(lambda: len(a.out) >= 10, 30)

    os.kill(a.p.pid, signal.SIGKILL)               # host A's tft dies, and its supervisors with it
    a.finish()
    b.wait(lambda: len(b.out) >= 3, 20)             # B is live: the program goes on there

    a2 = Watched(hosts.tft(hosts.a, "backup", "--listen", f"{ADDR_A}:{PORT}", "--key-file", key,
                           "--accept-timeout", 30))
    # (Not wait_listening: B retries every moment, so A listens only until B connects, which a
    # poll of A's sockets can miss on a busy machine.)
    # B finds it, streams its log from the start, and says when A has it all.
    b.wait(lambda: any("protected" in line and "has all" in line for line in b.err), 40)
    assert len(b.out) < N - 10, "the program ended before A caught up: nothing left to take over"

    os.kill(b.p.pid, signal.SIGKILL)                # now host B dies
    b.finish()
    assert a2.finish() == 0, a2.err
    assert any("goes live" in line for line in a2.err), a2.err
    assert a2.out, "A printed nothing after B died"

    whole = end_to_end(a.out, b.out, a2.out)
    fnv_sums(whole)
    assert len(whole) == N
    reap_adopted_zombies()
    assert_no_leftovers(pids_before)
