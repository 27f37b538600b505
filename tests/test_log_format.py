"""The log format: records survive a round trip; anything malformed is refused with LogError.

Whoever writes the log decides what the backup's program sees,
so the reader trusts nothing: a bad blob list, a frame claiming an absurd
length, an unknown record type and a record missing a field are each refused
with :class:`tft_lab.LogError`, never half-read.
"""
from __future__ import annotations

import json
import struct
import zlib

import pytest

from tft_lab import LogError
from tft_lab.log import MAGIC, MAX_FRAME, VERSION, LogWriter, decode_payload, encode, read_log

HEADER = {"t": "header", "version": VERSION, "argv": ["/bin/true"], "env": {"A": "1"}, "cwd": "/",
          "exe": "/bin/true", "exe_sha256": "0" * 64, "epoch": 64, "arch": "x86_64", "pid": 100,
          "fds": {"0": "/dev/null"}}
SYS = {"t": "sys", "pid": 100, "seq": 3, "nr": 228, "args": [1, 140737488348864], "res": 0,
       "addrs": [140737488348864]}
SIG = {"t": "sig", "pid": 100, "seq": 63, "signo": 14, "mode": "boundary"}


def payload_of(frame: bytes) -> bytes:
    length, crc = struct.unpack_from("<II", frame)
    payload = frame[8:]
    assert length == len(payload) and crc == zlib.crc32(payload)
    return payload


def raw_payload(head: dict, blobs=()) -> bytes:
    """A payload built by hand, so that it can be wrong in ways encode() never is."""
    j = json.dumps(head).encode()
    return b"J" + struct.pack("<I", len(j)) + j + b"".join(blobs)


def test_a_record_round_trips_with_its_blobs():
    blob = bytes(range(16))
    rec = decode_payload(payload_of(encode(SYS, [blob])))
    assert rec.type == "sys"
    assert {k: v for k, v in rec.items() if k != "blobs"} == SYS
    assert rec["blobs"] == [blob]


def test_a_log_file_round_trips(tmp_path):
    path = tmp_path / "x.log"
    w = LogWriter(path)
    w.write(HEADER)
    w.write(SYS, [b"\x00" * 16])
    w.write(SIG, [b"\x0e" + b"\x00" * 127])
    w.write({"t": "end", "status": 0})
    w.close()
    assert path.read_bytes().startswith(MAGIC)
    assert [r.type for r in read_log(path)] == ["header", "sys", "sig", "end"]
    assert read_log(path)[2]["blobs"][0][0] == 14


@pytest.mark.parametrize("blobs", ["not a list", [-1], [1.5], list(range(1000))])
def test_a_bad_blob_list_is_refused(blobs):
    head = dict(SYS, addrs=[], blobs=blobs)
    with pytest.raises(LogError, match="blob"):
        decode_payload(raw_payload(head))


def test_blob_sizes_that_do_not_add_up_are_refused():
    head = dict(SYS, blobs=[16])
    with pytest.raises(LogError, match="add up"):
        decode_payload(raw_payload(head, [b"\x00" * 8]))


def test_an_oversized_frame_is_refused(tmp_path):
    path = tmp_path / "huge.log"
    path.write_bytes(MAGIC + encode(HEADER) + struct.pack("<II", MAX_FRAME + 1, 0) + b"\x00" * 64)
    with pytest.raises(LogError, match="claims"):
        read_log(path)


def test_an_unknown_record_type_is_refused():
    with pytest.raises(LogError, match="unknown record type"):
        decode_payload(payload_of(encode({"t": "wormhole", "pid": 1})))


@pytest.mark.parametrize("record, field", [(SYS, "res"), (SYS, "nr"), (SIG, "signo"), (HEADER, "version")])
def test_a_record_missing_a_field_is_refused(record, field):
    incomplete = {k: v for k, v in record.items() if k != field}
    blobs = [b"\x00" * 16] if record is SYS else [b"\x00" * 128] if record is SIG else []
    with pytest.raises(LogError, match=field):
        decode_payload(payload_of(encode(incomplete, blobs)))


def test_a_field_of_the_wrong_type_is_refused():
    with pytest.raises(LogError, match="pid"):
        decode_payload(payload_of(encode(dict(SYS, pid="100"), [b"\x00" * 16])))


def test_a_log_must_start_with_a_header(tmp_path):
    path = tmp_path / "headless.log"
    path.write_bytes(MAGIC + encode(SYS, [b"\x00" * 16]))
    with pytest.raises(LogError, match="header"):
        read_log(path)


DIGEST = "ab" * 32
BLOB = {"t": "blob", "sha256": DIGEST, "size": 10, "offset": 0, "zsize": 10}
MAP = {"t": "map", "pid": 100, "seq": 7, "sha256": DIGEST, "size": 10, "path": "/lib/libc.so.6",
       "stored": True, "writable": False}


def test_mapped_content_records_round_trip():
    blob = decode_payload(payload_of(encode(BLOB, [b"0123456789"])))
    assert blob["blobs"] == [b"0123456789"] and blob["sha256"] == DIGEST
    m = decode_payload(payload_of(encode(MAP)))
    assert {k: v for k, v in m.items() if k != "blobs"} == MAP


@pytest.mark.parametrize("record, blobs, match", [
    (dict(BLOB, sha256="xyz"), [b"0123456789"], "sha256"),
    (dict(BLOB, sha256="AB" * 32), [b"0123456789"], "sha256"),
    (dict(BLOB, size=-1), [b""], "size"),
    (dict(BLOB, zsize=0), [b"0"], "compressed size"),
    (dict(BLOB, size=1, zsize=5000), [b"0"], "compressed size"),   # a zip bomb's shape
    (dict(BLOB, size=(1 << 30) + 1), [b"0"], "size"),
    (dict(BLOB, offset=4), [b"0123456789"], "does not fit"),   # a piece past the content's end
    (dict(BLOB, offset=-1), [b"0"], "does not fit"),
    (BLOB, [], "does not fit"),
    (BLOB, [b""], "does not fit"),                               # an empty piece of a non-empty content
    (dict(MAP, stored=1), [], "stored"),
    (dict(MAP, pid=0), [], "map record"),
    (MAP, [b"x"], "map record"),
])
def test_a_bad_mapped_content_record_is_refused(record, blobs, match):
    with pytest.raises(LogError, match=match):
        decode_payload(payload_of(encode(record, blobs)))


def test_a_log_file_is_private(tmp_path):
    path = tmp_path / "private.log"
    path.write_bytes(b"old")
    path.chmod(0o644)
    w = LogWriter(path)
    w.write(HEADER)
    w.close()
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_log_of_the_previous_version_is_refused_clearly(tmp_path):
    """Version 2 logs mapped the local files on replay: they are refused, not half-trusted."""
    path = tmp_path / "v2.log"
    path.write_bytes(MAGIC + encode(dict(HEADER, version=2)))
    with pytest.raises(LogError, match=f"log version 2 is not supported .*version {VERSION}"):
        read_log(path)


def test_a_channel_message_carries_one_record_or_a_batch_of_whole_ones():
    """``check_frames``: a backup takes one record, or several framed one after the other (a
    primary's batch), from one channel message; anything else is refused before it is
    acknowledged."""
    from tft_lab.log import check_frames, decode_payload, encode
    recs = [{"t": "sys", "pid": 7, "seq": i, "nr": 39, "res": 7, "args": [], "addrs": []} for i in range(3)]
    frames = [encode(r) for r in recs]
    assert [decode_payload(p)["seq"] for p in check_frames(frames[0])] == [0]
    assert [decode_payload(p)["seq"] for p in check_frames(b"".join(frames))] == [0, 1, 2]
    batch = b"".join(frames)
    corrupt = bytearray(batch)
    corrupt[len(frames[0]) + 10] ^= 1   # a byte of the second record
    for bad in (batch[:-1], batch + b"\0", batch[:4], bytes(corrupt), b""):
        with pytest.raises(LogError):
            check_frames(bad)
