"""What the course notebooks share: finding the programs, the ptrace check, the canned data.

The notebooks run everything live (real ptrace, real programs). Where ptrace
is not allowed (some containers, CI runners without ``SYS_PTRACE``), they fall
back to the traces in ``datasets/``, which ``datasets/make_datasets.py`` made
with the same commands; :func:`setup` decides which and says so.

    from course import setup, program, example, canned
    LIVE = setup()
    r = %tft run $COUNTER 5 if LIVE else canned("counter-failover")

It uses only tft_lab's public API (``tft_lab.session``, ``tft_lab.testing``). The
exercise checks live beside it, in ``checks/``.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
#: The Python interpreter guests run with: this one (a ``python3`` found on PATH
#: may be a shell-script shim that starts a dozen processes first).
PYTHON = sys.executable


def _first_existing(*candidates: Path) -> Path:
    for c in candidates:
        if c.exists():
            return c
    return candidates[-1]


def _repo_dirs() -> tuple[Path, Path]:
    from tft_lab.testing import REPO

    programs = _first_existing(HERE.parent / "tests" / "programs", REPO / "tests" / "programs")
    datasets = _first_existing(HERE.parent / "datasets", REPO / "datasets")
    return programs, datasets


PROGRAMS, DATASETS = _repo_dirs()


# -- programs ------------------------------------------------------------------------------

def program(name: str) -> str:
    """A guest program of ``tests/programs/`` (C: built with ``cc`` if needed; ``.py``: its path)."""
    py = PROGRAMS / f"{name}.py"
    if py.exists():
        return str(py)
    from tft_lab.testing import build_program

    return str(build_program(PROGRAMS / f"{name}.c"))


#: Where the course's C programs are built (outside the repository and the package).
BUILD = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tft_lab" / "course"


def _built(source: Path) -> str:
    """``source`` (a ``.c`` file) compiled into :data:`BUILD` (only when it changed)."""
    from tft_lab.testing import build_program

    BUILD.mkdir(parents=True, exist_ok=True)
    return str(build_program(source, BUILD / source.stem))


def example(name: str) -> str:
    """A bundled example of ``tft_lab/examples/`` (``counter`` is built, ``kvserver`` is Python)."""
    import tft_lab

    examples = Path(tft_lab.__file__).resolve().parent / "examples"
    if (examples / f"{name}.c").exists():
        return _built(examples / f"{name}.c")
    if (examples / f"{name}.py").exists():
        return str(examples / f"{name}.py")
    raise ValueError(f"no bundled example called {name!r} in {examples}")


def course_program(name: str) -> str:
    """A program of the course itself, ``notebooks/programs/NAME.c``, built."""
    return _built(HERE / "programs" / f"{name}.c")


def native(argv, **kw) -> subprocess.CompletedProcess:
    """Run ``argv`` without tft (text output), for comparison."""
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=60, **kw)


def values(stdout: str) -> dict[str, str]:
    """The ``name=value`` lines a guest program prints, as a dict."""
    return dict(line.split("=", 1) for line in stdout.splitlines() if "=" in line)


def elapsed_ms(stdout: str) -> float:
    """The ``elapsed_ns=`` a benchmark program printed, in milliseconds (its own clock)."""
    m = re.search(r"elapsed_ns\s*=\s*(\d+)", stdout)
    if m is None:
        raise ValueError(f"no elapsed_ns= in the output: {stdout[-200:]!r}")
    return int(m.group(1)) / 1e6


def scratch_dir() -> str:
    """A new temporary folder for a notebook's files, removed when the kernel ends, however
    it ends (the notebook need not clean up)."""
    from tft_lab import session

    return session.scratch_dir("tft-course-")


# -- live or canned ------------------------------------------------------------------------

def ptrace_works() -> bool:
    """Can tft trace a program here? (Records ``/bin/true`` and looks at the status.)"""
    with tempfile.TemporaryDirectory(prefix="tft-check-") as d:
        try:
            p = subprocess.run([sys.executable, "-m", "tft_lab.cli", "record", "--log", os.path.join(d, "t.log"),
                                "--", "/bin/true"], capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return False
    return p.returncode == 0


def setup() -> bool:
    """Decide whether this notebook runs live (True) or shows canned data, and say which.

    ``TFT_CANNED=1`` in the environment forces the canned data (to try the fallback).
    """
    from IPython.display import Markdown, display

    if os.environ.get("TFT_CANNED") == "1":
        live, why = False, "TFT_CANNED=1 is set"
    elif ptrace_works():
        live, why = True, ""
    else:
        live, why = False, "ptrace is not allowed here (tft could not trace /bin/true)"
    if live:
        display(Markdown("**Live**: ptrace works here, so every run in this notebook is real."))
    else:
        display(Markdown(
            f"> **Canned data**: {why}. This notebook shows the traces recorded in `datasets/` "
            "(made with `datasets/make_datasets.py`, the same commands as the live cells) instead of "
            "running the programs. The numbers are from another machine; the checks still apply."))
    return live


def manifest() -> dict:
    with open(DATASETS / "manifest.json") as f:
        return json.load(f)


def canned(name: str):
    """A run of ``datasets/`` as a :class:`tft_lab.session.Run` (trace, output, status...)."""
    from tft_lab.session import Run

    meta = manifest()[name]
    trace = pd.read_parquet(DATASETS / meta["trace"]) if meta.get("trace") else None
    if trace is not None and "tid" not in trace:
        trace["tid"] = trace["pid"]   # saved before traces had threads: one thread per process
    log = str(DATASETS / meta["log"]) if meta.get("log") else None
    return Run(meta["command"], meta["returncode"], meta["stdout"], meta["stderr"], trace,
               meta.get("outcome", ""), log, meta.get("details", {}))


def canned_table(name: str) -> pd.DataFrame:
    """A table of ``datasets/`` (a CSV listed in the manifest)."""
    return pd.read_csv(DATASETS / manifest()[name]["table"])


def canned_extra(name: str) -> dict:
    """The extra facts a dataset keeps beside its trace (a client's transcript, a journal...)."""
    return manifest()[name].get("extra", {})


# -- the counter's chain -------------------------------------------------------------------

FNV_OFFSET, FNV_PRIME = 0xCBF29CE484222325, 0x100000001B3


def check_chain(stdout: str) -> dict:
    """Check the counter's output: every ``sum=`` continues the chain of the lines before it.

    A line repeated right after itself (the *uncertain* output at a failover) is
    counted, not chained twice. Returns ``ok``, ``lines`` (distinct), ``duplicates``,
    ``numbers`` (the ``n`` of each distinct line) and ``problem`` (the first bad line).
    """
    h, seen, dups, numbers, previous = FNV_OFFSET, [], 0, [], None
    for line in stdout.splitlines():
        if line == previous:
            dups += 1
            continue
        previous = line
        body, _, tail = line.rpartition(" sum=")
        for b in body.encode():
            h = ((h ^ b) * FNV_PRIME) % 2 ** 64
        if tail.strip() != f"{h:016x}":
            return dict(ok=False, lines=len(seen), duplicates=dups, numbers=numbers, problem=line)
        seen.append(line)
        numbers.append(int(body.split()[0][2:]))
    ok = numbers == list(range(len(numbers)))
    return dict(ok=ok, lines=len(seen), duplicates=dups, numbers=numbers,
                problem=None if ok else "the n= do not count 0, 1, 2...")


# -- sockets --------------------------------------------------------------------------------

def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kv(port: int, *commands: str, wait: float = 20.0) -> list[str]:
    """Send ``commands`` to the kvserver on ``port`` (one connection), return its replies.

    Retries connecting for ``wait`` seconds (the server may be starting, or a backup
    may be taking over the port).
    """
    deadline = time.monotonic() + wait
    while True:
        try:
            conn = socket.create_connection(("127.0.0.1", port), timeout=10)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    with conn, conn.makefile("rw") as f:
        replies = []
        for c in commands:
            f.write(c + "\n")
            f.flush()
            replies.append(f.readline().rstrip("\n"))
        return replies


# -- experiments the notebooks (and datasets/make_datasets.py) run --------------------------

def chain_check_command(lines: int) -> str:
    """A ``tft sweep --check`` command for the counter: passes iff its stdin is ``lines`` lines
    of one unbroken chain (:func:`check_chain`), at most one line repeated right after itself."""
    return f"{PYTHON} {HERE / 'course.py'} check-chain {lines}"


def kv_session() -> list[str]:
    """The kvserver and one client in one program (``programs/kv_session.py``), for ``tft sweep``:
    its argv, with ``{port}`` for the sweep to fill in (each crash point gets its own port).
    ``-S`` (no ``site``) spares the sweep a few hundred start-up calls per run."""
    return [PYTHON, "-S", str(HERE / "programs" / "kv_session.py"), example("kvserver"), "{port}"]


#: What kv_session prints, and what its server appends to ``kv.journal``, on every good run.
KV_REPLIES = [f"SET k{i} value-{i * i} -> OK" for i in range(5)] + \
    [f"GET k{i} -> value-{i * i}" for i in range(5)] + ["SHUTDOWN -> BYE", "kvserver stopped"]
KV_JOURNAL = [f"SET k{i} value-{i * i}" for i in range(5)]


def kv_check_command() -> str:
    """A ``tft sweep --check`` command for :func:`kv_session`: its stdin must be :data:`KV_REPLIES`
    and the run's ``kv.journal`` :data:`KV_JOURNAL` (each may repeat one line right after itself,
    the uncertain output of a failover)."""
    return f"{PYTHON} {HERE / 'course.py'} check-kv"


def _once(lines: list[str]) -> tuple[list[str], int]:
    kept = [line for i, line in enumerate(lines) if not i or line != lines[i - 1]]
    return kept, len(lines) - len(kept)


def kv_failover(*, fault: str = "primary@3s", journal: str | None = None, port: int | None = None):
    """The kvserver under ``tft run`` with a client talking to it across a failover.

    A client sets two keys, the primary fails (``fault``), then a second client
    connection (to the same port: the backup re-created the listening socket) reads
    them back, sets one more and shuts the server down. Returns the :class:`Run` and a
    dict with ``port``, ``before`` and ``after`` (the client's commands and replies)
    and ``journal`` (the journal's lines).  Without ``journal`` the journal is a temporary
    file, removed before returning.
    """
    port = port or free_port()
    scratch = None if journal else tempfile.mkdtemp(prefix="tft-kv-")
    try:
        return _kv_failover(fault, journal or os.path.join(scratch, "kv.journal"), port)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)   # its lines are in the result


def _kv_failover(fault: str, journal: str, port: int):
    import threading

    from tft_lab import session

    argv = [PYTHON, example("kvserver"), str(port), "--journal", journal]
    box: dict = {}

    def serve():
        try:
            box["run"] = session.run(argv, fault=[fault], progress=False, timeout=90)
        except BaseException as e:  # noqa: BLE001 - re-raised below
            box["error"] = e

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    first = ["SET greeting hello world", "SET answer 42", "GET answer"]
    before = kv(port, *first, "QUIT")
    seconds = float(fault.split("@")[1].rstrip("s")) if fault.endswith("s") else 2.0
    time.sleep(seconds + 0.5)            # the primary is gone by now; the backup takes over
    second = ["GET greeting", "GET answer", "SET after failover", "GET after"]
    after = kv(port, *second, "SHUTDOWN")
    t.join(60)
    if "error" in box:
        raise box["error"]
    with open(journal) as f:
        lines = f.read().splitlines()
    return box["run"], dict(port=port, before=list(zip(first + ["QUIT"], before)),
                            after=list(zip(second + ["SHUTDOWN"], after)), journal=lines)


def repeated_lines(stdout: str) -> list[tuple[int, str]]:
    """The lines of ``stdout`` equal to the line right before them, as (line index, line)."""
    lines = stdout.splitlines()
    return [(i, line) for i, line in enumerate(lines) if i and line == lines[i - 1]]


def uncertain_output(argv, *, tries: int = 24, commit: str = "output", first_at: float = 0.4,
                     step: float = 0.05) -> tuple:
    """Kill the primary at a moment in time until an output comes out twice.

    Runs ``argv`` (an output-heavy program) under ``tft run --commit COMMIT --fault
    primary@Ts`` for T = ``first_at``, ``first_at + step``, ... up to ``tries`` times,
    and stops at the first run whose output has a line repeated right after itself.
    Returns ``(run or None, attempts)``: the run with the repeated line, and one dict
    per attempt (``at_s, outcome, repeated``).
    """
    from tft_lab import session

    attempts = []
    for i in range(tries):
        at = round(first_at + i * step, 3)
        r = session.run([str(a) for a in argv], commit=commit, fault=[f"primary@{at}s"], progress=False, timeout=120)
        rep = repeated_lines(r.stdout)
        attempts.append(dict(at_s=at, outcome=r.outcome, repeated=len(rep)))
        if rep and r.outcome == "failover":
            return r, attempts
    return None, attempts


def measure(argv, mode: str, *, commit: str = "output", epoch: int = 64) -> float:
    """Seconds the program's own clock says its work took (``elapsed_ns=``) when run ``mode``.

    ``mode``: ``native``; ``strace`` (``strace -f``); ``trace`` (``tft trace``: every call
    stopped and printed, nothing logged); ``record`` (``tft record``); ``run`` (``tft run``
    with a local backup, ``commit`` and ``epoch``). The program's clock is the primary's
    (the backup replays it), so tft's start-up never counts.  Each is the command as a user
    types it, with no trace kept: a kept trace (``%tft record``) turns the compiled lane off.
    """
    argv = [str(a) for a in argv]
    tft = [sys.executable, "-m", "tft_lab.cli"]
    if mode == "native":
        out = native(argv).stdout
    elif mode == "strace":
        out = native(["strace", "-f", "-o", "/dev/null", *argv]).stdout
    elif mode == "trace":
        out = native([*tft, "trace", "-o", os.devnull, "--", *argv]).stdout
    elif mode == "record":
        # the command as a user times it, no trace kept: a watched trace turns the compiled lane off
        with tempfile.TemporaryDirectory() as d:
            p = native([*tft, "record", "--log", os.path.join(d, "run.log"), "--epoch", str(epoch), "--", *argv])
        if p.returncode != 0:
            raise RuntimeError(f"{argv}: tft record failed: {p.stderr.strip()[-300:]}")
        out = p.stdout
    elif mode == "run":
        p = native([*tft, "run", "--commit", commit, "--epoch", str(epoch), "--", *argv])
        if p.returncode != 0 or any(w in p.stderr for w in ("ALONE", "diverged", "failed")):
            raise RuntimeError(f"{argv}: tft run did not complete with its backup: {p.stderr.strip()[-300:]}")
        out = p.stdout
    else:
        raise ValueError(f"unknown mode {mode!r}")
    return elapsed_ms(out) / 1e3


def floor_bench(reps: int = 3) -> pd.DataFrame:
    """``benchmarks/bench.py --quick`` on the getppid loop and on ``true`` (the fixed cost):
    native, ``strace`` (pinned and not), the floor tracer (``benchmarks/floor.c``), ``tft
    trace``, ``record``, ``replay`` and ``run``, interleaved, pinned to one CPU; its table
    (``bench.csv``: one row per workload and mode, medians, ``us_per_call_net``...).
    About ten seconds."""
    from tft_lab.testing import REPO

    script = _first_existing(HERE.parent / "benchmarks" / "bench.py", REPO / "benchmarks" / "bench.py")
    with tempfile.TemporaryDirectory() as out:
        p = subprocess.run([PYTHON, str(script), "--quick", "--reps", str(reps), "--workloads", "getppid,true",
                            "--out", out], capture_output=True, text=True, timeout=600)
        if p.returncode != 0:
            raise RuntimeError(f"benchmarks/bench.py failed: {p.stderr.strip()[-500:]}")
        return pd.read_csv(os.path.join(out, "bench.csv"))


def bench(workloads: dict, *, modes=("native", "record", "run"), commits=("output",), epochs=(64,),
          repeats: int = 3) -> pd.DataFrame:
    """Measure each workload (name -> argv) in each mode: the table :func:`tft_lab.plots.overhead` plots.

    One row per measurement: ``workload, mode, commit, epoch, seconds`` (``commit`` and
    ``epoch`` are empty / 0 where they do not apply). ``run`` is measured for every
    commit policy and epoch length, ``record`` for every epoch length.
    """
    rows = []
    for name, argv in workloads.items():
        for mode in modes:
            if mode == "run":
                configs = [(c, e) for c in commits for e in epochs]
            elif mode == "record":
                configs = [("", e) for e in epochs]
            else:
                configs = [("", 0)]
            for commit, epoch in configs:
                for _ in range(repeats):
                    s = measure(argv, mode, commit=commit or "output", epoch=epoch or 64)
                    rows.append(dict(workload=name, mode=mode, commit=commit, epoch=epoch, seconds=s))
    return pd.DataFrame(rows)


if __name__ == "__main__":
    # python course.py check-chain N: the counter's checker for tft sweep (stdin: one run's stdout)
    if len(sys.argv) == 3 and sys.argv[1] == "check-chain":
        c = check_chain(sys.stdin.read())
        good = c["ok"] and c["lines"] == int(sys.argv[2]) and c["duplicates"] <= 1
        if not good:
            print(f"{c['lines']} chain lines, {c['duplicates']} repeated: {c['problem'] or 'wrong count'}",
                  file=sys.stderr)
        sys.exit(0 if good else 1)
    if sys.argv[1:] == ["check-kv"]:   # the kv_session's checker, in the run's folder
        out, out_dups = _once(sys.stdin.read().splitlines())
        journal, j_dups = _once(Path("kv.journal").read_text().splitlines() if Path("kv.journal").exists() else [])
        problems = [what for what, bad in (("replies", out != KV_REPLIES), ("journal", journal != KV_JOURNAL),
                                           ("repeats", out_dups + j_dups > 1)) if bad]
        if problems:
            print(f"kv_session: wrong {', '.join(problems)}", file=sys.stderr)
        sys.exit(1 if problems else 0)
    sys.exit("usage: course.py check-chain LINES | check-kv")
