"""Stepping a live supervisor: the program pauses after each event until the client says go.

The supervisor side (:class:`Gate`) is called by the engine after every
intercepted event, while the task is still stopped; it reports the event and
blocks until a command arrives.  The client side (:class:`Controller`) is what
the notebook's live stepper drives.  Messages are JSON lines over a socket:

    supervisor -> client   {"event": {TraceEvent fields}, "pending": [...]}  or  {"end": true}
    client -> supervisor   {"cmd": "next" | "epoch" | "signal" | "continue" | "fail"}

``next`` runs to the next call or signal delivery (an arrival is shown as
pending, not stopped at), ``epoch`` to the first event of the next epoch,
``signal`` to the next signal event (arriving or delivered), ``continue`` to the end, ``fail``
makes this replica fail-stop right here (fault injection).
"""
from __future__ import annotations

import json
import os
import socket

from .trace import TraceEvent

COMMANDS = ("next", "epoch", "signal", "continue", "fail")


class Gate:
    """Supervisor side: installed as ``engine.gate``."""

    def __init__(self, sock: socket.socket, on_fail):
        self.sock = sock
        self.rfile = sock.makefile("r")
        self.mode = "next"
        self.epoch_of: dict[int, int] = {}
        self.on_fail = on_fail

    def __call__(self, ev: TraceEvent, pending: list[str]) -> None:
        if self.mode == "continue":
            return
        if self.mode == "epoch" and ev.epoch == self.epoch_of.get(ev.pid, ev.epoch):
            return
        if self.mode == "signal" and ev.kind != "signal":
            return
        if self.mode == "next" and ev.kind == "signal" and ev.signal != "delivered":
            return   # an arrival is not a step: it shows as pending at the next call
        msg = {"event": ev._asdict(), "pending": pending}
        try:
            self.sock.sendall((json.dumps(msg) + "\n").encode())
            line = self.rfile.readline()
        except OSError:
            line = ""
        if not line:                       # the client went away: run on, unattended
            self.mode = "continue"
            return
        try:
            cmd = json.loads(line).get("cmd")
        except ValueError:
            cmd = None
        if cmd not in COMMANDS:
            cmd = "next"
        if cmd == "fail":
            self.on_fail()
        self.mode = cmd
        self.epoch_of[ev.pid] = ev.epoch

    def close(self) -> None:
        try:
            self.sock.sendall(b'{"end": true}\n')
        except OSError:
            pass
        self.sock.close()


class Controller:
    """Client side: one end of a socket pair whose other end the supervisor got as ``--control-fd``."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.rfile = sock.makefile("r")
        self.ended = False

    def receive(self, timeout: float | None = 30.0) -> dict | None:
        """The next paused event (a dict with ``event`` and ``pending``), or None at the end."""
        if self.ended:
            return None
        self.sock.settimeout(timeout)
        line = self.rfile.readline()
        msg = json.loads(line) if line else {"end": True}
        if msg.get("end"):
            self.ended = True
            return None
        return msg

    def send(self, cmd: str) -> None:
        if cmd not in COMMANDS:
            raise ValueError(f"unknown command {cmd!r}: one of {', '.join(COMMANDS)}")
        if not self.ended:
            try:
                self.sock.sendall((json.dumps({"cmd": cmd}) + "\n").encode())
            except OSError:
                self.ended = True

    def close(self) -> None:
        """Stop controlling: the supervisor sees the end and lets the program run on."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)   # the makefile() reader holds the fd open
        except OSError:
            pass
        self.rfile.close()
        self.sock.close()
        self.ended = True


def gate_from_fd(fd: int, on_fail) -> Gate:
    sock = socket.socket(fileno=fd)
    os.set_inheritable(sock.fileno(), False)
    return Gate(sock, on_fail)
