#!/usr/bin/env python3
"""Resource growth: does tft's cost stay flat as a program makes more calls?

Not a test.  For N calls (default 10^4, 10^5, 10^6) of one intercepted input
syscall (``syscall_loop N clock``: ``clock_gettime``, whose result and 16-byte
out-buffer are logged), measures

- native: the program alone (wall time);
- ``tft record``: wall time, peak memory (max RSS of the supervisor and what
  it reaped, from ``wait4``), the log's size;
- ``tft replay``: wall time, peak memory;

and reports per call the marginal cost, net of a 0-call run of the same
program (tft's fixed start-up: the interpreter, the libraries' contents in the
log): microseconds of record and replay, and log bytes.  Flat means the
per-call figures and the memory do not grow with N.

    python benchmarks/growth.py                    # 1e4, 1e5, 1e6 (~15 min on a busy 2-vCPU VM)
    python benchmarks/growth.py --calls 10000,100000 --mode getppid

Writes ``benchmarks/out/growth.csv`` and ``growth.md`` (the printed table).
"""
from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"
sys.path.insert(0, str(ROOT))

from tft_lab._build import compile_c  # noqa: E402


def measure(argv: list[str], **kw) -> tuple[float, int, int]:
    """Run ``argv`` to its end: (wall seconds, exit status, max RSS in KiB of it and what it reaped)."""
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL, **kw)
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    return time.monotonic() - t0, p.returncode, usage.ru_maxrss


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", default="10000,100000,1000000")
    ap.add_argument("--mode", default="clock", choices=("clock", "getppid", "read"))
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    prog = compile_c(ROOT / "tests" / "programs" / "syscall_loop.c", args.out / "bin")
    tft = [sys.executable, "-m", "tft_lab.cli"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    rows = []
    with tempfile.TemporaryDirectory(prefix="tft-growth-") as tmp:
        base = None
        for n in [0, *(int(x) for x in args.calls.split(","))]:
            argv = [str(prog), str(n), args.mode]
            log = Path(tmp) / f"{n}.log"
            nat, _, _ = measure(argv)
            rec_s, rec_rc, rec_kb = measure([*tft, "record", "--log", str(log), "--", *argv], env=env)
            size = log.stat().st_size
            rep_s, rep_rc, rep_kb = measure([*tft, "replay", str(log)], env=env)
            log.unlink()
            if rec_rc or rep_rc:
                print(f"N={n}: record exited {rec_rc}, replay {rep_rc}", file=sys.stderr)
            if base is None:
                base = (nat, rec_s, rep_s, size)
                print(f"fixed cost (0 calls): record {rec_s:.2f} s, replay {rep_s:.2f} s, log {size} bytes",
                      flush=True)
                continue
            rows.append({"calls": n, "native_s": round(nat, 3), "record_s": round(rec_s, 2),
                         "record_us_per_call": round((rec_s - base[1] - nat) / n * 1e6, 1),
                         "record_mb": round(rec_kb / 1024, 1), "replay_s": round(rep_s, 2),
                         "replay_us_per_call": round((rep_s - base[2] - nat) / n * 1e6, 1),
                         "replay_mb": round(rep_kb / 1024, 1), "log_mb": round(size / 2**20, 2),
                         "log_bytes_per_call": round((size - base[3]) / n, 1)})
            print(rows[-1], flush=True)
    cols = list(rows[0])
    with open(args.out / "growth.csv", "w", newline="") as f:
        w = csv.DictWriter(f, cols)
        w.writeheader()
        w.writerows(rows)
    table = "\n".join(["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
                      + ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows])
    (args.out / "growth.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
