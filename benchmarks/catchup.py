#!/usr/bin/env python3
"""Catch-up time of a fresh backup against the history's length, and failover time.

Not a test.  Each trial runs

    tft run --fault primary@(CALLS+40) -- catchup CALLS TAIL_MS

``catchup`` (benchmarks/catchup.c) makes CALLS getppid calls (one log record each),
then ticks every 5 ms for TAIL_MS.  The fault kills the primary right after the calls;
the backup goes live (``failover_ms``: failure detected -> live) and becomes the
primary, and a fresh backup starts, is sent the whole history and replays it from the
start while the program ticks on.  Per trial:

- ``has_all_ms``: the fresh backup connected -> it has acknowledged the whole history
  (the live replica's ``caught-up``: from then on the output rule protects the run);
- ``replayed_ms``: the backup went live -> the fresh backup has *replayed* the whole
  history (it notes the time every 100 records it takes: ``progress_ns`` in its result;
  interpolated at the history's length): the catch-up, start to end.  A failure before
  this is masked only after the rest of the replay;
- ``history``: records in the history when the fresh backup started.

    python benchmarks/catchup.py                       # 10^3, 10^4, 10^5 calls, 5 trials each
    python benchmarks/catchup.py --sizes 1000,1000000 --trials 3

Writes ``benchmarks/out/catchup.csv`` and prints a table (medians and max).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from tft_lab._build import compile_c  # noqa: E402

STARTUP_CALLS = 40   # the guest's calls before its loop (ld.so, libc): the fault falls just after it


def tft_cmd() -> list[str]:
    exe = Path(sys.executable).parent / "tft"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "tft_lab.cli"]


def trial(guest: Path, calls: int) -> dict:
    tail_ms = 4000 + calls // 5   # long enough for the replay (~50-200 us a call on a loaded 2-vCPU VM)
    with tempfile.TemporaryDirectory(prefix="tft-catchup-") as tmp:
        result = os.path.join(tmp, "result.json")
        p = subprocess.run([*tft_cmd(), "run", "--result-json", result, "--fault", f"primary@{calls + STARTUP_CALLS}",
                            "--", str(guest), str(calls), str(tail_ms)],
                           capture_output=True, timeout=600 + calls / 1000)
        try:
            with open(result) as f:
                res = json.load(f)
        except (OSError, ValueError):
            res = {}
    backups = res.get("backups", [])
    live = backups[0] if backups else {}
    fresh = backups[1] if len(backups) > 1 else {}
    err = p.stderr.decode(errors="replace").strip().splitlines()
    why = " | ".join(err[-2:]) if p.returncode else ""
    # Every failover and lost backup, even in a trial that ended well (a second, spurious one
    # means a replica was silent too long: the catch-up then starts over).
    events = " | ".join(line for line in err if any(w in line for w in ("failed", "fence", "lost")))
    return {"calls": calls, "rc": p.returncode, "outcome": res.get("outcome"), "why": why,
            "failover_ms": res.get("failover_ms"), "history": live.get("history_frames"),
            "has_all_ms": live.get("catch_up_ms"),
            "replayed_ms": at(fresh.get("progress_ns") or [], live.get("history_frames") or 0, live.get("live_ns")),
            "fresh_outcome": fresh.get("outcome"), "fresh_backups": max(0, len(backups) - 1), "events": events}


def at(progress: list, n: int, since_ns: int | None) -> float | None:
    """Milliseconds from ``since_ns`` until the fresh backup had taken ``n`` records, from its
    (records, monotonic ns) notes (one every 100 records: interpolated between two)."""
    if not progress or since_ns is None:
        return None
    before = [0, progress[0][1]]
    for count, ns in progress:
        if count >= n:
            t = before[1] + (ns - before[1]) * (n - before[0]) / max(1, count - before[0])
            return (t - since_ns) / 1e6
        before = [count, ns]
    return None


def summary(rows: list[dict], key: str) -> str:
    values = [r[key] for r in rows if r[key] is not None]
    if not values:
        return "-"
    return f"{statistics.median(values):.0f} / {max(values):.0f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000,100000", help="history lengths in calls, comma-separated")
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--out", type=Path, default=HERE / "out")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    guest = compile_c(HERE / "catchup.c", args.out / "bin")
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    for t in range(args.trials):          # round-robin over the sizes: the machine's noise spreads evenly
        for calls in sizes:
            row = trial(guest, calls)
            rows.append(row)
            print(f"trial {t + 1}/{args.trials} calls={calls}: {row}", file=sys.stderr, flush=True)
    with open(args.out / "catchup.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print("| calls | trials ok | history records | failover ms (median / max) | has all ms | replayed ms |")
    print("|---|---|---|---|---|---|")
    for calls in sizes:
        mine = [r for r in rows if r["calls"] == calls]
        ok = sum(1 for r in mine if r["rc"] == 0 and r["outcome"] == "failover")
        hist = statistics.median([r["history"] for r in mine if r["history"]] or [0])
        print(f"| {calls} | {ok}/{len(mine)} | {hist:.0f} | {summary(mine, 'failover_ms')} | "
              f"{summary(mine, 'has_all_ms')} | {summary(mine, 'replayed_ms')} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
