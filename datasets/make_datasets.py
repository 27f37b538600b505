#!/usr/bin/env python3
"""Regenerate the canned runs of ``datasets/`` with the real tools (needs ptrace).

    .venv/bin/python datasets/make_datasets.py            # all of them (about 2 minutes)
    .venv/bin/python datasets/make_datasets.py counter ids  # only these

Each dataset is one run made exactly as the course notebooks make it live:
its trace (``NAME.trace.parquet``, the DataFrame of :func:`tft_lab.trace.to_dataframe`),
for recordings its log (``NAME.log``), or a table (``NAME.csv``); and an entry in
``manifest.json`` with the command, exit status, outcome, the program's stdout and
stderr and what else the run showed. ``course.canned(NAME)`` in the notebooks
turns an entry back into a :class:`tft_lab.session.Run`.

The runs use a minimal environment (a log's header records the environment,
and nothing of this machine's belongs in a shipped file).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "notebooks"))

MINIMAL_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": os.environ.get("HOME", "/root")}


def _entry(run, name: str, *, kind: str, trace: bool = True, log: str | None = None, extra=None) -> dict:
    if trace:
        run.trace.to_parquet(HERE / f"{name}.trace.parquet", index=False)
    return dict(kind=kind, command=[str(c) for c in run.command], returncode=run.returncode,
                outcome=run.outcome, stdout=run.stdout, stderr=run.stderr, details=run.details,
                trace=f"{name}.trace.parquet" if trace else None, log=log, rows=len(run.trace),
                extra=extra or {})


def _record(name: str, argv, *, epoch: int = 64, keep_log: bool = True) -> dict:
    from tft_lab import session

    if keep_log:
        r = session.record([str(a) for a in argv], str(HERE / f"{name}.log"), epoch=epoch, progress=False,
                           timeout=120)
        return _entry(r, name, kind="record", log=f"{name}.log")
    with tempfile.TemporaryDirectory() as d:   # the log is not kept: nothing stays behind either
        r = session.record([str(a) for a in argv], os.path.join(d, "run.log"), epoch=epoch, progress=False,
                           timeout=120)
    return _entry(r, name, kind="record")


def _run(name: str, argv, **kw) -> dict:
    from tft_lab import session

    r = session.run([str(a) for a in argv], progress=False, timeout=120, **kw)
    return _entry(r, name, kind="run")


def _table(name: str, df, note: str) -> dict:
    df.to_csv(HERE / f"{name}.csv", index=False)
    return dict(kind="table", table=f"{name}.csv", note=note, rows=len(df))


def make(names: list[str] | None = None) -> dict:
    import course

    import tft_lab
    from tft_lab import session

    clocks = course.program("clocks")
    counter = course.example("counter")
    timer = course.program("timer_signals")
    writes = course.course_program("writes")
    loop = course.program("syscall_loop")
    makers = {
        # 01: where non-determinism comes from
        "clocks-1": lambda n: _record(n, [clocks]),
        "clocks-2": lambda n: _record(n, [clocks]),
        "py_nondet": lambda n: _record(n, [course.PYTHON, course.program("py_nondet")], keep_log=False),
        # 02: record and replay
        "counter": lambda n: _record(n, [counter, "5"]),
        "counter-replay": lambda n: _entry(session.replay(str(HERE / "counter.log"), progress=False), n,
                                           kind="replay", log="counter.log"),
        # 03: epochs and signals
        **{f"timer_signals-e{e}": (lambda n, e=e: _run(n, [timer, "3000"], epoch=e)) for e in (4, 16, 64, 256)},
        "spin": lambda n: _run(n, [course.course_program("spin"), "50000000"], epoch=16),
        # 04: output commit
        "writes-output": lambda n: _run(n, [writes, "1000"], commit="output", epoch=64),
        "writes-epoch": lambda n: _run(n, [writes, "1000"], commit="epoch", epoch=64),
        "writes-none": lambda n: _run(n, [writes, "1000"], commit="none", epoch=64),
        "writes-bench": lambda n: _table(n, course.bench({"writes 1000": [writes, "1000"]},
                                                         commits=("output", "epoch", "none"), epochs=(16, 256)),
                                         "course.bench(writes 1000): native, record, run x commit x epoch, 3 each"),
        # 05: failover and crash sweeps
        "counter-failover": lambda n: _run(n, [counter, "10"], epoch=16, fault=["primary@40"]),
        "counter-sweep": lambda n: _table(n, tft_lab.sweep([counter, "6"], at="every:3", epoch=16, workers=2,
                                                           check=course.chain_check_command(6), progress=False,
                                                           heartbeat=2.0),
                                          "tft sweep --at every:3 --epoch 16 --check 'course.py check-chain 6' "
                                          "-- counter 6"),
        "kv-sweep": lambda n: _table(n, tft_lab.sweep(course.kv_session(), at="sample:3", commit=["output", "none"],
                                                      epoch=[16, 256], check=course.kv_check_command(), workers=2,
                                                      progress=False, heartbeat=2.0),
                                     "tft_lab.sweep(course.kv_session(), at='sample:3', commit=[output, none], "
                                     "epoch=[16, 256], check=course.kv_check_command())"),
        "writes-duplicate": lambda n: _duplicate(n, writes),
        # 06: OS objects
        "ids": lambda n: _run(n, [course.program("ids")]),
        "counter-file": lambda n: _counter_file(n, counter),
        "kvserver-failover": lambda n: _kv(n),
        # 09: threads
        "thr_mutex": lambda n: _recorded_and_replayed(n, [course.program("thr_mutex"), "4"]),
        "thr_mutex-2": lambda n: _record(n, [course.program("thr_mutex"), "4"], keep_log=False),
        "thr_condvar": lambda n: _record(n, [course.program("thr_condvar")], keep_log=False),
        "spinner": lambda n: {**_record(n, [_spinner()], keep_log=False), "extra": {"refused": True}},
        # 07: measuring overhead
        "syscalls-bench": lambda n: _table(n, course.bench(
            {"getppid x20000": [loop, "20000", "getppid"], "clock x20000": [loop, "20000", "clock"]},
            modes=("native", "strace", "trace", "record", "run"), commits=("output", "none"), epochs=(16, 64, 256),
            repeats=3), "course.bench(syscall_loop 20000 getppid|clock): native, strace, tft trace, record, "
                        "run x (output, none) x (16, 64, 256), 3 each"),
        "floor-bench": lambda n: _table(n, course.floor_bench(), "benchmarks/bench.py --quick --reps 3 --workloads "
                                        "getppid,true: native, strace, the floor tracer, tft trace/record/replay/run"),
    }
    manifest_path = HERE / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    for name in names or list(makers):
        if name not in makers:
            raise SystemExit(f"make_datasets: no dataset called {name!r} (one of {', '.join(makers)})")
        print(f"making {name}...", flush=True)
        manifest[name] = makers[name](name)
        manifest.update(_ALSO)
        _ALSO.clear()
        manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


#: Entries a maker made besides its own (a replay of the recording it made).
_ALSO: dict[str, dict] = {}


def _recorded_and_replayed(name: str, argv) -> dict:
    """``name``: a recording (its log not kept); ``name-replay``: a replay of that same log."""
    from tft_lab import session

    with tempfile.TemporaryDirectory() as d:
        r = session.record([str(a) for a in argv], os.path.join(d, "run.log"), progress=False, timeout=120)
        _ALSO[f"{name}-replay"] = _entry(session.replay(r.log, progress=False, timeout=120), f"{name}-replay",
                                         kind="replay")
    return _entry(r, name, kind="record")


def _spinner() -> str:
    from tft_lab.testing import PROGRAMS, build_program

    return str(build_program(PROGRAMS / "unreplicable" / "spinner.c"))


def _counter_file(name: str, counter: str) -> dict:
    from tft_lab import session

    d = tempfile.mkdtemp(prefix="tft-ds-")
    path = os.path.join(d, "counter.out")
    r = session.run([counter, "3", path], progress=False, timeout=60)
    with open(path) as f:
        contents = f.read()
    shutil.rmtree(d)
    return _entry(r, name, kind="run", extra=dict(file=path, file_contents=contents))


def _duplicate(name: str, writes: str) -> dict:
    import course

    r, attempts = course.uncertain_output([writes, "20000"], commit="output")
    if r is None:
        raise SystemExit(f"make_datasets: no try repeated a line ({attempts}); run it again")
    return _entry(r, name, kind="run", extra=dict(attempts=attempts))


def _kv(name: str) -> dict:
    import course

    r, talk = course.kv_failover()
    return _entry(r, name, kind="run", extra=talk)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", help="datasets to make (default: all)")
    args = ap.parse_args(argv)
    os.environ.clear()
    os.environ.update(MINIMAL_ENV)
    os.chdir("/")
    make(args.names or None)
    total = sum(p.stat().st_size for p in HERE.iterdir() if p.is_file())
    print(f"datasets: {total / 1e6:.2f} MB in {HERE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
