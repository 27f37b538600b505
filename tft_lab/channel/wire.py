"""The channel's wire format: handshake, message framing, numbering and authentication.

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
"""
from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
import socket
import struct
import time

from ..errors import ChannelError

#: Protocol magic and version, the first bytes of every connection.
MAGIC = b"TFTCHAN1"
#: Largest frame the channel carries; larger length fields are refused unread.
MAX_FRAME = 64 * 1024 * 1024
#: Seconds a handshake may take before the peer is refused.
HANDSHAKE_TIMEOUT = 10.0


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
    """Message numbering and authentication of one connection, both directions."""

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
        """Append one numbered (and, if keyed, tagged) message to *out*: all of it or, if
        interrupted (KeyboardInterrupt), none of it, its number unused."""
        seq = self.out_seq + 1
        start = len(out)
        try:
            out += _HEADER.pack(len(payload), mtype, seq)
            out += payload
            if self._mac is not None:
                out += self._tag(self.role, seq, mtype, payload)
            self.out_seq = seq
        except BaseException:
            del out[start:]
            raise

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


def _closed_in_handshake(what: str) -> ChannelError:
    return ChannelError(f"the {what} closed the connection during the handshake "
                        f"(it refused this end: wrong key, wrong role, or not a tft peer)")


class _Handshake:
    """One end's handshake as a state machine that does no I/O, so that a listener can run
    many at once (one slow peer must not hold up the next).

    Send :meth:`take_outgoing`'s bytes, read at most :attr:`need` bytes (never more: what
    follows the handshake is the link's) and :meth:`feed` them; repeat until :attr:`session`
    is set.  :meth:`feed` raises ``ChannelError`` to refuse the peer.
    """

    __slots__ = ("role", "key", "peer_name", "hello", "peer", "session", "_out", "_in")

    def __init__(self, role: bytes, key: bytes | None, heartbeat: float) -> None:
        self.role = role
        self.key = key
        self.peer_name = _PEER_NAME[_OTHER[role]]
        self.hello = _HELLO.pack(MAGIC, role, _FLAG_KEYED if key is not None else 0,
                                 max(1, round(heartbeat * 1000)), secrets.token_bytes(_NONCE_SIZE))
        self.peer: _Hello | None = None        # set once the peer's HELLO passed its checks
        self.session: _Session | None = None   # set once the peer is accepted
        self._out = bytearray(self.hello)
        self._in = bytearray()

    @property
    def need(self) -> int:
        """How many bytes to read next (0 once done)."""
        if self.session is not None:
            return 0
        return (_HELLO.size if self.peer is None else _TAG_SIZE) - len(self._in)

    def take_outgoing(self) -> bytes:
        """The bytes to send now (then they are the caller's)."""
        out, self._out = bytes(self._out), bytearray()
        return out

    def feed(self, data: bytes) -> None:
        """Take bytes read from the peer (at most :attr:`need`); raise ``ChannelError`` to refuse it."""
        if not 0 < len(data) <= self.need:
            raise ValueError(f"fed {len(data)} bytes where {self.need} were needed")
        self._in += data
        if self.peer is None:
            _check_magic(self._in, "peer")  # refuse an HTTP client after its first byte, not after 46
            if len(self._in) == _HELLO.size:
                hello, self._in = bytes(self._in), bytearray()
                self._on_hello(_Hello(hello, "peer"))
        elif len(self._in) == _TAG_SIZE:
            self._on_proof(bytes(self._in))

    def _transcript(self) -> bytes:
        return self.hello + self.peer.raw if self.role == _P else self.peer.raw + self.hello

    def _on_hello(self, peer: _Hello) -> None:
        if peer.role == self.role:
            ends = "Senders" if self.role == _P else "Receivers"
            raise ChannelError(f"both ends are {ends}: connect a Sender to a Receiver")
        if peer.keyed != (self.key is not None):
            mine, theirs = ("has", "has none") if self.key is not None else ("has none", "has one")
            raise ChannelError(f"peer failed authentication: this end {mine} a key, the {self.peer_name} {theirs}")
        if not 1 <= round(peer.heartbeat * 1000) <= _MAX_HEARTBEAT_MS:
            raise ChannelError(f"the {self.peer_name} announced an invalid heartbeat of {peer.heartbeat} s")
        self.peer = peer
        if self.key is None:
            self.session = _Session(self.role, None, peer.heartbeat, self.peer_name)
        else:
            self._out += _proof(self.key, self.role, self._transcript())

    def _on_proof(self, theirs: bytes) -> None:
        transcript = self._transcript()
        if not hmac.compare_digest(theirs, _proof(self.key, self.peer.role, transcript)):
            raise ChannelError(f"peer failed authentication: wrong key? (the {self.peer_name}'s proof "
                               f"does not match this end's key)")
        self.session = _Session(self.role, _session_key(self.key, transcript), self.peer.heartbeat,
                                self.peer_name)


def _handshake(sock: socket.socket, role: bytes, key: bytes | None, heartbeat: float,
               timeout: float) -> _Session:
    """Run the handshake on a connected blocking socket; return the session or raise ``ChannelError``."""
    hs = _Handshake(role, key, heartbeat)
    deadline = time.monotonic() + timeout
    try:
        while hs.session is None:
            out = hs.take_outgoing()
            if out:
                sock.settimeout(max(deadline - time.monotonic(), 0.001))
                sock.sendall(out)
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            chunk = sock.recv(hs.need)
            if not chunk:
                raise _closed_in_handshake("peer")
            hs.feed(chunk)
        return hs.session
    except TimeoutError:
        raise ChannelError(f"handshake timed out after {timeout:g} s: the peer does not speak "
                           f"the tft protocol, or is hung") from None
    except OSError as exc:
        raise ChannelError(f"handshake failed: {exc.strerror or exc}") from None
