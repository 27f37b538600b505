#!/usr/bin/env python3
"""kvserver.py -- a tft_lab example: a tiny in-memory key-value server.

One process, one thread, one ``selectors`` loop; it listens on 127.0.0.1 (``--host``
to listen elsewhere).

    usage: kvserver.py [PORT=7070] [--journal FILE] [--host ADDR]

Protocol: one command per line, one reply line per command.

    SET key value   ->  OK          (value is the rest of the line)
    GET key         ->  value, or NONE
    QUIT            ->  BYE, and the server closes this connection
    SHUTDOWN        ->  BYE, and the server exits (handy in tests)
    anything else   ->  ERR ...

With ``--journal FILE`` every SET is appended to FILE (one ``write`` per SET,
done before the OK is sent). The journal is only written, never read back.
PORT 0 picks a free port. The server prints ``listening on 127.0.0.1:PORT``
when it is ready, and ``kvserver stopped`` when it exits (after SHUTDOWN,
Ctrl-C or SIGTERM; exit status 0).

Under tft, everything a client sends is an input the backup gets from the
log, and the journal writes and the replies are outputs held back by the
output rule until the backup has the log up to them.
"""
import argparse
import os
import selectors
import signal
import socket
import sys


class Connection:
    def __init__(self, sock):
        self.sock = sock
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.closing = False  # close once outbuf is sent


class KVServer:
    def __init__(self, port, journal=None, host="127.0.0.1"):
        self.host = host
        self.store = {}
        self.journal_fd = None
        if journal:
            self.journal_fd = os.open(journal, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.sel = selectors.DefaultSelector()
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, port))
        self.listener.listen(16)
        self.listener.setblocking(False)
        self.sel.register(self.listener, selectors.EVENT_READ, None)
        self.port = self.listener.getsockname()[1]
        self.running = True

    # -- commands ---------------------------------------------------------
    def execute(self, line):
        cmd, _, rest = line.partition(" ")
        cmd = cmd.upper()
        if cmd == "SET":
            key, sep, value = rest.partition(" ")
            if not key or not sep:
                return "ERR usage: SET key value"
            if self.journal_fd is not None:
                os.write(self.journal_fd, f"SET {key} {value}\n".encode())
            self.store[key] = value
            return "OK"
        if cmd == "GET":
            key = rest.strip()
            if not key or " " in key:
                return "ERR usage: GET key"
            return self.store.get(key, "NONE")
        if cmd in ("QUIT", "SHUTDOWN"):
            return "BYE"
        return f"ERR unknown command {cmd!r}" if cmd else "ERR empty line"

    # -- connections ------------------------------------------------------
    def accept(self):
        try:
            sock, _ = self.listener.accept()
        except BlockingIOError:
            return
        sock.setblocking(False)
        self.sel.register(sock, selectors.EVENT_READ, Connection(sock))

    def close(self, conn):
        self.sel.unregister(conn.sock)
        conn.sock.close()

    def readable(self, conn):
        try:
            data = conn.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except ConnectionError:
            data = b""
        if not data:
            self.close(conn)
            return
        conn.inbuf += data
        while not conn.closing and b"\n" in conn.inbuf:
            raw, _, rest = conn.inbuf.partition(b"\n")
            conn.inbuf = bytearray(rest)
            line = raw.decode("utf-8", "replace").rstrip("\r")
            conn.outbuf += (self.execute(line) + "\n").encode()
            word = line.split(" ", 1)[0].upper()
            if word in ("QUIT", "SHUTDOWN"):
                conn.closing = True
                if word == "SHUTDOWN":
                    self.running = False
        self.flush(conn)

    def flush(self, conn):
        try:
            while conn.outbuf:
                sent = conn.sock.send(conn.outbuf)
                del conn.outbuf[:sent]
        except (BlockingIOError, InterruptedError):
            pass
        except ConnectionError:
            self.close(conn)
            return
        if conn.outbuf:
            self.sel.modify(conn.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, conn)
        elif conn.closing:
            self.close(conn)
        else:
            self.sel.modify(conn.sock, selectors.EVENT_READ, conn)

    def serve(self):
        print(f"listening on {self.host}:{self.port}", flush=True)
        while self.running:
            for key, mask in self.sel.select():
                if key.data is None:
                    self.accept()
                    continue
                conn = key.data
                if mask & selectors.EVENT_READ:
                    self.readable(conn)
                if mask & selectors.EVENT_WRITE and conn.sock.fileno() >= 0:
                    self.flush(conn)
        self.shutdown()

    def shutdown(self):
        for key in list(self.sel.get_map().values()):
            if key.data is not None:
                self.close(key.data)
        self.sel.unregister(self.listener)
        self.listener.close()
        self.sel.close()
        if self.journal_fd is not None:
            os.close(self.journal_fd)


def _stop(signum, frame):
    raise KeyboardInterrupt  # SIGTERM stops the server as Ctrl-C does


def main(argv=None):
    ap = argparse.ArgumentParser(description="tiny in-memory key-value server (tft_lab example)")
    ap.add_argument("port", nargs="?", type=int, default=7070, help="TCP port on 127.0.0.1 (0: any free port)")
    ap.add_argument("--journal", metavar="FILE", help="append every SET to FILE")
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    args = ap.parse_args(argv)
    server = KVServer(args.port, args.journal, args.host)
    signal.signal(signal.SIGTERM, _stop)
    try:
        server.serve()
    except KeyboardInterrupt:
        server.shutdown()
    print("kvserver stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
