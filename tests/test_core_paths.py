"""The compiled core (tft_lab._core) and the pure-Python path do the same thing.

tft_lab runs its per-stop ptrace requests through the C module ``tft_lab._core`` when it
was built at install, else through ``tft_lab/_backend/ptrace.py``'s pure-Python versions;
``TFT_PURE=1`` forces the pure path (``tft_lab._backend`` decides, once).  The whole suite
runs on whichever path is installed; these tests run the key behaviours on BOTH, each
``tft`` command in a subprocess with ``TFT_PURE`` set: record and replay (a syscall loop,
a signal guest, a threaded guest, CPython), a log recorded on one path replayed on the
other, the same log contents from both paths, a failover under ``tft run``.  And the
compiled path must really be the compiled one where the module is built, so that a broken
build cannot pass unseen as the fallback.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tft_lab.log import read_log
from tft_lab.testing import REPO, build_program, new_log_path, run_cli

PATHS = ["compiled", "pure"]
TIMEOUT = 60


def env_for(path: str) -> dict:
    return dict(os.environ, TFT_PURE="1" if path == "pure" else "0", PYTHONPATH=str(REPO))


def tft(path: str, *args, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    return run_cli(list(args), timeout=timeout, env=env_for(path))


def backend(path: str) -> str:
    p = subprocess.run([sys.executable, "-c", "from tft_lab._backend import ptrace; print(ptrace.BACKEND)"],
                       capture_output=True, text=True, env=env_for(path), timeout=TIMEOUT)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def test_the_compiled_core_is_built_and_in_use():
    """Where the package was installed (pip install -e . builds the extension), tft runs the
    C core unless TFT_PURE=1 asks for the pure path."""
    import importlib.util
    assert importlib.util.find_spec("tft_lab._core") is not None, \
        "tft_lab._core is not built: pip install -e . needs a C compiler (cc)"
    assert backend("compiled") == "compiled"
    assert backend("pure") == "pure"


def test_version_names_the_backend_in_use():
    """``tft --version`` says which backend runs: a user checks it before trusting a benchmark."""
    from tft_lab import __version__
    compiled = tft("compiled", "--version")
    assert compiled.returncode == 0, compiled.stderr
    assert compiled.stdout.decode().strip() == f"tft {__version__}, compiled core"
    pure = tft("pure", "--version")
    assert pure.returncode == 0, pure.stderr
    assert pure.stdout.decode().strip() == f"tft {__version__}, pure Python (TFT_PURE=1)"


def guests() -> dict[str, list[str]]:
    return {
        "syscall_loop": [str(build_program("syscall_loop")), "3000"],
        "timer_signals": [str(build_program("timer_signals")), "3000"],
        "threads": [str(build_program("thr_mutex")), "3"],
        "python": ["python3", "-c", "import random, time; print(random.random(), time.time())"],
        # the interpreter itself (python3 on PATH may be a launcher script running other programs)
        "cpython": [os.path.realpath(sys.executable), "-I", "-c", "import random; print('%.6f' % random.random())"],
        # every call a recorder answers itself (the compiled lane's), and those it must not
        "answered": [str(build_program("answered"))],
        "cpython_loop": [os.path.realpath(sys.executable), "-I", "-c",
                         "import os, time\nfor _ in range(2000): os.getppid()\nprint('%.6f' % (time.time() % 1))"],
    }


@pytest.mark.parametrize("guest", ["syscall_loop", "timer_signals", "threads", "python"])
@pytest.mark.parametrize("path", PATHS)
def test_record_then_replay_on_both_paths(path, guest, tmp_path):
    """Recorded on one path, the log replays to the same output on that path and the other."""
    log = new_log_path(tmp_path)
    rec = tft(path, "record", "--log", log, "--", *guests()[guest])
    assert rec.returncode == 0, rec.stderr
    assert rec.stdout
    for replay_path in PATHS:
        rep = tft(replay_path, "replay", log)
        assert (rep.returncode, rep.stdout, rep.stderr) == (rec.returncode, rec.stdout, rec.stderr), \
            f"recorded on the {path} path, replayed on the {replay_path} path"


def records(log) -> list[dict]:
    out = []
    for rec in read_log(log):
        rec = dict(rec)
        if isinstance(rec.get("env"), dict):   # the header: the path's own switch is in it
            rec["env"] = {k: v for k, v in rec["env"].items() if k != "TFT_PURE"}
            rec.pop("created", None)           # and its date, to the second
        out.append(rec)
    return out


@pytest.mark.parametrize("guest", ["cpython", "cpython_loop", "answered"])
def test_both_paths_log_the_same_records(guest, tmp_path):
    """Two recordings differ where the program met the world (pids, clocks, AT_RANDOM), so
    two pure recordings tell which fields vary from run to run (the guests print values of
    a fixed length, so that no length coincides by chance); everything else must be the
    same, field for field, in a recording made on the compiled path.  A heavily loaded
    machine can change a run's shape (one more call somewhere): up to three attempts, and
    a real difference between the paths fails all three."""
    problems = []
    for attempt in range(3):
        problem = _compare_paths(guest, tmp_path / f"attempt{attempt}")
        if problem is None:
            return
        problems.append(problem)
    pytest.fail("; ".join(problems))


def _compare_paths(guest: str, folder) -> str | None:
    """Record ``guest`` twice on the pure path and once on the compiled one; what differs."""
    folder.mkdir()
    logs = {}
    for name, path in (("pure1", "pure"), ("pure2", "pure"), ("compiled", "compiled")):
        logs[name] = new_log_path(folder)
        p = tft(path, "record", "--log", logs[name], "--", *guests()[guest])
        assert p.returncode == 0, p.stderr
    a, b, c = (records(logs[n]) for n in ("pure1", "pure2", "compiled"))
    if not len(a) == len(b) == len(c):
        return f"{len(a)}, {len(b)} records on the pure path, {len(c)} on the compiled"
    same = 0
    for i, (x, y, z) in enumerate(zip(a, b, c)):
        if x.keys() != z.keys():
            return f"record {i}: fields {sorted(z)} on the compiled path, {sorted(x)} on the pure"
        for k in x:
            if x[k] == y[k]:
                if z[k] != x[k]:
                    return f"record {i}, field {k}: {z[k]!r} on the compiled path, {x[k]!r} on the pure"
                same += 1
    assert same > len(a)   # most fields are the same in every recording: the comparison compared
    return None


@pytest.mark.parametrize("path", PATHS)
def test_a_failover_under_tft_run_on_both_paths(path):
    """The primary fails after 30 calls; the backup goes live and finishes the chain."""
    from test_failover import check_chain
    p = tft(path, "run", "--fault", "primary@30", "--", build_program("chain"), "5", "-", "0", "0")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.decode().splitlines()
    assert check_chain(lines[:-1] if lines and not lines[-1].startswith("i=") else lines, 5) <= 1


def test_the_compiled_encoder_writes_the_pure_encoders_bytes():
    """log.encode through the core gives the pure encoder's frame, byte for byte, for every
    sys record, the edges of each field's range included; what the core leaves to Python
    (not an int, out of range, a missing field, blobs that do not match the addresses)
    comes out exactly as the pure encoder makes it, error or JSON record."""
    import random

    from tft_lab import log
    if log._encode_sys_frame is None:
        pytest.skip("the pure path is in use (TFT_PURE=1 or no core built)")

    def pure_encode(fields, blobs):
        saved, log._encode_sys_frame = log._encode_sys_frame, None
        try:
            return log.encode(fields, blobs)
        finally:
            log._encode_sys_frame = saved

    def outcome(encoder, fields, blobs):
        try:
            return encoder(fields, blobs)
        except Exception as e:   # noqa: BLE001 - the same error on both paths is the contract
            return type(e)

    r = random.Random(10)
    usual = [0, 1, -1, 7, 12345, 2**31 - 1, -2**31]
    edges = usual + [2**31, 2**63 - 1, -2**63, 2**63, 2**64 - 1, 2**64, -2**64, True, 1.5, None, "x"]
    fast = 0
    for i in range(6000):
        vals = usual if i % 2 else edges
        nouts = r.choice([0, 0, 1, 2, 3])
        fields = {"t": "sys", "pid": r.choice(vals), "seq": r.choice(vals), "nr": r.choice(vals),
                  "res": r.choice(vals), "args": [r.choice(edges if i % 3 == 0 else vals) for _ in range(r.randint(0, 6))],
                  "addrs": [r.choice([0, 5, 2**47, 2**64 - 1] if i % 5 else edges) for _ in range(nouts)]}
        if r.random() < 0.3:
            fields["oseq"] = r.choice(vals)
        if r.random() < 0.03:
            del fields[r.choice(list(fields))]
        blobs = [r.randbytes(r.randint(0, 40)) for _ in range(nouts + (r.random() < 0.05))]
        got, want = outcome(log.encode, fields, blobs), outcome(pure_encode, fields, blobs)
        assert got == want, (fields, blobs)
        fast += log._encode_sys_frame(fields, blobs) is not None
    assert fast > 2000   # most records took the compiled encoder: it was tested, not skipped


def test_the_compiled_decoder_reads_what_the_pure_decoder_reads():
    """log.decode_payload through the core gives the pure decoder's Record, field for field,
    for every sys record the encoder makes; a damaged one (cut short, a byte changed, bytes
    added) is left to the pure decoder, which gives the same Record or the same LogError."""
    import random

    from tft_lab import log
    if log._decode_sys_fast is None:
        pytest.skip("the pure path is in use (TFT_PURE=1 or no core built)")

    def outcome(fast: bool, payload: bytes):
        saved = log._decode_sys_fast
        if not fast:
            log._decode_sys_fast = None
        try:
            rec = log.decode_payload(payload, 0)
            return type(rec), dict(rec)
        except Exception as e:   # noqa: BLE001 - the same error on both paths is the contract
            return type(e), str(e)
        finally:
            log._decode_sys_fast = saved

    r = random.Random(11)
    fast = 0
    for i in range(4000):
        nouts = r.choice([0, 0, 1, 2, 3])
        fields = {"t": "sys", "pid": r.choice([1, 77, 4194303, 4194304, 0]), "seq": r.choice([0, 5, 2**40]),
                  "nr": r.choice([0, 39, 1023, 1024]), "res": r.choice([0, -1, 2**62, -2**63]),
                  "args": [r.choice([0, 1, 2**64 - 1, 2**47]) for _ in range(r.randint(0, 6))],
                  "addrs": [r.choice([0, 4096, 2**57 - 1, 2**57]) for _ in range(nouts)]}
        if r.random() < 0.3:
            fields["oseq"] = r.choice([1, 9, 2**62 - 1, 2**62, 0])
        payload = log.encode(fields, [r.randbytes(r.randint(0, 20)) for _ in range(nouts)])[8:]
        if payload[:1] != b"S":
            continue
        damage = r.random()
        if damage < 0.2:
            payload = payload[:r.randint(0, len(payload))]
        elif damage < 0.4:
            j = r.randrange(len(payload))
            payload = payload[:j] + bytes([r.randrange(256)]) + payload[j + 1:]
        elif damage < 0.45:
            payload += r.randbytes(r.randint(1, 9))
        assert outcome(True, payload) == outcome(False, payload), fields
        fast += log._decode_sys_fast(payload) is not None
    assert fast > 500   # many records took the compiled decoder: it was tested, not skipped
