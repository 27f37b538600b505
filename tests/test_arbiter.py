"""The arbiter: a lease on a per-run key in a real etcd decides which replica is live.

Each test module run starts its own etcd (Debian's ``etcd-server``) on free loopback ports
with its data in a temporary folder, and kills it at the end.  The stories:

- the primary is killed: the backup wins the key once the lease runs out, goes live, and
  the output is one valid chain;
- the channel is cut but the primary lives and renews its lease: the backup loses the
  transaction and stands down (no second live replica), the primary finishes alone;
- the primary's supervisor is frozen past its lease: the backup wins and goes live; the
  primary, woken up, fences at once and never prints again;
- a lease that is not renewed counts as lost here before etcd lets anyone else win it;
- an endpoint that is unreachable, or is not etcd, is a one-line error before anything runs.
"""
from __future__ import annotations

import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pandas as pd
import pytest

from tft_lab import arbiter
from tft_lab.plots import epoch_timeline
from tft_lab.testing import (REPO, assert_no_leftovers, build_program, free_port, reap_adopted_zombies,
                             run_cli, wait_listening)

from test_bad_input import one_line_error
from test_failover import CHAIN, K, NO_TIMER, SLEEP_MS, Background, check_chain, primary_program, tracer_of

TTL = 2
LONG = 120  # lines of a chain that outlasts the backup's decision (12 s)


@pytest.fixture(scope="module")
def etcd(tmp_path_factory):
    """A private etcd server: its ``etcd://127.0.0.1:PORT`` URL."""
    if arbiter.LocalEtcd.binary() is None:
        pytest.skip("etcd is not installed (Debian: apt-get install etcd-server)")
    with arbiter.LocalEtcd(tmp_path_factory.mktemp("etcd")) as server:
        yield server


def arbiter_events(trace) -> pd.DataFrame:
    df = pd.read_parquet(trace)
    return df[df["kind"] == "arbiter"][["replica", "syscall", "action", "args"]]


# -- the lease itself --------------------------------------------------------------------------

def test_a_lease_not_renewed_is_lost_here_before_anyone_can_win_its_key(etcd):
    client = arbiter.Etcd.from_spec(etcd.url)
    run_id = arbiter.new_run_id()
    held = arbiter.hold(client, run_id, "test holder", TTL)
    try:
        assert client.get(arbiter.run_key(run_id)) == "test holder"
        time.sleep(TTL)
        assert not held.expired() and held.renewals >= 1    # renewed every TTL/3: still ours
        held._stop.set()                                    # the renewals stop (a frozen or cut-off holder)
        held._thread.join()
        contest = {}
        rival = threading.Thread(target=lambda: contest.update(
            c=arbiter.contend(client, run_id, "rival", TTL, poll=0.02, give_up=10 * TTL)))
        rival.start()
        while not held.expired():
            time.sleep(0.005)
        fenced_at = time.monotonic()
        rival.join()
        won_at = time.monotonic()
        assert contest["c"].lease is not None, contest["c"].why
        assert won_at > fenced_at    # the holder stopped before the rival could start
        assert client.get(arbiter.run_key(run_id)) == "rival"
        contest["c"].lease.release()
        assert client.get(arbiter.run_key(run_id)) is None   # released: the key goes with the lease
    finally:
        held.release()


def test_a_contender_stands_down_while_the_holder_renews(etcd):
    client = arbiter.Etcd.from_spec(etcd.url)
    run_id = arbiter.new_run_id()
    held = arbiter.hold(client, run_id, "live primary", TTL)
    try:
        c = arbiter.contend(client, run_id, "backup", TTL, give_up=10 * TTL)
        assert c.lease is None and "renewed" in c.why, c.why
        assert c.waited_s < 3 * TTL   # two renewals seen, one unrenewed end apart
        assert client.get(arbiter.run_key(run_id)) == "live primary"
    finally:
        held.release()


# -- replicated runs -----------------------------------------------------------------------------

def test_a_killed_primary_is_masked_the_backup_goes_live_only_with_the_key(etcd, tmp_path, pids_before):
    trace = tmp_path / "trace.parquet"
    run = Background("--arbiter", etcd.url, "--lease-ttl", str(TTL), "--trace", str(trace), "--",
                     str(build_program("chain")), str(K), "-", str(SLEEP_MS), NO_TIMER)
    program = primary_program(run)
    assert run.wait_for_line(5, 20) is not None
    os.kill(tracer_of(program), signal.SIGKILL)   # the primary's supervisor dies, its lease is left to expire
    code, lines, err = run.finish()
    assert code == 0, err
    assert "tft: failover: the backup went live" in err
    check_chain(lines[:-1], K)
    assert lines[-1].startswith("checksum=")
    ev = arbiter_events(trace)
    assert list(zip(ev["replica"], ev["syscall"])) == [("primary", "lease-won"), ("backup", "lease-won")], ev
    df = pd.read_parquet(trace)
    backup = df[df["replica"] == "backup"].reset_index(drop=True)
    won = backup.index[backup["syscall"] == "lease-won"][0]
    live = backup.index[backup["syscall"] == "go-live"][0]
    assert won < live   # the key first, then live
    reap_adopted_zombies()
    assert_no_leftovers(pids_before)


class Proxy:
    """A TCP relay from a local port to ``target`` that can be cut: it then drops every byte
    both ways but keeps the connections open, as a partition does (no EOF, only silence)."""

    def __init__(self, target: int):
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.cut = threading.Event()
        self.socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        try:
            a, _ = self.listener.accept()
        except OSError:
            return
        b = socket.create_connection(("127.0.0.1", self.target))
        self.socks += [a, b]
        for src, dst in ((a, b), (b, a)):
            threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src, dst):
        try:
            while data := src.recv(65536):
                if not self.cut.is_set():
                    dst.sendall(data)
        except OSError:
            pass

    def close(self):
        for s in (self.listener, *self.socks):
            s.close()


@pytest.mark.parametrize("lines_in_all, cut_after, why", [
    (LONG, 5, "the primary is alive"),       # decided while the primary runs: its lease is renewed
    (K, K - 4, "the run is over"),           # decided after it finished: the key says so
])
def test_a_backup_cut_off_from_a_live_primary_loses_the_key_and_stays_down(etcd, key, pids_before, lines_in_all,
                                                                          cut_after, why):
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    backup = subprocess.Popen([sys.executable, "-m", "tft_lab.cli", "backup", "--listen", f"127.0.0.1:{port}",
                               "--key-file", str(key), "--accept-timeout", "30", "--arbiter", etcd.url,
                               "--lease-ttl", str(TTL)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    proxy = None
    try:
        wait_listening(port, backup)
        proxy = Proxy(port)
        run = Background("--backup", f"tcp://127.0.0.1:{proxy.port}", "--key-file", str(key), "--arbiter", etcd.url,
                         "--lease-ttl", str(TTL), "--", str(build_program("chain")), str(lines_in_all), "-",
                         str(SLEEP_MS), NO_TIMER)
        assert run.wait_for_line(cut_after, 30) is not None, run.err
        proxy.cut.set()   # the backup hears nothing more; the primary and etcd are fine
        b_out, b_err = backup.communicate(timeout=60)
        code, lines, err = run.finish()
    finally:
        if backup.poll() is None:
            backup.kill()
            backup.wait()
        if proxy is not None:
            proxy.close()
    b_err = b_err.decode()
    assert backup.returncode == 4, b_err                       # stood down: the program goes on elsewhere
    assert "stood down, it did not go live" in b_err and why in b_err, b_err
    assert b_out == b""                                        # it never printed a line
    assert code == 0, err                                      # the primary finished the program, alone
    check_chain(lines[:-1], lines_in_all)
    reap_adopted_zombies()
    assert_no_leftovers(pids_before)


def test_a_primary_frozen_past_its_lease_fences_and_never_prints_after_the_backup(etcd, tmp_path, pids_before):
    trace = tmp_path / "trace.parquet"
    run = Background("--arbiter", etcd.url, "--lease-ttl", str(TTL), "--trace", str(trace), "--",
                     str(build_program("chain")), str(K), "-", str(SLEEP_MS), NO_TIMER)
    program = primary_program(run)
    supervisor = tracer_of(program)
    assert run.wait_for_line(5, 20) is not None
    os.kill(supervisor, signal.SIGSTOP)   # a long GC pause, a frozen VM: no renewals, no heartbeats
    try:
        frozen_at = len(run.lines)
        # the backup notices the silence (2 s), wins the key once the lease ran out, goes live
        assert run.wait_for_line(frozen_at + 3, 30) is not None, "the backup did not go live"
    finally:
        os.kill(supervisor, signal.SIGCONT)   # the primary wakes up, its program mid-loop
    code, lines, err = run.finish()
    assert code == 0, err
    assert "lease is lost" in err and "primary stops" in err, err
    check_chain(lines[:-1], K)   # one chain: a line from the woken primary would break it
    ev = arbiter_events(trace)
    assert ("primary", "fenced") in set(zip(ev["replica"], ev["syscall"])), ev
    assert ("backup", "lease-won") in set(zip(ev["replica"], ev["syscall"])), ev
    df = pd.read_parquet(trace)
    fenced = df[(df["replica"] == "primary") & (df["syscall"] == "fenced")].index[0]
    primary_after = df[(df["replica"] == "primary") & (df.index > fenced) & (df["syscall"] == "write")]
    assert primary_after.empty, primary_after
    reap_adopted_zombies()
    assert_no_leftovers(pids_before)


def test_a_primary_cut_off_from_etcd_fences_and_the_backup_takes_over_when_etcd_is_back(etcd, tmp_path,
                                                                                          pids_before):
    run = Background("--arbiter", etcd.url, "--lease-ttl", str(TTL), "--", str(build_program("chain")), str(K), "-",
                     str(SLEEP_MS), NO_TIMER)
    assert run.wait_for_line(5, 30) is not None, run.err
    os.kill(etcd.proc.pid, signal.SIGSTOP)   # etcd unreachable: no renewal can succeed
    paused = time.monotonic()
    _silent_until_etcd_resumes(run, etcd, paused + 3 * TTL, "a replica printed while nobody could hold the key")
    code, lines, err = run.finish()
    assert code == 0, err
    assert "lease is lost" in err and "primary stops" in err, err     # the primary fenced ...
    assert "tft: failover: the backup went live" in err, err          # ... the backup won, once etcd was back
    check_chain(lines[:-1], K)
    reap_adopted_zombies()
    assert_no_leftovers(pids_before)


def _silent_until_etcd_resumes(run, etcd, until: float, why: str) -> None:
    """With etcd frozen (SIGSTOP): wait until ``until``, then check that no replica prints for
    half a second; etcd is resumed whatever happens."""
    try:
        while time.monotonic() < until:
            time.sleep(0.05)
        stalled = len(run.lines)
        time.sleep(0.5)
        assert len(run.lines) == stalled, why
    finally:
        os.kill(etcd.proc.pid, signal.SIGCONT)


def test_a_live_backup_that_cannot_renew_its_lease_fences_too(etcd, pids_before):
    run = Background("--arbiter", etcd.url, "--lease-ttl", str(TTL), "--respawn", "0", "--fault", "primary@40", "--",
                     str(build_program("chain")), str(LONG), "-", str(SLEEP_MS), NO_TIMER)
    # The primary dies at its 40th call, around line 4: line 12 comes from the live backup.
    assert run.wait_for_line(12, 30) is not None, run.err
    os.kill(etcd.proc.pid, signal.SIGSTOP)
    _silent_until_etcd_resumes(run, etcd, time.monotonic() + 2 * TTL, "the live backup printed without its lease")
    code, lines, err = run.finish()
    assert code != 0 and "the live backup fenced itself" in err, err
    last = int(CHAIN.fullmatch(lines[-1])[1])
    assert last < LONG - 1
    check_chain(lines, last + 1)   # what was printed is one valid chain, cut short
    reap_adopted_zombies()
    assert_no_leftovers(pids_before)


# -- bad endpoints ---------------------------------------------------------------------------------

def test_an_unreachable_arbiter_is_a_one_line_error_and_nothing_runs(tmp_path, pids_before):
    out = tmp_path / "out.txt"
    p = run_cli(["run", "--arbiter", f"etcd://127.0.0.1:{free_port()}", "--", build_program("chain"), "3",
                 str(out)])
    line = one_line_error(p)
    assert "is unreachable" in line, line
    assert p.returncode == 2
    assert not out.exists()   # the program never started
    assert_no_leftovers(pids_before)


class NotEtcd(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"<html>hello</html>"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("what", ["a web server", "not http", "silent"])
def test_an_endpoint_that_is_not_etcd_is_a_one_line_error(what, key, pids_before):
    server = conns = None
    if what == "a web server":
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotEtcd)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        port = server.server_address[1]
    else:
        listener = socket.create_server(("127.0.0.1", 0))
        port, conns = listener.getsockname()[1], [listener]

        def garbage():
            while True:
                try:
                    c, _ = listener.accept()
                except OSError:
                    return
                conns.append(c)
                if what == "not http":
                    c.sendall(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
                    c.close()
        threading.Thread(target=garbage, daemon=True).start()
    try:
        started = time.monotonic()
        for args in (["run", "--arbiter", f"etcd://127.0.0.1:{port}", "--", build_program("chain"), "3"],
                     ["backup", "--listen", f"127.0.0.1:{free_port()}", "--key-file", key,
                      "--arbiter", f"etcd://127.0.0.1:{port}"]):
            line = one_line_error(run_cli(args, timeout=30))
            assert f"etcd://127.0.0.1:{port}" in line, line
            assert ("not an etcd" in line or "unreachable" in line), line
        assert time.monotonic() - started < 20   # bounded: a silent endpoint times out
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        for c in conns or ():
            c.close()
    assert_no_leftovers(pids_before)


def test_a_malformed_arbiter_address_is_a_usage_error():
    p = run_cli(["run", "--arbiter", "http://127.0.0.1:2379", "--", "true"])
    assert "bad --arbiter" in one_line_error(p)
    assert p.returncode == 2


def test_a_backup_without_the_primarys_arbiter_refuses_to_be_its_backup(etcd, key, pids_before):
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    backup = subprocess.Popen([sys.executable, "-m", "tft_lab.cli", "backup", "--listen", f"127.0.0.1:{port}",
                               "--key-file", str(key), "--accept-timeout", "30"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        wait_listening(port, backup)
        p = run_cli(["run", "--backup", f"tcp://127.0.0.1:{port}", "--key-file", key, "--arbiter", etcd.url,
                     "--", build_program("chain"), "3", "-", "0", NO_TIMER], timeout=60)
        _, b_err = backup.communicate(timeout=30)
    finally:
        if backup.poll() is None:
            backup.kill()
            backup.wait()
    assert backup.returncode != 0
    assert "start this backup with the same --arbiter" in b_err.decode(), b_err
    assert p.returncode == 0, p.stderr   # the primary finished alone, loudly
    assert b"redundancy lost" in p.stderr, p.stderr
    reap_adopted_zombies()
    assert_no_leftovers(pids_before)


def test_the_notebook_api_passes_the_arbiter_and_shows_its_decisions(etcd, pids_before):
    from tft_lab import session

    r = session.run([str(build_program("chain")), "10", "-", "50", NO_TIMER], arbiter=etcd.url, lease_ttl=TTL,
                    fault="primary@40", progress=False, timeout=60)
    assert r.outcome == "failover", r.stderr
    ev = r.trace[r.trace["kind"] == "arbiter"]
    assert sorted(zip(ev["replica"], ev["syscall"])) == [("backup", "lease-won"), ("primary", "lease-won")], ev
    (marks,) = [d for d in epoch_timeline(r.trace).data if d.name == "redundancy"]   # on the timeline too
    assert {"lease-won", "go-live"} <= set(marks.text)
    reap_adopted_zombies()
    assert_no_leftovers(pids_before)
