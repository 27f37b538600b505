"""The channel's two ends (:class:`Sender`, :class:`Receiver`) and how they meet.

A :class:`Sender` or :class:`Receiver` is meant to be used by one thread (the
supervisor's); create it after forking the tracee.  Each owns a
:class:`~tft_lab.channel.link._Link` whose thread does the socket work.
"""
from __future__ import annotations

import abc
import socket
import time
from collections import deque

from ..errors import AckTimeout, ChannelError, PeerFailed, PeerSilent, TftError
from .keys import _check_key
from .link import DEFAULT_HEARTBEAT, DEFAULT_TIMEOUT_FACTOR, _Link
from .wire import (_ACK, _B, _CLOSE, _DATA, _P, _U64, HANDSHAKE_TIMEOUT, _check_timing, _frame_view,
                   _handshake, _Session)

_FLUSH_BYTES = 64 * 1024              # send() writes out once this much is buffered
_RECV_QUEUE_LIMIT = 32 * 1024 * 1024  # the backup's thread stops reading beyond this backlog


class Sender(abc.ABC):
    """The primary's end: sends frames, learns which ones the backup acknowledged.

    Get one from :meth:`from_socket` or :func:`connect`.
    Once the backup is known to be gone, :meth:`send`, :meth:`flush` and
    :meth:`wait_acked` raise ``PeerFailed`` (or ``ChannelError`` if it sent
    something that is not ours); the supervisor then carries on alone, loudly.
    Usable as a context manager (``close()`` on exit).
    """

    @staticmethod
    def from_socket(sock: socket.socket, key: bytes | None = None, *,
                    heartbeat: float = DEFAULT_HEARTBEAT,
                    timeout_factor: float = DEFAULT_TIMEOUT_FACTOR,
                    handshake_timeout: float = HANDSHAKE_TIMEOUT) -> Sender:
        """Run the handshake on a connected stream socket (e.g. from :func:`socketpair_channel`).

        Takes ownership of *sock* (closed on failure).  With a *key*, both ends
        must hold the same key; without, neither may have one.  *heartbeat*:
        seconds between heartbeats when idle (announced to the backup);
        *timeout_factor*: the backup is declared failed after this many of its
        heartbeat intervals of silence.  Blocks until the backup's end has run
        its handshake too; raises ``ChannelError`` if it is refused.
        """
        return _open(_SocketSender, sock, key, heartbeat, timeout_factor, handshake_timeout)

    @abc.abstractmethod
    def send(self, frame: bytes) -> int:
        """Queue *frame* (bytes-like, at most :data:`MAX_FRAME` bytes) and return its
        sequence number: 1 for the first frame, then 2, 3, ...

        The frame is copied; it may stay buffered until :meth:`flush`,
        :meth:`wait_acked`, 64 KiB more frames, or ``heartbeat`` seconds pass.
        """

    @abc.abstractmethod
    def flush(self) -> None:
        """Write every buffered frame out to the socket."""

    @abc.abstractmethod
    def wait_acked(self, seq: int, timeout: float | None = None) -> None:
        """Flush, then block until the backup acknowledged every frame up to *seq*.

        Returns at once if it already had.  Raises ``PeerFailed`` if the backup
        is gone, and :class:`~tft_lab.errors.AckTimeout` (a ``PeerFailed``) if
        *timeout* seconds pass first (the channel stays usable then: a later
        call may still succeed).  ``ValueError`` if *seq* was never sent.
        """

    @property
    @abc.abstractmethod
    def acked(self) -> int:
        """Highest frame sequence number acknowledged so far (0: none); never blocks."""

    @abc.abstractmethod
    def close(self, timeout: float | None = 10.0) -> None:
        """End the stream cleanly (the backup's ``recv`` returns ``None``) and release everything.

        Waits up to *timeout* seconds (``None``: while the backup lives) for the
        backup to confirm.  Idempotent; never raises because the backup is gone.
        """

    @abc.abstractmethod
    def abort(self) -> None:
        """Drop the connection without a clean close: to the backup, the primary failed.

        The backup's ``recv`` raises ``PeerFailed`` once it has the frames that
        arrived before.  Never raises; call :meth:`close` afterwards to release
        the thread and the socket.
        """

    def __enter__(self) -> Sender:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class Receiver(abc.ABC):
    """The backup's end: receives frames in order and acknowledges them.

    Get one from :meth:`from_socket` or :meth:`Listener.accept`.  Usable as a
    context manager.
    """

    @staticmethod
    def from_socket(sock: socket.socket, key: bytes | None = None, *,
                    heartbeat: float = DEFAULT_HEARTBEAT,
                    timeout_factor: float = DEFAULT_TIMEOUT_FACTOR,
                    handshake_timeout: float = HANDSHAKE_TIMEOUT) -> Receiver:
        """The backup's counterpart of :meth:`Sender.from_socket` (same parameters and contract)."""
        return _open(_SocketReceiver, sock, key, heartbeat, timeout_factor, handshake_timeout)

    @abc.abstractmethod
    def recv(self, timeout: float | None = None) -> bytes | None:
        """Return the next frame, or ``None`` at the clean end of the stream (and ever after).

        Frames that arrived intact are all returned before any failure is
        reported.  Then raises ``PeerFailed`` if the primary is gone (its
        connection ended without a CLOSE, or it was silent for
        ``timeout_factor`` heartbeats), ``ChannelError`` if a message was
        refused, and raises the same on every later call.  Raises the builtin
        ``TimeoutError`` if *timeout* seconds pass with the primary alive but
        no frame (the channel stays usable).
        """

    @abc.abstractmethod
    def ack(self, seq: int) -> None:
        """Acknowledge every frame up to *seq* (a frame :meth:`recv` has returned).

        Acknowledging less than before is a no-op; so is acknowledging after
        the primary is gone (:meth:`recv` reports that).  ``ValueError`` if
        frame *seq* has not been returned by :meth:`recv` yet.
        """

    @property
    @abc.abstractmethod
    def closed_cleanly(self) -> bool:
        """True once the primary's CLOSE arrived: the stream ended on purpose, not by a crash."""

    @abc.abstractmethod
    def close(self) -> None:
        """Tell the primary this backup leaves, and release everything (idempotent)."""

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _connected_stream(sock: socket.socket) -> None:
    if sock.type != socket.SOCK_STREAM:
        raise ValueError("the channel needs a connected stream socket")
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        # Acks are tiny and the output rule waits for them: no Nagle delay.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _open(cls, sock: socket.socket, key, heartbeat: float, timeout_factor: float, handshake_timeout: float):
    """Run the handshake on *sock* as ``cls._ROLE`` and return a started *cls*; *sock* is closed on failure."""
    try:
        key = _check_key(key, required=False)
        _check_timing(heartbeat, timeout_factor)
        _connected_stream(sock)
        session = _handshake(sock, cls._ROLE, key, heartbeat, handshake_timeout)
        return cls(sock, session, heartbeat, timeout_factor)
    except BaseException:
        sock.close()
        raise


def _check_ack_seq(seq: int, delivered: int) -> None:
    if seq > delivered:
        raise ValueError(f"cannot acknowledge frame {seq}: only {delivered} frames were received")


class _SocketSender(Sender):
    _ROLE = _P   # the role this end announces in its HELLO (see wire)

    def __init__(self, sock: socket.socket, session: _Session, heartbeat: float,
                 timeout_factor: float) -> None:
        self._frames = 0
        self._acked = 0
        self._closed = False
        self._link = _Link(sock, session, heartbeat=heartbeat, timeout_factor=timeout_factor,
                           on_message=self._on_message, close_payload=lambda: self._frames)
        self._link.start()

    def _on_message(self, mtype: int, payload: bytes) -> None:
        link = self._link
        if mtype == _ACK:
            (n,) = _U64.unpack(payload)
            if n > self._frames:
                raise ChannelError(f"the backup acknowledged frame {n}, but only {self._frames} were sent")
            if n < self._acked:
                raise ChannelError(f"the backup's acknowledgements went backwards ({self._acked} -> {n})")
            with link.cond:
                self._acked = n
                link.cond.notify_all()
        elif mtype == _CLOSE and not link.closing:
            raise PeerFailed("the backup closed the channel (it was shut down)")

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("the Sender is closed")
        self._link.raise_if_failed()

    def send(self, frame: bytes) -> int:
        view = _frame_view(frame)
        link = self._link
        with link.wlock:
            self._check_open()
            link.session.seal(_DATA, view, link.wbuf)
            self._frames += 1
            seq = self._frames
            if len(link.wbuf) >= _FLUSH_BYTES:
                link.flush_locked()
        return seq

    def flush(self) -> None:
        with self._link.wlock:
            self._check_open()
            self._link.flush_locked()

    def wait_acked(self, seq: int, timeout: float | None = None) -> None:
        if seq > self._frames:
            raise ValueError(f"frame {seq} was never sent (last sent: {self._frames})")
        link = self._link
        heard = time.monotonic() - link.last_heard
        if heard > link.silence and not (link.peer_closed or link.closing):
            # The link's thread would say so too, had it run: this end was stopped (SIGSTOP, a
            # frozen VM) or starved, and the backup may have gone live meanwhile.  An ack from
            # before that silence vouches for nothing now.
            raise link.fail(PeerSilent(f"nothing from the backup for {heard:.1f} s (limit {link.silence:g} s): "
                                       "this end was stopped or starved, or the backup is gone"))
        if self._acked >= seq:
            return
        self.flush()
        link = self._link
        deadline = None if timeout is None else time.monotonic() + timeout
        with link.cond:
            while self._acked < seq:
                link.raise_if_failed()
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise AckTimeout(f"the backup did not acknowledge frame {seq} within {timeout:g} s "
                                     f"(acknowledged up to {self._acked})")
                link.cond.wait(remaining)

    @property
    def acked(self) -> int:
        return self._acked

    @property
    def failure(self) -> TftError | None:
        """The error that ended the link (``PeerSilent`` for a silent backup), or None."""
        return self._link.error

    @property
    def silence_before_failure(self) -> float:
        """Seconds this end had sent nothing (not even a heartbeat) when the link failed: more
        than the backup's patience, and the backup may have gone live (0.0: not failed)."""
        return self._link.silence_before_failure if self._link.error is not None else 0.0

    def abort(self) -> None:
        self._link.drop()

    def close(self, timeout: float | None = 10.0) -> None:
        """End the stream cleanly and release everything (idempotent, never raises ``PeerFailed``).

        Writes every buffered frame and a CLOSE, then waits up to *timeout*
        seconds (``None``: as long as the backup is alive) for the backup to
        confirm; past that the connection is dropped anyway.
        """
        if self._closed:
            return
        self._closed = True
        self._link.finish(self._frames, linger=True, timeout=timeout)


class _SocketReceiver(Receiver):
    _ROLE = _B   # the role this end announces in its HELLO (see wire)

    def __init__(self, sock: socket.socket, session: _Session, heartbeat: float,
                 timeout_factor: float) -> None:
        self._queue: deque[bytes] = deque()
        self._queued_bytes = 0
        self._received = 0
        self._delivered = 0
        self._acked = 0
        self._ended = False
        self._closed_cleanly = False
        self._closed = False
        self._link = _Link(sock, session, heartbeat=heartbeat, timeout_factor=timeout_factor,
                           on_message=self._on_message, close_payload=lambda: self._acked,
                           wants_input=lambda: self._queued_bytes < _RECV_QUEUE_LIMIT, drain=True)
        self._link.start()

    def _on_message(self, mtype: int, payload: bytes) -> None:
        cond = self._link.cond
        if mtype == _DATA:
            with cond:
                self._queue.append(payload)
                self._queued_bytes += len(payload)
                self._received += 1
                cond.notify_all()
        elif mtype == _CLOSE:
            (n,) = _U64.unpack(payload)
            if n != self._received:
                raise ChannelError(f"the primary's CLOSE says it sent {n} frames, but {self._received} arrived")
            with cond:
                self._ended = self._closed_cleanly = True
                cond.notify_all()

    def recv(self, timeout: float | None = None) -> bytes | None:
        link = self._link
        deadline = None if timeout is None else time.monotonic() + timeout
        with link.cond:
            while True:
                if self._queue:
                    frame = self._queue.popleft()
                    self._queued_bytes -= len(frame)
                    self._delivered += 1
                    return frame
                if self._ended:
                    return None
                if not link.draining:   # frames that arrived before a failed ack come first
                    link.raise_if_failed()
                if self._closed:
                    raise ValueError("the Receiver is closed")
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"no frame from the primary within {timeout:g} s")
                link.cond.wait(remaining)

    def ack(self, seq: int) -> None:
        _check_ack_seq(seq, self._delivered)
        if seq <= self._acked:
            return
        self._acked = seq
        link = self._link
        if link.error is not None or link.sent_close or link.peer_closed or self._closed:
            return
        try:
            link.send_now(_ACK, _U64.pack(seq))
        except TftError:
            pass  # recorded on the link; recv() reports it

    @property
    def closed_cleanly(self) -> bool:
        return self._closed_cleanly

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._link.finish(self._acked)



# --------------------------------------------------------------------------- connecting

def socketpair_channel() -> tuple[socket.socket, socket.socket]:
    """Two connected local stream sockets ``(primary_end, backup_end)``.

    Pass one end to each supervisor process (inherit it across fork, or
    ``pass_fds``; each process closes the end it does not use), then wrap it
    with :meth:`Sender.from_socket` / :meth:`Receiver.from_socket`.
    """
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)


def connect(host: str, port: int, key: bytes, heartbeat: float = DEFAULT_HEARTBEAT, *,
            timeout_factor: float = DEFAULT_TIMEOUT_FACTOR,
            timeout: float = HANDSHAKE_TIMEOUT) -> Sender:
    """Connect to a backup's :func:`listen` at *host*:*port* and authenticate with *key*.

    *timeout* bounds the TCP connect and the handshake each.  Raises
    ``PeerFailed`` if nothing accepts the connection, ``ChannelError`` if the
    handshake refuses the peer (or the peer refuses us).
    """
    key = _check_key(key, required=True)
    _check_timing(heartbeat, timeout_factor)
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise PeerFailed(f"cannot connect to the backup at {host}:{port}: {exc.strerror or exc}") from None
    return _open(_SocketSender, sock, key, heartbeat, timeout_factor, timeout)
