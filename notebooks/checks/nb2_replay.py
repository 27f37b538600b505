"""Checks of notebook 02 Record and replay."""
from __future__ import annotations

import os
import struct
import tempfile

from ._core import Ctx, _exercise, _wrong, _expect, _is_number


GETRANDOM = 318   # x86-64


def _first_r(stdout: str) -> int:
    first = stdout.splitlines()[0]
    return int(dict(kv.split("=", 1) for kv in first.split() if "=" in kv)["r"])


@_exercise("2.1")
def ex_2_1(outputs, recorded_stdout: str) -> None:
    """``outputs``: the set of distinct outputs of three replays."""
    _expect(isinstance(outputs, set), "outputs should be a set (of the replays' stdout)")
    _expect(len(outputs) >= 1, "the set is empty: add each replay's stdout")
    _expect(all(isinstance(o, str) for o in outputs), "put each replay's whole stdout (a str) in the set")
    _expect(len(outputs) == 1, f"{len(outputs)} distinct outputs: every replay prints the same bytes")
    _expect(outputs == {recorded_stdout}, "the replays' output should be the recording's, byte for byte "
                                          "(each whole stdout, not its lines)")


_wrong("2.1", "placeholder None")(lambda c: None)
_wrong("2.1", "a list of the three")(lambda c: [c.data[0]] * 3)
_wrong("2.1", "the set of lines")(lambda c: set(c.data[0].splitlines()))
_wrong("2.1", "nothing added")(lambda c: set())
_wrong("2.1", "the replays' last lines")(lambda c: {c.data[0].splitlines()[-1]})


def _getrandom_records(records):
    return [x for x in records if x.type == "sys" and x["nr"] == GETRANDOM]


def _r_records(records):
    """The getrandom records of the program's r (4 bytes each; glibc's own draws are 8)."""
    return [x for x in _getrandom_records(records) if x.get("blobs") and len(x["blobs"][0]) == 4]


@_exercise("2.2", answers=2)
def ex_2_2(decode_r, r0, records, recorded_stdout: str) -> None:
    """``decode_r(blob)``: 4 bytes -> the unsigned little-endian number; ``r0``: the first line's r."""
    _expect(callable(decode_r), "decode_r should be a function of 4 bytes")
    for blob, want in [(b"\x01\x00\x00\x00", 1), (b"\x00\x00\x00\x01", 1 << 24),
                       (b"\xff\xff\xff\xff", 2 ** 32 - 1), (b"\x00\x00\x00\x80", 2 ** 31)]:
        got = decode_r(blob)
        _expect(got == want, f"decode_r({blob!r}) gave {got}, should be {want}: "
                             + ("read it as unsigned" if isinstance(got, int) and got < 0 else "little-endian, 4 bytes"))
    _expect(_is_number(r0), "r0 should be a number")
    right = _first_r(recorded_stdout)
    _expect(decode_r(_getrandom_records(records)[0]["blobs"][0]) == right, "decode_r does not give the first line's r")
    _expect(r0 == right, f"r0={r0}, but the first line says r={right}: decode the FIRST getrandom record")


_wrong("2.2", "placeholder None")(lambda c: (None, None))
_wrong("2.2", "read as signed")(lambda c: ((lambda b: struct.unpack("<i", b)[0]), c.answer[1]))
_wrong("2.2", "read big-endian")(lambda c: ((lambda b: struct.unpack(">I", b)[0]), c.answer[1]))
_wrong("2.2", "the second line's getrandom")(
    lambda c: (c.answer[0], c.answer[0](_r_records(c.data[0])[1]["blobs"][0])))
_wrong("2.2", "off by one")(lambda c: (c.answer[0], c.answer[1] + 1))


def lie_target(real: int) -> int:
    """Exercise 2.3's lie: ``real`` with its last digit moved five along (0->5, 7->2)."""
    return real - real % 10 + (real % 10 + 5) % 10


def _log_differences(a_path, b_path) -> list[tuple[int, str]]:
    from tft_lab.log import read_log

    a, b = read_log(a_path), read_log(b_path)
    if len(a) != len(b):
        return [(-1, f"{len(b)} records instead of {len(a)}")]
    out = []
    for i, (x, y) in enumerate(zip(a, b)):
        fx = {k: v for k, v in x.items() if k != "blobs"}
        fy = {k: v for k, v in y.items() if k != "blobs"}
        if x.type != y.type or fx != fy:
            out.append((i, "fields"))
        elif list(x.get("blobs", [])) != list(y.get("blobs", [])):
            out.append((i, "blobs"))
    return out


@_exercise("2.3", answers=2)
def ex_2_3(liar_log, liar, log, recorded_stdout: str, live: bool) -> None:
    """``liar_log``: a copy of ``log`` whose first getrandom gives :func:`lie_target` of r;
    ``liar``: its replay (None without ptrace)."""
    from tft_lab.log import read_log

    _expect(isinstance(liar_log, (str, os.PathLike)) and os.path.isfile(liar_log), "liar_log should be the path "
                                                                                    "of the log you wrote")
    _expect(os.path.abspath(liar_log) != os.path.abspath(log), "that is the original log: write a copy")
    real = _first_r(recorded_stdout)
    target = lie_target(real)
    diffs = _log_differences(log, liar_log)
    firsts = [i for i, x in enumerate(read_log(log)) if x.type == "sys" and x["nr"] == GETRANDOM]
    _expect(diffs, "the log is unchanged")
    _expect(diffs == [(firsts[0], "blobs")], f"change only the first getrandom's bytes (records changed: {diffs})")
    got = struct.unpack("<I", read_log(liar_log)[firsts[0]]["blobs"][0])[0]
    _expect(got == target, f"the log's first r is {got}; the lie should be {target} (the real {real} with its last "
                           "digit moved five along)")
    if live:
        _expect(liar is not None and hasattr(liar, "returncode"), "liar should be the replay of liar_log")
        _expect(liar.returncode == 0, f"the replay did not run to the end: {liar.stderr.strip()[-200:]}")
        _expect(_first_r(liar.stdout) == target, "the replay's first line does not show the lie")
        _expect(len(liar.stdout.splitlines()) == len(recorded_stdout.splitlines()), "the replay stopped early")
    else:
        _expect(liar is None, "without ptrace there is no replay: liar is None")


def _lying_log(c: Ctx, value_of, index: int = 0):
    """A wrong answer to 2.3: the log with the index-th getrandom's r set to value_of(real r)."""
    from tft_lab import session
    from tft_lab.log import MAGIC, encode, read_log

    log, stdout, live = c.data
    recs = read_log(log)
    rec = _r_records(recs)[index]
    real = struct.unpack("<I", rec["blobs"][0])[0]
    rec["blobs"][0] = struct.pack("<I", value_of(real) % 2 ** 32)
    fd, path = tempfile.mkstemp(prefix="liar-", suffix=".log", dir=c.tmp or None)   # mutate() removes c.tmp
    with os.fdopen(fd, "wb") as f:
        f.write(MAGIC)
        for x in recs:
            f.write(encode({k: v for k, v in x.items() if k != "blobs"}, x["blobs"]))
    return path, (session.replay(path, progress=False, timeout=60) if live else None)


_wrong("2.3", "placeholder None")(lambda c: (None, None))
_wrong("2.3", "the real r + 1")(lambda c: _lying_log(c, lambda r: r + 1))
_wrong("2.3", "hard-coded 1000000000")(lambda c: _lying_log(c, lambda r: 1000000000))
_wrong("2.3", "a 1 and zeros, as many digits")(lambda c: _lying_log(c, lambda r: 10 ** (len(str(r)) - 1)))
_wrong("2.3", "the second line's r changed")(lambda c: _lying_log(c, lie_target, index=1))
_wrong("2.3", "the original log")(lambda c: (c.data[0], c.answer[1]))
