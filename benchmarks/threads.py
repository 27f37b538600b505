#!/usr/bin/env python3
"""Threads under tft: the cost of a thread switch, and a threaded workload against native
and strace.

Not a test.  Two measurements, each mode interleaved round-robin over R repetitions (the
machines are noisy), medians reported:

1. Switch cost: ``pingpong N`` (two threads hand a token back and forth N times through a
   condition variable: every hand-over is a futex wake and a futex wait, and under tft a
   thread switch).  The marginal cost of one hand-over under ``tft record`` and ``tft
   replay``, net of a run with N/10 hand-overs (the fixed start-up), and the number of
   switches the log holds per hand-over.
2. A threaded workload, ``tests/programs/thr_mutex 4`` and CPython's ``py_threads.py``
   (a ThreadPoolExecutor and a queue), and processes that share memory,
   ``tests/programs/shared_procs`` (three children taking a process-shared semaphore 20 times
   each, scheduled as one): native, ``strace -f``, ``tft record``, ``tft replay``, ``tft run``.

    python benchmarks/threads.py            # ~3 minutes on a busy 2-vCPU VM
    python benchmarks/threads.py --reps 3

Writes ``benchmarks/out/threads.csv`` and ``threads.md`` (the printed table).
"""
from __future__ import annotations

import argparse
import csv
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"
sys.path.insert(0, str(ROOT))

from tft_lab import log as tft_log  # noqa: E402
from tft_lab._build import compile_c  # noqa: E402

TFT = [sys.executable, "-m", "tft_lab.cli"]


def timed(argv: list[str]) -> float:
    t = time.monotonic()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.monotonic() - t


def modes(prog: list[str], tmp: str) -> dict[str, list[str]]:
    log = os.path.join(tmp, "w.log")
    out = {"native": prog, "tft record": [*TFT, "record", "--log", log, "--", *prog],
           "tft replay": [*TFT, "replay", log], "tft run": [*TFT, "run", "--", *prog]}
    if shutil.which("strace"):
        out["strace -f"] = ["strace", "-f", "-qq", "-o", "/dev/null", "--", *prog]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--handovers", type=int, default=2000)
    args = ap.parse_args()
    OUT.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tft-bench-threads-") as tmp:
        pingpong = str(compile_c(HERE / "pingpong.c", binary=Path(tmp) / "pingpong"))
        mutex = str(compile_c(ROOT / "tests/programs/thr_mutex.c", binary=Path(tmp) / "thr_mutex"))
        shared = str(compile_c(ROOT / "tests/programs/shared_procs.c", binary=Path(tmp) / "shared_procs"))
        rows = []
        # 1. switch cost
        n_big, n_small = args.handovers, args.handovers // 10
        times: dict[tuple, list[float]] = {}
        for _ in range(args.reps):
            for n in (n_small, n_big):
                prog = [pingpong, str(n)]
                log = os.path.join(tmp, f"p{n}.log")
                times.setdefault(("native", n), []).append(timed(prog))
                times.setdefault(("tft record", n), []).append(timed([*TFT, "record", "--log", log, "--", *prog]))
                times.setdefault(("tft replay", n), []).append(timed([*TFT, "replay", log]))
        switches = sum(1 for r in tft_log.read_log(os.path.join(tmp, f"p{n_big}.log")) if r.type == "switch")
        for mode in ("native", "tft record", "tft replay"):
            big, small = (statistics.median(times[(mode, n)]) for n in (n_big, n_small))
            per = (big - small) / (n_big - n_small) * 1e6
            rows.append({"workload": f"pingpong {n_big}", "mode": mode, "seconds": f"{big:.3f}",
                         "per_handover_us": f"{per:.1f}", "switches_per_handover": f"{switches / n_big:.2f}"})
        # 2. threaded workloads
        for name, prog in (("thr_mutex 4", [mutex, "4"]),
                           ("py_threads.py", [sys.executable, str(ROOT / "tests/programs/py_threads.py")]),
                           ("shared_procs 3 20", [shared, "3", "20"])):
            ms = modes(prog, tmp)
            t: dict[str, list[float]] = {m: [] for m in ms}
            for _ in range(args.reps):
                for m, argv in ms.items():
                    t[m].append(timed(argv))
            native = statistics.median(t["native"])
            for m in ms:
                med = statistics.median(t[m])
                rows.append({"workload": name, "mode": m, "seconds": f"{med:.3f}",
                             "x_native": f"{med / native:.1f}"})
    cols = ["workload", "mode", "seconds", "per_handover_us", "switches_per_handover", "x_native"]
    with open(OUT / "threads.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(r.get(c, "") for c in cols) + " |" for r in rows]
    text = "\n".join(lines) + "\n"
    (OUT / "threads.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
