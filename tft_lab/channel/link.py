"""The link: one connected socket carrying sealed messages both ways, and its thread.

Each socket endpoint runs one daemon thread that reads the socket, sends
heartbeats and flushes frames left buffered for ``heartbeat`` seconds, and
notices a silent peer.  It never calls ptrace; the supervisor's main thread
keeps that.
"""
from __future__ import annotations

import selectors
import socket
import threading
import time
from typing import Callable

from ..errors import ChannelError, PeerFailed, PeerSilent, TftError
from .wire import _CLOSE, _HEADER, _HEARTBEAT, _P, _U64, MAX_FRAME, MessageType, _Session

#: Seconds between heartbeats of an idle endpoint.
DEFAULT_HEARTBEAT = 0.5
#: A peer silent for this many of its heartbeat intervals is declared failed.
DEFAULT_TIMEOUT_FACTOR = 4.0

_RECV_CHUNK = 256 * 1024
_POLL = 0.05                          # how often a blocked writer re-checks the link's state
_STOP_JOIN = 5.0
_MSG_NOSIGNAL = getattr(socket, "MSG_NOSIGNAL", 0)  # EPIPE instead of SIGPIPE
_MAIN_THREAD = threading.main_thread().ident


class _Interrupts:
    """Whether the main thread is between a send and its bookkeeping (see :func:`interrupt_when_safe`)."""

    sending = False
    pending = False


_interrupts = _Interrupts()


def interrupt_when_safe() -> None:
    """Raise ``KeyboardInterrupt`` now, or, if the main thread is between sending bytes and
    noting that it sent them, as soon as it has noted it.  For a signal handler (which runs
    in the main thread) that stops the process by raising: the stream stays whole, so the
    owner can still say its last word over it (a message sent twice, or cut in two, would
    make the peer refuse everything after it and take that for a crash).
    """
    if _interrupts.sending:
        _interrupts.pending = True
        return
    raise KeyboardInterrupt


class _Link:
    """One connected socket carrying sealed messages both ways, and the thread that
    reads it, sends heartbeats and declares a silent peer failed.

    Writers hold ``wlock`` while sealing into ``wbuf`` and writing it out, so
    message numbers reach the wire in order.  ``cond`` guards the owner's state
    (acks, the frame queue) and wakes its waiters; ``on_message`` runs on the
    link's thread for every accepted message.

    With *drain*, a failed write does not end the reading: what the peer sent before it
    died is still in our socket's buffer, and the owner gets it before the error (a backup
    whose ack or heartbeat hit a dead primary must still replay every frame that arrived).
    """

    def __init__(self, sock: socket.socket, session: _Session, *, heartbeat: float,
                 timeout_factor: float, on_message: Callable[[int, bytes], None],
                 close_payload: Callable[[], int],
                 wants_input: Callable[[], bool] = lambda: True, drain: bool = False) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.session = session
        self.peer = session.peer
        self.heartbeat = heartbeat
        self.timeout_factor = timeout_factor
        self.silence = timeout_factor * session.peer_heartbeat
        self.on_message = on_message
        self.close_payload = close_payload
        self.wants_input = wants_input
        self.cond = threading.Condition()
        self.error: TftError | None = None
        self.peer_closed = False   # the peer's CLOSE arrived
        self.sent_close = False    # our CLOSE is written and our write side shut down
        self.closing = False       # our owner is closing: the peer's EOF is expected
        self.drain = drain
        self.draining = False      # a write failed; the thread still reads what already arrived
        self.wlock = threading.Lock()
        self.wbuf = bytearray()
        self.last_write = self.last_heard = time.monotonic()
        self.silence_before_failure = 0.0
        self._rbuf = bytearray()
        self._eof = False
        self._stop = False
        self._wsel = selectors.DefaultSelector()
        self._wsel.register(sock, selectors.EVENT_WRITE)
        self._tsel = selectors.DefaultSelector()
        self._tsel.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
        self._rsel = selectors.DefaultSelector()
        self._rsel.register(sock, selectors.EVENT_READ)
        role = "sender" if session.role == _P else "receiver"
        self._thread = threading.Thread(target=self._run, name=f"tft-channel-{role}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    # -- failure

    def fail(self, err: TftError, *, writing: bool = False) -> TftError:
        """Record *err* unless an error is recorded already, drop the connection, return the first error.

        A failed write (*writing*) on a draining link only stops our writes: the thread
        reads on until the peer's end of stream, then drops the connection."""
        with self.cond:
            if self.error is None:
                self.error = err
                # How long this end had written nothing when the link failed: long (it was
                # stopped, or starved) means the peer may have taken *us* for dead first.
                self.silence_before_failure = time.monotonic() - self.last_write
                self.draining = writing and self.drain and not (self._eof or self._stop)
            first = self.error
            self.cond.notify_all()
        if self.draining:
            try:
                self.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        else:
            self.drop()
        return first

    def drop(self) -> None:
        """Cut the connection both ways at once, as a crash would (no CLOSE is sent)."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def raise_if_failed(self) -> None:
        if self.error is not None:
            raise self.error

    # -- writing (callers hold wlock)

    def flush_locked(self, in_thread: bool = False) -> None:
        """Write ``wbuf`` out, removing from its front what the socket took.

        Interrupted (the operator's stop raises KeyboardInterrupt in the owner's thread while it
        waits for a slow peer), ``wbuf`` still holds exactly what was not sent: the stream stays
        whole and the owner can still say its last word.  A message cut in two, or sent twice,
        would make the peer refuse everything after it and take that for a crash.
        """
        buf = self.wbuf
        progress = time.monotonic()
        # The link's thread keeps reading while it waits to write, so that it
        # never stops noticing acks, heartbeats and the peer's failure.
        sel = self._tsel if in_thread else self._wsel
        while buf:
            self.raise_if_failed()
            n = self._send(buf, in_owner=not in_thread)
            now = time.monotonic()
            if n:
                progress = self.last_write = now
                continue
            # Stalled: fine while the peer shows signs of life (it is merely slow).
            if now - max(progress, self.last_heard) > self.silence:
                raise self.fail(PeerSilent(
                    f"the {self.peer} stopped reading and sent nothing for {now - progress:.1f} s: "
                    f"its host is down, hung or cut off"))
            for _, events in sel.select(_POLL):
                if events & selectors.EVENT_READ and not self._eof:
                    self._read_available()

    def _send(self, buf: bytearray, in_owner: bool) -> int:
        """Send what the socket takes of *buf* and delete it from *buf*; the number of bytes.

        A signal handler runs between the send and the bookkeeping otherwise (at the end of
        the call), and one that raised would leave sent bytes in *buf*, to be sent again: in
        the main thread an interrupt asked for by :func:`interrupt_when_safe` waits until
        the bookkeeping is done.
        """
        if not (in_owner and threading.get_ident() == _MAIN_THREAD):
            return self._send_now(buf)
        _interrupts.sending = True
        try:
            return self._send_now(buf)
        finally:
            _interrupts.sending = False
            if _interrupts.pending:
                _interrupts.pending = False
                raise KeyboardInterrupt

    def _send_now(self, buf: bytearray) -> int:
        try:
            n = self.sock.send(buf, _MSG_NOSIGNAL)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError as exc:
            raise self.fail(PeerFailed(f"lost the connection to the {self.peer} while sending: "
                                       f"{exc.strerror or exc}"), writing=True) from None
        del buf[:n]
        return n

    def send_now(self, mtype: int, payload: bytes) -> None:
        with self.wlock:
            self.raise_if_failed()
            self.session.seal(mtype, payload, self.wbuf)
            self.flush_locked()

    def send_close(self, count: int, in_thread: bool = False) -> None:
        """Write everything buffered, then CLOSE(*count*), then shut down the write side."""
        with self.wlock:
            if self.sent_close:
                return
            self.sent_close = True
            self.session.seal(_CLOSE, _U64.pack(count), self.wbuf)
            self.flush_locked(in_thread)
            try:
                self.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def _maybe_heartbeat(self, now: float) -> None:
        if self.sent_close or now - self.last_write < self.heartbeat:
            return
        # Never wait for the lock: whoever holds it is writing, so we are not idle.
        if not self.wlock.acquire(blocking=False):
            return
        try:
            if not self.sent_close and self.error is None:
                if not self.wbuf:  # frames left buffered are as good a sign of life
                    self.session.seal(_HEARTBEAT, b"", self.wbuf)
                self.flush_locked(in_thread=True)
        finally:
            self.wlock.release()

    # -- reading (link thread only)

    def _read_available(self) -> None:
        try:
            chunk = self.sock.recv(_RECV_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._eof = True
            if self._stop or self.closing:
                return
            raise PeerFailed(f"lost the connection to the {self.peer}: {exc.strerror or exc}") from None
        if not chunk:
            self._eof = True
            if self._stop or self.closing or (self.peer_closed and not self._rbuf):
                return
            where = " in the middle of a message" if self._rbuf else ""
            raise PeerFailed(f"the {self.peer} closed the connection{where} without a clean close: "
                             f"it crashed or was killed")
        self.last_heard = time.monotonic()
        self._rbuf += chunk
        self._parse()

    def _parse(self) -> None:
        rbuf, session = self._rbuf, self.session
        off = 0
        with memoryview(rbuf) as view:
            while len(rbuf) - off >= _HEADER.size:
                n, mtype, seq = _HEADER.unpack_from(rbuf, off)
                if n > MAX_FRAME:
                    raise ChannelError(f"oversized message from the {self.peer}: its length field says "
                                       f"{n} bytes, over the {MAX_FRAME} byte limit (not a tft peer, or "
                                       f"a corrupted stream); refused")
                body = off + _HEADER.size
                end = body + n + session.tag_size
                if len(rbuf) < end:
                    break
                # Slices of the buffer are released at once: rbuf is resized below.
                with view[body:body + n] as payload, view[body + n:end] as tag:
                    session.check(mtype, seq, payload, tag)
                    frame = bytes(payload)  # copied only once it is known to be genuine
                session.check_type(mtype, n)
                if self.peer_closed:
                    raise ChannelError(f"{MessageType(mtype).name} message after the {self.peer}'s CLOSE")
                self.on_message(mtype, frame)
                if mtype == _CLOSE:
                    self.peer_closed = True
                    with self.cond:
                        self.cond.notify_all()
                off = end
        del rbuf[:off]

    def _run(self) -> None:
        try:
            try:
                self._serve()
            except TftError as exc:
                if not self._stop:
                    self.fail(exc)
            if self.draining:
                self._drain()
        except TftError:
            pass   # the first error is recorded; draining ends at the peer's end of stream
        except Exception as exc:  # a bug here must not leave the owner waiting forever
            self.fail(ChannelError(f"the channel thread crashed: {exc!r}"))
        finally:
            if self.draining:
                self.drop()
            with self.cond:
                self.draining = False
                self.cond.notify_all()

    def _serve(self) -> None:
        paused = False
        while not (self._stop or self._eof or self.error is not None):
            if self.peer_closed and not self.sent_close:
                self.send_close(self.close_payload(), in_thread=True)
            self._maybe_heartbeat(time.monotonic())
            if not self.wants_input():
                # The backup's frame queue is full: let TCP flow control slow the primary.
                paused = True
                time.sleep(0.01)
                continue
            now = time.monotonic()
            if paused:
                paused = False
                self.last_heard = now  # we were not listening; give the peer a full period
            wait = self.last_write + self.heartbeat - now if not self.sent_close else 1.0
            if wait <= 0:
                wait = _POLL  # the heartbeat was skipped because a write is under way
            if not self.peer_closed:
                left = self.last_heard + self.silence - now
                if left <= 0:
                    raise PeerSilent(
                        f"no message or heartbeat from the {self.peer} for {now - self.last_heard:.1f} s "
                        f"(limit {self.silence:g} s = {self.timeout_factor:g} x its "
                        f"{self.session.peer_heartbeat:g} s heartbeat): its host is down, hung or cut off")
                wait = min(wait, left)
            if self._select_read(wait):
                self._read_available()

    def _drain(self) -> None:
        """After a failed write: read what the peer sent before it went (a dead peer sends no
        more, so only what is already buffered), up to its end of stream."""
        while not (self._stop or self._eof) and self._select_read(_POLL):
            self._read_available()

    def _select_read(self, timeout: float) -> bool:
        return any(events & selectors.EVENT_READ for _, events in self._rsel.select(max(timeout, 0.0)))

    # -- ending

    def join(self, timeout: float | None) -> None:
        self._thread.join(timeout)

    def finish(self, count: int, *, linger: bool = False, timeout: float | None = None) -> None:
        """Our owner is closing: send CLOSE(*count*) unless the link failed, then :meth:`stop`.

        With *linger*, wait up to *timeout* seconds (``None``: while the peer
        lives) for the peer's answering CLOSE first.  Never raises ``TftError``.
        """
        self.closing = True
        if self.error is None:
            try:
                self.send_close(count)
            except TftError:
                pass
            else:
                if linger:
                    self.join(timeout)
        self.stop()
        with self.cond:
            self.cond.notify_all()   # wake an owner's waiter: the link is gone

    def stop(self) -> None:
        """Stop the thread and close the socket (idempotent)."""
        self._stop = True
        self.drop()
        if self._thread.ident is not None and self._thread is not threading.current_thread():
            self._thread.join(_STOP_JOIN)
        self._wsel.close()
        self._tsel.close()
        self._rsel.close()
        self.sock.close()

