"""The backup's TCP listener: many handshakes at once, so that no peer can hold the door.

Anyone who can reach the port can connect, so nothing a peer does before it
has proved it holds the key may delay the real primary.  A :class:`Listener`
runs every pending handshake at once, without threads (one selector, each
handshake a :class:`~tft_lab.channel.wire._Handshake` state machine), and
bounds what an unauthenticated peer costs:

- it has :data:`PREAUTH_TIMEOUT` seconds to prove it holds the key;
- at most :data:`MAX_PENDING` such peers are held at once: past that, one is
  dropped to make room (one that has not sent a well-formed HELLO first, then
  the oldest), so a flood of idle connections ages out while a real primary,
  whose handshake takes one round trip, gets through;
- it is never read beyond the handshake's next field (46 bytes, then 32).

Measured here (``tests/test_hostile_peers.py``): with 200 idle connections, or
slow, garbage, oversized and replayed ones, a real primary is served within
the same second.
"""
from __future__ import annotations

import errno
import selectors
import socket
import time

from ..errors import ChannelError
from .endpoints import Receiver, _connected_stream, _SocketReceiver
from .keys import _check_key
from .link import DEFAULT_HEARTBEAT, DEFAULT_TIMEOUT_FACTOR
from .wire import _B, _check_timing, _closed_in_handshake, _Handshake

#: Seconds a peer of a listener has, from its connection, to prove that it holds the key.
PREAUTH_TIMEOUT = 3.0
#: Connections a listener holds at once that have not proved they hold the key.
MAX_PENDING = 64
_MSG_NOSIGNAL = getattr(socket, "MSG_NOSIGNAL", 0)
#: accept() errors that mean "out of a resource for now", not "the listener is broken".
_ACCEPT_SHORTAGE = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM))


class _Pending:
    """One connection whose handshake is under way."""

    __slots__ = ("sock", "addr", "hs", "deadline", "out")

    def __init__(self, sock: socket.socket, addr, hs: _Handshake, deadline: float) -> None:
        self.sock = sock
        self.addr = addr
        self.hs = hs
        self.deadline = deadline
        self.out = hs.take_outgoing()   # what is still to be sent (the socket buffer was full)

    @property
    def name(self) -> str:
        return f"{self.addr[0]}:{self.addr[1]}"


class Listener:
    """A listening TCP socket that hands out authenticated :class:`Receiver` s (see :func:`listen`).

    Not thread-safe: one thread calls :meth:`accept`.  Handshakes progress only
    while it does; connections still pending are kept for the next call and
    closed by :meth:`close`.
    """

    def __init__(self, sock: socket.socket, key: bytes, heartbeat: float, timeout_factor: float,
                 handshake_timeout: float, max_pending: int = MAX_PENDING) -> None:
        sock.setblocking(False)
        self._sock = sock
        self._key = key
        self._heartbeat = heartbeat
        self._timeout_factor = timeout_factor
        self._handshake_timeout = handshake_timeout
        self._max_pending = max_pending
        self._sel = selectors.DefaultSelector()
        self._sel.register(sock, selectors.EVENT_READ, None)
        # Insertion order is age: the first is the oldest.
        self._pending: dict[socket.socket, _Pending] = {}
        self._refused: list[ChannelError] = []   # refusals not yet reported by accept()

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` actually bound: the port to give :func:`connect` when 0 was asked for."""
        host, port = self._sock.getsockname()[:2]
        return host, port

    @property
    def pending(self) -> int:
        """How many connections are in the middle of their handshake."""
        return len(self._pending)

    def accept(self, timeout: float | None = None) -> Receiver:
        """Wait up to *timeout* seconds (``None``: forever) for a primary that proves it holds the key.

        Raises the builtin ``TimeoutError`` if none does in time, and
        ``ChannelError`` (naming the remote address) for each peer refused:
        wrong key, not a tft peer, too slow a handshake (``handshake_timeout``),
        or dropped to make room for newer connections.  The listener stays
        usable after either, with the other handshakes still under way: call
        :meth:`accept` again.  A primary that is ready is handed out before any
        refusal is reported.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            now = time.monotonic()
            self._expire(now)
            if self._refused:
                raise self._refused.pop(0)
            wait = min((p.deadline for p in self._pending.values()), default=None)
            if deadline is not None:
                wait = deadline if wait is None else min(wait, deadline)
            for key, events in self._sel.select(None if wait is None else max(wait - now, 0.0)):
                if key.data is None:
                    self._accept_all(time.monotonic())
                elif key.fileobj in self._pending:   # (not dropped by _accept_all just now)
                    ready = self._advance(key.data, events)
                    if ready is not None:
                        return ready   # the other ready sockets stay ready for the next call
            if deadline is not None and time.monotonic() >= deadline and not self._refused:
                raise TimeoutError(f"no primary connected to {self.address} within {timeout:g} s")

    def _accept_all(self, now: float) -> None:
        """Take every connection the kernel has queued, each with its handshake started."""
        while True:
            try:
                conn, addr = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _ACCEPT_SHORTAGE and self._pending:
                    self._make_room(f"out of resources ({exc.strerror})")
                    continue
                if exc.errno in _ACCEPT_SHORTAGE:
                    time.sleep(0.05)   # nothing of ours to free: let the shortage pass, do not spin
                return
            if len(self._pending) >= self._max_pending:
                self._make_room(f"{self._max_pending} connections were awaiting authentication")
            try:
                conn.setblocking(False)
                _connected_stream(conn)
            except OSError:
                conn.close()   # reset already
                continue
            p = _Pending(conn, addr, _Handshake(_B, self._key, self._heartbeat), now + self._handshake_timeout)
            self._pending[conn] = p
            self._sel.register(conn, selectors.EVENT_READ, p)
            self._advance(p, selectors.EVENT_WRITE)   # our HELLO goes out at once

    def _make_room(self, why: str) -> None:
        """Drop one pending connection: the oldest that has not sent a well-formed HELLO, else the oldest."""
        pending = list(self._pending.values())
        victim = next((p for p in pending if p.hs.peer is None), pending[0])
        self._refuse(victim, ChannelError(f"dropped before its handshake ended: {why}"))

    def _expire(self, now: float) -> None:
        for p in [p for p in self._pending.values() if p.deadline <= now]:
            self._refuse(p, ChannelError(f"handshake timed out after {self._handshake_timeout:g} s: the peer "
                                         f"does not speak the tft protocol, or is hung"))

    def _advance(self, p: _Pending, events: int) -> Receiver | None:
        """Move *p*'s handshake on as far as its socket allows; its Receiver once it is accepted."""
        try:
            if events & selectors.EVENT_READ:
                chunk = p.sock.recv(p.hs.need)
                if not chunk:
                    raise _closed_in_handshake("peer")
                p.hs.feed(chunk)
                p.out += p.hs.take_outgoing()
            if p.out:
                try:
                    sent = p.sock.send(p.out, _MSG_NOSIGNAL)
                except (BlockingIOError, InterruptedError):
                    sent = 0
                p.out = p.out[sent:]
        except ChannelError as exc:
            self._refuse(p, exc)
            return None
        except OSError as exc:
            self._refuse(p, ChannelError(f"handshake failed: {exc.strerror or exc}"))
            return None
        if p.hs.session is not None and not p.out:
            self._forget(p)
            try:
                return _SocketReceiver(p.sock, p.hs.session, self._heartbeat, self._timeout_factor)
            except BaseException:
                p.sock.close()
                raise
        self._sel.modify(p.sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if p.out else 0), p)
        return None

    def _forget(self, p: _Pending) -> None:
        del self._pending[p.sock]
        self._sel.unregister(p.sock)

    def _refuse(self, p: _Pending, err: ChannelError) -> None:
        self._forget(p)
        p.sock.close()
        self._refused.append(ChannelError(f"{err.message} (connection from {p.name})"))

    def close(self) -> None:
        """Stop listening and drop every connection still in its handshake (idempotent).

        Receivers already accepted are unaffected.
        """
        for p in list(self._pending.values()):
            self._forget(p)
            p.sock.close()
        self._refused.clear()
        if self._sel.get_map() is not None:
            self._sel.close()
        self._sock.close()

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def listen(host: str, port: int, key: bytes, *, heartbeat: float = DEFAULT_HEARTBEAT,
           timeout_factor: float = DEFAULT_TIMEOUT_FACTOR, handshake_timeout: float = PREAUTH_TIMEOUT,
           max_pending: int = MAX_PENDING) -> Listener:
    """Listen for a primary on TCP *host*:*port* (0: any free port, see :attr:`Listener.address`).

    *key* (mandatory, :func:`load_key`) authenticates the primary;
    *heartbeat* and *timeout_factor* are as for :meth:`Receiver.from_socket`.
    A peer has *handshake_timeout* seconds to prove it holds the key, and at
    most *max_pending* peers are held at once while they try (see the module
    docstring).
    """
    key = _check_key(key, required=True)
    _check_timing(heartbeat, timeout_factor)
    if not handshake_timeout > 0:
        raise ValueError(f"handshake_timeout must be more than 0, not {handshake_timeout}")
    if max_pending < 1:
        raise ValueError(f"max_pending must be at least 1, not {max_pending}")
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
    try:
        sock = socket.create_server((host, port), family=family, backlog=max(128, max_pending))
    except OSError as exc:
        raise ChannelError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return Listener(sock, key, heartbeat, timeout_factor, handshake_timeout, max_pending)
