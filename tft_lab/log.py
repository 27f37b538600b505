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
"""
from __future__ import annotations

import json
import os
import stat
import struct
import zlib
from typing import BinaryIO, Iterator

from .errors import LogError

MAGIC = b"TFTLOG\n\x00"
VERSION = 3
MAX_FRAME = 64 << 20
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
    "end": {"status": _INT},
}
OPTIONAL: dict[str, dict[str, type]] = {
    "sys": {"oseq": _INT},
    "exec": {"sha256": _STR},
    "header": {"created": _STR, "program": _STR},
    # the primary stopped the program on a call tft_lab refuses (its one-line message): a live
    # backup stops too instead of going live; or the operator stopped `tft run` (why): the same
    "end": {"refused": _STR, "stopped": _STR},
}
_SIG_MODES = ("boundary", "self", "in-call", "before")


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
    if t == "sys":
        if rec["seq"] < 0 or rec["pid"] <= 0 or not 0 <= rec["nr"] < 1024:
            raise LogError(f"sys record at byte {offset}: pid/seq/nr out of range")
        if len(rec["args"]) > 6 or not all(isinstance(a, int) for a in rec["args"]):
            raise LogError(f"sys record at byte {offset}: bad args")
        if len(rec["addrs"]) != len(rec["blobs"]) or not all(isinstance(a, int) and 0 <= a < 1 << 64 for a in rec["addrs"]):
            raise LogError(f"sys record at byte {offset}: out-buffer addresses do not match its data")
    elif t == "sig":
        if not 1 <= rec["signo"] <= 64 or rec["mode"] not in _SIG_MODES or len(rec["blobs"]) != 1 or len(rec["blobs"][0]) != 128:
            raise LogError(f"sig record at byte {offset}: bad signal number, mode or siginfo")
    elif t == "exec":
        if len(rec["blobs"]) != 1 or len(rec["blobs"][0]) != 16:
            raise LogError(f"exec record at byte {offset}: AT_RANDOM must be 16 bytes")
    elif t in ("blob", "map"):
        _check_content(rec, offset)
    elif t == "header" and rec["version"] != VERSION:
        raise LogError(f"log version {rec['version']} is not supported (this tft_lab reads version {VERSION})")


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
    _check_record(rec, offset)
    return rec


def decode_payload(payload: bytes, offset: int = 0) -> Record:
    """Parse and schema-check one frame's payload."""
    if payload[:1] == b"S":
        return _decode_sys(payload, offset)
    if payload[:1] != b"J" or len(payload) < 1 + _JLEN.size:
        raise LogError(f"frame at byte {offset} is not a tft record")
    (jlen,) = _JLEN.unpack_from(payload, 1)
    start = 1 + _JLEN.size
    try:
        head = json.loads(payload[start:start + jlen])
    except (UnicodeDecodeError, ValueError):
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
    """Appends records to a file (mode 0600); :meth:`close` flushes.  Records are batched in memory."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        try:
            fd = open_private(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            self._f: BinaryIO = os.fdopen(fd, "wb")
        except OSError as e:
            raise LogError(f"cannot write the log {self.path}: {e.strerror}") from None
        self._f.write(MAGIC)
        self._buf: list[bytes] = []
        self._size = 0

    def write(self, fields: dict, blobs: list[bytes] = ()) -> None:
        frame = encode(fields, blobs)
        self._buf.append(frame)
        self._size += len(frame)
        if self._size > 1 << 20:
            self.flush()

    def flush(self) -> None:
        if self._buf:
            self._f.write(b"".join(self._buf))
            self._buf.clear()
            self._size = 0
        self._f.flush()

    def close(self) -> None:
        if not self._f.closed:
            self.flush()
            self._f.close()


def read_log(path: str | os.PathLike) -> list[Record]:
    """Read and check a whole log file.  Raises LogError on anything that is not a sound tft log."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise LogError(f"{path}: no such log file")
    except IsADirectoryError:
        raise LogError(f"{path}: is a directory, not a log")
    if not data:
        raise LogError(f"{path}: empty file, not a tft log")
    if not data.startswith(MAGIC):
        raise LogError(f"{path}: not a tft log (bad magic)")
    return list(_frames(data, len(MAGIC), path))


def _frames(data: bytes, pos: int, path: str) -> Iterator[Record]:
    first = True
    while pos < len(data):
        if pos + _FRAME.size > len(data):
            raise LogError(f"{path}: truncated at byte {pos} (cut off mid-frame header)")
        length, crc = _FRAME.unpack_from(data, pos)
        if length > MAX_FRAME:
            raise LogError(f"{path}: frame at byte {pos} claims {length} bytes (corrupt)")
        start = pos + _FRAME.size
        if start + length > len(data):
            raise LogError(f"{path}: truncated at byte {pos} (the recorder stopped mid-write?)")
        payload = data[start:start + length]
        if zlib.crc32(payload) != crc:
            raise LogError(f"{path}: frame at byte {pos} is corrupt (checksum mismatch)")
        rec = decode_payload(payload, pos)
        if first and rec.type != "header":
            raise LogError(f"{path}: does not start with a header record")
        first = False
        yield rec
        pos = start + length
    if first:
        raise LogError(f"{path}: empty log (no header)")


def decode_frame(frame: bytes) -> Record:
    """Check and decode one frame as :func:`encode` made it (a record received over a channel)."""
    if len(frame) < _FRAME.size:
        raise LogError("record frame too short")
    length, crc = _FRAME.unpack_from(frame)
    payload = frame[_FRAME.size:]
    if length != len(payload) or length > MAX_FRAME:
        raise LogError("record frame length does not match")
    if zlib.crc32(payload) != crc:
        raise LogError("record frame is corrupt (checksum mismatch)")
    return decode_payload(payload)
