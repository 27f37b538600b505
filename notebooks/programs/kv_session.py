#!/usr/bin/env python3
"""kv_session.py -- the kvserver example and one client, in one program: a crash-point sweep's guest.

    usage: kv_session.py KVSERVER PORT

Starts ``KVSERVER`` (the bundled ``kvserver.py``) on ``PORT`` with ``--journal
kv.journal`` in the current folder, as a child process (fork and exec: its
``listening on`` line comes back through a pipe), then connects to it as a
client: five SETs, five GETs, SHUTDOWN.  It prints every command and its reply
and waits for the server.  Its output and the journal are the same on every run,
so ``tft sweep`` can compare each crash point's with the fault-free run's.
"""
import os
import socket
import sys


def main() -> int:
    server, port = sys.argv[1], sys.argv[2]
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.dup2(w, 1)
        # -S: no site module, hundreds of calls fewer at start-up (the server needs only the stdlib)
        os.execv(sys.executable, [sys.executable, "-S", server, port, "--journal", "kv.journal"])
    os.close(w)
    with os.fdopen(r) as ready:
        line = ready.readline()               # "listening on 127.0.0.1:PORT"
        if not line.startswith("listening on"):
            print(f"the server did not start: {line!r}", file=sys.stderr)
            return 1
        commands = [f"SET k{i} value-{i * i}" for i in range(5)] + [f"GET k{i}" for i in range(5)]
        with socket.create_connection(("127.0.0.1", int(port))) as conn, conn.makefile("rw") as f:
            for c in commands + ["SHUTDOWN"]:
                f.write(c + "\n")
                f.flush()
                print(c, "->", f.readline().rstrip("\n"), flush=True)
        print(ready.read().strip(), flush=True)  # "kvserver stopped"
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main())
