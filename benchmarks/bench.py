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
import compileall
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
    name: str            # mode column: native, strace, strace unpinned, floor emulate, floor exit, trace,
                         # record, replay, run, run --backup none; "@base" appended: the --baseline build
    commit: str = ""     # run's --commit, empty otherwise
    epoch: int = 0       # --epoch (0: not a tft-with-epochs mode)
    pin: bool = True     # False: never under taskset (strace unpinned), whatever --no-pin says

    @property
    def label(self) -> str:
        s = self.name + (f" ({self.commit})" if self.commit else "")
        return s + (f" e={self.epoch}" if self.epoch else "")


@dataclass
class Workload:
    name: str
    argv: list[str]
    calls: int = 0                       # intercepted syscalls (primary) from a record's trace
    trap_nr: int | None = None           # the one call the floor tracer traps (None: no floor rows)
    log_bytes: dict[int, int] = field(default_factory=dict)   # epoch -> log size of a record
    replay_log: str = ""


def modes(epochs: list[int], run_epochs: list[int], default_epoch: int = 64, pin: bool = True,
          baseline: bool = False, pure: bool = False) -> list[Mode]:
    m = [Mode("native"), Mode("strace")]
    if pin:
        m.append(Mode("strace unpinned", pin=False))
    m += [Mode("floor emulate"), Mode("floor exit"), Mode("trace")]
    m += [Mode("record", "", e) for e in epochs]
    m.append(Mode("replay", "", default_epoch))
    m.append(Mode("run --backup none", "", default_epoch))
    for c in ("output", "epoch", "none"):
        m += [Mode("run", c, e) for e in run_epochs]
    if baseline:   # the same tft modes (default epoch), from the baseline build, interleaved with them
        m += [Mode("record@base", "", default_epoch), Mode("replay@base", "", default_epoch),
              Mode("run --backup none@base", "", default_epoch), Mode("run@base", "output", default_epoch)]
    if pure:   # this build with TFT_PURE=1: its pure-Python path instead of the compiled core
        m += [Mode("record@pure", "", default_epoch), Mode("replay@pure", "", default_epoch),
              Mode("run --backup none@pure", "", default_epoch)]
    return m


def command(mode: Mode, w: Workload, tft: list[str], scratch: Path, floor: str = "") -> list[str] | None:
    """The command line of ``mode`` on ``w``; None where the mode does not apply (the floor
    tracer on a workload without one call to trap)."""
    if mode.name == "native":
        return list(w.argv)
    if mode.name.startswith("strace"):
        return ["strace", "-f", "-o", "/dev/null", *w.argv]
    if mode.name.startswith("floor"):
        return None if w.trap_nr is None else [floor, mode.name.split()[1], str(w.trap_nr), *w.argv]
    if mode.name.endswith(("@base", "@pure")):
        base, suffix = Mode(mode.name[:-5], mode.commit, mode.epoch), mode.name[-4:]
        cmd = command(base, w, tft, scratch, floor)
        return [c.replace(".log", f".{suffix}.log") if c.startswith(str(scratch)) and base.name == "record" else c
                for c in cmd]
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


def timed(cmd: list[str], pin: bool, cwd: str, timeout: float, env: dict | None = None) -> tuple[float, int, str]:
    full = (["taskset", "-c", "0"] if pin else []) + cmd
    t0 = time.perf_counter()
    try:
        p = subprocess.run(full, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           cwd=cwd, timeout=timeout, env=env)
        rc, err = p.returncode, p.stderr.decode(errors="replace")
    except subprocess.TimeoutExpired as e:
        rc, err = -1, f"timeout after {timeout}s " + (e.stderr or b"").decode(errors="replace")
    return time.perf_counter() - t0, rc, err


def count_calls(w: Workload, tft: list[str], scratch: Path, cwd: str, epoch: int, env: dict | None = None) -> None:
    """Record once (untimed) with --trace-out: intercepted syscalls of the primary, and the replay log."""
    import pandas as pd

    log = scratch / f"{w.name}.replay.log"
    csv = scratch / f"{w.name}.trace.csv"
    p = subprocess.run([*tft, "record", "--epoch", str(epoch), "--log", str(log), "--trace-out", str(csv),
                        "--", *w.argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=cwd, env=env)
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
    ap.add_argument("--baseline", metavar="REV",
                    help="also time record, replay and run of tft_lab as of git revision REV (modes '...@base'), "
                         "interleaved with this tree's: a before/after in one run")
    ap.add_argument("--pure", action="store_true",
                    help="also time record, replay and run --backup none of this tree with TFT_PURE=1 "
                         "(modes '...@pure': the pure-Python path instead of the compiled core)")
    args = ap.parse_args(argv)

    from tft_lab._build import compile_c
    from tft_lab._backend import BACKEND

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

    out = Path(args.out).resolve()   # the runs happen in a scratch folder
    out.mkdir(parents=True, exist_ok=True)
    bindir = out / "bin"
    syscall_loop = str(compile_c(PROGRAMS / "syscall_loop.c", bindir))
    filejob = str(compile_c(PROGRAMS / "filejob.c", bindir))
    floor = str(compile_c(HERE / "floor.c", bindir))
    tft = tft_cmd()

    scratch = Path(tempfile.mkdtemp(prefix="tft-bench-"))
    # Byte-compile both builds first: with PYTHONDONTWRITEBYTECODE set (as on our shared
    # machines) every tft command would otherwise compile its ~16 modules from source (~30 ms),
    # which no installed tft pays (pip compiles at install).
    compileall.compile_dir(str(ROOT / "tft_lab"), quiet=1)
    base_env = None
    if args.baseline:
        base = scratch / "baseline"
        base.mkdir()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.baseline, "tft_lab"], capture_output=True)
        if archive.returncode != 0:
            raise SystemExit(f"bench: git archive {args.baseline} failed: {archive.stderr.decode().strip()}")
        subprocess.run(["tar", "-x", "-C", str(base)], input=archive.stdout, check=True)
        compileall.compile_dir(str(base / "tft_lab"), quiet=1)
        # both builds through the same launcher, each first on sys.path
        tft = [sys.executable, "-m", "tft_lab.cli"]
        base_env = dict(os.environ, PYTHONPATH=str(base))
        this_env = dict(os.environ, PYTHONPATH=str(ROOT))
    else:
        this_env = None
    jobdir = scratch / "filejob"
    jobdir.mkdir()
    all_w = {
        "getppid": Workload(f"syscall_loop getppid {loop}", [syscall_loop, str(loop), "getppid"], trap_nr=110),
        "clock": Workload(f"syscall_loop clock {loop}", [syscall_loop, str(loop), "clock"], trap_nr=228),
        "python": Workload("python3 -c pass", [system_python(), "-c", "pass"]),
        "filejob": Workload("filejob", [filejob, str(jobdir)]),
        # the floor's fixed cost: it traps getppid, which true never calls
        "true": Workload("true", [shutil.which("true") or "/bin/true"], trap_nr=110),
    }
    chosen = args.workloads.split(",") if args.workloads else [k for k in all_w if not (args.quick and k == "clock")]
    unknown = set(chosen) - set(all_w)
    if unknown:
        raise SystemExit(f"bench: unknown workload(s) {sorted(unknown)}; choose from {list(all_w)}")
    workloads = [all_w[k] for k in chosen]
    mode_list = modes(epochs, run_epochs, default_epoch, pin=pin, baseline=bool(args.baseline), pure=args.pure)
    cwd = str(scratch)

    print(f"# tft benchmark: {reps} reps, {'pinned to CPU 0' if pin else 'not pinned'}, "
          f"{os.cpu_count()} CPUs, {datetime.datetime.now().isoformat(timespec='seconds')}", flush=True)
    for w in workloads:
        count_calls(w, tft, scratch, cwd, default_epoch, this_env)
        print(f"#   {w.name}: {w.calls} intercepted syscalls, log {w.log_bytes[default_epoch]} bytes at epoch "
              f"{default_epoch}", flush=True)

    pairs = [(w, m) for w in workloads for m in mode_list if command(m, w, tft, scratch, floor) is not None]
    raw: list[dict] = []
    t_start = time.monotonic()
    load_before = os.getloadavg()
    for rep in range(reps):
        # round-robin; the starting point rotates so no mode always runs right after another
        shift = (rep * len(pairs)) // reps
        for w, m in pairs[shift:] + pairs[:shift]:
            cmd = command(m, w, tft, scratch, floor)
            env = base_env if m.name.endswith("@base") else this_env
            if m.name.endswith("@pure"):
                env = dict(this_env or os.environ, TFT_PURE="1")
            secs, rc, err = timed(cmd, pin and m.pin, cwd, args.timeout, env)
            for leftover in jobdir.iterdir():   # a filejob killed half-way leaves files behind
                leftover.unlink()
            bad = rc != 0 or any(s in err for s in BAD_STDERR)
            row = dict(workload=w.name, mode=m.name, commit=m.commit, epoch=m.epoch, rep=rep, seconds=secs,
                       rc=rc, ok=not bad, stderr=err.strip().replace("\n", " | ")[:300] if bad else "")
            if m.name in ("record", "record@base", "record@pure"):
                log = scratch / f"{w.name}.e{m.epoch}{'.' + m.name[-4:] if m.name != 'record' else ''}.log"
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
            if not any(r["workload"] == w.name and r["mode"] == m.name for r in raw):
                continue   # not applicable (the floor tracer on a workload without its one call)
            secs, n_ok = med(w.name, m)
            us = None if m.name == "native" or not w.calls else (secs - native) / w.calls * 1e6
            net = None
            if true_w is not None and w is not true_w and m.name != "native":
                t_native, _ = med(true_w.name, mode_list[0])
                if not any(r["workload"] == true_w.name and r["mode"] == m.name for r in raw):
                    t_mode = t_native   # no fixed-cost row for this mode
                else:
                    t_mode, _ = med(true_w.name, m)
                extra = w.calls - true_w.calls
                if extra > 0:
                    net = ((secs - native) - (t_mode - t_native)) / extra * 1e6
            log_bytes = None
            if m.name in ("record", "record@base", "record@pure"):
                sizes = [r["log_bytes"] for r in raw if r["workload"] == w.name and r["mode"] == m.name
                         and r["epoch"] == m.epoch and r.get("log_bytes")]
                log_bytes = int(statistics.median(sizes)) if sizes else None
            elif m.name.startswith("run") and not m.name.startswith("run --backup none"):
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
             f"{load_before[0]:.1f}/{os.getloadavg()[0]:.1f}; this tree's per-stop core: {BACKEND}.", ""]
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
        loadavg_before=load_before, loadavg_after=os.getloadavg(), wall_seconds=round(time.monotonic() - t_start, 1),
        tft=tft, baseline=args.baseline), indent=2) + "\n")
    shutil.rmtree(scratch, ignore_errors=True)
    print(f"wrote {out / 'bench.csv'} ({time.monotonic() - t_start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
