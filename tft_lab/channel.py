"""The replication channel: primary -> backup transport of log frames, acks back.

The primary's supervisor hands the channel *frames*: already-encoded log
records, opaque bytes this module never interprets.  The backup's supervisor
receives them in order and acknowledges the ones it has applied; the primary's
output rule (DESIGN.md section 5) waits for those acknowledgements.  Whoever
can write to the channel controls the backup (DESIGN.md section 7), so a keyed
channel authenticates both ends and every message, and every size is bounded
before it is used.

Transports
==========

=====================  ===============================  ==================================
transport              primary side (:class:`Sender`)   backup side (:class:`Receiver`)
=====================  ===============================  ==================================
file (record/replay)   ``FileSender(path, key=None)``   ``FileReceiver(path, key=None)``
local socket pair      ``Sender.from_socket(a, key)``   ``Receiver.from_socket(b, key)``
TCP                    ``connect(host, port, key)``     ``listen(host, port, key).accept()``
=====================  ===============================  ==================================

``a, b = socketpair_channel()`` makes the local pair (one end per supervisor
process).  A key is mandatory on TCP and optional elsewhere; see
:func:`generate_key` and :func:`load_key`.

Wire format
===========

All integers are big-endian.  A connection starts with a handshake; both sides
send their part at once, then read the peer's::

    HELLO  46 bytes  magic "TFTCHAN1" (8) | role (1): "P" sender, "B" receiver
                     | flags (1): bit 0 = keyed | heartbeat_ms (u32) | nonce (32)
    PROOF  32 bytes  keyed only, after both HELLOs:
                     HMAC-SHA256(key, "TFTCHAN1 proof " + own role + hello_P + hello_B)

    session_key = HMAC-SHA256(key, "TFTCHAN1 session " + hello_P + hello_B)

The proofs bind the role (no reflection) and both fresh nonces (no replay of
an old handshake).  ``heartbeat_ms`` is how often that side promises to send
something when idle; its peer declares it failed after ``timeout_factor``
times that much silence.  Then each message is::

    offset  size  field
    0       4     n: payload length (n <= MAX_FRAME, checked before anything else)
    4       1     type (table below)
    5       8     seq: per-direction message number, 1, 2, 3, ... (all types)
    13      n     payload
    13+n    32    keyed only: HMAC-SHA256(session_key,
                                  direction ("P" or "B") + seq (u64) + type (u8) + payload)

    type         from   payload
    DATA      1  P      one frame, 0..MAX_FRAME bytes; frame seq = number of DATAs so far
    ACK       2  B      u64: every frame up to this frame seq is acknowledged
    HEARTBEAT 3  both   empty; sent by a side that wrote nothing for `heartbeat` s
    CLOSE     4  both   u64: P: frames sent (clean end of stream); B: frames acknowledged.
                        The backup answers the primary's CLOSE with its own; each side
                        shuts down writing after its CLOSE.  An unprompted CLOSE from
                        the backup means it is leaving: the primary reports PeerFailed.

A receiving side checks, in this order: the length bound, the tag ("message
tampered"), the message number ("message replayed or reordered"), then the type,
its direction and its payload size.  A message failing any check is refused
whole (nothing of it is delivered), the connection is dropped and the error is
reported as :class:`~tft_lab.errors.ChannelError`.  Frames that arrived intact
before it are still delivered first.

A recording (file transport) is the primary's half of a conversation: HELLO
(role "P", heartbeat 0), PROOF if keyed (transcript = hello_P alone), then
DATA messages and a final CLOSE.  A recording that ends exactly after a
message but without the CLOSE is a recorder that died there: reading past its
last frame raises :class:`~tft_lab.errors.PeerFailed`, as a connection lost
without a CLOSE does.  A recording that ends *inside* a message was cut
mid-write: that raises :class:`~tft_lab.errors.ChannelError` ("truncated") once
the complete frames before it have been read.

Threads
=======

Each socket endpoint runs one daemon thread that reads the socket, sends
heartbeats and flushes frames left buffered for ``heartbeat`` seconds, and
notices a silent peer.  It never calls ptrace; the supervisor's main thread
keeps that.  A :class:`Sender` or :class:`Receiver` is meant to be used by one
thread (the supervisor's); create it after forking the tracee.
"""
from __future__ import annotations

import abc
import enum
import hashlib
import hmac
import os
import secrets
import selectors
import socket
import stat
import struct
import threading
import time
from collections import deque
from typing import Callable

from .errors import ChannelError, PeerFailed, PeerSilent, TftError

__all__ = [
    "MAGIC", "MAX_FRAME", "MIN_KEY_BYTES", "DEFAULT_HEARTBEAT", "DEFAULT_TIMEOUT_FACTOR", "HANDSHAKE_TIMEOUT",
    "MessageType", "Sender", "Receiver", "FileSender", "FileReceiver", "Listener",
    "socketpair_channel", "connect", "listen", "load_key", "generate_key",
]

#: Protocol magic and version, the first bytes of every connection and recording.
MAGIC = b"TFTCHAN1"
#: Largest frame the channel carries; larger length fields are refused unread.
MAX_FRAME = 64 * 1024 * 1024
#: Seconds between heartbeats of an idle endpoint.
DEFAULT_HEARTBEAT = 0.5
#: A peer silent for this many of its heartbeat intervals is declared failed.
DEFAULT_TIMEOUT_FACTOR = 4.0
#: Seconds a handshake may take before the peer is refused.
HANDSHAKE_TIMEOUT = 10.0
#: Shortest key accepted (HMAC-SHA256 keys shorter than this are guessable).
MIN_KEY_BYTES = 16


class MessageType(enum.IntEnum):
    """The ``type`` byte of a message (see the module docstring)."""

    DATA = 1
    ACK = 2
    HEARTBEAT = 3
    CLOSE = 4


_DATA, _ACK, _HEARTBEAT, _CLOSE = (int(t) for t in MessageType)
_P, _B = b"P", b"B"  # roles, also the direction byte under the message tag
_PEER_NAME = {_P: "primary", _B: "backup"}
_OTHER = {_P: _B, _B: _P}
#: Which message types each role may send.
_SENT_BY = {_P: frozenset((_DATA, _HEARTBEAT, _CLOSE)), _B: frozenset((_ACK, _HEARTBEAT, _CLOSE))}
#: Payload size of the fixed-size message types.
_FIXED_PAYLOAD = {_ACK: 8, _HEARTBEAT: 0, _CLOSE: 8}

_HELLO = struct.Struct("!8scBI32s")   # magic, role, flags, heartbeat_ms, nonce: 46 bytes
_HEADER = struct.Struct("!IBQ")       # payload length, type, seq: 13 bytes
_MAC_PREFIX = struct.Struct("!cQB")   # direction, seq, type
_U64 = struct.Struct("!Q")
_TAG_SIZE = 32
_NONCE_SIZE = 32
_FLAG_KEYED = 0x01
_MAX_HEARTBEAT_MS = 3_600_000

_FLUSH_BYTES = 64 * 1024              # send() writes out once this much is buffered
_RECV_CHUNK = 256 * 1024
_RECV_QUEUE_LIMIT = 32 * 1024 * 1024  # the backup's thread stops reading beyond this backlog
_POLL = 0.05                          # how often a blocked writer re-checks the link's state
_STOP_JOIN = 5.0
_MSG_NOSIGNAL = getattr(socket, "MSG_NOSIGNAL", 0)  # EPIPE instead of SIGPIPE


# --------------------------------------------------------------------------- keys

def generate_key(path: str | os.PathLike[str]) -> bytes:
    """Create a new key file at *path* (32 random bytes, hex, mode 0600) and return the key.

    Refuses to overwrite an existing file (``ChannelError``): a replaced key
    silently locks out the other replica.  Copy the file to the other host by a
    channel you trust.
    """
    p = os.fspath(path)
    key = secrets.token_bytes(32)
    try:
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        raise ChannelError(f"key file {p} already exists; refusing to overwrite it") from None
    except OSError as exc:
        raise ChannelError(f"cannot create key file {p}: {exc.strerror}") from None
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(key.hex() + "\n")
    return key


def load_key(path: str | os.PathLike[str]) -> bytes:
    """Read a key written by :func:`generate_key` and return its bytes.

    The file must be a regular file holding at least 16 hex-encoded bytes, and
    must not be accessible to group or others (as ssh demands of private keys:
    whoever reads the key can feed the backup, whoever writes it can replace
    it).  Anything else raises ``ChannelError`` saying how to fix it.
    """
    p = os.fspath(path)
    try:
        fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ChannelError(f"key file {p} does not exist; create one with generate_key({p!r})") from None
    except OSError as exc:
        raise ChannelError(f"cannot open key file {p}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())  # of the opened file, not of whatever the path names now
        if not stat.S_ISREG(st.st_mode):
            raise ChannelError(f"key file {p} is not a regular file")
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            raise ChannelError(f"key file {p} is accessible by group or others (mode {mode:04o}); "
                               f"run: chmod 600 {p}")
        text = f.read(4097)
    if len(text) > 4096:
        raise ChannelError(f"key file {p} is too large to be a key file")
    text = text.strip()
    if not text:
        raise ChannelError(f"key file {p} is empty; create one with generate_key()")
    try:
        key = bytes.fromhex(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise ChannelError(f"key file {p} does not hold a hex key (as generate_key() writes)") from None
    if len(key) < MIN_KEY_BYTES:
        raise ChannelError(f"key in {p} is {len(key)} bytes; at least {MIN_KEY_BYTES} are needed")
    return key


def _check_key(key: bytes | None, *, required: bool) -> bytes | None:
    if key is None:
        if required:
            raise ValueError("a key is required on TCP: use load_key() / generate_key()")
        return None
    if not isinstance(key, (bytes, bytearray)):
        raise TypeError(f"key must be bytes, not {type(key).__name__}")
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"key is {len(key)} bytes; at least {MIN_KEY_BYTES} are needed")
    return bytes(key)


def _check_timing(heartbeat: float, timeout_factor: float) -> None:
    if not 0.001 <= heartbeat <= _MAX_HEARTBEAT_MS / 1000:
        raise ValueError(f"heartbeat must be between 0.001 and {_MAX_HEARTBEAT_MS // 1000} s, not {heartbeat}")
    if not timeout_factor > 1:
        raise ValueError(f"timeout_factor must be more than 1, not {timeout_factor}")


def _frame_view(frame: bytes) -> memoryview:
    if not isinstance(frame, (bytes, bytearray, memoryview)):
        raise TypeError(f"a frame is bytes, not {type(frame).__name__}")
    view = memoryview(frame)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    if view.nbytes > MAX_FRAME:
        raise ValueError(f"frame of {view.nbytes} bytes exceeds the {MAX_FRAME} byte limit")
    return view


# --------------------------------------------------------------------------- handshake and sealing

def _proof(key: bytes, role: bytes, transcript: bytes) -> bytes:
    return hmac.digest(key, b"TFTCHAN1 proof " + role + transcript, "sha256")


def _session_key(key: bytes, transcript: bytes) -> bytes:
    return hmac.digest(key, b"TFTCHAN1 session " + transcript, "sha256")


def _check_magic(prefix: bytes, what: str) -> None:
    """Refuse *prefix* (the first bytes seen) as soon as it cannot start :data:`MAGIC`."""
    head = bytes(prefix[:len(MAGIC)])
    if MAGIC.startswith(head):
        return
    if len(head) == len(MAGIC) and head[:-1] == MAGIC[:-1]:
        raise ChannelError(f"{what} speaks tft channel version {head[-1:].decode('latin-1')!r}; "
                           f"this end speaks {MAGIC.decode()}")
    raise ChannelError(f"not a tft {what}: bad magic {head!r} (expected {MAGIC!r})")


class _Hello:
    """A parsed HELLO (after :func:`_check_magic`)."""

    __slots__ = ("raw", "role", "keyed", "heartbeat")

    def __init__(self, raw: bytes, what: str) -> None:
        _check_magic(raw, what)
        _, role, flags, heartbeat_ms, _ = _HELLO.unpack(raw)
        if role not in (_P, _B):
            raise ChannelError(f"{what} sent an unknown role {role!r}")
        if flags & ~_FLAG_KEYED:
            raise ChannelError(f"{what} sent unknown handshake flags {flags:#04x}")
        self.raw = raw
        self.role = role
        self.keyed = bool(flags & _FLAG_KEYED)
        self.heartbeat = heartbeat_ms / 1000


class _Session:
    """Message numbering and authentication of one connection (or recording), both directions."""

    __slots__ = ("role", "peer_role", "peer", "peer_heartbeat", "tag_size", "_mac", "out_seq", "in_seq")

    def __init__(self, role: bytes, session_key: bytes | None, peer_heartbeat: float, peer: str) -> None:
        self.role = role
        self.peer_role = _OTHER[role]
        self.peer = peer
        self.peer_heartbeat = peer_heartbeat
        # One keyed HMAC state, copied per message: cheaper than re-keying each time.
        self._mac = None if session_key is None else hmac.new(session_key, digestmod=hashlib.sha256)
        self.tag_size = 0 if session_key is None else _TAG_SIZE
        self.out_seq = 0
        self.in_seq = 0

    def _tag(self, direction: bytes, seq: int, mtype: int, payload) -> bytes:
        h = self._mac.copy()
        h.update(_MAC_PREFIX.pack(direction, seq, mtype))
        h.update(payload)
        return h.digest()

    def seal(self, mtype: int, payload, out: bytearray) -> None:
        """Append one numbered (and, if keyed, tagged) message to *out*."""
        self.out_seq += 1
        out += _HEADER.pack(len(payload), mtype, self.out_seq)
        out += payload
        if self._mac is not None:
            out += self._tag(self.role, self.out_seq, mtype, payload)

    def check(self, mtype: int, seq: int, payload, tag) -> None:
        """Accept the next incoming message or raise ``ChannelError``; on refusal nothing changes."""
        due = self.in_seq + 1
        if self._mac is not None and not hmac.compare_digest(
                self._tag(self.peer_role, seq, mtype, payload), tag):
            raise ChannelError(f"message tampered: message {due} from the {self.peer} "
                               f"fails its HMAC check; refused")
        if seq != due:
            raise ChannelError(f"message replayed or reordered: the {self.peer} sent message {seq} "
                               f"where {due} was due; refused")
        self.in_seq = seq

    def check_type(self, mtype: int, payload_size: int) -> None:
        if mtype not in _SENT_BY[self.peer_role]:
            name = MessageType(mtype).name if mtype in MessageType._value2member_map_ else f"type {mtype}"
            raise ChannelError(f"unexpected {name} message from the {self.peer}")
        size = _FIXED_PAYLOAD.get(mtype)
        if size is not None and payload_size != size:
            raise ChannelError(f"malformed {MessageType(mtype).name} message from the {self.peer}: "
                               f"{payload_size} byte payload, expected {size}")


def _recv_exact(sock: socket.socket, size: int, deadline: float, what: str, magic: bool = False) -> bytes:
    buf = bytearray()
    while len(buf) < size:
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        chunk = sock.recv(size - len(buf))
        if not chunk:
            raise ChannelError(f"the {what} closed the connection during the handshake "
                               f"(it refused this end: wrong key, wrong role, or not a tft peer)")
        buf += chunk
        if magic:
            _check_magic(buf, what)  # refuse an HTTP client after its first byte, not after 46
    return bytes(buf)


def _handshake(sock: socket.socket, role: bytes, key: bytes | None, heartbeat: float,
               timeout: float) -> _Session:
    """Run the handshake on a connected stream socket; return the session or raise ``ChannelError``."""
    peer_name = _PEER_NAME[_OTHER[role]]
    deadline = time.monotonic() + timeout
    hello = _HELLO.pack(MAGIC, role, _FLAG_KEYED if key is not None else 0,
                        max(1, round(heartbeat * 1000)), secrets.token_bytes(_NONCE_SIZE))
    try:
        sock.settimeout(timeout)
        sock.sendall(hello)
        peer = _Hello(_recv_exact(sock, _HELLO.size, deadline, "peer", magic=True), "peer")
        if peer.role == role:
            ends = "Senders" if role == _P else "Receivers"
            raise ChannelError(f"both ends are {ends}: connect a Sender to a Receiver")
        if peer.keyed != (key is not None):
            mine, theirs = ("has", "has none") if key is not None else ("has none", "has one")
            raise ChannelError(f"peer failed authentication: this end {mine} a key, the {peer_name} {theirs}")
        if not 1 <= round(peer.heartbeat * 1000) <= _MAX_HEARTBEAT_MS:
            raise ChannelError(f"the {peer_name} announced an invalid heartbeat of {peer.heartbeat} s")
        if key is None:
            return _Session(role, None, peer.heartbeat, peer_name)
        transcript = hello + peer.raw if role == _P else peer.raw + hello
        sock.sendall(_proof(key, role, transcript))
        theirs = _recv_exact(sock, _TAG_SIZE, deadline, "peer")
        if not hmac.compare_digest(theirs, _proof(key, peer.role, transcript)):
            raise ChannelError(f"peer failed authentication: wrong key? (the {peer_name}'s proof "
                               f"does not match this end's key)")
        return _Session(role, _session_key(key, transcript), peer.heartbeat, peer_name)
    except TimeoutError:
        raise ChannelError(f"handshake timed out after {timeout:g} s: the peer does not speak "
                           f"the tft protocol, or is hung") from None
    except OSError as exc:
        raise ChannelError(f"handshake failed: {exc.strerror or exc}") from None


# --------------------------------------------------------------------------- the socket link

class _Link:
    """One connected socket carrying sealed messages both ways, and the thread that
    reads it, sends heartbeats and declares a silent peer failed.

    Writers hold ``wlock`` while sealing into ``wbuf`` and writing it out, so
    message numbers reach the wire in order.  ``cond`` guards the owner's state
    (acks, the frame queue) and wakes its waiters; ``on_message`` runs on the
    link's thread for every accepted message.
    """

    def __init__(self, sock: socket.socket, session: _Session, *, heartbeat: float,
                 timeout_factor: float, on_message: Callable[[int, bytes], None],
                 close_payload: Callable[[], int],
                 wants_input: Callable[[], bool] = lambda: True) -> None:
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
        self.wlock = threading.Lock()
        self.wbuf = bytearray()
        self.last_write = self.last_heard = time.monotonic()
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

    def fail(self, err: TftError) -> TftError:
        """Record *err* unless an error is recorded already, drop the connection, return the first error."""
        with self.cond:
            if self.error is None:
                self.error = err
            first = self.error
            self.cond.notify_all()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        return first

    def raise_if_failed(self) -> None:
        if self.error is not None:
            raise self.error

    # -- writing (callers hold wlock)

    def flush_locked(self, in_thread: bool = False) -> None:
        if self.wbuf:
            data, self.wbuf = self.wbuf, bytearray()
            self._write_all(data, in_thread)

    def _write_all(self, data: bytearray, in_thread: bool) -> None:
        view = memoryview(data)
        progress = time.monotonic()
        # The link's thread keeps reading while it waits to write, so that it
        # never stops noticing acks, heartbeats and the peer's failure.
        sel = self._tsel if in_thread else self._wsel
        while view.nbytes:
            self.raise_if_failed()
            try:
                n = self.sock.send(view, _MSG_NOSIGNAL)
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError as exc:
                raise self.fail(PeerFailed(f"lost the connection to the {self.peer} while sending: "
                                           f"{exc.strerror or exc}")) from None
            now = time.monotonic()
            if n:
                view = view[n:]
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
        paused = False
        try:
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
        except TftError as exc:
            if not self._stop:
                self.fail(exc)
        except Exception as exc:  # a bug here must not leave the owner waiting forever
            self.fail(ChannelError(f"the channel thread crashed: {exc!r}"))
        finally:
            with self.cond:
                self.cond.notify_all()

    def _select_read(self, timeout: float) -> bool:
        return any(events & selectors.EVENT_READ for _, events in self._rsel.select(max(timeout, 0.0)))

    # -- ending

    def join(self, timeout: float | None) -> None:
        self._thread.join(timeout)

    def stop(self) -> None:
        """Stop the thread and close the socket (idempotent)."""
        self._stop = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        if self._thread.ident is not None and self._thread is not threading.current_thread():
            self._thread.join(_STOP_JOIN)
        self._wsel.close()
        self._tsel.close()
        self._rsel.close()
        self.sock.close()


# --------------------------------------------------------------------------- public endpoints

class Sender(abc.ABC):
    """The primary's end: sends frames, learns which ones the backup acknowledged.

    Get one from :meth:`from_socket`, :func:`connect` or :class:`FileSender`.
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
        return _SocketSender._open(sock, key, heartbeat, timeout_factor, handshake_timeout)

    @abc.abstractmethod
    def send(self, frame: bytes) -> int:
        """Queue *frame* (bytes-like, at most :data:`MAX_FRAME` bytes) and return its
        sequence number: 1 for the first frame, then 2, 3, ...

        The frame is copied; it may stay buffered until :meth:`flush`,
        :meth:`wait_acked`, 64 KiB more frames, or ``heartbeat`` seconds pass.
        """

    @abc.abstractmethod
    def flush(self) -> None:
        """Write every buffered frame out (to the socket, or to the file)."""

    @abc.abstractmethod
    def wait_acked(self, seq: int, timeout: float | None = None) -> None:
        """Flush, then block until the backup acknowledged every frame up to *seq*.

        Returns at once if it already had.  Raises ``PeerFailed`` if the backup
        is gone, or if *timeout* seconds pass first (the channel stays usable
        then: a later call may still succeed).  ``ValueError`` if *seq* was
        never sent.
        """

    @property
    @abc.abstractmethod
    def acked(self) -> int:
        """Highest frame sequence number acknowledged so far (0: none); never blocks."""

    @abc.abstractmethod
    def close(self) -> None:
        """End the stream cleanly (the backup's ``recv`` returns ``None``) and release everything.

        Idempotent; never raises because the backup is gone.
        """

    def __enter__(self) -> Sender:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class Receiver(abc.ABC):
    """The backup's end: receives frames in order and acknowledges them.

    Get one from :meth:`from_socket`, :meth:`Listener.accept` or
    :class:`FileReceiver`.  Usable as a context manager.
    """

    @staticmethod
    def from_socket(sock: socket.socket, key: bytes | None = None, *,
                    heartbeat: float = DEFAULT_HEARTBEAT,
                    timeout_factor: float = DEFAULT_TIMEOUT_FACTOR,
                    handshake_timeout: float = HANDSHAKE_TIMEOUT) -> Receiver:
        """The backup's counterpart of :meth:`Sender.from_socket` (same parameters and contract)."""
        return _SocketReceiver._open(sock, key, heartbeat, timeout_factor, handshake_timeout)

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


def _check_ack_seq(seq: int, delivered: int) -> None:
    if seq > delivered:
        raise ValueError(f"cannot acknowledge frame {seq}: only {delivered} frames were received")


class _SocketSender(Sender):
    def __init__(self, sock: socket.socket, session: _Session, heartbeat: float,
                 timeout_factor: float) -> None:
        self._frames = 0
        self._acked = 0
        self._closed = False
        self._link = _Link(sock, session, heartbeat=heartbeat, timeout_factor=timeout_factor,
                           on_message=self._on_message, close_payload=lambda: self._frames)
        self._link.start()

    @classmethod
    def _open(cls, sock, key, heartbeat, timeout_factor, handshake_timeout) -> _SocketSender:
        try:
            key = _check_key(key, required=False)
            _check_timing(heartbeat, timeout_factor)
            _connected_stream(sock)
            session = _handshake(sock, _P, key, heartbeat, handshake_timeout)
            return cls(sock, session, heartbeat, timeout_factor)
        except BaseException:
            sock.close()
            raise

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
                    raise PeerFailed(f"the backup did not acknowledge frame {seq} within {timeout:g} s "
                                     f"(acknowledged up to {self._acked})")
                link.cond.wait(remaining)

    @property
    def acked(self) -> int:
        return self._acked

    @property
    def failure(self) -> TftError | None:
        """The error that ended the link (``PeerSilent`` for a silent backup), or None."""
        return self._link.error

    def close(self, timeout: float | None = 10.0) -> None:
        """End the stream cleanly and release everything (idempotent, never raises ``PeerFailed``).

        Writes every buffered frame and a CLOSE, then waits up to *timeout*
        seconds (``None``: as long as the backup is alive) for the backup to
        confirm; past that the connection is dropped anyway.
        """
        if self._closed:
            return
        self._closed = True
        link = self._link
        link.closing = True
        if link.error is None:
            try:
                link.send_close(self._frames)
            except TftError:
                pass
            else:
                link.join(timeout)
        link.stop()


class _SocketReceiver(Receiver):
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
                           wants_input=lambda: self._queued_bytes < _RECV_QUEUE_LIMIT)
        self._link.start()

    @classmethod
    def _open(cls, sock, key, heartbeat, timeout_factor, handshake_timeout) -> _SocketReceiver:
        try:
            key = _check_key(key, required=False)
            _check_timing(heartbeat, timeout_factor)
            _connected_stream(sock)
            session = _handshake(sock, _B, key, heartbeat, handshake_timeout)
            return cls(sock, session, heartbeat, timeout_factor)
        except BaseException:
            sock.close()
            raise

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
        link = self._link
        link.closing = True
        if link.error is None:
            try:
                link.send_close(self._acked)
            except TftError:
                pass
        link.stop()
        with link.cond:
            link.cond.notify_all()


# --------------------------------------------------------------------------- files

class FileSender(Sender):
    """A :class:`Sender` that records to a file (created mode 0600, truncated if it exists).

    Every frame counts as acknowledged once it is written to the file:
    :meth:`wait_acked` flushes and returns.  :meth:`close` writes the CLOSE
    and fsyncs, so a complete recording is distinguishable from one whose
    recorder died.  With a *key*, the recording is authenticated and
    :class:`FileReceiver` refuses it without that key or when modified.
    """

    def __init__(self, path: str | os.PathLike[str], key: bytes | None = None) -> None:
        key = _check_key(key, required=False)
        self.path = os.fspath(path)
        hello = _HELLO.pack(MAGIC, _P, _FLAG_KEYED if key is not None else 0, 0,
                            secrets.token_bytes(_NONCE_SIZE))
        self._session = _Session(_P, None if key is None else _session_key(key, hello), 0.0, "backup")
        self._buf = bytearray(hello)
        if key is not None:
            self._buf += _proof(key, _P, hello)
        self._frames = 0
        self._written = 0
        self._closed = False
        try:
            self._file = open(self.path, "wb", opener=lambda p, flags: os.open(p, flags | os.O_CLOEXEC, 0o600))
        except OSError as exc:
            raise ChannelError(f"cannot create recording {self.path}: {exc.strerror}") from None

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("the FileSender is closed")

    def send(self, frame: bytes) -> int:
        view = _frame_view(frame)
        self._check_open()
        self._session.seal(_DATA, view, self._buf)
        self._frames += 1
        if len(self._buf) >= _FLUSH_BYTES:
            self._write_out()
        return self._frames

    def _write_out(self) -> None:
        try:
            self._file.write(self._buf)
            self._file.flush()
        except OSError as exc:
            raise ChannelError(f"cannot write recording {self.path}: {exc.strerror}") from None
        self._buf.clear()
        self._written = self._frames

    def flush(self) -> None:
        self._check_open()
        self._write_out()

    def wait_acked(self, seq: int, timeout: float | None = None) -> None:
        if seq > self._frames:
            raise ValueError(f"frame {seq} was never sent (last sent: {self._frames})")
        if seq > self._written:
            self.flush()

    @property
    def acked(self) -> int:
        return self._written

    def close(self) -> None:
        if self._closed:
            return
        self._session.seal(_CLOSE, _U64.pack(self._frames), self._buf)
        try:
            self._write_out()
            os.fsync(self._file.fileno())
        finally:
            self._closed = True
            self._file.close()


class FileReceiver(Receiver):
    """A :class:`Receiver` that replays a recording made by :class:`FileSender`.

    The file is read as it is (a complete recording, not one still being
    written).  :meth:`recv` never waits; *timeout* is ignored.  Acks are
    no-ops.  Refused with ``ChannelError``: a file that is not a recording, of
    another version, keyed when no key is given or the other way round, with
    the wrong key, modified, or cut inside a message.  A recording without its
    final CLOSE raises ``PeerFailed`` after its last frame (the recorder died).
    """

    def __init__(self, path: str | os.PathLike[str], key: bytes | None = None) -> None:
        key = _check_key(key, required=False)
        self.path = os.fspath(path)
        self._frames = 0
        self._acked = 0
        self._offset = 0
        self._ended = False
        self._closed_cleanly = False
        self._closed = False
        self._error: TftError | None = None
        try:
            self._file = open(self.path, "rb")
        except OSError as exc:
            raise ChannelError(f"cannot open recording {self.path}: {exc.strerror}") from None
        try:
            self._session = self._read_header(key)
        except BaseException:
            self._file.close()
            raise

    def _read_header(self, key: bytes | None) -> _Session:
        raw = self._file.read(_HELLO.size)
        if not raw:
            raise ChannelError(f"{self.path} is empty: not a tft recording "
                               f"(or its recorder died before writing anything)")
        _check_magic(raw, "recording")
        if len(raw) < _HELLO.size:
            raise ChannelError(f"recording {self.path} is truncated inside its header")
        hello = _Hello(raw, "recording")
        if hello.role != _P:
            raise ChannelError(f"{self.path} is not a recording (its role is {hello.role!r})")
        self._offset = _HELLO.size
        if hello.keyed and key is None:
            raise ChannelError(f"recording {self.path} is authenticated: pass its key")
        if not hello.keyed and key is not None:
            raise ChannelError(f"recording {self.path} is not authenticated, but a key was given: "
                               f"refusing a log anyone could have written")
        if key is None:
            return _Session(_B, None, 0.0, "recording")
        proof = self._file.read(_TAG_SIZE)
        if len(proof) < _TAG_SIZE:
            raise ChannelError(f"recording {self.path} is truncated inside its header")
        if not hmac.compare_digest(proof, _proof(key, _P, raw)):
            raise ChannelError(f"recording failed authentication: wrong key? ({self.path})")
        self._offset += _TAG_SIZE
        return _Session(_B, _session_key(key, raw), 0.0, "recording")

    def _truncated(self, start: int, size: int | None) -> ChannelError:
        of = f" of {size} bytes" if size is not None else ""
        return ChannelError(
            f"recording {self.path} is truncated inside message {self._session.in_seq + 1}{of} at "
            f"byte {start}: its recorder was killed mid-write or the file was cut short "
            f"(the {self._frames} frames before it are intact)")

    def _next(self) -> bytes | None:
        start = self._offset
        header = self._file.read(_HEADER.size)
        if not header:
            raise PeerFailed(f"recording {self.path} ends after frame {self._frames} without a clean "
                             f"close: its recorder crashed or was killed there")
        if len(header) < _HEADER.size:
            raise self._truncated(start, None)
        n, mtype, seq = _HEADER.unpack(header)
        if n > MAX_FRAME:
            raise ChannelError(f"oversized message in recording {self.path} at byte {start}: its length "
                               f"field says {n} bytes, over the {MAX_FRAME} byte limit; refused")
        tag_size = self._session.tag_size
        body = self._file.read(n + tag_size)
        if len(body) < n + tag_size:
            raise self._truncated(start, _HEADER.size + n + tag_size)
        view = memoryview(body)
        self._session.check(mtype, seq, view[:n], view[n:])
        self._session.check_type(mtype, n)
        self._offset += _HEADER.size + n + tag_size
        if mtype == _DATA:
            self._frames += 1
            return body if not tag_size else body[:n]
        if mtype == _CLOSE:
            (count,) = _U64.unpack(view[:n])
            if count != self._frames:
                raise ChannelError(f"recording {self.path}: its CLOSE says {count} frames, "
                                   f"but it holds {self._frames}")
            if self._file.read(1):
                raise ChannelError(f"recording {self.path} has data after its CLOSE")
            self._ended = self._closed_cleanly = True
            return None
        raise ChannelError(f"unexpected {MessageType(mtype).name} message in recording {self.path}")

    def recv(self, timeout: float | None = None) -> bytes | None:
        if self._closed:
            raise ValueError("the FileReceiver is closed")
        if self._ended:
            return None
        if self._error is not None:
            raise self._error
        try:
            return self._next()
        except TftError as exc:
            self._error = exc
            raise

    def ack(self, seq: int) -> None:
        _check_ack_seq(seq, self._frames)
        self._acked = max(self._acked, seq)

    @property
    def closed_cleanly(self) -> bool:
        return self._closed_cleanly

    def close(self) -> None:
        self._closed = True
        self._file.close()


# --------------------------------------------------------------------------- connecting

def socketpair_channel() -> tuple[socket.socket, socket.socket]:
    """Two connected local stream sockets ``(primary_end, backup_end)``.

    Pass one end to each supervisor process (inherit it across fork, or
    ``pass_fds``; each process closes the end it does not use), then wrap it
    with :meth:`Sender.from_socket` / :meth:`Receiver.from_socket`.
    """
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)


class Listener:
    """A listening TCP socket that hands out authenticated :class:`Receiver` s (see :func:`listen`)."""

    def __init__(self, sock: socket.socket, key: bytes, heartbeat: float, timeout_factor: float,
                 handshake_timeout: float) -> None:
        self._sock = sock
        self._key = key
        self._heartbeat = heartbeat
        self._timeout_factor = timeout_factor
        self._handshake_timeout = handshake_timeout

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` actually bound: the port to give :func:`connect` when 0 was asked for."""
        host, port = self._sock.getsockname()[:2]
        return host, port

    def accept(self, timeout: float | None = None) -> Receiver:
        """Wait up to *timeout* seconds (``None``: forever) for a primary; authenticate it.

        Raises the builtin ``TimeoutError`` if nobody connects in time, and
        ``ChannelError`` (naming the remote address) if whoever connected is
        refused: wrong key, not a tft peer, too slow a handshake.  The listener
        stays usable after either; call :meth:`accept` again.
        """
        self._sock.settimeout(timeout)
        try:
            conn, addr = self._sock.accept()
        except TimeoutError:
            raise TimeoutError(f"no primary connected to {self.address} within {timeout:g} s") from None
        try:
            return _SocketReceiver._open(conn, self._key, self._heartbeat, self._timeout_factor,
                                         self._handshake_timeout)
        except ChannelError as exc:
            raise ChannelError(f"{exc.message} (connection from {addr[0]}:{addr[1]})") from None

    def close(self) -> None:
        """Stop listening (Receivers already accepted are unaffected)."""
        self._sock.close()

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def listen(host: str, port: int, key: bytes, *, heartbeat: float = DEFAULT_HEARTBEAT,
           timeout_factor: float = DEFAULT_TIMEOUT_FACTOR,
           handshake_timeout: float = HANDSHAKE_TIMEOUT) -> Listener:
    """Listen for a primary on TCP *host*:*port* (0: any free port, see :attr:`Listener.address`).

    *key* (mandatory, :func:`load_key`) authenticates the primary; the other
    parameters are as for :meth:`Receiver.from_socket`.
    """
    key = _check_key(key, required=True)
    _check_timing(heartbeat, timeout_factor)
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
    try:
        sock = socket.create_server((host, port), family=family)
    except OSError as exc:
        raise ChannelError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return Listener(sock, key, heartbeat, timeout_factor, handshake_timeout)


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
    return _SocketSender._open(sock, key, heartbeat, timeout_factor, timeout)
