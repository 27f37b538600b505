"""Crash-point sweeps: fail a replica at every chosen point of a run, and judge each run.

``tft sweep`` (and :func:`sweep` from Python) first runs the program once under
``tft run`` without a fault: that *reference* run counts the victim replica's
intercepted calls, which are the crash points, and is the yardstick.  Then it
runs ``tft run --fault VICTIM@N`` for every chosen N, in parallel (a local pool,
or the workers of a Dask cluster), each in a folder of its own, and returns one
row per point (:data:`COLUMNS`).

A point is ``masked`` when the world could not tell: the program's status is the
reference's, its stdout has as many distinct lines with at most one repeated
right after itself (the uncertain output of a failover), and either the user's
checker passes or, without one, the output and the files it wrote in its folder
equal the reference's.  Otherwise it is ``lost output``, ``duplicated output``,
``diverged``, ``hung`` or ``error`` (``tft run`` itself failed).  A sweep *fails*
when any point is not masked or fails its check.

    >>> df = tft_lab.sweep(["./chain", "40"], at="every", check="./check_chain.py")
    >>> df.groupby("outcome").size()
"""
from __future__ import annotations

import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from typing import Callable

import pandas as pd

from ..errors import TftError
from .point import OUTCOMES, POINT_ENV, Plan, Reference, collapse, run_tft
from .pool import DaskPool, LocalPool

__all__ = ["sweep", "parse_at", "reference", "failed", "write_table", "summary", "COLUMNS", "OUTCOMES", "POINT_ENV"]

#: The table's columns, one row per crash point.
COLUMNS = {
    "point": "the victim failed on entry to its N-th intercepted call (counted from 1, all its processes)",
    "seq": "that call's seq in the reference run's trace (its process's own count: N - 1 with one process)",
    "syscall": "the call at that point in the reference run",
    "cls": "its replication class (input, output, local...)",
    "outcome": "masked, lost output, duplicated output, diverged, hung or error",
    "run_outcome": "tft run's own outcome: completed, failover, backup-lost, failed, refused",
    "returncode": "the exit status tft run reported",
    "lines": "distinct lines on stdout (a line repeated right after itself counts once)",
    "duplicates": "lines repeated right after themselves (at most one per failover is allowed)",
    "failover_ms": "primary failure detected -> backup live, milliseconds (failovers only)",
    "wall_s": "the point's tft run, start to end, seconds",
    "check_ok": "the checker passed (without --check: output and files equal the reference's)",
    "victim": "the replica failed: primary or backup",
    "commit": "the output rule of the run",
    "epoch": "the epoch length of the run",
    "worker": "where the point ran (local, or the Dask worker's address)",
    "note": "why the outcome is not masked, in one line",
}


def parse_at(spec: str, calls: int) -> list[int]:
    """The crash points ``spec`` chooses among calls 1..``calls``.

    ``every`` (all), ``every:S`` (1, 1+S, ... and the last), ``sample:K`` (K points
    drawn at random with a fixed seed, so a sweep can be repeated), ``N,M,...``.
    ValueError for a malformed spec or a point past the last call (it would never fire).
    """
    spec = spec.strip()
    if calls < 1:
        raise ValueError("the reference run made no intercepted call: there is no crash point")
    if spec == "every":
        return list(range(1, calls + 1))
    kind, _, arg = spec.partition(":")
    if kind in ("every", "sample") and arg.isdigit() and int(arg) >= 1:
        k = int(arg)
        if kind == "every":
            return sorted(set(range(1, calls + 1, k)) | {calls})
        return sorted(random.Random(0).sample(range(1, calls + 1), min(k, calls)))
    try:
        points = sorted({int(p) for p in spec.split(",") if p.strip()})
    except ValueError:
        raise ValueError(f"bad --at {spec!r}: use every, every:S, sample:K or N,M,...") from None
    if not points or points[0] < 1:
        raise ValueError(f"bad --at {spec!r}: points are counted from 1")
    if points[-1] > calls:
        raise ValueError(f"--at {points[-1]}: the reference run made only {calls} intercepted calls")
    return points


def _absolute(argv: list[str]) -> list[str]:
    """``argv`` as a point runs it (in a folder of its own): the program by absolute path, and every
    argument that names an existing file here too; other relative names stay the point's own."""
    from .._backend.ptrace import find_program

    out = [find_program(argv)]
    for a in argv[1:]:
        out.append(os.path.abspath(a) if "{port}" not in a and os.path.isfile(a) else a)
    return out


def reference(plan: Plan) -> Reference:
    """The fault-free run: its output, files, status and the replicas' calls.

    Without a checker the program is run twice and must give the same output both
    times (a comparison with a non-deterministic reference would judge nothing);
    with one, the checker must pass on it.  TftError otherwise, before any point runs.
    """
    from ..trace import event_file, load

    for attempt in (1, 2):
        events = tempfile.mkdtemp(prefix="tft-sweep-ref-")
        try:
            ran = run_tft(plan, 0, keep_events=events)
            df = load([event_file(events, r) for r in ("primary", "backup")])
        finally:
            shutil.rmtree(events, ignore_errors=True)
        if ran.result.get("outcome") == "completed" or ran.timed_out or attempt == 2:
            break
        # A loaded machine can make a replica miss its heartbeats and the run fail spuriously:
        # one more try, said aloud, before a whole sweep is refused for it.
        print(f"tft: sweep: the reference run ended {ran.result.get('outcome') or 'with no result'}; "
              "trying it once more", file=sys.stderr)
    if ran.timed_out or ran.result.get("outcome") != "completed":
        why = ran.stderr.decode(errors="replace").strip().splitlines()
        raise TftError(f"the fault-free reference run did not complete ({ran.result.get('outcome') or 'no result'}"
                       f"{', hung' if ran.timed_out else ''}): {why[-1][:200] if why else 'no message'}")
    calls = {}
    for replica in ("primary", "backup"):
        # in the order the supervisor stopped them: a fault counts calls over all the processes,
        # while seq counts each process's own
        rows = df[(df["replica"] == replica) & (df["kind"] == "syscall")].sort_values("t_ns", kind="stable")
        calls[replica] = tuple(zip(rows["seq"].astype(int), rows["syscall"].astype(str), rows["cls"].astype(str)))
    lines = tuple(collapse(ran.stdout.splitlines())[0])
    files = {k: tuple(collapse(v)[0]) for k, v in ran.files.items()}
    if plan.check is not None:
        if not ran.check_ok:   # run_tft ran it, in the run's folder
            raise TftError(f"the checker fails on the fault-free reference run ({ran.check_note}): "
                           "fix the checker")
    else:
        again = run_tft(plan, 0)
        if tuple(collapse(again.stdout.splitlines())[0]) != lines or \
                {k: tuple(collapse(v)[0]) for k, v in again.files.items()} != files:
            raise TftError("the program's output differs between two fault-free runs: it is not deterministic, "
                           "so give a checker (--check CMD) that judges one run's output")
    return Reference(ran.returncode, lines, files, calls, ran.wall_s)


class StderrProgress:
    """Progress on stderr: points done, points per second, failures so far; one line at the end."""

    def __init__(self, stream=None, every_s: float = 2.0):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.every_s, self.last = every_s, 0.0

    def __call__(self, done: int, total: int, failed: int, rate: float) -> None:
        now = time.monotonic()
        if done < total and not self.tty and now - self.last < self.every_s:
            return
        self.last = now
        text = f"tft: sweep: {done}/{total} points, {rate:.2f} points/s, {failed} failed"
        self.stream.write(("\r" + text + ("\n" if done == total else "")) if self.tty else text + "\n")
        self.stream.flush()


def _notebook_bar() -> Callable | None:
    """A progress bar widget in a notebook; None elsewhere."""
    try:
        from IPython import get_ipython

        if get_ipython() is None:
            return None
        import ipywidgets as w
        from IPython.display import display
    except ImportError:
        return None
    bar, label = w.IntProgress(min=0, max=1, description="sweep"), w.HTML()
    display(w.HBox([bar, label]))

    def show(done: int, total: int, failed: int, rate: float) -> None:
        bar.max, bar.value = total, done
        bar.bar_style = "danger" if failed else ("success" if done == total else "")
        label.value = f"<code>{done}/{total} points, {rate:.2f}/s, {failed} failed</code>"

    return show


def _as_list(value, kind) -> list:
    if isinstance(value, str) and "," in value:
        return [kind(v) for v in value.split(",")]
    return [kind(v) for v in value] if isinstance(value, (list, tuple)) else [kind(value)]


def sweep(argv, *, at: str = "every", victim: str = "primary", commit="output", epoch=64,
          check: str | Callable[[str], bool] | None = None, workers: int | None = None, cluster: str | None = None,
          timeout: float | None = None, heartbeat: float = 0.5, progress=True,
          out: str | None = None) -> pd.DataFrame:
    """Fail ``victim`` at every point ``at`` chooses (:func:`parse_at`); one row per point (:data:`COLUMNS`).

    ``commit`` and ``epoch`` may be lists (or ``"output,none"``): every combination is
    swept, each with its own reference run.  ``check``: a shell command given the run's
    stdout on its stdin, in the point's folder, with ``TFT_SWEEP_POINT`` set (passes if it
    exits 0), or ``f(stdout) -> bool``.  ``workers``: the local pool's size (default: the
    CPUs); ``cluster``: a Dask scheduler's ``tcp://HOST:PORT`` instead.  ``timeout``: a
    point running longer is ``hung`` (default: 10 times the reference run, at least 30 s).
    ``heartbeat``: ``tft run --heartbeat`` for every run.
    ``progress``: True (a bar in a notebook, text on stderr elsewhere), False, or
    ``f(done, total, failed, points_per_s)``.  ``out``: also write the table there
    (:func:`write_table`).  The frame's ``attrs`` say which back end ran it and what the
    reference runs did.  Raises TftError / ValueError before any point runs for bad input;
    Ctrl-C stops every point and removes every folder before KeyboardInterrupt goes on.
    """
    argv = _absolute(list(argv))
    if victim not in ("primary", "backup"):
        raise ValueError(f"bad victim {victim!r}: primary or backup")
    commits, epochs = _as_list(commit, str), _as_list(epoch, int)
    for c in commits:
        if c not in ("output", "epoch", "none"):
            raise ValueError(f"bad commit policy {c!r}: output, epoch or none")
    if heartbeat <= 0:
        raise ValueError("--heartbeat must be positive")
    if any(e < 1 for e in epochs):
        raise ValueError("--epoch must be at least 1")
    if callable(progress):
        show = progress
    elif progress:
        show = _notebook_bar() or StderrProgress()
    else:
        show = None
    pool = DaskPool(cluster) if cluster else LocalPool(workers)
    try:
        if isinstance(pool, DaskPool):
            from .point import file_digests

            paths = [a for a in argv if os.path.isabs(a) and os.path.isfile(a)]
            pool.check_files(file_digests(paths))
        frames, refs = [], []
        sweep_id = uuid.uuid4().hex
        for c in commits:
            for e in epochs:
                # the reference has no yardstick yet: a generous limit, only against a program that never ends
                plan = Plan(tuple(argv), victim, c, e, check, timeout or 600.0, heartbeat, sweep_id)
                ref = reference(plan)
                if timeout is None:
                    plan = Plan(tuple(argv), victim, c, e, check, max(30.0, 10 * ref.wall_s), heartbeat, sweep_id)
                points = parse_at(at, len(ref.calls[victim]))
                refs.append(dict(commit=c, epoch=e, returncode=ref.returncode, lines=len(ref.lines),
                                 primary_calls=len(ref.calls["primary"]), backup_calls=len(ref.calls["backup"]),
                                 wall_s=round(ref.wall_s, 4)))
                frames.append(_sweep_one(pool, plan, ref, points, show))
    finally:
        if isinstance(pool, DaskPool):
            pool.close()
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(COLUMNS))
    df.attrs.update(backend=pool.describe(), reference=refs, seconds=sum(f.attrs["seconds"] for f in frames))
    if out:
        write_table(df, out)
    return df


def _sweep_one(pool, plan: Plan, ref: Reference, points: list[int], show) -> pd.DataFrame:
    started, failed, done = time.monotonic(), 0, 0

    def on_row(row: dict) -> None:
        nonlocal failed, done
        done += 1
        failed += row["outcome"] != "masked" or not row["check_ok"]
        if show:
            show(done, len(points), failed, done / max(time.monotonic() - started, 1e-9))

    rows = pool.run(plan, ref, points, on_row)
    df = pd.DataFrame(rows, columns=list(COLUMNS)).sort_values("point", ignore_index=True)
    df["outcome"] = pd.Categorical(df["outcome"], categories=OUTCOMES)
    df.attrs["seconds"] = time.monotonic() - started
    return df


def failed(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of points that failed: not masked, or their check failed."""
    return df[(df["outcome"] != "masked") | ~df["check_ok"].astype(bool)]


def write_table(df: pd.DataFrame, path: str) -> str:
    """Write the table to ``path`` (mode 0600): parquet, or CSV for a ``.csv`` name or without
    pyarrow (then beside it as ``NAME.csv``, said on stderr).  Returns the path written."""
    if not path.endswith(".csv"):
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            path = os.path.splitext(path)[0] + ".csv"
            print(f"tft: sweep: pyarrow is not installed, so the table goes to {path} (CSV)", file=sys.stderr)
    from ..trace import save

    save(df, path)
    return path


def summary(df: pd.DataFrame) -> str:
    """A few lines: outcomes, check failures, the points that failed, points per second."""
    n = len(df)
    counts = df["outcome"].astype(str).value_counts()
    parts = [f"{counts.get(o, 0)} {o}" for o in OUTCOMES if counts.get(o, 0)]
    bad = failed(df)
    seconds = df.attrs.get("seconds") or 0
    text = [f"tft: sweep: {n} points on {df.attrs.get('backend', '?')} in {seconds:.1f} s "
            f"({n / seconds if seconds else 0:.2f} points/s): {', '.join(parts) or 'nothing ran'}; "
            f"{int((~df['check_ok'].astype(bool)).sum())} failed the check"]
    for _, r in bad.head(10).iterrows():
        text.append(f"tft: sweep: FAILED point {r['point']} ({r['syscall']}, {r['victim']}, {r['commit']}, "
                    f"epoch {r['epoch']}): {r['outcome']}: {r['note']}")
    if len(bad) > 10:
        text.append(f"tft: sweep: ... and {len(bad) - 10} more failed points")
    return "\n".join(text)
