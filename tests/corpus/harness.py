"""Run one corpus workload natively and under tft, and judge every check.

Checks of a single-threaded workload (each ``pass`` or ``fail`` with a detail):

- ``replay-file`` / ``replay-pipe``: ``tft record`` (stdout a regular file / a pipe)
  shows what the native run shows, and ``tft replay`` prints byte for byte what the
  recording printed, with its status, changing nothing in the folder.
- ``run-file`` / ``run-pipe``: ``tft run`` with no fault equals the native run (exact,
  or through the workload's normaliser), its outcome is ``completed`` (the backup
  alive to the end) and the folder ends as the native run left it.
- ``fault-10`` / ``fault-50`` / ``fault-90``: ``tft run --fault primary@N`` at that
  share of the primary's intercepted calls (counted by the fault-free ``run-file``)
  fails over and equals the native run with at most one duplicated output, the
  folder ending as natively.
- ``clean``: no process left after any step, no ``tft*`` temporary folder left.

A threaded workload has the same checks: threads are replicated (docs/threads.md).

Each workload runs in its own process (``python -m tests.corpus.harness NAME``), a
child subreaper with its own ``TMPDIR``, so the leftover checks of two workloads
running side by side do not see each other.  :func:`run_many` runs several that way.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from tft_lab.testing import REPO, adopt_orphans, current_pids, nothing_left_running

from . import workloads as _workloads  # noqa: F401 - fills the registry
from .workload import REGISTRY, Workload

FAULT_SHARES = (10, 50, 90)
CHECKS = ("replay-file", "replay-pipe", "run-file", "run-pipe",
          *(f"fault-{p}" for p in FAULT_SHARES), "clean")
THREADED_CHECKS = CHECKS   # threads are replicated like everything else
WORKLOAD_TIMEOUT = 600   # a whole workload (every check) in one harness process
# The corpus judges transparency, not failure detection: a fail-stop primary is detected by its
# channel closing whatever the heartbeat, but a CI runner whose two cores are shared can stall a
# supervisor past 2 x 0.5 s and fence a healthy primary.  Heartbeats of 2 s keep that out.
HEARTBEAT = "2"


def checks_of(w: Workload) -> tuple[str, ...]:
    """The checks judged for ``w``."""
    return CHECKS


@dataclass
class Shown:
    """What one run showed the world."""

    stdout: bytes
    stderr: bytes
    status: int | None
    """None: it did not finish within the workload's timeout (killed)."""
    seconds: float


# --- one workload's folder and environment -----------------------------------------------------

class Bench:
    """A workload's private space: ``work/`` (its folder, recreated fresh for every
    run at the same path, so printed paths agree), ``tmp/`` (its and tft's TMPDIR),
    ``logs/``, ``out/`` (stdout files) and ``cache/`` (tft's per-user cache), all under one
    temporary directory."""

    def __init__(self, w: Workload):
        self.w = w
        self.base = Path(tempfile.mkdtemp(prefix=f"corpus-{w.name}-"))
        self.work, self.tmp, self.logs, self.out, self.cache = (
            self.base / d for d in ("work", "tmp", "logs", "out", "cache"))
        for d in (self.tmp, self.logs, self.out, self.cache):
            d.mkdir()
        self.env = {
            # tft keeps a per-user cache of mapped files under $XDG_CACHE_HOME: not in the folder
            "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(self.work), "TMPDIR": str(self.tmp),
            "XDG_CACHE_HOME": str(self.cache),
            "LC_ALL": "C", "TZ": "UTC", "PYTHONDONTWRITEBYTECODE": "1", "CORPUS_PORT": str(_free_port()),
            "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "corpus", "GIT_AUTHOR_EMAIL": "c@example.org",
            "GIT_COMMITTER_NAME": "corpus", "GIT_COMMITTER_EMAIL": "c@example.org",
            "GIT_AUTHOR_DATE": "2001-09-09T01:46:40Z", "GIT_COMMITTER_DATE": "2001-09-09T01:46:40Z",
        }
        self.problems: list[str] = []   # for the ``clean`` check
        self._pids = current_pids()
        self._runs = 0

    def fresh(self) -> None:
        """Recreate ``work/`` from the workload's setup."""
        if self.work.exists():
            _rmtree(self.work)
        self.work.mkdir()
        self.w.prepare(self.work)

    def close(self) -> None:
        _rmtree(self.base)

    # -- running --
    def launch(self, argv, stdout_kind: str, label: str, timeout: float | None = None) -> Shown:
        """Run ``argv`` in ``work/`` with stdout a regular file (``file``) or a pipe (``pipe``),
        stdin /dev/null; then note any process or tft temporary folder left behind."""
        self._runs += 1
        timeout = timeout or self.w.timeout
        out_path = self.out / f"{self._runs}.stdout"
        t0 = time.monotonic()
        with open(out_path, "w+b") as out:
            p = subprocess.Popen(list(argv), cwd=self.work, env=self.env, stdin=subprocess.DEVNULL,
                                 stdout=out if stdout_kind == "file" else subprocess.PIPE,
                                 stderr=subprocess.PIPE, start_new_session=True)
            try:
                o, e = p.communicate(timeout=timeout)
                status = p.returncode
            except subprocess.TimeoutExpired:
                _kill_group(p.pid)
                o, e = p.communicate()
                status = None
            seconds = time.monotonic() - t0
            if stdout_kind == "file":
                out.seek(0)
                o = out.read()
        out_path.unlink()
        self._left_behind(label)
        return Shown(o or b"", e or b"", status, seconds)

    def tft(self, args, stdout_kind: str, label: str, timeout: float | None = None) -> Shown:
        return self.launch([sys.executable, "-m", "tft_lab.cli", *map(str, args)], stdout_kind, label, timeout)

    def _left_behind(self, label: str) -> None:
        try:
            nothing_left_running(self._pids, grace=3.0)
        except AssertionError as e:
            self.problems.append(f"after {label}: {e}")
        stray = sorted(n for n in os.listdir(self.tmp) if n.startswith("tft"))
        if stray:
            self.problems.append(f"after {label}: temporary folder(s) left: {', '.join(stray)}")
            for n in stray:
                _rmtree(self.tmp / n)

    def snapshot(self) -> dict[str, tuple]:
        """``work/`` as path -> (type, permissions, content hash or link target)."""
        return snapshot(self.work)


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every path under ``folder`` (not followed through symlinks) -> what it is."""
    out: dict[str, tuple] = {}
    for root, dirs, files in os.walk(folder):
        for n in dirs + files:
            p = os.path.join(root, n)
            rel = os.path.relpath(p, folder)
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode))
            elif stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    out[rel] = ("file", stat.S_IMODE(st.st_mode), hashlib.sha256(f.read()).hexdigest()[:16])
            else:
                out[rel] = ("other", stat.S_IFMT(st.st_mode))
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, 9)
    except OSError:
        pass


def _rmtree(p: Path) -> None:
    # A workload may leave read-only directories (chmod -R go-rwx keeps ours writable; be safe anyway).
    def onerror(fn, path, exc):
        try:
            os.chmod(os.path.dirname(path), 0o700)
            fn(path)
        except OSError:
            pass
    shutil.rmtree(p, onerror=onerror)


# --- comparisons -------------------------------------------------------------------------------------

def without_tft_lines(stderr: bytes) -> bytes:
    """stderr minus tft's own ``tft: ...`` lines (failover notices)."""
    return b"".join(line for line in stderr.splitlines(keepends=True) if not line.startswith(b"tft: "))


def one_duplicate_at_most(got: bytes, want: bytes) -> bool:
    """``got`` is ``want``, or ``want`` with one run of its bytes repeated right after itself
    (the one uncertain output a failover may perform twice)."""
    if got == want:
        return True
    k = len(got) - len(want)
    if k <= 0:
        return False
    p = 0
    while p < len(want) and got[p] == want[p]:
        p += 1
    s = 0
    while s < len(want) and got[-1 - s] == want[-1 - s]:
        s += 1
    return any(got[j:j + k] == want[j - k:j] and got[j + k:] == want[j:]
               for j in range(max(k, len(want) - s), p + 1))


def _same(w: Workload, got: bytes, want: bytes, dup_ok: bool) -> bool:
    if w.normalise is None:
        return one_duplicate_at_most(got, want) if dup_ok else got == want
    g, n = w.normalise(got), w.normalise(want)
    if g == n:
        return True
    if not dup_ok:
        return False
    lines = g.splitlines(keepends=True)
    return any(b"".join(lines[:i] + lines[i + 1:]) == n for i in range(1, len(lines)) if lines[i] == lines[i - 1])


def _short(b: bytes, n: int = 160) -> str:
    s = b.decode(errors="replace")
    return repr(s if len(s) <= n else s[:n] + "...")


def compare(w: Workload, got: Shown, want: Shown, *, dup_ok: bool = False, strip_tft: bool = True) -> list[str]:
    """How ``got`` differs from ``want`` (empty: the same), for humans."""
    if got.status is None:
        return [f"hung (killed after {w.timeout:.0f} s)"]
    diffs = []
    if got.status != want.status:
        diffs.append(f"status {got.status}, expected {want.status}")
    if not _same(w, got.stdout, want.stdout, dup_ok):
        diffs.append(f"stdout {_short(got.stdout)}, expected {_short(want.stdout)}")
    err = without_tft_lines(got.stderr) if strip_tft else got.stderr
    if not _same(w, err, want.stderr, dup_ok):
        diffs.append(f"stderr {_short(got.stderr, 300)}, expected {_short(want.stderr)}")
    return diffs


def compare_folders(w: Workload, got: dict, want: dict) -> list[str]:
    if w.compare_files == "none":
        return []
    if w.compare_files == "names":
        got = {k: v[0] for k, v in got.items()}
        want = {k: v[0] for k, v in want.items()}
    if got == want:
        return []
    extra = sorted(set(got) - set(want))
    missing = sorted(set(want) - set(got))
    changed = sorted(k for k in set(got) & set(want) if got[k] != want[k])
    parts = [f"{label}: {', '.join(v[:4])}" for label, v in
             (("extra", extra), ("missing", missing), ("differs", changed)) if v]
    return ["folder differs from native: " + "; ".join(parts)]


# --- the checks ------------------------------------------------------------------------------------

def _tft_error(shown: Shown) -> str:
    lines = [ln for ln in shown.stderr.decode(errors="replace").splitlines() if ln.startswith("tft:")]
    return lines[-1] if lines else ""


def judge(w: Workload) -> dict:
    """Run every check of ``w``; return ``{"workload", "checks": {check: {"status", "detail"}}, "times"}``."""
    b = Bench(w)
    checks: dict[str, dict] = {}
    times: dict[str, float | None] = {"native": None, "record": None, "strace": None}

    def put(name: str, diffs: list[str], status: str | None = None):
        checks[name] = {"status": status or ("fail" if diffs else "pass"), "detail": "; ".join(diffs)}

    try:
        if w.refused:
            _judge_refusal(w, b, put)
            return {"workload": w.name, "checks": checks, "times": times}
        native: dict[str, Shown] = {}
        folders: dict[str, dict] = {}
        for kind in ("file", "pipe"):
            b.fresh()
            native[kind] = b.launch(w.argv, kind, f"native ({kind})")
            folders[kind] = b.snapshot()
        times["native"] = native["file"].seconds
        b.fresh()
        times["strace"] = b.launch(["strace", "-f", "-qq", "-o", "/dev/null", "--", *w.argv], "file",
                                   "strace").seconds if shutil.which("strace") else None

        for kind in ("file", "pipe"):
            b.fresh()
            log = b.logs / f"{kind}.log"
            rec = b.tft(["record", "--log", log, "--", *w.argv], kind, f"record ({kind})")
            if kind == "file":
                times["record"] = rec.seconds
            diffs = [f"record: {d}" for d in compare(w, rec, native[kind])]   # tft's own warnings aside
            before = b.snapshot()
            rep = b.tft(["replay", log], kind, f"replay ({kind})")
            if rep.status is None:
                diffs.append("replay hung")
            else:
                # what the program wrote, byte for byte (tft's own warnings are not the program's)
                if (rep.stdout, without_tft_lines(rep.stderr), rep.status) != (
                        rec.stdout, without_tft_lines(rec.stderr), rec.status):
                    diffs.append(f"replay: status {rep.status} (recorded {rec.status}), stdout {_short(rep.stdout)}"
                                 f" (recorded {_short(rec.stdout)}), stderr {_short(rep.stderr, 300)}")
                if b.snapshot() != before:
                    diffs.append("replay changed the folder")
            put(f"replay-{kind}", diffs)

        calls = None
        for kind in ("file", "pipe"):
            b.fresh()
            rj = b.logs / f"run-{kind}.json"
            got = b.tft(["run", "--heartbeat", HEARTBEAT, "--result-json", rj, "--", *w.argv], kind,
                        f"run ({kind})")
            diffs = compare(w, got, native[kind])
            res = _read_json(rj)
            if res.get("outcome") != "completed":
                diffs.append(f"outcome {res.get('outcome')!r}: {_tft_error(got) or res.get('backup', {}).get('error')}")
            diffs += compare_folders(w, b.snapshot(), folders[kind])
            if kind == "file":
                calls = res.get("primary", {}).get("calls")
            put(f"run-{kind}", diffs)

        for share in FAULT_SHARES:
            name = f"fault-{share}"
            if not calls:
                put(name, ["no call count from the fault-free run"])
                continue
            n = max(1, calls * share // 100)
            for attempt in range(2):
                b.fresh()
                rj = b.logs / f"{name}.json"
                got = b.tft(["run", "--heartbeat", HEARTBEAT, "--result-json", rj, "--fault", f"primary@{n}",
                             "--", *w.argv], "file", f"{name} (primary@{n})")
                res = _read_json(rj)
                fewer = _FEWER_CALLS.search(got.stderr.decode(errors="replace"))
                if attempt or res.get("outcome") != "completed" or fewer is None:
                    break
                # A program whose number of calls depends on timing (a client that retries until its
                # server is up) made fewer calls this time than the fault-free run: the fault was not
                # injected.  Once, at the same share of this run's calls.
                calls = int(fewer.group(1))
                n = max(1, calls * share // 100)
            diffs = compare(w, got, native["file"], dup_ok=True)
            if res.get("outcome") != "failover":
                diffs.append(f"outcome {res.get('outcome')!r} at primary@{n} of {calls}: "
                             f"{_tft_error(got) or res.get('backup', {}).get('error')}")
            diffs += compare_folders(w, b.snapshot(), folders["file"])
            put(name, [f"primary@{n}/{calls}: {d}" for d in diffs])
        put("clean", b.problems)
    finally:
        b.close()
    checks.setdefault("clean", {"status": "fail", "detail": "; ".join(b.problems) or "harness error"})
    return {"workload": w.name, "checks": checks, "times": times}


#: tft run's warning for a fault past the program's last call.
_FEWER_CALLS = re.compile(r"was not injected: the primary made only (\d+) intercepted calls")


def _judge_refusal(w: Workload, b: "Bench", put) -> None:
    """A workload tft must refuse: ``tft record`` and ``tft run`` each stop it with the one line
    (exit 2; a refusal, not a failover).  Every check is then ``refused``, or ``fail`` if either
    did anything else; ``clean`` as for any workload."""
    diffs, said = [], ""
    for verb in ("record", "run"):
        b.fresh()
        args = ["record", "--log", b.logs / "refused.log"] if verb == "record" else ["run", "--heartbeat", HEARTBEAT]
        got = b.tft([*args, "--", *w.argv], "file", verb)
        said = _tft_error(got)
        if got.status != 2 or w.refused not in said:
            diffs.append(f"{verb}: status {got.status}, expected the refusal {w.refused!r}: {said or _short(got.stderr)}")
    for check in CHECKS[:-1]:
        put(check, diffs or [said], None if diffs else "refused")
    put("clean", b.problems)


def _read_json(p: Path) -> dict:
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return {}


# --- several workloads, each in its own process --------------------------------------------------

def run_one(name: str) -> dict:
    """Judge workload ``name`` in a child process (its own subreaper and TMPDIR)."""
    w = REGISTRY[name]
    try:
        p = subprocess.run([sys.executable, "-m", "tests.corpus.harness", name], cwd=REPO,
                           capture_output=True, timeout=WORKLOAD_TIMEOUT)
        lines = p.stdout.decode(errors="replace").strip().splitlines()
        if p.returncode == 0 and lines:
            return json.loads(lines[-1])
        why = f"harness exited {p.returncode}: {p.stderr.decode(errors='replace')[-800:]}"
    except subprocess.TimeoutExpired:
        why = f"harness timed out after {WORKLOAD_TIMEOUT} s"
    return {"workload": name, "times": {}, "checks": {c: {"status": "fail", "detail": why} for c in checks_of(w)}}


def run_many(names, workers: int = 2, progress=None) -> dict[str, dict]:
    """Judge every workload in ``names``, ``workers`` at a time; results by name."""
    results = {}
    with ThreadPoolExecutor(workers) as pool:
        for done in as_completed([pool.submit(run_one, n) for n in names]):
            r = done.result()
            results[r["workload"]] = r
            if progress:
                progress(r)
    return {n: results[n] for n in names}


def main(argv: list[str]) -> int:
    adopt_orphans()
    print(json.dumps(judge(REGISTRY[argv[0]])), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
