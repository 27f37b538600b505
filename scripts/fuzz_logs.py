#!/usr/bin/env python3
"""Fuzz ``tft replay`` with mutated real logs.

    python scripts/fuzz_logs.py [--cases N] [--seconds S] [--seed K] [--read-cases N] [--keep DIR]

Records two real programs (a shell script with input, outputs to stdout, stderr
and a file, and an exit status; a pipeline of three processes) with ``tft
record --small-log``, then replays mutated copies of their logs.  Mutations:
bit flips with and without a recomputed checksum, truncation, a frame
duplicated, dropped or swapped with the next, a forged record inserted, one
field of a record forged (boundary integers, wrong types, deep nesting) and
forged frame lengths.

Each replay runs as the ``tft`` command runs it (``tft_lab.cli.main``), in a
child forked from a clean interpreter that imported the replayer once (see
``Zygote``), in a session of its own, under an address-space limit
(:data:`MEM_LIMIT`) and a time limit.
Every case must end in one of:

- ``identical``: the replay's stdout, stderr and exit status are the unmutated replay's;
- ``error``: a non-zero exit whose stderr ends with one ``tft:`` line, what came
  before being the start of what the unmutated replay printed;
- ``forged-input``: the mutation changed only what an input call returned (its
  result or its bytes), or the header's argv or environment (the program's
  inputs too): a consistent log of another run, whose replay may print
  something else (a log is checksummed, not signed; the outputs' bytes are not
  in it, so nothing can tell).

and never in ``hang`` (the time limit), ``traceback`` (or any stderr that is not
a ``tft:`` line), ``memory`` (the address-space limit reached), ``effect`` (the
file the program wrote during the recording, or anything else, appears in its
folder) or ``leftover`` (a process outlives the replay).

``--read-cases`` first runs that many mutated logs through the log reader
alone, in this process (fast: only ``LogError`` may come out).  The exit status
is 1 if any case was bad; ``--keep`` saves the bad cases' logs there.
The CI test (tests/test_hostile_logs.py) runs a time-bounded slice of this.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import copy
import json
import os
import random
import shutil
import select
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Callable, NamedTuple

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tft_lab import log as _log  # noqa: E402
from tft_lab.errors import LogError  # noqa: E402
from tft_lab.syscalls import TABLE  # noqa: E402

MEM_LIMIT = 1 << 30          # a replay needs ~60 MB; a log must not make it grow past this
TIME_LIMIT = 30.0            # seconds per replay (a normal one takes well under 2 s)
FRAME = struct.Struct("<II")
#: The recorded programs (sh is everywhere): input, outputs to stdout, stderr and a file, a status;
#: and three processes joined by pipes (forks, execs, waits, outputs ordered across processes).
GUESTS = {
    "script": ["/bin/sh", "-c", 'read x < /etc/hostname; echo "got $x"; for i in 1 2 3; do echo line $i; done; '
               'echo data > out.txt; echo err >&2; exit 3'],
    "pipeline": ["/bin/sh", "-c", "echo one | tr o 0 | cat; echo two"],
}
_CLASS = {e.x64: e.cls for e in TABLE.values()}
BOUNDARY = (0, 1, -1, 7, 255, 256, 2**31 - 1, 2**31, 2**32, 2**57, 2**62, 2**63 - 1, 2**63, 2**64 - 1, 2**64,
            10**30, -2**63, -2**63 - 1)
WRONG_TYPES = ("x", None, [], {}, True, 1.5, [[[[[[[[1]]]]]]]])


class Base(NamedTuple):
    """A recorded log and what its unmutated replay shows."""
    name: str
    data: bytes
    folder: Path          # where the program ran (and wrote out.txt during the recording)
    listing: frozenset    # what that folder holds after the recording (out.txt removed)
    out: bytes
    err: bytes
    status: int


class Case(NamedTuple):
    kind: str
    data: bytes
    forged_input: bool = False


# --- the logs' structure ---------------------------------------------------------------------

def frames(data: bytes) -> list[tuple[int, int]]:
    """(offset, total length) of every whole frame after the magic."""
    out, pos = [], len(_log.MAGIC)
    while pos + FRAME.size <= len(data):
        length, _ = FRAME.unpack_from(data, pos)
        if pos + FRAME.size + length > len(data):
            break
        out.append((pos, FRAME.size + length))
        pos += FRAME.size + length
    return out


def _frame_bytes(data: bytes, span) -> bytes:
    return data[span[0]:span[0] + span[1]]


def _splice(data: bytes, spans, pieces: list[bytes]) -> bytes:
    return _log.MAGIC + b"".join(pieces) + data[sum(spans[-1]) if spans else len(_log.MAGIC):]


def _input_call(payload: bytes) -> bool:
    return payload[:1] == b"S" and _CLASS.get(struct.unpack_from("<i", payload, 13)[0]) in ("input", "identity")


# --- mutations ---------------------------------------------------------------------------------

def flip(rng: random.Random, data: bytes, spans) -> Case:
    i = rng.randrange(len(_log.MAGIC), len(data))
    b = bytearray(data)
    b[i] ^= 1 << rng.randrange(8)
    return Case("flip", bytes(b))


def flip_fixed(rng: random.Random, data: bytes, spans) -> Case:
    """A bit flipped in a payload, its checksum recomputed: only the record's own checks remain."""
    off, total = rng.choice(spans)
    payload = bytearray(data[off + FRAME.size:off + total])
    i = rng.randrange(len(payload))
    payload[i] ^= 1 << rng.randrange(8)
    # res (bytes 17..24 of a packed record) or the out-buffers' bytes of an input call: another run's input
    # The header's argv and environment are the program's inputs too (a log is checksummed, not signed)
    forged = off == len(_log.MAGIC)
    if _input_call(bytes(payload)):
        try:
            rec = _log.decode_payload(data[off + FRAME.size:off + total])
            blob_start = len(payload) - sum(len(x) for x in rec["blobs"])
            forged = 17 <= i < 25 or i >= blob_start
        except LogError:
            pass
    frame = FRAME.pack(len(payload), zlib.crc32(payload)) + bytes(payload)
    return Case("flip-fixed", data[:off] + frame + data[off + total:], forged)


def truncate(rng: random.Random, data: bytes, spans) -> Case:
    return Case("truncate", data[:rng.randrange(0, len(data))])


def duplicate(rng: random.Random, data: bytes, spans) -> Case:
    k = rng.randrange(len(spans))
    pieces = [_frame_bytes(data, s) for s in spans]
    pieces.insert(k, pieces[k])
    return Case("duplicate", _splice(data, spans, pieces))


def drop(rng: random.Random, data: bytes, spans) -> Case:
    pieces = [_frame_bytes(data, s) for s in spans]
    del pieces[rng.randrange(len(pieces))]
    return Case("drop", _splice(data, spans, pieces))


def swap(rng: random.Random, data: bytes, spans) -> Case:
    pieces = [_frame_bytes(data, s) for s in spans]
    k = rng.randrange(len(pieces) - 1)
    pieces[k], pieces[k + 1] = pieces[k + 1], pieces[k]
    return Case("swap", _splice(data, spans, pieces))


def _forged_record(rng: random.Random, data: bytes, spans) -> tuple[int, bytes, bool]:
    """One record (decoded from the log) with one field forged, re-encoded with a valid checksum."""
    k = rng.randrange(len(spans))
    off, total = spans[k]
    rec = _log.decode_payload(data[off + FRAME.size:off + total])
    fields = {key: copy.deepcopy(v) for key, v in rec.items() if key != "blobs"}
    blobs = list(rec["blobs"])
    name = rng.choice([key for key in fields if key != "t"] + ["t", "extra"] + (["blobs"] if blobs else []))
    forged = False
    if name == "blobs":
        j = rng.randrange(len(blobs))
        blobs[j] = rng.choice((b"", blobs[j][:-1], blobs[j] + b"\0", bytes(len(blobs[j])), os.urandom(len(blobs[j]))))
        forged = rec.type == "sys" and _CLASS.get(rec["nr"]) in ("input", "identity")
    elif name == "extra":
        fields[rng.choice(("zz", "blobs", "oseq", "refused"))] = rng.choice(BOUNDARY + WRONG_TYPES)
    elif name == "t":
        fields["t"] = rng.choice(list(_log.SCHEMA) + ["nope", 3])
    else:
        v = fields[name]
        if isinstance(v, list) and v and rng.random() < 0.5:
            v[rng.randrange(len(v))] = rng.choice(BOUNDARY + WRONG_TYPES)
        elif isinstance(v, dict) and rng.random() < 0.5:
            v[rng.choice(list(v) or ["k"])] = rng.choice(BOUNDARY + WRONG_TYPES)
        elif isinstance(v, int) and not isinstance(v, bool) and rng.random() < 0.5:
            fields[name] = v + rng.choice((-1, 1, 2, -2, 1000))
        else:
            fields[name] = rng.choice(BOUNDARY + WRONG_TYPES)
        forged = (rec.type == "sys" and name == "res" and _CLASS.get(rec["nr"]) in ("input", "identity")) \
            or (rec.type == "tsc" and name in ("value", "aux")) or (rec.type == "header" and name in ("argv", "env"))
    try:
        frame = _log.encode(fields, blobs)
    except (TypeError, ValueError, OverflowError):
        # not JSON-encodable as forged: build the JSON form by hand (what an attacker would write)
        head = dict(fields, blobs=[len(b) for b in blobs])
        j = json.dumps(head, default=str).encode()
        payload = b"J" + struct.pack("<I", len(j)) + j + b"".join(blobs)
        frame = FRAME.pack(len(payload), zlib.crc32(payload)) + payload
    return k, frame, forged


def forge_field(rng: random.Random, data: bytes, spans) -> Case:
    k, frame, forged = _forged_record(rng, data, spans)
    pieces = [_frame_bytes(data, s) for s in spans]
    pieces[k] = frame
    return Case("forge-field", _splice(data, spans, pieces), forged)


def forge_frame(rng: random.Random, data: bytes, spans) -> Case:
    """A forged record inserted somewhere (a copy of a real one, one field changed)."""
    _, frame, forged = _forged_record(rng, data, spans)
    pieces = [_frame_bytes(data, s) for s in spans]
    pieces.insert(rng.randrange(len(pieces) + 1), frame)
    return Case("forge-frame", _splice(data, spans, pieces), forged)


def deep_json(rng: random.Random, data: bytes, spans) -> Case:
    """A record whose JSON nests deeper than any parser's stack."""
    j = b"[" * rng.choice((1000, 100000)) + b"]" * rng.choice((0, 1000))
    payload = b"J" + struct.pack("<I", len(j)) + j
    frame = FRAME.pack(len(payload), zlib.crc32(payload)) + payload
    pieces = [_frame_bytes(data, s) for s in spans]
    pieces.insert(rng.randrange(len(pieces) + 1), frame)
    return Case("deep-json", _splice(data, spans, pieces))


def forge_length(rng: random.Random, data: bytes, spans) -> Case:
    off, total = rng.choice(spans)
    length = rng.choice((0, 1, total - FRAME.size + rng.randint(-16, 16), _log.MAX_FRAME, _log.MAX_FRAME + 1,
                         _log.MAX_HEADER + 1, 2**32 - 1, rng.randrange(2**32)))
    length = max(0, min(length, 2**32 - 1))
    _, crc = FRAME.unpack_from(data, off)
    return Case("forge-length", data[:off] + FRAME.pack(length, crc) + data[off + FRAME.size:])


MUTATIONS: tuple[Callable, ...] = (flip, flip_fixed, truncate, duplicate, drop, swap, forge_field, forge_frame,
                                   deep_json, forge_length)


def mutate(rng: random.Random, data: bytes) -> Case:
    return rng.choice(MUTATIONS)(rng, data, frames(data))


# --- running ---------------------------------------------------------------------------------------

def record_bases(work: Path) -> list[Base]:
    """Record each guest (the real ``tft record`` command) and replay it once unmutated."""
    bases = []
    for name, argv in GUESTS.items():
        folder = work / name
        folder.mkdir()
        log = work / f"{name}.log"
        rec = subprocess.run([sys.executable, "-m", "tft_lab.cli", "record", "--small-log", "--log", str(log),
                              "--", *argv], cwd=folder, capture_output=True, timeout=120,
                             env=dict(os.environ, PYTHONPATH=str(REPO)), stdin=subprocess.DEVNULL)
        if rec.returncode not in (0, 3) or b"tft:" in rec.stderr:
            raise SystemExit(f"recording {name} failed: {rec.stderr.decode(errors='replace')}")
        (folder / "out.txt").unlink(missing_ok=True)
        base = Base(name, log.read_bytes(), folder, frozenset(os.listdir(folder)), b"", b"", 0)
        with Zygote() as zygote:
            status, out, err, _ = zygote.replay(log, work)
        if status != rec.returncode or out != rec.stdout or err != rec.stderr:
            raise SystemExit(f"the unmutated replay of {name} differs from its recording: {err!r}")
        bases.append(base._replace(out=out, err=err, status=status))
    return bases


#: The replays' parent: a fresh interpreter that imports the replayer once and then forks one
#: child per case, which is what makes a case cost a replay and not an interpreter's start.  It is
#: started clean and never runs a replay itself, so no child inherits a lock or state from a
#: replay or from pytest's threads (a fork of pytest once died in ``re``).  Each child runs in a
#: session of its own (a hang is killed with its whole group) under the address-space limit.  The
#: zygote is a subreaper: after a child ends, any process it left behind is the zygote's child,
#: killed and counted.  Its protocol, one line each way per case: it reads ``log out err``, says
#: the child's pid, then ``status leftovers`` (status: the exit code, or -signal).
_ZYGOTE = r"""
import os, resource, signal, sys, time, traceback
from tft_lab import cli, replayer
from tft_lab._backend.ptrace import set_subreaper

LIMIT = %d
import ctypes
_prctl = ctypes.CDLL(None, use_errno=True).prctl
set_subreaper()
_prctl(1, signal.SIGKILL, 0, 0, 0)     # PR_SET_PDEATHSIG: the zygote ends with the fuzzer
os.setpgid(0, 0)                       # a hang's killpg never reaches the zygote itself
reply = os.fdopen(int(sys.argv[1]), "w", buffering=1)

def child(log, out, err):
    _prctl(1, signal.SIGKILL, 0, 0, 0)  # and a replay with the zygote
    os.setsid()
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT))
    for fd, name, mode in ((0, os.devnull, os.O_RDONLY), (1, out, os.O_WRONLY), (2, err, os.O_WRONLY)):
        os.dup2(os.open(name, mode), fd)
    try:
        code = cli.main(["replay", log])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else (print(e.code, file=sys.stderr), 1)[1])
    except BaseException:
        traceback.print_exc()
        code = 1
    for f in (sys.stdout, sys.stderr):
        try:
            f.flush()
        except Exception:
            pass
    os._exit(code & 0xff)

def leftovers():
    me, left = os.getpid(), 0
    for d in os.listdir("/proc"):
        try:
            with open(f"/proc/{d}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) != me:
                    continue
        except (OSError, IndexError, ValueError):
            continue
        pid = int(d)
        try:
            if os.waitpid(pid, os.WNOHANG)[0]:
                continue
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            left += 1
        except (ChildProcessError, ProcessLookupError):
            pass
    return left

try:
    for line in sys.stdin:
        log, out, err = line.rstrip("\n").split("\t")
        pid = os.fork()
        if pid == 0:
            child(log, out, err)
        reply.write(f"{pid}\n")
        _, st = os.waitpid(pid, 0)
        time.sleep(0.01)
        reply.write(f"{os.waitstatus_to_exitcode(st)} {leftovers()}\n")
except BrokenPipeError:   # the fuzzer is gone
    os._exit(0)
""" % MEM_LIMIT


class Zygote:
    """The replays' parent process (:data:`_ZYGOTE`); a context manager."""

    def __init__(self, time_limit: float = TIME_LIMIT) -> None:
        self.time_limit = time_limit
        r, w = os.pipe()
        self.proc = subprocess.Popen([sys.executable, "-c", _ZYGOTE, str(w)], stdin=subprocess.PIPE,
                                     pass_fds=(w,), text=True, bufsize=1)
        os.close(w)
        self.reply = os.fdopen(r, "r", buffering=1)

    def __enter__(self) -> "Zygote":
        return self

    def __exit__(self, *exc) -> None:
        self.proc.stdin.close()
        self.reply.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def replay(self, path: Path, work: Path) -> tuple[int | str, bytes, bytes, int]:
        """Replay ``path`` in a fresh child; (exit status or "hang", stdout, stderr, processes left)."""
        out, err = work / "replay.out", work / "replay.err"
        for f in (out, err):
            f.write_bytes(b"")
        self.proc.stdin.write(f"{path}\t{out}\t{err}\n")
        self.proc.stdin.flush()
        pid = int(self.reply.readline())
        ready, _, _ = select.select([self.reply], [], [], self.time_limit)
        if not ready:
            with contextlib.suppress(ProcessLookupError):   # it may end just as the time is up
                os.killpg(pid, signal.SIGKILL)
        status, left = (int(x) for x in self.reply.readline().split())
        hang = not ready and status == -signal.SIGKILL
        return ("hang" if hang else status), out.read_bytes(), err.read_bytes(), left


def judge(base: Base, case: Case, status, out: bytes, err: bytes, left: int) -> str:
    """The case's outcome (see the module docstring)."""
    if left:
        return "leftover"
    if sorted(os.listdir(base.folder)) != sorted(base.listing):
        for name in set(os.listdir(base.folder)) - base.listing:
            p = base.folder / name
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        return "effect"
    if status == "hang":
        return "hang"
    if status == base.status and out == base.out and err == base.err:
        return "identical"
    text = err.decode(errors="replace")
    if "MemoryError" in text:
        return "memory"
    if "Traceback" in text:
        return "traceback"
    lines = err.splitlines(keepends=True)
    last = lines[-1] if lines else b""
    before = b"".join(lines[:-1])
    if status != 0 and last.startswith(b"tft: ") and b"tft:" not in before:
        if case.forged_input or (base.out.startswith(out) and base.err.startswith(before)):
            return "error"
    if case.forged_input and (b"tft:" not in err or (last.startswith(b"tft: ") and b"tft:" not in before)):
        return "forged-input"
    return "traceback"   # anything else on stderr, or output the recording never showed


GOOD = ("identical", "error", "forged-input")


def fuzz(bases: list[Base], work: Path, *, cases: int, seconds: float, seed: int,
         keep: Path | None = None, progress: bool = False, time_limit: float = TIME_LIMIT) -> collections.Counter:
    """Run up to ``cases`` mutated replays for at most ``seconds``; counts by (mutation, outcome)."""
    rng = random.Random(seed)
    counts: collections.Counter = collections.Counter()
    end = time.monotonic() + seconds
    path = work / "mutated.log"
    with Zygote(time_limit) as zygote:
        for n in range(cases):
            if time.monotonic() > end:
                break
            base = bases[n % len(bases)]
            case = mutate(rng, base.data)
            path.write_bytes(case.data)
            os.chmod(path, 0o600)
            status, out, err, left = zygote.replay(path, work)
            verdict = judge(base, case, status, out, err, left)
            counts[(case.kind, verdict)] += 1
            if verdict not in GOOD:
                msg = err.decode(errors="replace").strip().splitlines()[-3:]
                print(f"BAD case {n} ({base.name}, {case.kind}): {verdict}, status {status}: {msg}", flush=True)
                if keep is not None:
                    keep.mkdir(parents=True, exist_ok=True)
                    shutil.copy(path, keep / f"case{n}-{base.name}-{case.kind}-{verdict}.log")
            if progress and (n + 1) % 1000 == 0:
                print(f"{n + 1} cases, {sum(v for (k, o), v in counts.items() if o not in GOOD)} bad", flush=True)
    return counts


def fuzz_reader(bases: list[Base], work: Path, *, cases: int, seed: int) -> collections.Counter:
    """Mutated logs through the log reader alone: only LogError may come out."""
    rng = random.Random(seed)
    counts: collections.Counter = collections.Counter()
    path = work / "read.log"
    for n in range(cases):
        case = mutate(rng, bases[n % len(bases)].data)
        path.write_bytes(case.data)
        try:
            for _ in _log.LogReader(path):
                pass
            counts[(case.kind, "read")] += 1
        except LogError:
            counts[(case.kind, "refused")] += 1
        except Exception as e:   # noqa: BLE001 - the point: nothing else may escape
            counts[(case.kind, "traceback")] += 1
            print(f"BAD read case {n} ({case.kind}): {type(e).__name__}: {e}", flush=True)
    return counts


def table(counts: collections.Counter) -> str:
    kinds = sorted({k for k, _ in counts})
    outcomes = sorted({o for _, o in counts})
    rows = ["| mutation | " + " | ".join(outcomes) + " | total |", "|---" * (len(outcomes) + 2) + "|"]
    for k in kinds:
        cells = [str(counts.get((k, o), 0)) for o in outcomes]
        rows.append(f"| {k} | " + " | ".join(cells) + f" | {sum(counts.get((k, o), 0) for o in outcomes)} |")
    rows.append("| all | " + " | ".join(str(sum(v for (_, o), v in counts.items() if o == oc)) for oc in outcomes)
                + f" | {sum(counts.values())} |")
    return "\n".join(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=100_000, help="replays to run (default 100000)")
    ap.add_argument("--seconds", type=float, default=3600.0, help="stop after this long (default 3600)")
    ap.add_argument("--read-cases", type=int, default=0, help="mutated logs through the reader alone first")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--time-limit", type=float, default=TIME_LIMIT,
                    help=f"seconds a replay may take before it counts as a hang (default {TIME_LIMIT:.0f}; "
                         "raise it under nice or a loaded machine)")
    ap.add_argument("--keep", type=Path, help="save the bad cases' logs here")
    args = ap.parse_args()
    # Stopped with SIGTERM (kill, a session's end): unwind, so the work folder goes too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    with tempfile.TemporaryDirectory(prefix="tft-fuzz-") as tmp:
        work = Path(tmp)
        os.environ["XDG_CACHE_HOME"] = str(work / "cache")
        bases = record_bases(work)
        bad = 0
        if args.read_cases:
            t0 = time.monotonic()
            counts = fuzz_reader(bases, work, cases=args.read_cases, seed=args.seed)
            print(f"reader: {sum(counts.values())} cases in {time.monotonic() - t0:.0f} s\n{table(counts)}\n")
            bad += sum(v for (_, o), v in counts.items() if o == "traceback")
        t0 = time.monotonic()
        counts = fuzz(bases, work, cases=args.cases, seconds=args.seconds, seed=args.seed, keep=args.keep,
                      progress=True, time_limit=args.time_limit)
        print(f"replay: {sum(counts.values())} cases in {time.monotonic() - t0:.0f} s\n{table(counts)}")
        bad += sum(v for (_, o), v in counts.items() if o not in GOOD)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
