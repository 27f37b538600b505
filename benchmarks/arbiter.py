#!/usr/bin/env python3
"""The arbiter's price: failover time with and without it, and its cost per output commit.

Not a test. Starts a private etcd (``tft_lab.arbiter.LocalEtcd``: free loopback ports,
its data in a temporary folder, killed at the end; needs Debian's ``etcd-server``).

1. Failover. Each trial is ``benchmarks/failover.py``'s: ``tft run [--arbiter URL
   --lease-ttl T] -- ticker 400 5`` with the primary failed at a random moment, either
   SIGKILL of its supervisor (the backup sees EOF at once; with the arbiter it must then
   wait for the dead primary's lease to run out) or SIGSTOP of it (a silent host: the
   heartbeat timeout first, then the lease).  Configurations are interleaved trial by
   trial.  Reported: kill -> first line computed live, and tft's own detection -> live.
2. Cost per output commit. ``tft run [--arbiter URL] -- ticker N 0`` (N lines back to
   back: N output commits), interleaved, ``--reps`` times each; the difference of the
   medians over N.  And the supervisor's own added work per output, measured in process:
   the lease check (``Lease.expired``, made twice per output call).

    python benchmarks/arbiter.py                 # 20 trials per configuration, ~6 minutes
    python benchmarks/arbiter.py --trials 5 --reps 3

Writes ``benchmarks/out/arbiter.csv`` (one row per failover trial),
``arbiter_commit.csv`` and ``arbiter.md`` (the tables).
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from failover import pct, tft_cmd, trial  # noqa: E402  (the same trial as failover.py)


def commit_cost(args, ticker: str, url: str) -> list[dict]:
    """Wall time of 1 and of N back-to-back output commits, with and without the arbiter,
    interleaved: the slope is the cost per output, the intercept the fixed cost (start-up)."""
    rows = []
    for rep in range(args.reps):
        for outputs in (1, args.outputs):
            for mode, extra in (("heartbeat", []), ("arbiter", ["--arbiter", url, "--lease-ttl", str(args.ttl)])):
                cmd = [*tft_cmd(), "run", *extra, "--", ticker, str(outputs), "0"]
                t0 = time.monotonic()
                p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                rows.append(dict(rep=rep, mode=mode, outputs=outputs, seconds=time.monotonic() - t0,
                                 rc=p.returncode, stderr=p.stderr.decode(errors="replace").strip()[:200]))
    return rows


def check_cost_ns(url: str) -> float:
    """Nanoseconds of one lease check (what the primary adds per call, twice per output)."""
    from tft_lab import arbiter

    lease = arbiter.hold(arbiter.Etcd.from_spec(url), arbiter.new_run_id(), "benchmark", 10)
    try:
        n = 200_000
        return min(timeit.repeat(lease.expired, number=n, repeat=5)) / n * 1e9
    finally:
        lease.release()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=20, help="failover trials per configuration (default 20)")
    ap.add_argument("--victims", default="supervisor,stop", help="supervisor (SIGKILL), stop (SIGSTOP)")
    ap.add_argument("--ttl", type=int, default=2, help="the arbiter's lease TTL, s (default 2)")
    ap.add_argument("--count", type=int, default=400, help="ticker lines per failover trial (default 400)")
    ap.add_argument("--period", type=int, default=5, help="ticker period in ms (default 5)")
    ap.add_argument("--min-delay", type=float, default=0.1)
    ap.add_argument("--max-delay", type=float, default=1.2)
    ap.add_argument("--outputs", type=int, default=3000, help="output commits per cost run (default 3000)")
    ap.add_argument("--reps", type=int, default=7, help="cost runs per mode (default 7)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    args.pin = False

    import pandas as pd
    from tft_lab._build import compile_c
    from tft_lab.arbiter import LocalEtcd

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ticker = str(compile_c(HERE / "ticker.c", out / "bin"))
    rng = random.Random(args.seed)
    victims = [v for v in args.victims.split(",") if v]
    t0 = time.monotonic()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="tft-bench-etcd-") as data, LocalEtcd(data) as etcd:
        configs = [(v, a) for v in victims for a in (False, True)]
        print(f"# arbiter: etcd at {etcd.url}, {args.trials} trials x {len(configs)} configurations", flush=True)
        rows = []
        for i in range(args.trials):
            for victim, arb in configs:
                extra = ["--arbiter", etcd.url, "--lease-ttl", str(args.ttl)] if arb else []
                r = trial(args, ticker, 0.5, victim, rng, extra=extra)
                r.update(trial=i, arbiter=arb)
                rows.append(r)
                if r.get("error") or not r["output_ok"] or not r["failover"]:
                    print(f"#   ! trial {i} {victim} arbiter={arb}: rc={r['rc']} failover={r['failover']} "
                          f"{r.get('error', '')} {r.get('stderr', '')[:300]}", flush=True)
            print(f"#   trial {i + 1}/{args.trials} done ({time.monotonic() - t0:.0f} s)", flush=True)
        cost = commit_cost(args, ticker, etcd.url)
        check_ns = check_cost_ns(etcd.url)

    df = pd.DataFrame(rows)
    df.to_csv(out / "arbiter.csv", index=False)
    cf = pd.DataFrame(cost)
    cf.to_csv(out / "arbiter_commit.csv", index=False)

    def stats(xs):
        xs = [x for x in xs if x == x and x is not None]
        if not xs:
            return "", ""
        return (f"{min(xs):.0f} / {statistics.median(xs):.0f} / {pct(xs, 0.9):.0f} / {max(xs):.0f}", len(xs))

    names = {"supervisor": "SIGKILL primary supervisor", "stop": "SIGSTOP primary supervisor (silent)"}
    lines = [f"Arbiter, {datetime.date.today().isoformat()}, {platform.node()}, {os.cpu_count()} CPUs, kernel "
             f"{platform.release()}; etcd {args.ttl} s lease (renewed every {args.ttl / 3:.2f} s, fence at "
             f"{args.ttl * 5 / 6:.2f} s), heartbeat 0.5 s; ticker line every {args.period} ms; kill at a random "
             f"moment {args.min_delay}-{args.max_delay} s after the first line; load average before/after "
             f"{load_before[0]:.1f}/{os.getloadavg()[0]:.1f}.", "",
             "| failure | arbiter | trials | failovers | output ok | kill→output ms min / median / p90 / max | "
             "detection→live ms min / median / p90 / max |", "|---|---|---:|---:|---:|---|---|"]
    for (victim, arb), g in df.groupby(["victim", "arbiter"], sort=False):
        k2o, _ = stats(g.get("kill_to_output_ms", pd.Series(dtype=float)).tolist())
        d2l, _ = stats(g.get("detect_to_live_ms", pd.Series(dtype=float)).tolist())
        lines.append(f"| {names.get(victim, victim)} | {'etcd' if arb else 'no (heartbeats)'} | {len(g)} | "
                     f"{int(g['failover'].sum())} | {int(g['output_ok'].sum())} | {k2o} | {d2l} |")
    ok = cf[cf["rc"] == 0]
    med = ok.groupby(["mode", "outputs"])["seconds"].median()
    n = args.outputs
    lines += ["", f"Cost per output commit: `tft run -- ticker K 0` (K outputs back to back) for K = 1 and {n}, "
              f"{args.reps} runs each, interleaved; {len(cf) - len(ok)} failed runs left out. Per output: "
              f"(median at {n} − median at 1) / {n - 1}; fixed: the median at 1.", "",
              "| mode | fixed s (K=1) | per output µs |", "|---|---:|---:|"]
    slope = {}
    for mode in ("heartbeat", "arbiter"):
        if (mode, 1) in med and (mode, n) in med:
            slope[mode] = (med[(mode, n)] - med[(mode, 1)]) / (n - 1) * 1e6
            lines.append(f"| {mode} | {med[(mode, 1)]:.3f} | {slope[mode]:.1f} |")
    if len(slope) == 2:
        lines.append(f"| **arbiter − heartbeat** | {med[('arbiter', 1)] - med[('heartbeat', 1)]:+.3f} | "
                     f"**{slope['arbiter'] - slope['heartbeat']:+.1f}** |")
    lines += ["", f"The supervisor's own added work per output: two lease checks of {check_ns:.0f} ns each "
              "(a clock read; the renewals run in a thread, one HTTP request per TTL/3)."]
    text = "\n".join(lines)
    print()
    print(text)
    (out / "arbiter.md").write_text(text + "\n")
    print(f"\nwrote {out / 'arbiter.csv'} ({time.monotonic() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
