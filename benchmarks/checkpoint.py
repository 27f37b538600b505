#!/usr/bin/env python3
"""Does a CRIU checkpoint pay for catch-up?  Checkpoint and restore time against the history's length.

Not a test.  A fresh backup today catches up by replaying the whole history
(``catchup.py`` measures how long).  A checkpoint of the program would replace that
replay by a dump, a copy and a restore, plus a replay of the log after the checkpoint.
For the catch-up guest (``benchmarks/catchup.c``) at each history length N, natively
and untraced, each trial:

1. starts ``catchup N TAIL_MS`` (its own session, stdout to a file, so CRIU needs no
   ``--shell-job``), waits until it has made its N calls (it sleeps in its tail loop:
   ``native_ms`` is that time) and stops it (SIGSTOP: the program at a call boundary);
2. ``criu dump`` of it to a temporary folder: ``dump_ms``, the image's size
   (``image_kb``);
3. ``criu restore --restore-detached`` of it: ``restore_ms`` (criu returns once the
   tree is back, stopped as it was dumped), then SIGCONT and a check that it runs (its
   voluntary context switches rise: it sleeps every 5 ms), then kill.

Every process and image folder is removed on every path.  With ``--catchup-csv``
(``catchup.py``'s CSV, several allowed) the table puts the replay catch-up at the same N
beside the checkpoint's cost and prints the break-even history length: the checkpoint's
cost over the replay's cost a call (both would start a fresh supervisor: that is left out).

    python benchmarks/checkpoint.py                                  # 10^3 .. 10^6, 3 trials
    python benchmarks/checkpoint.py --criu /opt/criu/criu --catchup-csv benchmarks/out/catchup.csv

Needs root and ``criu`` (``apt-get install criu``; on a kernel of 6.13 or later, CRIU 4.1
or later: ``--criu`` names the binary).  Writes ``benchmarks/out/checkpoint.csv``.
"""
from __future__ import annotations

import argparse
import csv
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from tft_lab._backend.ptrace import set_subreaper  # noqa: E402
from tft_lab._build import compile_c  # noqa: E402

TAIL_MS = 600_000          # the guest's tail: far longer than a trial, it is killed
IN_TAIL = {"35", "230"}    # nanosleep, clock_nanosleep: /proc/PID/syscall once the N calls are made


def first_error(text: str) -> str | None:
    """criu's first telling ``Error`` line (not a helper's bare "exited, status=N")."""
    errors = [ln.strip() for ln in text.splitlines() if "Error" in ln]
    telling = [ln for ln in errors if "exited, status=" not in ln]
    line = (telling or errors or [None])[0]
    return line.split(") ", 1)[-1] if line and line.startswith("(") else line


def criu_error(log: Path, fallback: str) -> str:
    """The first telling error of a criu log, else ``fallback``."""
    try:
        return first_error(log.read_text(errors="replace")) or fallback
    except OSError:
        return fallback


def check(criu: str) -> str | None:
    """None if ``criu check`` passes, else its first error line."""
    p = subprocess.run([criu, "check"], capture_output=True, text=True, timeout=60)
    if p.returncode == 0:
        return None
    return first_error(p.stderr + p.stdout) or p.stderr.strip() or f"exit status {p.returncode}"


def in_tail(pid: int) -> bool:
    with open(f"/proc/{pid}/syscall") as f:
        return f.read().split(" ", 1)[0] in IN_TAIL


def switches(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    return 0


def kill(pid: int | None) -> None:
    """Kill ``pid`` and reap it if it is our child (the guest, or a restored tree we adopted)."""
    if not pid:
        return
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:   # not ours: wait until it is gone
        for _ in range(500):
            if not os.path.exists(f"/proc/{pid}"):
                break
            time.sleep(0.01)


def trial(criu: str, guest: Path, calls: int) -> dict:
    row = {"calls": calls, "native_ms": None, "dump_ms": None, "image_kb": None, "restore_ms": None,
           "runs": False, "error": ""}
    tmp = Path(tempfile.mkdtemp(prefix="tft-checkpoint-"))
    pid = restored = None
    try:
        images = tmp / "images"
        images.mkdir()
        with open(tmp / "out.txt", "w") as out:
            t0 = time.monotonic()
            p = subprocess.Popen([str(guest), str(calls), str(TAIL_MS)], stdin=subprocess.DEVNULL,
                                 stdout=out, stderr=subprocess.DEVNULL, start_new_session=True)
        pid = p.pid
        deadline = t0 + 120 + calls / 1000
        while not in_tail(pid):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the guest did not finish its {calls} calls")
            time.sleep(0.0005)
        row["native_ms"] = (time.monotonic() - t0) * 1000
        os.kill(pid, signal.SIGSTOP)   # at a call boundary, as a supervisor would hold it
        t = time.monotonic()
        d = subprocess.run([criu, "dump", "-t", str(pid), "-D", str(images), "-o", "dump.log", "-v2"],
                           capture_output=True, text=True, timeout=300)
        if d.returncode:
            raise RuntimeError("criu dump: " + criu_error(images / "dump.log", d.stderr.strip()))
        row["dump_ms"] = (time.monotonic() - t) * 1000
        p.wait(timeout=10)   # criu dump kills the dumped tree: reap it, freeing its pid
        pid = None
        row["image_kb"] = sum(f.stat().st_size for f in images.iterdir() if f.name.endswith(".img")) / 1024
        t = time.monotonic()
        r = subprocess.run([criu, "restore", "-D", str(images), "--restore-detached", "--pidfile",
                            str(tmp / "restored.pid"), "-o", "restore.log", "-v2"],
                           capture_output=True, text=True, timeout=300)
        try:
            restored = int((tmp / "restored.pid").read_text())
        except (OSError, ValueError):
            restored = None
        if r.returncode:
            raise RuntimeError("criu restore: " + criu_error(images / "restore.log", r.stderr.strip()))
        row["restore_ms"] = (time.monotonic() - t) * 1000
        before = switches(restored)
        os.kill(restored, signal.SIGCONT)   # restored as it was dumped: stopped
        time.sleep(0.1)
        row["runs"] = switches(restored) > before + 5   # it sleeps every 5 ms: ~20 switches
    except (OSError, RuntimeError, TimeoutError, subprocess.SubprocessError, ValueError) as e:
        row["error"] = str(e)
    finally:
        kill(pid)
        kill(restored)
        shutil.rmtree(tmp, ignore_errors=True)
    return row


def replay_ms(paths: list[Path]) -> dict[int, float]:
    """The median replay catch-up (``replayed_ms``) at each history length in catchup.py's CSVs."""
    seen: dict[int, list[float]] = {}
    for path in paths:
        with open(path, newline="") as f:
            for r in csv.DictReader(f):
                if r.get("replayed_ms") and r.get("rc") == "0":
                    seen.setdefault(int(r["calls"]), []).append(float(r["replayed_ms"]))
    return {n: statistics.median(v) for n, v in seen.items()}


def break_even(costs: dict[int, float], replay: dict[int, float]) -> str:
    """Where the checkpoint (its cost flat in N) meets the replay (linear in N).

    The replay's cost a call is the slope of a least-squares line through its medians; its
    intercept (starting the fresh backup's supervisor and program, ~0.5-1 s) a checkpoint
    would pay too, so the break-even is the checkpoint's median cost over that slope."""
    if len(replay) < 2 or not costs:
        return "break-even: needs catch-up times at two lengths or more (--catchup-csv)"
    ns = sorted(replay)
    mean_n = statistics.mean(ns)
    mean_t = statistics.mean(replay[n] for n in ns)
    slope = sum((n - mean_n) * (replay[n] - mean_t) for n in ns) / sum((n - mean_n) ** 2 for n in ns)
    base = mean_t - slope * mean_n
    cost = statistics.median(costs.values())
    fit = (f"replay ~ {base:.0f} ms + {slope * 1000:.0f} us a call; dump + restore ~ {cost:.0f} ms "
           f"whatever the length")
    if slope <= 0:
        return f"{fit}: no break-even (the replay does not grow)"
    return f"{fit}: the checkpoint pays beyond ~{cost / slope:,.0f} calls"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000,100000,1000000", help="history lengths, comma-separated")
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--criu", default="criu", help="the criu binary (default: criu on PATH)")
    ap.add_argument("--catchup-csv", type=Path, action="append", default=[],
                    help="catchup.py's CSV: the replay catch-up to compare with (repeatable)")
    ap.add_argument("--out", type=Path, default=HERE / "out")
    args = ap.parse_args()
    criu = shutil.which(args.criu)
    if criu is None:
        print(f"checkpoint.py: {args.criu} not found: install criu (apt-get install criu)", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("checkpoint.py: criu needs root", file=sys.stderr)
        return 2
    broken = check(criu)
    if broken:
        version = subprocess.run([criu, "--version"], capture_output=True, text=True).stdout.split("\n")[0]
        print(f"checkpoint.py: `criu check` fails ({version}, kernel {os.uname().release}): {broken}",
              file=sys.stderr)
        return 1
    set_subreaper()   # a tree criu restores detached becomes our child: we reap it
    args.out.mkdir(parents=True, exist_ok=True)
    guest = compile_c(HERE / "catchup.c", args.out / "bin")
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    for t in range(args.trials):   # round-robin: the machine's noise spreads over the sizes
        for calls in sizes:
            row = trial(criu, guest, calls)
            rows.append(row)
            print(f"trial {t + 1}/{args.trials} calls={calls}: {row}", file=sys.stderr, flush=True)
    with open(args.out / "checkpoint.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    replay = replay_ms(args.catchup_csv)
    costs = {}
    print("| calls | trials ok | native ms | dump ms | image KiB | restore ms | dump + restore ms | replay catch-up ms |")
    print("|---|---|---|---|---|---|---|---|")
    for calls in sizes:
        ok = [r for r in rows if r["calls"] == calls and r["runs"]]

        def med(key):
            return statistics.median(r[key] for r in ok) if ok else None
        if ok:
            costs[calls] = statistics.median(r["dump_ms"] + r["restore_ms"] for r in ok)
        cells = [med("native_ms"), med("dump_ms"), med("image_kb"), med("restore_ms"), costs.get(calls),
                 replay.get(calls)]
        print(f"| {calls} | {len(ok)}/{args.trials} | " + " | ".join("-" if c is None else f"{c:.0f}" for c in cells)
              + " |")
    for r in rows:
        if r["error"]:
            print(f"calls={r['calls']}: {r['error']}")
    print(break_even(costs, replay))
    return 0


if __name__ == "__main__":
    sys.exit(main())
