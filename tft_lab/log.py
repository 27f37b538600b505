"""The log: versioned, schema-checked records, framed so that a crash mid-write is detected.

File layout::

    MAGIC (8 bytes: b"TFTLOG\\n\\x00")
    frame*    frame = u32 length | u32 crc32(payload) | payload
              payload = "J" | u32 json_length | json | blob bytes...     (every record type)
            | "S" | packed sys record | blob bytes...      (the syscall record, packed for speed)

The JSON part is a flat object: ``"t"`` names the record type, ``"blobs"``
lists the lengths of the binary parts that follow it (out-buffers, siginfo,
AT_RANDOM).  A packed sys record is ``pid i32, seq i64, nr i32, res i64,
nargs u8, nouts u8, has_oseq u8 [, oseq u64], args u64 x nargs, (addr u64,
len u32) x nouts``; it decodes to the same fields as the JSON form would.  Nothing received is ever unpickled or evaluated: every record is
checked against :data:`SCHEMA` and every size is bounded before use.

The first record is a ``header`` carrying :data:`VERSION`; a log of another
version, a foreign file, a frame whose checksum fails or a file cut off
mid-frame each raise :class:`~tft_lab.errors.LogError` with the byte offset.

A log is read as a stream (:class:`LogReader`): one frame at a time, so a
replay's memory does not grow with the log's length.  Only a regular file is
read (a device or a FIFO is refused before any byte is), and a frame's length
is checked against its bound and against the file's size before its bytes are.
"""
from __future__ import annotations

import contextlib
import json
import os
import stat
import struct
import sys
import threading
import zlib
from typing import BinaryIO

from ._backend import core as _core
from .errors import LogError

MAGIC = b"TFTLOG\n\x00"
VERSION = 4
MAX_FRAME = 64 << 20
#: The header holds argv and the environment, which the kernel bounds (ARG_MAX, ~2 MiB here).
MAX_HEADER = 4 << 20
MAX_BLOBS = 32
_FRAME = struct.Struct("<II")
_JLEN = struct.Struct("<I")
_SYS = struct.Struct("<iqiqBBB")      # pid, seq, nr, res, nargs, nouts, has_oseq
_Q = struct.Struct("<Q")
_OUT = struct.Struct("<QI")           # out-buffer address, length

_INT = int
_STR = str
#: Record type -> required fields and their types.  Optional fields are listed in OPTIONAL.
SCHEMA: dict[str, dict[str, type]] = {
    "header": {"version": _INT, "argv": list, "env": dict, "cwd": _STR, "exe": _STR,
               "exe_sha256": _STR, "epoch": _INT, "arch": _STR, "pid": _INT, "fds": dict},
    # one intercepted syscall: outs are (addr, bytes) pairs; addrs parallel the blobs
    # (pid: the thread's id, the process's for its first thread; seq counts that thread's calls)
    "sys": {"pid": _INT, "seq": _INT, "nr": _INT, "args": list, "res": _INT, "addrs": list},
    # a signal delivered after call `seq` completed ("before": just before call seq+1 is made,
    # which the primary does when that call may block); blob 0 is the original siginfo
    "sig": {"pid": _INT, "seq": _INT, "signo": _INT, "mode": _STR},
    # an emulated rdtsc/rdtscp executed after call `seq`
    "tsc": {"pid": _INT, "seq": _INT, "value": _INT, "aux": _INT},
    # a successful execve in `pid` (call `seq`); blob 0 holds the 16 AT_RANDOM bytes
    "exec": {"pid": _INT, "seq": _INT, "path": _STR},
    "exit": {"pid": _INT, "code": _INT, "signal": _INT},
    # a piece of a mapped file's content (each content once per log); blob 0 holds the bytes
    # (zsize: the length of the content's zlib stream; offset: this piece's place in it)
    "blob": {"sha256": _STR, "size": _INT, "offset": _INT, "zsize": _INT},
    # the successful file-backed mmap that is call `seq` of `pid` mapped this content
    # (stored: its bytes are in this log's blob records; else only the hash, --small-log)
    "map": {"pid": _INT, "seq": _INT, "sha256": _STR, "size": _INT, "path": _STR, "stored": bool,
            "writable": bool},
    # thread `tid` gave way at its switch point `at` (epoch, block, exit) with `seq` calls made;
    # thread `to` runs next; `pid` names the schedule: its first process's (docs/threads.md)
    "switch": {"pid": _INT, "tid": _INT, "seq": _INT, "at": _STR, "to": _INT},
    "end": {"status": _INT},
}
OPTIONAL: dict[str, dict[str, type]] = {
    "sys": {"oseq": _INT},
    "exec": {"sha256": _STR},
    # sigblk/sigign: the signals blocked and ignored when the program started (bit n-1 for
    # signal n), which it inherits through exec; the replay starts it with the same;
    # run: the id of a replicated run whose live replica an arbiter decides (tft_lab.arbiter)
    "header": {"created": _STR, "program": _STR, "sigblk": _INT, "sigign": _INT, "run": _STR},
    # the primary stopped the program on a call tft_lab refuses (its one-line message): a live
    # backup stops too instead of going live; or the operator stopped `tft run` (why): the same
    "end": {"refused": _STR, "stopped": _STR},
}
_SIG_MODES = ("boundary", "self", "in-call", "before")
_SWITCH_POINTS = ("epoch", "block", "exit")
_I64 = (-(1 << 63), 1 << 64)       # any integer a register holds (signed or not)
#: Highest user-space address + 1 on x86-64 with 5-level page tables: an out-buffer is below it.
USER_TOP = 1 << 57
MAX_PID = 1 << 22                  # the kernel's pid_max limit
MAX_STATUS = 255                   # an exit status, or 128 + a signal number


def _in(v: int, lo: int, hi: int) -> bool:
    return lo <= v < hi


class Record(dict):
    """A decoded record: a dict of its JSON fields plus ``blobs`` (a list of bytes)."""

    @property
    def type(self) -> str:
        return self["t"]


def _check_record(rec: dict, offset: int) -> None:
    t = rec.get("t")
    fields = SCHEMA.get(t) if isinstance(t, str) else None
    if fields is None:
        raise LogError(f"unknown record type {t!r} at byte {offset}")
    for name, typ in fields.items():
        v = rec.get(name)
        if not isinstance(v, typ) or (typ is int and isinstance(v, bool)):
            raise LogError(f"record {t!r} at byte {offset}: field {name!r} missing or not {typ.__name__}")
    for name, typ in OPTIONAL.get(t, {}).items():
        if name in rec and not isinstance(rec[name], typ):
            raise LogError(f"record {t!r} at byte {offset}: field {name!r} is not {typ.__name__}")
    # Every number is bounded before anything uses it (a forged 10**30 must not reach a register,
    # a struct or an exit status); the checks per type below narrow them further.
    for name in (*fields, *OPTIONAL.get(t, {})):
        v = rec.get(name)
        if isinstance(v, int) and not _in(v, *_I64):
            raise LogError(f"record {t!r} at byte {offset}: field {name!r} out of range (corrupt log)")
    if "pid" in fields and not 0 < rec["pid"] < MAX_PID:
        raise LogError(f"{t} record at byte {offset}: pid out of range")
    if "seq" in fields and not _in(rec["seq"], -1, 1 << 62):
        raise LogError(f"{t} record at byte {offset}: seq out of range")
    if t == "sys":
        if rec["seq"] < 0 or not 0 <= rec["nr"] < 1024 or not _in(rec.get("oseq", 1), 1, 1 << 62):
            raise LogError(f"sys record at byte {offset}: seq, nr or output order out of range")
        if len(rec["args"]) > 6 or not all(isinstance(a, int) and _in(a, *_I64) for a in rec["args"]):
            raise LogError(f"sys record at byte {offset}: bad args")
        if len(rec["addrs"]) != len(rec["blobs"]) or not all(isinstance(a, int) and 0 <= a < USER_TOP for a in rec["addrs"]):
            raise LogError(f"sys record at byte {offset}: out-buffer addresses do not match its data")
    elif t == "header":
        _check_header(rec, offset)
    elif t == "end":
        if not 0 <= rec["status"] <= MAX_STATUS:
            raise LogError(f"end record at byte {offset}: exit status {rec['status']} out of range (corrupt log)")
    elif t == "exit":
        if not -1 <= rec["code"] <= MAX_STATUS or not 0 <= rec["signal"] <= 64:
            raise LogError(f"exit record at byte {offset}: exit code or signal out of range (corrupt log)")
    elif t == "tsc":
        if not _in(rec["value"], 0, 1 << 64) or not _in(rec["aux"], 0, 1 << 32):
            raise LogError(f"tsc record at byte {offset}: value out of range")
    elif t == "sig":
        if not 1 <= rec["signo"] <= 64 or rec["mode"] not in _SIG_MODES or len(rec["blobs"]) != 1 or len(rec["blobs"][0]) != 128:
            raise LogError(f"sig record at byte {offset}: bad signal number, mode or siginfo")
    elif t == "switch":
        if rec["at"] not in _SWITCH_POINTS or not 0 < rec["tid"] < MAX_PID or not 0 < rec["to"] < MAX_PID:
            raise LogError(f"switch record at byte {offset}: bad switch point or thread id")
    elif t == "exec":
        if len(rec["blobs"]) != 1 or len(rec["blobs"][0]) != 16:
            raise LogError(f"exec record at byte {offset}: AT_RANDOM must be 16 bytes")
    elif t in ("blob", "map"):
        _check_content(rec, offset)


def _strs(v) -> bool:
    return all(isinstance(x, str) for x in v)


def _check_header(rec: dict, offset: int) -> None:
    if rec["version"] != VERSION:
        raise LogError(f"log version {rec['version']} is not supported (this tft_lab reads version {VERSION})")
    env, fds = rec["env"], rec["fds"]
    if not rec["argv"] or not _strs(rec["argv"]) or not _strs(env) or not _strs(env.values()):
        raise LogError(f"header at byte {offset}: argv must be a non-empty list of strings, env a "
                       "mapping of strings (corrupt log)")
    if not rec["cwd"].startswith("/") or not rec["exe"].startswith("/") or not _strs(fds.values()):
        raise LogError(f"header at byte {offset}: bad cwd, program path or inherited fds (corrupt log)")
    if not 1 <= rec["epoch"] < 1 << 31:
        raise LogError(f"header at byte {offset}: epoch length out of range (corrupt log)")
    if not all(_in(rec.get(k, 0), 0, 1 << 64) for k in ("sigblk", "sigign")):
        raise LogError(f"header at byte {offset}: signal set out of range (corrupt log)")
    text = "".join((rec["cwd"], rec["exe"], *rec["argv"], *env, *env.values()))
    if "\0" in text or not _encodable(text) or any(not k or "=" in k for k in env):
        raise LogError(f"header at byte {offset}: argv, env, cwd or program path cannot be passed to a "
                       "program (a NUL byte, a bad name or character; corrupt log)")


def start_signals(header: dict) -> tuple[int, int] | None:
    """The signal sets (blocked, ignored) a header says the program started with; None in a log
    that predates them (the replay then starts it with the replayer's own)."""
    if "sigblk" not in header:
        return None
    return header["sigblk"], header.get("sigign", 0)


def _encodable(s: str) -> bool:
    """Whether ``s`` turns back into the bytes a program gets (the recorder decoded them with
    surrogateescape; another lone surrogate is not such bytes)."""
    try:
        s.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return False
    return True


MAX_CONTENT = 1 << 30   # a mapped file's size (larger ones are logged by hash only)
_HEX = frozenset("0123456789abcdef")


def _check_content(rec: dict, offset: int) -> None:
    t = rec["t"]
    digest, size = rec["sha256"], rec["size"]
    limit = MAX_CONTENT if t == "blob" else 1 << 62   # a map of a larger file logs only its hash
    if len(digest) != 64 or not set(digest) <= _HEX or not 0 <= size <= limit:
        raise LogError(f"{t} record at byte {offset}: bad sha256 or size")
    if t == "blob":
        blobs = rec["blobs"]
        off, zsize = rec["offset"], rec["zsize"]
        if not 0 < zsize <= size + size // 8 + 1024:   # zlib never grows data by more than that
            raise LogError(f"blob record at byte {offset}: bad compressed size")
        if len(blobs) != 1 or not blobs[0] or not 0 <= off < zsize or off + len(blobs[0]) > zsize:
            raise LogError(f"blob record at byte {offset}: its piece does not fit its content")
    elif rec["seq"] < 0 or rec["pid"] <= 0 or rec["blobs"] or len(rec["path"]) > 4096:
        raise LogError(f"map record at byte {offset}: bad pid, seq or path")


def encode(fields: dict, blobs: list[bytes] = ()) -> bytes:
    """One framed record."""
    payload = None
    if fields.get("t") == "sys":
        if _encode_sys_frame is not None:
            frame = _encode_sys_frame(fields, blobs)   # the same bytes, or None: an unusual record
            if frame is not None:
                return frame
        try:
            payload = _encode_sys(fields, blobs)
        except (KeyError, TypeError, struct.error):
            payload = None   # not a well-formed sys record: JSON, and the reader will say why
    if payload is None:
        head = dict(fields)
        head["blobs"] = [len(b) for b in blobs]
        j = json.dumps(head, separators=(",", ":")).encode()
        payload = b"".join((b"J", _JLEN.pack(len(j)), j, *blobs))
    return _FRAME.pack(len(payload), zlib.crc32(payload)) + payload




def _encode_sys(f: dict, blobs) -> bytes:
    # The common record, packed (not JSON): it is most of every log, and a tracer's time.
    args, addrs = f["args"], f["addrs"]
    oseq = f.get("oseq")
    head = _SYS.pack(f["pid"], f["seq"], f["nr"], f["res"], len(args), len(addrs), oseq is not None)
    parts = [b"S", head]
    if oseq is not None:
        parts.append(_Q.pack(oseq))
    parts.append(struct.pack(f"<{len(args)}Q", *(a & 0xFFFFFFFFFFFFFFFF for a in args)))
    parts.extend(_OUT.pack(a, len(b)) for a, b in zip(addrs, blobs))
    parts.extend(blobs)
    return b"".join(parts)


def _decode_sys(payload: bytes, offset: int) -> Record:
    try:
        pid, seq, nr, res, nargs, nouts, has_oseq = _SYS.unpack_from(payload, 1)
        pos = 1 + _SYS.size
        rec = Record(t="sys", pid=pid, seq=seq, nr=nr, res=res)
        if has_oseq:
            (rec["oseq"],) = _Q.unpack_from(payload, pos)
            pos += 8
        if nargs > 6 or nouts > MAX_BLOBS:
            raise LogError(f"sys record at byte {offset}: too many args or out-buffers")
        rec["args"] = list(struct.unpack_from(f"<{nargs}Q", payload, pos))
        pos += 8 * nargs
        outs = [_OUT.unpack_from(payload, pos + i * _OUT.size) for i in range(nouts)]
        pos += _OUT.size * nouts
    except struct.error:
        raise LogError(f"sys record at byte {offset} is cut short")
    if pos + sum(n for _, n in outs) != len(payload):
        raise LogError(f"frame at byte {offset}: out-buffer sizes do not add up")
    rec["addrs"] = [a for a, _ in outs]
    blobs = []
    for _, n in outs:
        blobs.append(payload[pos:pos + n])
        pos += n
    rec["blobs"] = blobs
    # The struct gave every field its type and width: only the ranges are left to check (the
    # general _check_record costs more than the decoding, on the log's most common record).
    if not (0 < pid < MAX_PID and seq >= 0 and 0 <= nr < 1024 and 1 <= rec.get("oseq", 1) < 1 << 62
            and all(a < USER_TOP for a in rec["addrs"])):
        raise LogError(f"sys record at byte {offset}: pid, seq, nr, output order or an out-buffer "
                       "address out of range")
    return rec


def decode_payload(payload: bytes, offset: int = 0) -> Record:
    """Parse and schema-check one frame's payload."""
    if payload[:1] == b"S":
        if _decode_sys_fast is not None:
            rec = _decode_sys_fast(payload)   # the same Record, or None: a record to look at closely
            if rec is not None:
                return rec
        return _decode_sys(payload, offset)
    if payload[:1] != b"J" or len(payload) < 1 + _JLEN.size:
        raise LogError(f"frame at byte {offset} is not a tft record")
    (jlen,) = _JLEN.unpack_from(payload, 1)
    start = 1 + _JLEN.size
    try:
        head = json.loads(payload[start:start + jlen])
    except (UnicodeDecodeError, ValueError, RecursionError):   # RecursionError: "[[[[...": too deep
        raise LogError(f"frame at byte {offset} is not a tft record")
    if not isinstance(head, dict):
        raise LogError(f"frame at byte {offset} is not a tft record")
    sizes = head.pop("blobs", None)
    if not isinstance(sizes, list) or len(sizes) > MAX_BLOBS or not all(isinstance(s, int) and s >= 0 for s in sizes):
        raise LogError(f"frame at byte {offset}: bad blob list")
    pos = start + jlen
    if pos + sum(sizes) != len(payload):
        raise LogError(f"frame at byte {offset}: blob sizes do not add up")
    blobs = []
    for s in sizes:
        blobs.append(payload[pos:pos + s])
        pos += s
    rec = Record(head)
    rec["blobs"] = blobs
    _check_record(rec, offset)
    return rec


#: The compiled core's encoder and decoder of the common sys record (tft_lab/_backend decides),
#: or None.  Each gives exactly what the Python code beside it gives, or None where it leaves a
#: record to it (tests/test_core_paths.py).
_encode_sys_frame = _decode_sys_fast = None
if _core is not None:
    _core.setup_log(zlib.crc32, Record, MAX_PID, USER_TOP, MAX_BLOBS)
    _encode_sys_frame, _decode_sys_fast = _core.encode_sys, _core.decode_sys


def open_private(path: str, flags: int) -> int:
    """``os.open`` for a file only its owner may read (a log or a trace holds what the program
    read): mode 0600, also when it replaces an older regular file.  A device or a FIFO
    (``/dev/null``, a pipe) keeps its mode: it is not ours to change."""
    fd = os.open(path, flags | os.O_CLOEXEC, 0o600)
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            os.fchmod(fd, 0o600)
    except OSError:
        os.close(fd)
        raise
    return fd


class LogWriter:
    """Appends records to a file (mode 0600), written as the program runs: a recorder that is
    killed leaves a log that replays up to its last complete frame.

    Records are batched in memory (a tracer's time is precious) but reach the file, as whole
    frames, at every output's record (what the user saw is in the log), every
    :data:`FLUSH_EVERY` seconds (a background thread: a program that sleeps or spins still has
    its log written) and at :meth:`close`.  A write that fails (a full disk) raises
    :class:`LogError` naming the log, at the next :meth:`write` or :meth:`close` if the thread
    met it; nothing more is written after it.  With ``keep_going`` it raises nothing: the
    failure is kept in :attr:`lost` (and said once on stderr), later records are dropped, and
    the file holds the whole frames written before it (a replay replays those, then says where
    the log stops).
    """

    FLUSH_EVERY = 0.1

    def __init__(self, path: str | os.PathLike, keep_going: bool = False):
        self.path = os.fspath(path)
        self.keep_going = keep_going
        self.lost: LogError | None = None
        """Why the log stopped being written (``keep_going`` only), or None."""
        try:
            self._fd: int | None = open_private(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        except OSError as e:
            raise LogError(f"cannot write the log {self.path}: {e.strerror}") from None
        self._buf: list[bytes] = [MAGIC]
        self._size = len(MAGIC)
        self._whole = 0   # bytes of whole frames in the file
        self._lock = threading.Lock()      # the buffer and the fd: the flusher thread shares them
        self._failed: LogError | None = None
        self._stop = threading.Event()
        # Started at the first record, not here: the recorder forks its program after creating
        # the log, and a fork is simplest without a second thread.
        self._flusher = threading.Thread(target=self._flush_often, name="tft-log-flush", daemon=True)

    def write(self, fields: dict, blobs: list[bytes] = ()) -> None:
        self.write_frames([encode(fields, blobs)], output="oseq" in fields)

    def write_frames(self, frames: list[bytes], output: bool = False) -> None:
        """Append records framed already (:func:`encode`); ``output``: one of them is an
        output's, which reaches the file at once."""
        if self._flusher.ident is None and not self._stop.is_set():
            self._flusher.start()
        with self._lock:
            if self._failed is not None:
                raise self._failed
            if self.lost is not None:
                return   # the program goes on unrecorded
            self._buf.extend(frames)
            self._size += sum(map(len, frames))
            if self._size > 1 << 20 or output:
                self._write_out()

    def _write_out(self) -> None:
        # Holding the lock.  Whole frames, in order; a short write (a disk filling up) is retried
        # until the kernel says why it cannot go on.
        if not self._buf or self._fd is None or self._failed is not None or self.lost is not None:
            return
        data = memoryview(b"".join(self._buf))
        self._buf.clear()
        self._size = 0
        try:
            while data:
                data = data[os.write(self._fd, data):]
        except OSError as e:
            if self.keep_going:
                # Cut back to the last whole frame, so that the file stays a log that replays.
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, self._whole)
                self.lost = LogError(f"cannot write the log {self.path}: {e.strerror}; the program "
                                     "goes on unrecorded")
                print(f"tft: {self.lost}", file=sys.stderr, flush=True)
                return
            self._failed = LogError(f"cannot write the log {self.path}: {e.strerror}; "
                                    "the program was stopped")
            raise self._failed from None
        self._whole += len(data.obj)

    def _flush_often(self) -> None:
        while not self._stop.wait(self.FLUSH_EVERY):
            with self._lock:
                try:
                    self._write_out()
                except LogError:
                    return   # kept in _failed: the recording thread raises it

    def flush(self) -> None:
        """Write every buffered record to the file now."""
        with self._lock:
            if self._failed is not None:
                raise self._failed
            self._write_out()

    def close(self) -> None:
        """Flush and close (also after a failure, which it then raises)."""
        self._stop.set()
        if self._flusher.ident is not None and self._flusher is not threading.current_thread():
            self._flusher.join()
        with self._lock:
            fd, self._fd = self._fd, None
            try:
                if fd is not None and self._failed is None:
                    self._fd = fd
                    self._write_out()
            finally:
                self._fd = None
                if fd is not None:
                    os.close(fd)
            if self._failed is not None:
                raise self._failed


class LogReader:
    """The records of a log file, one frame at a time (a replay's memory is flat in the log's
    length).  Iterating yields checked :class:`Record`\\ s, the header first; it raises
    :class:`LogError` (with the byte offset) where the file stops being a sound log, and stops
    at a clean end of file.  :attr:`pos` is the offset of the next frame, :attr:`count` the
    records read so far; :attr:`ended` tells whether the ``end`` record was among them.

    Only a regular file is read: a device (``/dev/zero``) or a FIFO is refused when opened,
    before any byte is read, and so is a frame longer than its bound or than the file.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        try:
            # O_NONBLOCK: opening a FIFO must not wait for a writer before we can refuse it.
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            raise LogError(f"{self.path}: no such log file") from None
        except OSError as e:
            raise LogError(f"{self.path}: cannot read the log: {e.strerror}") from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            what = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise LogError(f"{self.path}: is {what}, not a log")
        self._f: BinaryIO = os.fdopen(fd, "rb", buffering=1 << 16)
        self.size = st.st_size
        self.pos = len(MAGIC)
        self.count = 0
        self.ended = False
        try:
            magic = self._f.read(len(MAGIC))
        except OSError as e:
            self.close()
            raise LogError(f"{self.path}: cannot read the log: {e.strerror}") from None
        if not magic:
            self.close()
            raise LogError(f"{self.path}: empty file, not a tft log")
        if magic != MAGIC:
            self.close()
            raise LogError(f"{self.path}: not a tft log (bad magic)")

    def __iter__(self) -> "LogReader":
        return self

    def __next__(self) -> Record:
        try:
            rec = self._next()
        except BaseException:
            self.close()
            raise
        if rec is None:
            self.close()
            raise StopIteration
        return rec

    def _next(self) -> Record | None:
        pos, path = self.pos, self.path
        if self._f.closed:
            return None
        head = self._f.read(_FRAME.size)
        if not head:
            if not self.count:
                raise LogError(f"{path}: empty log (no header)")
            return None
        if len(head) < _FRAME.size:
            raise LogError(f"{path}: truncated at byte {pos} (cut off mid-frame header)")
        length, crc = _FRAME.unpack(head)
        limit = MAX_HEADER if not self.count else MAX_FRAME
        if length > limit:
            raise LogError(f"{path}: frame at byte {pos} claims {length} bytes (corrupt)")
        start = pos + _FRAME.size
        if start + length > self.size:
            self.size = os.fstat(self._f.fileno()).st_size   # it may have grown since we looked
        if start + length > self.size:
            raise LogError(f"{path}: truncated at byte {pos} (the recorder stopped mid-write?)")
        payload = self._f.read(length)
        if len(payload) < length:
            raise LogError(f"{path}: truncated at byte {pos} (the recorder stopped mid-write?)")
        if zlib.crc32(payload) != crc:
            raise LogError(f"{path}: frame at byte {pos} is corrupt (checksum mismatch)")
        if self.ended:
            raise LogError(f"{path}: a record at byte {pos}, after the end record (corrupt)")
        rec = decode_payload(payload, pos)
        if not self.count and rec.type != "header":
            raise LogError(f"{path}: does not start with a header record")
        if self.count and rec.type == "header":
            raise LogError(f"{path}: a second header at byte {pos} (corrupt)")
        self.ended = rec.type == "end"
        self.count += 1
        self.pos = start + length
        return rec

    def close(self) -> None:
        self._f.close()


def read_log(path: str | os.PathLike) -> list[Record]:
    """Read and check a whole log file.  Raises LogError on anything that is not a sound tft log.
    (A replay streams it with :class:`LogReader` instead: this holds every record at once.)"""
    return list(LogReader(path))


def check_frame(frame: bytes) -> bytes:
    """The payload of one frame as :func:`encode` made it, its length and checksum checked
    (a record received over a channel); :class:`LogError` if they do not hold."""
    if len(frame) < _FRAME.size:
        raise LogError("record frame too short")
    length, crc = _FRAME.unpack_from(frame)
    payload = frame[_FRAME.size:]
    if length != len(payload) or length > MAX_FRAME:
        raise LogError("record frame length does not match")
    if zlib.crc32(payload) != crc:
        raise LogError("record frame is corrupt (checksum mismatch)")
    return payload


def split_frames(buf: bytearray) -> list[bytes]:
    """Take every whole frame off the front of ``buf`` (what is left is a frame's beginning)."""
    frames, pos = [], 0
    while len(buf) - pos >= _FRAME.size:
        end = pos + _FRAME.size + _FRAME.unpack_from(buf, pos)[0]
        if end > len(buf):
            break
        frames.append(bytes(buf[pos:end]))
        pos = end
    del buf[:pos]
    return frames


def check_frames(chunk: bytes) -> list[bytes]:
    """The payloads of the whole frames ``chunk`` holds, one after the other (a channel message
    carries one record, or a batch of them), each checked as :func:`check_frame` checks it."""
    if len(chunk) >= _FRAME.size and _FRAME.unpack_from(chunk)[0] == len(chunk) - _FRAME.size:
        return [check_frame(chunk)]   # one record: the usual message
    buf = bytearray(chunk)
    frames = split_frames(buf)
    if buf or not frames:
        raise LogError("record frame length does not match (bytes after the last whole frame)")
    return [check_frame(f) for f in frames]


def decode_frame(frame: bytes) -> Record:
    """Check and decode one frame as :func:`encode` made it."""
    return decode_payload(check_frame(frame))
