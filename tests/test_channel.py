"""The replication channel: order, acks, heartbeats, clean and unclean ends, refusals.

Everything runs on real sockets bound to 127.0.0.1 only.  The wire-format
sizes below are the ones documented in the module docstring of
``tft_lab.channel.wire``; tests that cut or tamper with bytes rely on them, so a
change of format shows up here.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import os
import secrets
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tft_lab import channel
from tft_lab.channel import endpoints
from tft_lab.errors import AckTimeout, ChannelError, PeerFailed, TftError

LOOPBACK = "127.0.0.1"
KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
REPO = Path(__file__).resolve().parents[1]

HELLO_SIZE = 46   # magic 8 | role 1 | flags 1 | heartbeat_ms 4 | nonce 32
HEADER_SIZE = 13  # length 4 | type 1 | seq 8
TAG_SIZE = 32     # HMAC-SHA256, keyed only
DATA = 1

FRAMES = [b"", b"x", bytes(range(256)) * 4, secrets.token_bytes(1 << 20), b"last"]


@pytest.fixture(autouse=True)
def no_channel_thread_outlives_its_test():
    yield
    deadline = time.monotonic() + 3
    while True:
        left = [t.name for t in threading.enumerate() if t.name.startswith("tft-channel")]
        if not left:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"channel threads still running after close(): {left}")
        time.sleep(0.02)


def background(fn, *args, **kwargs) -> concurrent.futures.Future:
    """Run fn in a daemon thread (the other end of a blocking handshake)."""
    future: concurrent.futures.Future = concurrent.futures.Future()

    def run():
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=run, daemon=True).start()
    return future


def socket_pair(key=None, **kwargs):
    a, b = channel.socketpair_channel()
    backup = background(channel.Receiver.from_socket, b, key, **kwargs)
    return channel.Sender.from_socket(a, key, **kwargs), backup.result(timeout=5)


def tcp_pair(key=KEY, **kwargs):
    with channel.listen(LOOPBACK, 0, key, **kwargs) as listener:
        backup = background(listener.accept, 5)
        sender = channel.connect(*listener.address, key, **kwargs)
        return sender, backup.result(timeout=5)


class Mitm:
    """A man in the middle on loopback, between a connect()ing Sender and a Listener.

    Backup -> primary bytes pass untouched.  The primary -> backup stream is
    cut into messages; each DATA message goes through ``edit(index, message)``,
    which returns the messages to forward instead.  ``freeze()`` stops all
    forwarding while keeping both connections open: a silent host.
    """

    def __init__(self, upstream, edit=None, keyed=True):
        self.upstream = upstream
        self.edit = edit or (lambda index, message: [message])
        self.handshake = HELLO_SIZE + (TAG_SIZE if keyed else 0)
        self.tag = TAG_SIZE if keyed else 0
        self.frozen = threading.Event()
        self.stopped = threading.Event()
        self.server = socket.create_server((LOOPBACK, 0))
        self.address = self.server.getsockname()
        self.sockets: list[socket.socket] = []
        self.threads = [threading.Thread(target=self._serve, daemon=True)]
        self.threads[0].start()

    def freeze(self):
        self.frozen.set()

    def _serve(self):
        self.server.settimeout(5)
        try:
            primary, _ = self.server.accept()
            backup = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            return
        for s in (primary, backup):
            s.settimeout(0.05)
            self.sockets.append(s)
        for target, args in ((self._pump_messages, (primary, backup)), (self._pump_raw, (backup, primary))):
            t = threading.Thread(target=target, args=args, daemon=True)
            self.threads.append(t)
            t.start()

    def _recv(self, src, size):
        while not self.stopped.is_set():
            if self.frozen.is_set():
                time.sleep(0.01)
                continue
            try:
                return src.recv(size)
            except TimeoutError:
                continue
            except OSError:
                return b""
        return b""

    def _read_exactly(self, src, size):
        data = b""
        while len(data) < size:
            chunk = self._recv(src, size - len(data))
            if not chunk:
                return None
            data += chunk
        return data

    def _send(self, dst, data):
        try:
            dst.settimeout(5)
            dst.sendall(data)
            dst.settimeout(0.05)
        except OSError:
            pass

    def _pump_raw(self, src, dst):
        while data := self._recv(src, 65536):
            self._send(dst, data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def _pump_messages(self, src, dst):
        handshake = self._read_exactly(src, self.handshake)
        if handshake is None:
            return
        self._send(dst, handshake)
        index = 0
        while (header := self._read_exactly(src, HEADER_SIZE)) is not None:
            length, mtype, _ = struct.unpack("!IBQ", header)
            rest = self._read_exactly(src, length + self.tag)
            if rest is None:
                break
            out = [header + rest]
            if mtype == DATA:
                out = self.edit(index, header + rest)
                index += 1
            for message in out:
                self._send(dst, message)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self):
        self.stopped.set()
        for t in self.threads:
            t.join(5)
        for s in self.sockets:
            s.close()
        self.server.close()


@contextlib.contextmanager
def through_mitm(edit=None, **kwargs):
    """Yield (sender, receiver, mitm): an authenticated TCP channel with a man in the middle."""
    with channel.listen(LOOPBACK, 0, KEY, **kwargs) as listener:
        mitm = Mitm(listener.address, edit)
        backup = background(listener.accept, 5)
        try:
            sender = channel.connect(*mitm.address, KEY, **kwargs)
            with sender, backup.result(timeout=5) as receiver:
                yield sender, receiver, mitm
        finally:
            mitm.close()


# --------------------------------------------------------------------------- delivery and acks

@pytest.mark.parametrize("key", [None, KEY], ids=["unkeyed", "keyed"])
def test_frames_arrive_in_order_and_intact_over_a_socket_pair(key):
    sender, receiver = socket_pair(key)
    with sender, receiver:
        assert [sender.send(frame) for frame in FRAMES] == [1, 2, 3, 4, 5]
        sender.flush()
        assert [receiver.recv(timeout=5) for _ in FRAMES] == FRAMES


def test_many_frames_arrive_in_order_over_tcp():
    frames = [b"record %d" % i for i in range(2000)] + [FRAMES[3]]
    sender, receiver = tcp_pair()
    with sender, receiver:
        for frame in frames:
            sender.send(frame)
        sender.flush()
        assert [receiver.recv(timeout=5) for _ in frames] == frames


def test_wait_acked_blocks_until_the_backup_acknowledges():
    sender, receiver = socket_pair(KEY)
    with sender, receiver:
        seq = sender.send(b"the output comes next")
        assert sender.acked == 0
        with pytest.raises(AckTimeout, match="did not acknowledge frame 1"):
            sender.wait_acked(seq, timeout=0.2)
        assert sender.failure is None   # a slow backup is not (yet) a failed one

        def backup():
            time.sleep(0.3)
            assert receiver.recv(timeout=5) == b"the output comes next"
            receiver.ack(seq)

        acking = background(backup)
        started = time.monotonic()
        sender.wait_acked(seq, timeout=5)  # still usable after a timed-out wait
        waited = time.monotonic() - started
        acking.result(timeout=5)
        assert waited >= 0.25
        assert sender.acked == seq


def test_acks_cover_everything_up_to_their_seq():
    sender, receiver = tcp_pair()
    with sender, receiver:
        for i in range(5):
            sender.send(b"%d" % i)
        sender.flush()
        for _ in range(5):
            receiver.recv(timeout=5)
        receiver.ack(5)
        sender.wait_acked(3, timeout=5)
        sender.wait_acked(5, timeout=5)
        receiver.ack(2)  # going back is a no-op
        assert sender.acked == 5


def test_only_received_frames_can_be_acknowledged_and_only_sent_ones_awaited():
    sender, receiver = socket_pair()
    with sender, receiver:
        sender.send(b"one")
        with pytest.raises(ValueError, match="only 0 frames were received"):
            receiver.ack(1)
        with pytest.raises(ValueError, match="never sent"):
            sender.wait_acked(2, timeout=1)


def test_recv_timeout_leaves_the_channel_usable():
    sender, receiver = socket_pair()
    with sender, receiver:
        with pytest.raises(TimeoutError):
            receiver.recv(timeout=0.1)
        sender.send(b"late")
        sender.flush()
        assert receiver.recv(timeout=5) == b"late"


def test_buffered_frames_go_out_within_a_heartbeat_without_flush():
    sender, receiver = socket_pair(heartbeat=0.05)
    with sender, receiver:
        sender.send(b"buffered")
        assert receiver.recv(timeout=2) == b"buffered"


def test_frames_are_bytes_of_bounded_size():
    sender, receiver = socket_pair()
    with sender, receiver:
        with pytest.raises(ValueError, match="exceeds"):
            sender.send(bytes(channel.MAX_FRAME + 1))
        with pytest.raises(TypeError):
            sender.send("text")
        assert sender.send(memoryview(b"ok")) == 1
        assert receiver.recv(timeout=5) == b"ok"


# --------------------------------------------------------------------------- ends: clean, crash, silence

def test_clean_close_ends_the_stream_with_none():
    sender, receiver = socket_pair(KEY)
    with receiver:
        sender.send(b"a")
        sender.send(b"b")
        started = time.monotonic()
        sender.close()
        assert time.monotonic() - started < 2
        assert receiver.recv(timeout=5) == b"a"
        assert receiver.recv(timeout=5) == b"b"
        assert receiver.recv(timeout=5) is None
        assert receiver.closed_cleanly
        assert receiver.recv(timeout=0) is None


PRIMARY_THAT_DIES = """
import sys, time
from tft_lab.channel import connect
sender = connect("127.0.0.1", int(sys.argv[1]), bytes.fromhex(sys.stdin.readline()), heartbeat=5.0)
for i in range(3):
    sender.send(b"frame %d" % i)
sender.flush()
time.sleep(60)
"""


def test_primary_killed_without_close_is_peer_failed():
    with channel.listen(LOOPBACK, 0, KEY) as listener:
        primary = subprocess.Popen(
            [sys.executable, "-c", PRIMARY_THAT_DIES, str(listener.address[1])],
            stdin=subprocess.PIPE, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
        try:
            primary.stdin.write(KEY.hex().encode() + b"\n")
            primary.stdin.close()
            with listener.accept(timeout=10) as receiver:
                assert [receiver.recv(timeout=5) for _ in range(3)] == [b"frame 0", b"frame 1", b"frame 2"]
                primary.kill()
                primary.wait(5)
                started = time.monotonic()
                with pytest.raises(PeerFailed, match="primary"):
                    receiver.recv(timeout=5)
                # Seen at EOF, long before the 20 s heartbeat limit.
                assert time.monotonic() - started < 2
                assert not receiver.closed_cleanly
        finally:
            primary.kill()
            primary.wait(5)


def test_an_aborted_sender_looks_crashed_to_the_backup():
    sender, receiver = socket_pair(KEY)
    with sender, receiver:
        sender.send(b"before the crash")
        sender.flush()
        sender.abort()
        assert receiver.recv(timeout=5) == b"before the crash"
        started = time.monotonic()
        with pytest.raises(PeerFailed, match="without a clean close"):
            receiver.recv(timeout=5)
        assert time.monotonic() - started < 2   # seen at once, not after the heartbeats stop
        assert not receiver.closed_cleanly


def test_silent_primary_is_declared_failed_after_its_heartbeats_stop():
    heartbeat, factor = 0.1, 3.0
    limit = heartbeat * factor
    with through_mitm(heartbeat=heartbeat, timeout_factor=factor) as (sender, receiver, mitm):
        seq = sender.send(b"before the partition")
        assert receiver.recv(timeout=5) == b"before the partition"
        receiver.ack(seq)
        sender.wait_acked(seq, timeout=5)
        time.sleep(3 * heartbeat)  # idle, but alive: heartbeats flow
        mitm.freeze()
        started = time.monotonic()
        with pytest.raises(PeerFailed, match="no message or heartbeat from the primary"):
            receiver.recv(timeout=10)
        elapsed = time.monotonic() - started
        assert limit - heartbeat - 0.05 < elapsed < 3 * limit
        # The primary notices its silent backup the same way.
        with pytest.raises(PeerFailed, match="backup"):
            sender.wait_acked(sender.send(b"after"), timeout=10)
        assert time.monotonic() - started < 3 * limit


def test_heartbeats_keep_an_idle_channel_alive():
    sender, receiver = socket_pair(KEY, heartbeat=0.05, timeout_factor=3)
    with sender, receiver:
        time.sleep(0.6)  # four times the silence limit
        seq = sender.send(b"still here")
        assert receiver.recv(timeout=5) == b"still here"
        receiver.ack(seq)
        sender.wait_acked(seq, timeout=5)


def test_a_backup_that_leaves_is_reported_to_the_primary():
    sender, receiver = socket_pair()
    with sender:
        seq = sender.send(b"x")
        receiver.close()
        with pytest.raises(PeerFailed, match="backup"):
            sender.wait_acked(seq, timeout=5)
        with pytest.raises(PeerFailed):
            sender.send(b"y")


# --------------------------------------------------------------------------- authentication and refusals

def test_wrong_key_is_refused_on_both_sides():
    with channel.listen(LOOPBACK, 0, KEY) as listener:
        primary = background(channel.connect, *listener.address, OTHER_KEY)
        with pytest.raises(ChannelError, match=r"peer failed authentication: wrong key\?"):
            listener.accept(timeout=5)
        with pytest.raises(ChannelError, match=r"peer failed authentication: wrong key\?"):
            primary.result(timeout=5)


def test_keyed_and_unkeyed_ends_refuse_each_other():
    a, b = channel.socketpair_channel()
    backup = background(channel.Receiver.from_socket, b, None)
    with pytest.raises(ChannelError, match="peer failed authentication"):
        channel.Sender.from_socket(a, KEY)
    with pytest.raises(ChannelError, match="peer failed authentication"):
        backup.result(timeout=5)


def test_two_senders_refuse_each_other():
    a, b = channel.socketpair_channel()
    other = background(channel.Sender.from_socket, b, KEY)
    with pytest.raises(ChannelError, match="both ends are Senders"):
        channel.Sender.from_socket(a, KEY)
    with pytest.raises(ChannelError):
        other.result(timeout=5)


@pytest.mark.parametrize("junk, error", [
    (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "not a tft peer: bad magic b'GET / HT'"),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(64), "not a tft peer: bad magic"),  # TLS hello
    (b"\x00" + bytes(range(255)) * 2, "not a tft peer: bad magic"),
    (b"TFTCHAN2" + bytes(38), "version '2'"),
    (b"TFTCHAN1X" + bytes(37), "unknown role"),
], ids=["http", "tls", "binary", "other-version", "bad-role"])
def test_a_peer_that_is_not_tft_is_refused(junk, error):
    with channel.listen(LOOPBACK, 0, KEY) as listener:
        with socket.create_connection(listener.address, timeout=5) as raw:
            raw.sendall(junk)
            with pytest.raises(ChannelError, match=error):
                listener.accept(timeout=5)
        # Refusing one peer does not close the listener.
        with pytest.raises(TimeoutError):
            listener.accept(timeout=0.05)


def test_connecting_to_something_else_is_refused():
    server = socket.create_server((LOOPBACK, 0))

    def ssh_like():
        conn, _ = server.accept()
        with conn:
            conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")
            conn.recv(100)

    peer = background(ssh_like)
    with server:
        with pytest.raises(ChannelError, match="not a tft peer: bad magic b'SSH-2.0-'"):
            channel.connect(*server.getsockname(), KEY, timeout=5)
        peer.result(timeout=5)


def test_a_peer_that_says_nothing_times_out_the_handshake():
    with channel.listen(LOOPBACK, 0, KEY, handshake_timeout=0.3) as listener:
        with socket.create_connection(listener.address, timeout=5):
            started = time.monotonic()
            with pytest.raises(ChannelError, match="handshake timed out"):
                listener.accept(timeout=5)
            assert time.monotonic() - started < 2


def test_tcp_requires_a_real_key():
    with pytest.raises(ValueError, match="key is required"):
        channel.connect(LOOPBACK, 9, None)
    with pytest.raises(ValueError, match="at least 16"):
        channel.listen(LOOPBACK, 0, b"short")


def test_nobody_listening_is_peer_failed():
    with socket.create_server((LOOPBACK, 0)) as placeholder:
        port = placeholder.getsockname()[1]
    with pytest.raises(PeerFailed, match="cannot connect to the backup"):
        channel.connect(LOOPBACK, port, KEY, timeout=2)


# --------------------------------------------------------------------------- a man in the middle

def test_a_tampered_data_message_is_refused_and_not_delivered():
    def flip_one_byte(index, message):
        if index != 1:
            return [message]
        tampered = bytearray(message)
        tampered[HEADER_SIZE + 3] ^= 0x01  # inside the payload: "secXnd frame"
        return [bytes(tampered)]

    with through_mitm(flip_one_byte) as (sender, receiver, _):
        for frame in (b"first frame", b"second frame", b"third frame"):
            sender.send(frame)
        sender.flush()
        assert receiver.recv(timeout=5) == b"first frame"
        with pytest.raises(ChannelError, match="message tampered"):
            receiver.recv(timeout=5)
        with pytest.raises(ChannelError, match="message tampered"):
            receiver.recv(timeout=5)  # it stays refused; nothing after it is delivered
        # The backup dropped the connection, and the primary learns it.
        with pytest.raises(PeerFailed, match="backup"):
            sender.wait_acked(3, timeout=5)


def _duplicate_first(index, message):
    return [message, message] if index == 0 else [message]


class _SwapSecondAndThird:
    def __init__(self):
        self.held = None

    def __call__(self, index, message):
        if index == 1:
            self.held = message
            return []
        if index == 2:
            return [message, self.held]
        return [message]


@pytest.mark.parametrize("edit", [_duplicate_first, _SwapSecondAndThird()], ids=["replayed", "reordered"])
def test_a_replayed_or_reordered_message_is_refused(edit):
    with through_mitm(edit) as (sender, receiver, _):
        for frame in (b"one", b"two", b"three"):
            sender.send(frame)
        sender.flush()
        assert receiver.recv(timeout=5) == b"one"
        with pytest.raises(ChannelError, match="message replayed or reordered"):
            receiver.recv(timeout=5)


def test_an_oversized_length_field_is_refused_before_reading_the_body():
    def huge_length(index, message):
        return [struct.pack("!I", 0xFFFF_FFFF) + message[4:HEADER_SIZE]]  # the header alone

    with through_mitm(huge_length) as (sender, receiver, _):
        sender.send(b"frame")
        sender.flush()
        with pytest.raises(ChannelError, match="oversized message from the primary"):
            receiver.recv(timeout=5)


# --------------------------------------------------------------------------- key files

def test_generated_keys_load_back(tmp_path):
    path = tmp_path / "tft.key"
    key = channel.generate_key(path)
    assert len(key) == 32
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert channel.load_key(path) == key
    with pytest.raises(ChannelError, match="already exists"):
        channel.generate_key(path)


@pytest.mark.parametrize("content, mode, error", [
    (None, 0o600, "does not exist"),
    (b"", 0o600, "is empty"),
    (b"\n", 0o600, "is empty"),
    (b"00" * 32, 0o644, "chmod 600"),
    (b"00" * 32, 0o660, "chmod 600"),
    (b"not a hex key at all", 0o600, "hex"),
    (b"abcd", 0o600, "at least 16"),
], ids=["missing", "empty", "blank", "world-readable", "group-accessible", "not-hex", "short"])
def test_unsafe_or_bad_key_files_are_refused(tmp_path, content, mode, error):
    path = tmp_path / "tft.key"
    if content is not None:
        path.write_bytes(content)
        path.chmod(mode)
    with pytest.raises(ChannelError, match=error):
        channel.load_key(path)


def test_all_channel_errors_are_tft_errors():
    assert issubclass(ChannelError, TftError) and issubclass(PeerFailed, TftError)
    assert issubclass(AckTimeout, PeerFailed)


def test_frames_that_arrived_before_a_failed_ack_are_still_delivered(monkeypatch):
    # The backup's reader pauses with frames still in its socket (its queue is "full"); the
    # primary dies; the backup's next heartbeat hits the dead socket (EPIPE).  What the primary
    # sent before it died must still reach the backup, then the failure: a primary killed
    # right after its first frames must not leave its backup without its log's header.
    monkeypatch.setattr(endpoints, "_RECV_QUEUE_LIMIT", 1)
    sender, receiver = socket_pair(KEY, heartbeat=0.05)
    with sender, receiver:
        sender.send(b"one")
        sender.flush()
        time.sleep(0.3)               # read and queued: the reader now waits for the queue to drain
        sender.send(b"two")
        sender.send(b"three")
        sender.flush()                # in the backup's socket buffer, not yet read
        sender.abort()
        time.sleep(0.3)               # several heartbeats: each one hits the dead end
        assert [receiver.recv(timeout=5) for _ in range(3)] == [b"one", b"two", b"three"]
        with pytest.raises(PeerFailed):
            receiver.recv(timeout=5)
        assert not receiver.closed_cleanly
