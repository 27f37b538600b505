#!/usr/bin/env python3
"""Overhead of tft against native and strace, side by side in one run.

Not a test: these machines are noisy, so every mode is measured in the same
run, interleaved round-robin over R repetitions, and the median is reported
with its ratio to the native median of the same run.

    python benchmarks/bench.py             # full run, ~5 minutes on 2 vCPUs
    python benchmarks/bench.py --quick     # ~1 minute
    python benchmarks/bench.py --no-pin    # let the scheduler place tracer and tracee

Workloads: a syscall-heavy loop (getppid, and clock_gettime), CPython
start-up (``python3 -c pass``), a small file-heavy job, and ``true`` (an
empty program: the fixed start-up cost of each mode).

Modes: native; ``strace -f -o /dev/null``; ``tft trace -o /dev/null``;
``tft record --log`` at several ``--epoch`` lengths; ``tft replay``;
``tft run --backup none``; ``tft run --commit output|epoch|none``.

Everything (tracers, tracees, the backup) is pinned to CPU 0 with
``taskset -c 0`` unless ``--no-pin``.

Writes ``benchmarks/out/bench.csv`` (one row per workload and mode, medians;
its columns ``workload, mode, commit, epoch, seconds`` are what
``tft_lab.plots.overhead`` plots), ``bench_raw.csv`` (one row per
measurement), ``bench.md`` (the printed table) and ``bench_meta.json``.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PROGRAMS = ROOT / "tests" / "programs"
OUT = HERE / "out"

sys.path.insert(0, str(ROOT))

# stderr lines that mean a run did not measure what it claims to
BAD_STDERR = ("diverged", "backup failed", "no replica finished", "ALONE", "Traceback", "failover")


def tft_cmd() -> list[str]:
    exe = Path(sys.executable).parent / "tft"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("tft")
    return [found] if found else [sys.executable, "-m", "tft_lab.cli"]


def system_python() -> str:
    for p in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.path.exists(p):
            return p
    return shutil.which("python3") or sys.executable


@dataclass
class Mode:
    name: str            # mode column: native, strace, trace, record, replay, run, run --backup none
    commit: str = ""     # run's --commit, empty otherwise
    epoch: int = 0       # --epoch (0: not a tft-with-epochs mode)

    @property
    def label(self) -> str:
        s = self.name + (f" ({self.commit})" if self.commit else "")
        return s + (f" e={self.epoch}" if self.epoch else "")


@dataclass
class Workload:
    name: str
    argv: list[str]
    calls: int = 0                       # intercepted syscalls (primary) from a record's trace
    log_bytes: dict[int, int] = field(default_factory=dict)   # epoch -> log size of a record
    replay_log: str = ""


def modes(epochs: list[int], run_epochs: list[int], default_epoch: int = 64) -> list[Mode]:
    m = [Mode("native"), Mode("strace"), Mode("trace")]
    m += [Mode("record", "", e) for e in epochs]
    m.append(Mode("replay", "", default_epoch))
    m.append(Mode("run --backup none", "", default_epoch))
    for c in ("output", "epoch", "none"):
        m += [Mode("run", c, e) for e in run_epochs]
    return m


def command(mode: Mode, w: Workload, tft: list[str], scratch: Path) -> list[str]:
    if mode.name == "native":
        return list(w.argv)
    if mode.name == "strace":
        return ["strace", "-f", "-o", "/dev/null", *w.argv]
    if mode.name == "trace":
        return [*tft, "trace", "-o", "/dev/null", "--", *w.argv]
    if mode.name == "record":
        return [*tft, "record", "--log", str(scratch / f"{w.name}.e{mode.epoch}.log"), "--epoch", str(mode.epoch),
                "--", *w.argv]
    if mode.name == "replay":
        return [*tft, "replay", w.replay_log]
    if mode.name == "run --backup none":
        return [*tft, "run", "--backup", "none", "--epoch", str(mode.epoch), "--", *w.argv]
    if mode.name == "run":
        return [*tft, "run", "--commit", mode.commit, "--epoch", str(mode.epoch), "--", *w.argv]
    raise ValueError(mode.name)


def timed(cmd: list[str], pin: bool, cwd: str, timeout: float) -> tuple[float, int, str]:
    full = (["taskset", "-c", "0"] if pin else []) + cmd
    t0 = time.perf_counter()
    try:
        p = subprocess.run(full, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           cwd=cwd, timeout=timeout)
        rc, err = p.returncode, p.stderr.decode(errors="replace")
    except subprocess.TimeoutExpired as e:
        rc, err = -1, f"timeout after {timeout}s " + (e.stderr or b"").decode(errors="replace")
    return time.perf_counter() - t0, rc, err


def count_calls(w: Workload, tft: list[str], scratch: Path, cwd: str, epoch: int) -> None:
    """Record once (untimed) with --trace-out: intercepted syscalls of the primary, and the replay log."""
    import pandas as pd

    log = scratch / f"{w.name}.replay.log"
    csv = scratch / f"{w.name}.trace.csv"
    p = subprocess.run([*tft, "record", "--epoch", str(epoch), "--log", str(log), "--trace-out", str(csv),
                        "--", *w.argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=cwd)
    if p.returncode != 0:
        raise SystemExit(f"bench: recording {w.name} failed ({p.returncode}): {p.stderr.decode()[-500:]}")
    df = pd.read_csv(csv)
    w.calls = int(((df["kind"] == "syscall") & (df["replica"] == "primary")).sum())
    w.replay_log = str(log)
    w.log_bytes[epoch] = log.stat().st_size


def median_ok(rows: list[dict]) -> tuple[float, int]:
    ok = [r["seconds"] for r in rows if r["ok"]]
    return (statistics.median(ok) if ok else statistics.median(r["seconds"] for r in rows)), len(ok)


def fmt_bytes_rate(b: float | None) -> str:
    if b is None:
        return ""
    return f"{b / 1e6:.2f} MB/s"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=None, help="repetitions per (workload, mode); default 5 (3 with --quick)")
    ap.add_argument("--quick", action="store_true",
                    help="~1 minute: 3 repetitions, loop N=2000, no epoch sweep, no clock workload")
    ap.add_argument("--no-pin", action="store_true", help="do not pin to CPU 0 with taskset")
    ap.add_argument("--loop", type=int, default=None, help="iterations of the syscall loops (default 10000, 2000 quick)")
    ap.add_argument("--epochs", default=None, help="record's --epoch values (default 1,16,64,1024; 64 with --quick)")
    ap.add_argument("--run-epochs", default="64", help="tft run's --epoch values (default 64)")
    ap.add_argument("--workloads", default=None,
                    help="comma list of: getppid,clock,python,filejob,true (default all; no clock with --quick)")
    ap.add_argument("--out", default=str(OUT), help="directory for the CSVs (default benchmarks/out)")
    ap.add_argument("--timeout", type=float, default=180.0, help="per-run timeout in seconds")
    args = ap.parse_args(argv)

    from tft_lab._build import compile_c

    reps = args.reps or (3 if args.quick else 5)
    loop = args.loop or (2000 if args.quick else 10000)
    epochs = [int(x) for x in (args.epochs or ("64" if args.quick else "1,16,64,1024")).split(",") if x]
    run_epochs = [int(x) for x in args.run_epochs.split(",") if x]
    default_epoch = 64
    if default_epoch not in epochs:
        epochs.append(default_epoch)
        epochs.sort()
    pin = not args.no_pin
    if pin and shutil.which("taskset") is None:
        raise SystemExit("bench: taskset not found (util-linux); use --no-pin")
    if shutil.which("strace") is None:
        raise SystemExit("bench: strace not found (apt-get install strace)")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bindir = out / "bin"
    syscall_loop = str(compile_c(PROGRAMS / "syscall_loop.c", bindir))
    filejob = str(compile_c(PROGRAMS / "filejob.c", bindir))
    tft = tft_cmd()

    scratch = Path(tempfile.mkdtemp(prefix="tft-bench-"))
    jobdir = scratch / "filejob"
    jobdir.mkdir()
    all_w = {
        "getppid": Workload(f"syscall_loop getppid {loop}", [syscall_loop, str(loop), "getppid"]),
        "clock": Workload(f"syscall_loop clock {loop}", [syscall_loop, str(loop), "clock"]),
        "python": Workload("python3 -c pass", [system_python(), "-c", "pass"]),
        "filejob": Workload("filejob", [filejob, str(jobdir)]),
        "true": Workload("true", [shutil.which("true") or "/bin/true"]),
    }
    chosen = args.workloads.split(",") if args.workloads else [k for k in all_w if not (args.quick and k == "clock")]
    unknown = set(chosen) - set(all_w)
    if unknown:
        raise SystemExit(f"bench: unknown workload(s) {sorted(unknown)}; choose from {list(all_w)}")
    workloads = [all_w[k] for k in chosen]
    mode_list = modes(epochs, run_epochs, default_epoch)
    cwd = str(scratch)

    print(f"# tft benchmark: {reps} reps, {'pinned to CPU 0' if pin else 'not pinned'}, "
          f"{os.cpu_count()} CPUs, {datetime.datetime.now().isoformat(timespec='seconds')}", flush=True)
    for w in workloads:
        count_calls(w, tft, scratch, cwd, default_epoch)
        print(f"#   {w.name}: {w.calls} intercepted syscalls, log {w.log_bytes[default_epoch]} bytes at epoch "
              f"{default_epoch}", flush=True)

    pairs = [(w, m) for w in workloads for m in mode_list]
    raw: list[dict] = []
    t_start = time.monotonic()
    load_before = os.getloadavg()
    for rep in range(reps):
        # round-robin; the starting point rotates so no mode always runs right after another
        shift = (rep * len(pairs)) // reps
        for w, m in pairs[shift:] + pairs[:shift]:
            cmd = command(m, w, tft, scratch)
            secs, rc, err = timed(cmd, pin, cwd, args.timeout)
            for leftover in jobdir.iterdir():   # a filejob killed half-way leaves files behind
                leftover.unlink()
            bad = rc != 0 or any(s in err for s in BAD_STDERR)
            row = dict(workload=w.name, mode=m.name, commit=m.commit, epoch=m.epoch, rep=rep, seconds=secs,
                       rc=rc, ok=not bad, stderr=err.strip().replace("\n", " | ")[:300] if bad else "")
            if m.name == "record":
                log = scratch / f"{w.name}.e{m.epoch}.log"
                row["log_bytes"] = log.stat().st_size if log.exists() else None
            raw.append(row)
            if bad:
                print(f"#   ! rep {rep} {w.name} / {m.label}: rc={rc} {row['stderr'][:200]}", flush=True)
        print(f"#   rep {rep + 1}/{reps} done ({time.monotonic() - t_start:.0f} s)", flush=True)

    import pandas as pd

    rows = []
    true_w = all_w["true"] if "true" in chosen else None

    def med(wname: str, m: Mode) -> tuple[float, int]:
        rs = [r for r in raw if r["workload"] == wname and r["mode"] == m.name and r["commit"] == m.commit
              and r["epoch"] == m.epoch]
        return median_ok(rs)

    for w in workloads:
        native, _ = med(w.name, mode_list[0])
        for m in mode_list:
            secs, n_ok = med(w.name, m)
            us = None if m.name == "native" or not w.calls else (secs - native) / w.calls * 1e6
            net = None
            if true_w is not None and w is not true_w and m.name != "native":
                t_native, _ = med(true_w.name, mode_list[0])
                t_mode, _ = med(true_w.name, m)
                extra = w.calls - true_w.calls
                if extra > 0:
                    net = ((secs - native) - (t_mode - t_native)) / extra * 1e6
            log_bytes = None
            if m.name == "record":
                sizes = [r["log_bytes"] for r in raw if r["workload"] == w.name and r["mode"] == "record"
                         and r["epoch"] == m.epoch and r.get("log_bytes")]
                log_bytes = int(statistics.median(sizes)) if sizes else None
            elif m.name.startswith("run") and m.name != "run --backup none":
                log_bytes = w.log_bytes.get(m.epoch) or w.log_bytes.get(default_epoch)
            rows.append(dict(workload=w.name, mode=m.name, commit=m.commit, epoch=m.epoch, seconds=secs,
                             ratio=secs / native, us_per_call=us, us_per_call_net=net, calls=w.calls,
                             log_bytes=log_bytes, log_bytes_per_s=(log_bytes / secs) if log_bytes else None,
                             ok=n_ok, reps=reps))

    df = pd.DataFrame(rows)
    df.to_csv(out / "bench.csv", index=False)
    pd.DataFrame(raw).to_csv(out / "bench_raw.csv", index=False)

    lines = [f"Benchmark, {datetime.date.today().isoformat()}, {platform.node()}, {os.cpu_count()} CPUs, "
             f"{platform.machine()}, kernel {platform.release()}; {'pinned to CPU 0' if pin else 'not pinned'}; "
             f"median of {reps} interleaved reps; loop N={loop}; load average before/after "
             f"{load_before[0]:.1f}/{os.getloadavg()[0]:.1f}.", ""]
    for w in workloads:
        lines += [f"#### {w.name} ({w.calls} intercepted syscalls)", "",
                  "| mode | commit | epoch | median s | × native | µs/call | µs/call net | log bytes/s | ok |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in rows:
            if r["workload"] != w.name:
                continue
            f = lambda v, spec: "" if v is None or v != v else format(v, spec)
            lines.append(f"| {r['mode']} | {r['commit']} | {r['epoch'] or ''} | {r['seconds']:.3f} | "
                         f"{r['ratio']:.1f} | {f(r['us_per_call'], '.1f')} | {f(r['us_per_call_net'], '.1f')} | "
                         f"{fmt_bytes_rate(r['log_bytes_per_s'])} | {r['ok']}/{r['reps']} |")
        lines.append("")
    bad = [r for r in raw if not r["ok"]]
    if bad:
        lines.append(f"{len(bad)} run(s) failed or misbehaved (excluded from the medians when others succeeded):")
        lines.append("")
        for r in bad:
            lines.append(f"- {r['workload']} / {r['mode']} {r['commit']} e={r['epoch']} rep {r['rep']}: "
                         f"rc={r['rc']}: {r['stderr'][:240]}")
        lines.append("")
    text = "\n".join(lines)
    print()
    print(text)
    (out / "bench.md").write_text(text + "\n")
    (out / "bench_meta.json").write_text(json.dumps(dict(
        date=datetime.datetime.now().isoformat(timespec="seconds"), host=platform.node(), cpus=os.cpu_count(),
        kernel=platform.release(), pinned=pin, reps=reps, loop=loop, epochs=epochs, run_epochs=run_epochs,
        loadavg_before=load_before, loadavg_after=os.getloadavg(), wall_seconds=round(time.monotonic() - t_start, 1), tft=tft), indent=2) + "\n")
    shutil.rmtree(scratch, ignore_errors=True)
    print(f"wrote {out / 'bench.csv'} ({time.monotonic() - t_start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
