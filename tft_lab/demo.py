"""``tft demo``: the main job on the bundled examples, narrated.

1. Record the ``counter`` example (time, randomness, a file it appends to) and
   replay it from the log: the same bytes, and no file written.
2. Run it replicated with the primary killed half way (``--fault``): the
   backup goes live and the output carries on as if nothing happened.
3. Run the ``kvserver`` example replicated, write keys from a client, kill the
   primary's supervisor, reconnect, and read every acknowledged key back.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from ._build import EXAMPLES, example
from ._process import run_cli, start_cli


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _chain_ok(text: str) -> bool:
    """counter's lines are n=0,1,2,... (one may repeat after a failover)."""
    ns = [int(m) for m in re.findall(r"^n=(\d+)", text, re.M)]
    dedup = [n for i, n in enumerate(ns) if i == 0 or n != ns[i - 1]]
    return dedup == list(range(len(dedup))) and len(ns) - len(dedup) <= 1


def demo(workdir: str | None = None) -> int:
    """Run the narrated demo in ``workdir`` (kept), or in a temporary directory removed at the end."""
    def _terminate(signum, frame):
        raise KeyboardInterrupt   # SIGTERM as Ctrl-C: the directory is removed on the way out

    previous = signal.signal(signal.SIGTERM, _terminate)
    work = workdir or tempfile.mkdtemp(prefix="tft-demo-")
    try:
        return _demo(work)
    finally:
        if workdir is None:
            shutil.rmtree(work, ignore_errors=True)
        signal.signal(signal.SIGTERM, previous)


def _demo(work: str) -> int:
    os.makedirs(work, exist_ok=True)
    counter = str(example("counter"))
    ok = True

    log, data = os.path.join(work, "counter.log"), os.path.join(work, "counter.txt")
    print(f"== 1. record and replay: counter 5 {data}")
    rec = run_cli(["record", "--log", log, "--", counter, "5", data], cwd=work)
    sys.stdout.write(rec.stdout.decode())
    if os.path.exists(data):
        os.unlink(data)
    rep = run_cli(["replay", log], cwd=work)
    same = rep.stdout == rec.stdout and rep.returncode == rec.returncode
    print(f"   replay printed the same {len(rep.stdout)} bytes: {'yes' if same else 'NO'}; "
          f"wrote the file again: {'yes' if os.path.exists(data) else 'no'}")
    ok &= same and not os.path.exists(data)

    print("== 2. replicated, primary killed at its 30th intercepted call: tft run --fault primary@30")
    run = run_cli(["run", "--fault", "primary@30", "--", counter, "6", data], cwd=work)
    sys.stdout.write(run.stdout.decode())
    for line in run.stderr.decode().splitlines():
        print(f"   | {line}")
    chained = _chain_ok(run.stdout.decode()) and run.returncode == 0
    print(f"   one unbroken sequence n=0..5 across the failover: {'yes' if chained else 'NO'}")
    ok &= chained and b"failover" in run.stderr

    print("== 3. a replicated key-value server; its primary is killed while a client uses it")
    port = _free_port()
    server = start_cli(["run", "--", sys.executable, EXAMPLES / "kvserver.py", port], cwd=work)
    try:
        ok &= _kv_demo(server, port)
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=30)
        for line in err.decode().splitlines():
            print(f"   | {line}")
    print("demo: ok" if ok else "demo: FAILED")
    return 0 if ok else 1


def _kv_demo(server: subprocess.Popen, port: int) -> bool:
    def connect():
        for _ in range(200):
            try:
                return socket.create_connection(("127.0.0.1", port), timeout=5)
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the server did not come up")

    def ask(s, line):
        s.sendall(line.encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(256)
            if not chunk:
                raise ConnectionResetError
            buf += chunk
        return buf.decode().strip()

    s = connect()
    for i in range(10):
        ask(s, f"SET key{i} value{i}")
    print("   client: 10 SETs acknowledged")
    supervisors = [int(p) for p in subprocess.run(["pgrep", "-P", str(server.pid)], capture_output=True,
                                                  text=True).stdout.split()]
    primary = max(supervisors)  # the coordinator forks the backup's supervisor first
    os.kill(primary, signal.SIGKILL)
    t0 = time.monotonic()
    print(f"   killed the primary's supervisor (pid {primary}) with SIGKILL")
    try:
        ask(s, "GET key0")
        print("   client: the old connection still answered")
    except (ConnectionResetError, OSError):
        print("   client: the old connection was reset; reconnecting")
    values = None
    while values is None and time.monotonic() - t0 < 10:
        try:   # a connection the dying primary's kernel accepted is reset too: try again
            s2 = connect()
            values = [ask(s2, f"GET key{i}") for i in range(10)]
        except (ConnectionResetError, OSError):
            time.sleep(0.1)
    good = values == [f"value{i}" for i in range(10)]
    print(f"   client: reconnected after {time.monotonic() - t0:.2f} s; "
          f"all 10 acknowledged keys readable: {'yes' if good else 'NO ' + str(values)}")
    ask(s2, "SHUTDOWN")
    server.wait(30)
    return good and server.returncode == 0
