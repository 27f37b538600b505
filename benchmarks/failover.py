#!/usr/bin/env python3
"""Failover time of ``tft run``: kill the primary at a random moment, time the backup.

Not a test. Each trial runs ``tft run [--heartbeat H] -- ticker COUNT 5`` (a
line every 5 ms carrying its CLOCK_MONOTONIC time), reads its stdout in a
thread that timestamps every line, and at a random moment fails the primary:

- ``supervisor``: SIGKILL the primary's supervisor (the backup sees the
  channel end: EOF; the program under it dies with it, PTRACE_O_EXITKILL);
- ``program``: SIGKILL the primary's program from outside (the supervisor
  sees it die and must not finish it as a normal exit);
- ``stop``: SIGSTOP the primary's supervisor -- a silent host: the channel
  stays open, only the heartbeat timeout can tell (it is SIGKILLed after the
  backup went live, or at the end of the trial).

Per trial: kill -> first output line computed by a live backup (its t is
later than the kill; replayed lines carry the primary's recorded t), the
backup's own "detection -> live" figure from tft's stderr, and whether the
output stayed a gap-free sequence with at most one duplicated line.

    python benchmarks/failover.py               # 20 trials per configuration
    python benchmarks/failover.py --trials 5    # quicker

Writes ``benchmarks/out/failover.csv`` (one row per trial),
``failover_summary.csv`` and ``failover.md``.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import random
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"
sys.path.insert(0, str(ROOT))

LINE = re.compile(rb"^i=(\d+) t=(\d+)$")
LIVE_MS = re.compile(r"\(([\d.]+) ms from detection to live\)")


def tft_cmd() -> list[str]:
    exe = Path(sys.executable).parent / "tft"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "tft_lab.cli"]


def proc_status(pid: int) -> dict[str, str]:
    try:
        with open(f"/proc/{pid}/status") as f:
            return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
    except OSError:
        return {}


def start_time(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return 1 << 62


def all_pids() -> list[int]:
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def find_replicas(tft_pid: int) -> dict[str, int]:
    """{'primary_sup', 'backup_sup', 'primary_prog', 'backup_prog'} as far as they exist.

    ``tft run`` (the coordinator) forks the backup's supervisor first, then the
    primary's; each supervisor is the tracer of its replica's program.
    """
    sups, traced = [], {}
    for pid in all_pids():
        st = proc_status(pid)
        if st.get("PPid") == str(tft_pid):
            sups.append(pid)
        tracer = int(st.get("TracerPid", "0") or 0)
        if tracer:
            traced.setdefault(tracer, []).append(pid)
    sups = [p for p in sups if p in traced]      # supervisors with a program under them
    sups.sort(key=lambda p: (start_time(p), p))
    out: dict[str, int] = {}
    if len(sups) == 2:
        out["backup_sup"], out["primary_sup"] = sups
        out["backup_prog"] = min(traced[sups[0]])
        out["primary_prog"] = min(traced[sups[1]])
    return out


def trial(args, ticker: str, heartbeat: float | None, victim: str, rng: random.Random,
          extra: list[str] = ()) -> dict:
    """One kill; ``extra``: more ``tft run`` options (benchmarks/arbiter.py: ``--arbiter URL``)."""
    cmd = [*tft_cmd(), "run", *extra]
    if heartbeat is not None:
        cmd += ["--heartbeat", str(heartbeat)]
    cmd += ["--", ticker, str(args.count), str(args.period)]
    if args.pin:
        cmd = ["taskset", "-c", "0", *cmd]
    lines: list[tuple[int, bytes]] = []
    err_chunks: list[bytes] = []
    got_first = threading.Event()
    t_start = time.monotonic_ns()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def read_out():
        for raw in p.stdout:
            lines.append((time.monotonic_ns(), raw.rstrip(b"\n")))
            got_first.set()

    def read_err():
        err_chunks.append(p.stderr.read())

    threads = [threading.Thread(target=read_out, daemon=True), threading.Thread(target=read_err, daemon=True)]
    for t in threads:
        t.start()
    row = dict(heartbeat=heartbeat if heartbeat is not None else 0.5, victim=victim)
    stopped = None
    try:
        if not got_first.wait(30):
            raise RuntimeError("no output within 30 s")
        time.sleep(rng.uniform(args.min_delay, args.max_delay))
        reps = find_replicas(p.pid)
        target = reps.get("primary_prog" if victim == "program" else "primary_sup")
        if target is None:
            row.update(error=f"replicas not found ({reps})")
        else:
            kill_ns = time.monotonic_ns()
            os.kill(target, signal.SIGSTOP if victim == "stop" else signal.SIGKILL)
            if victim == "stop":
                stopped = target
            row["kill_after_ms"] = (kill_ns - t_start) / 1e6
            row["lines_before_kill"] = sum(1 for ts, _ in lines if ts <= kill_ns)
            if stopped:
                # the backup has gone live once a line computed after the kill arrives
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and p.poll() is None:
                    if any(_t(l) > kill_ns for _, l in lines[-5:]):
                        break
                    time.sleep(0.005)
                os.kill(stopped, signal.SIGKILL)
                stopped = None
        p.wait(timeout=120)
    except Exception as e:  # a hang or a vanished process: record it, clean up
        row["error"] = f"{type(e).__name__}: {e}"
    finally:
        if stopped:
            try:
                os.kill(stopped, signal.SIGKILL)
            except OSError:
                pass
        if p.poll() is None:
            p.kill()
            p.wait()
        for t in threads:
            t.join(5)
    err = b"".join(err_chunks).decode(errors="replace")
    row["rc"] = p.returncode
    m = LIVE_MS.search(err)
    row["detect_to_live_ms"] = float(m.group(1)) if m else None
    row["failover"] = "failover" in err
    if "kill_after_ms" in row:
        after = [(ts, _t(l)) for ts, l in lines if _t(l) > kill_ns]
        row["kill_to_output_ms"] = (after[0][0] - kill_ns) / 1e6 if after else None
        # the user-visible stall: the longest gap between two line arrivals after the kill
        arr = [ts for ts, _ in lines]
        before = [ts for ts in arr if ts <= kill_ns]
        nxt = [ts for ts in arr if ts > kill_ns]
        row["stall_ms"] = (nxt[0] - before[-1]) / 1e6 if before and nxt else None
    seqs = [int(LINE.match(l).group(1)) for _, l in lines if LINE.match(l)]
    bad = [l for _, l in lines if not LINE.match(l)]
    dups = len(seqs) - len(set(seqs))
    missing = sorted(set(range(args.count)) - set(seqs))
    order_ok = all(b >= a for a, b in zip(seqs, seqs[1:])) or dups > 0
    row.update(lines=len(seqs), duplicates=dups, missing=len(missing), garbled=len(bad),
               output_ok=not missing and dups <= 1 and not bad and order_ok and p.returncode == 0)
    if not row["output_ok"] or not row["failover"]:
        row["stderr"] = err.strip().replace("\n", " | ")[:400]
    return row


def _t(line: bytes) -> int:
    m = LINE.match(line)
    return int(m.group(2)) if m else 0


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=20, help="trials per configuration (default 20)")
    ap.add_argument("--heartbeats", default="0.5,0.1", help="--heartbeat values (default 0.5,0.1)")
    ap.add_argument("--victims", default="supervisor,program,stop",
                    help="what to fail: supervisor (SIGKILL), program (SIGKILL), stop (SIGSTOP supervisor: "
                         "a silent host) (default all three)")
    ap.add_argument("--count", type=int, default=400, help="ticker lines (default 400)")
    ap.add_argument("--period", type=int, default=5, help="ticker period in ms (default 5)")
    ap.add_argument("--min-delay", type=float, default=0.1, help="earliest kill after the first line (s)")
    ap.add_argument("--max-delay", type=float, default=1.2, help="latest kill after the first line (s)")
    ap.add_argument("--pin", action="store_true", help="pin everything to CPU 0 (default: not pinned)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)

    import pandas as pd
    from tft_lab._build import compile_c

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ticker = str(compile_c(HERE / "ticker.c", out / "bin"))
    rng = random.Random(args.seed)
    heartbeats = [float(h) for h in args.heartbeats.split(",") if h]
    victims = [v for v in args.victims.split(",") if v]
    configs = [(h, v) for v in victims for h in heartbeats]
    t0 = time.monotonic()
    load_before = os.getloadavg()
    print(f"# tft failover: {args.trials} trials x {len(configs)} configurations, ticker {args.count} lines "
          f"every {args.period} ms, {'pinned to CPU 0' if args.pin else 'not pinned'}", flush=True)
    rows = []
    for i in range(args.trials):
        for h, v in configs:   # interleaved, like bench.py
            r = trial(args, ticker, h, v, rng)
            r["trial"] = i
            rows.append(r)
            if r.get("error") or not r["output_ok"] or not r["failover"]:
                print(f"#   ! trial {i} heartbeat {h} {v}: rc={r['rc']} failover={r['failover']} "
                      f"dups={r['duplicates']} missing={r['missing']} {r.get('error', '')} "
                      f"{r.get('stderr', '')[:300]}", flush=True)
        print(f"#   trial {i + 1}/{args.trials} done ({time.monotonic() - t0:.0f} s)", flush=True)

    df = pd.DataFrame(rows)
    df.to_csv(out / "failover.csv", index=False)

    summary = []
    for (v, h), g in df.groupby(["victim", "heartbeat"], sort=False):
        rec = dict(victim=v, heartbeat=h, trials=len(g), failovers=int(g["failover"].sum()),
                   output_ok=int(g["output_ok"].sum()), duplicated=int((g["duplicates"] > 0).sum()))
        for col in ("kill_to_output_ms", "detect_to_live_ms", "stall_ms"):
            xs = [x for x in g[col].dropna().tolist()] if col in g else []
            short = col.replace("_ms", "")
            if xs:
                rec.update({f"{short}_min": min(xs), f"{short}_median": statistics.median(xs),
                            f"{short}_p90": pct(xs, 0.9), f"{short}_max": max(xs)})
        summary.append(rec)
    s = pd.DataFrame(summary)
    s.to_csv(out / "failover_summary.csv", index=False)

    def f(r, k):
        v = r.get(k)
        return "" if v is None or v != v else f"{v:.1f}"

    lines = [f"Failover, {datetime.date.today().isoformat()}, {platform.node()}, {os.cpu_count()} CPUs, "
             f"kernel {platform.release()}; ticker line every {args.period} ms; kill at a random moment "
             f"{args.min_delay}-{args.max_delay} s after the first line; "
             f"{'pinned to CPU 0' if args.pin else 'not pinned'}; load average before/after "
             f"{load_before[0]:.1f}/{os.getloadavg()[0]:.1f}.", "",
             "| failure | heartbeat s | trials | failovers | output ok | dup line | "
             "kill→output ms min / median / p90 / max | detection→live ms min / median / p90 / max |",
             "|---|---:|---:|---:|---:|---:|---|---|"]
    names = {"supervisor": "SIGKILL primary supervisor", "program": "SIGKILL primary's program",
             "stop": "SIGSTOP primary supervisor (silent)"}
    for r in summary:
        lines.append(
            f"| {names.get(r['victim'], r['victim'])} | {r['heartbeat']} | {r['trials']} | {r['failovers']} | "
            f"{r['output_ok']} | {r['duplicated']} | "
            f"{f(r, 'kill_to_output_min')} / {f(r, 'kill_to_output_median')} / {f(r, 'kill_to_output_p90')} / "
            f"{f(r, 'kill_to_output_max')} | "
            f"{f(r, 'detect_to_live_min')} / {f(r, 'detect_to_live_median')} / {f(r, 'detect_to_live_p90')} / "
            f"{f(r, 'detect_to_live_max')} |")
    bad = df[(~df["output_ok"]) | (~df["failover"]) | df.get("error", pd.Series(index=df.index)).notna()]
    if len(bad):
        lines += ["", f"{len(bad)} trial(s) without a clean failover:", ""]
        for _, r in bad.iterrows():
            lines.append(f"- trial {r['trial']} {r['victim']} heartbeat {r['heartbeat']}: rc={r['rc']} "
                         f"failover={r['failover']} lines={r['lines']} dups={r['duplicates']} "
                         f"missing={r['missing']} {r.get('error') if isinstance(r.get('error'), str) else ''} "
                         f"{(r.get('stderr') or '')[:240] if isinstance(r.get('stderr'), str) else ''}")
    text = "\n".join(lines)
    print()
    print(text)
    (out / "failover.md").write_text(text + "\n")
    print(f"\nwrote {out / 'failover.csv'} ({time.monotonic() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
