"""Stepping through a trace: its logical events (*steps*) and what one step shows.

Pure functions over the DataFrames of :func:`tft_lab.trace.to_dataframe`,
shared by the recorded-trace stepper and the live stepper
(:mod:`tft_lab.widgets`), which only add widgets around them:

- :func:`step_table` turns a trace (one row per event per replica) into steps
  (one row per logical event, pointing at each replica's row);
- :func:`deferrals` pairs each signal's arrival with its delivery;
- :func:`describe_step` gathers what one step shows, :func:`render_step`
  turns that into HTML.

Calls are written strace-style by :mod:`tft_lab.strace` (:func:`format_call`,
:func:`format_result`, re-exported here).
"""
from __future__ import annotations

import html
from typing import Iterable

import pandas as pd

from .strace import format_call, format_result
from .trace import REPLICAS

__all__ = ["ALL", "step_table", "deferrals", "schedule", "describe_step", "render_step", "representative",
           "format_call", "format_result"]

#: The filter value meaning "every replica" (or every class).
ALL = "all"

#: Order of the events that share a (pid, seq): the call itself, then what
#: happened right after it returned.
_KIND_RANK = {"syscall": 0, "exec": 1, "rdtsc": 2, "arrived": 3, "delivered": 4, "exit": 5}


def _rank(kind: str, signal: str) -> int:
    return _KIND_RANK.get(signal if kind == "signal" else kind, 6)


def step_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per logical event of a trace, in the order the program met them.

    An event seen by several replicas (the same call at the same ``(pid, tid,
    seq)``: seqs count each thread's calls) is one step. Columns: ``pid, tid,
    seq, kind, syscall, rank, nth`` (the key), ``t_key`` (the sort time) and ``row_<replica>`` for each replica in
    :data:`tft_lab.trace.REPLICAS`: the positional index (``df.iloc``) of that
    replica's row, ``<NA>`` if it has none. Steps are ordered by the clock of
    the first replica present among primary, tracer, backup; an event that
    replica lacks follows the one before it in the same process.
    """
    d = pd.DataFrame({
        "replica": df["replica"].astype(object).to_numpy(),
        "pid": df["pid"].to_numpy(),
        "tid": (df["tid"] if "tid" in df else df["pid"]).to_numpy(),
        "seq": df["seq"].to_numpy(),
        "kind": df["kind"].astype(object).to_numpy(),
        "syscall": df["syscall"].astype(object).to_numpy(),
        "signal": df["signal"].astype(object).to_numpy(),
        "t_ns": df["t_ns"].to_numpy(),
    })
    d["row"] = range(len(d))
    d["rank"] = [_rank(k, s) for k, s in zip(d["kind"], d["signal"])]
    key = ["pid", "tid", "seq", "rank", "syscall"]
    d["nth"] = d.groupby(["replica", *key], sort=False).cumcount()
    key.append("nth")
    present = set(d["replica"])
    ref = next((r for r in ("primary", "tracer", "backup") if r in present), None)
    wide = d.pivot_table(index=key, columns="replica", values="row", aggfunc="first")
    steps = wide.reset_index()
    steps.columns.name = None
    index = pd.MultiIndex.from_frame(steps[key])
    first = d.drop_duplicates(key).set_index(key)
    steps["kind"] = first["kind"].reindex(index).to_numpy()
    t_ref = d[d["replica"] == ref].drop_duplicates(key).set_index(key)["t_ns"]
    steps["t_key"] = t_ref.reindex(index).to_numpy()
    steps["own_t"] = first["t_ns"].reindex(index).to_numpy()
    steps = steps.sort_values(["pid", "tid", "seq", "rank", "nth"], kind="stable")
    # An event the reference replica lacks follows the one before it in its
    # thread; a thread it never saw at all goes by its own replica's clock.
    steps["t_key"] = steps.groupby(["pid", "tid"])["t_key"].ffill().fillna(steps["own_t"])
    steps = steps.sort_values(["t_key", "pid", "tid", "seq", "rank", "nth"], kind="stable").reset_index(drop=True)
    for r in REPLICAS:
        steps[f"row_{r}"] = (steps[r] if r in steps else pd.Series(pd.NA, index=steps.index)).astype("Int64")
    return steps[["pid", "tid", "seq", "kind", "syscall", "rank", "nth", "t_key", *[f"row_{r}" for r in REPLICAS]]]



def deferrals(df: pd.DataFrame) -> pd.DataFrame:
    """Pair each signal's arrival with its delivery, per replica and pid.

    Arrivals and deliveries of one signal are matched first in, first out; a
    delivery is matched only to an arrival at or before its seq. Returns one
    row per arrival or unmatched delivery, with columns ``replica, pid,
    signal, arrival_seq, delivery_seq, arrival_t_ns, delivery_t_ns,
    deferral_calls, deferral_ns``; the delivery columns are ``<NA>`` for a
    signal still pending (at the end of the trace or at a failover), the
    arrival columns for a delivery without arrival (a backup raises a
    signal at the seq the log names: it never saw it arrive).
    """
    cols = ["replica", "pid", "signal", "arrival_seq", "delivery_seq", "arrival_t_ns", "delivery_t_ns"]
    sig = df[df["kind"] == "signal"]
    rows: list[dict] = []
    if "tid" not in sig:
        sig = sig.assign(tid=sig["pid"])
    for (replica, pid, tid, name), g in sig.groupby(["replica", "pid", "tid", "syscall"], observed=True, sort=True):
        g = g.sort_values(["seq", "t_ns"], kind="stable")
        # Only arrivals that were held back wait for a delivery: a backup's own (dropped)
        # signals and ones merged into a signal already held back never get one.
        pending = [r for r in g.itertuples() if r.signal == "arrived" and r.action == "deferred"]
        for d in (r for r in g.itertuples() if r.signal == "delivered"):
            match = next((a for a in pending if a.seq <= d.seq), None)
            if match is not None:
                pending.remove(match)
            rows.append(
                dict(
                    replica=replica, pid=pid, signal=name,
                    arrival_seq=None if match is None else match.seq,
                    delivery_seq=d.seq,
                    arrival_t_ns=None if match is None else match.t_ns,
                    delivery_t_ns=d.t_ns,
                )
            )
        rows.extend(
            dict(replica=replica, pid=pid, signal=name, arrival_seq=a.seq, delivery_seq=None,
                 arrival_t_ns=a.t_ns, delivery_t_ns=None)
            for a in pending
        )
    out = pd.DataFrame(rows, columns=cols)
    out["replica"] = out["replica"].astype(object).astype("string")
    out["signal"] = out["signal"].astype(object).astype("string")
    for col in cols[1:2] + cols[3:]:
        out[col] = out[col].astype("Int64")
    out["deferral_calls"] = out["delivery_seq"] - out["arrival_seq"]
    out["deferral_ns"] = out["delivery_t_ns"] - out["arrival_t_ns"]
    out["_replica_rank"] = out["replica"].map({r: i for i, r in enumerate(REPLICAS)})
    out = out.sort_values(["_replica_rank", "pid", "arrival_t_ns", "delivery_t_ns"], kind="stable",
                          na_position="last")
    return out.drop(columns="_replica_rank").reset_index(drop=True)


def schedule(df: pd.DataFrame, replica: str = "primary", pid: int | None = None) -> pd.DataFrame:
    """The turns the threads of one process took, in the order they ran.

    One thread of a process runs at a time, until it gives way at one of its own calls
    (a ``switch`` row: it blocks in the call, reaches an epoch boundary, or exits).  A turn
    is one thread's stretch between two switches.  ``pid``: the process (default: the one
    whose threads gave way most often, else the one with the most threads); the processes
    scheduled with it (they share memory: their switch rows hand over to each other's
    threads) are in the turns too, and their calls count with its calls.  Columns: ``turn``, ``tid``, ``first_seq`` and ``last_seq`` (the
    thread's calls in the turn, by its own seq), ``calls``, ``start`` and ``end`` (the
    process's calls before the turn and after it: a position both replicas share),
    ``ended_by`` (``block``, ``epoch``, ``exit``, or ``end`` for the last turn), ``blocked_in``
    (the call the thread blocked in, for ``block``) and ``next_tid`` (who ran next).
    """
    cols = ["turn", "tid", "first_seq", "last_seq", "calls", "start", "end", "ended_by", "blocked_in", "next_tid"]
    d = df[df["replica"] == replica] if "replica" in df else df
    if "tid" not in d or d.empty:
        return pd.DataFrame(columns=cols)
    switches = d[d["kind"] == "switch"]
    if pid is None:
        pid = int(switches["pid"].mode().iloc[0] if len(switches) else d.groupby("pid")["tid"].nunique().idxmax())
    d = d[d["pid"].isin(_scheduled_with(d, switches, pid))].sort_values("t_ns", kind="stable")
    calls = d[d["kind"] == "syscall"]
    name_of = {(int(t), int(q)): str(n) for t, q, n in zip(calls["tid"], calls["seq"], calls["syscall"])}
    last_of = calls.groupby("tid")["seq"].max().astype(int).to_dict()
    done: dict[int, int] = {}     # tid -> the last seq of its last turn
    rows, pos = [], 0

    def turn(tid: int, last: int, ended_by: str, blocked_in: str, next_tid) -> None:
        nonlocal pos
        first = done.get(tid, -1) + 1
        n = max(min(last, last_of.get(tid, -1)) - first + 1, 0)   # an exit's switch follows its last call
        rows.append(dict(tid=tid, first_seq=first, last_seq=first + n - 1, calls=n, start=pos, end=pos + n,
                         ended_by=ended_by, blocked_in=blocked_in, next_tid=next_tid))
        pos += n
        done[tid] = last

    for sw in d[d["kind"] == "switch"].itertuples():
        tid, seq = int(sw.tid), int(sw.seq)
        turn(tid, seq, str(sw.syscall), name_of.get((tid, seq), "") if sw.syscall == "block" else "", int(sw.result))
    # What ran after the last switch (a thread woken when no other was left gets no switch row):
    # each thread's remaining calls, in the order the first of them was made.
    first_t = calls.groupby(["tid", "seq"])["t_ns"].min().to_dict()
    rest = [(first_t.get((t, done.get(t, -1) + 1), float("inf")), t) for t, last in last_of.items() if last > done.get(t, -1)]
    for _, tid in sorted(rest):
        turn(tid, last_of[tid], "end", "", pd.NA)
    out = pd.DataFrame(rows, columns=cols[1:])
    out.insert(0, "turn", range(len(out)))
    out["next_tid"] = out["next_tid"].astype("Int64")
    return out


def _scheduled_with(d: pd.DataFrame, switches: pd.DataFrame, pid: int) -> set[int]:
    """Process ``pid`` and those its schedule hands over to, and they to others (a switch
    row's ``tid`` gives way to the thread ``result``)."""
    pid_of = dict(zip(d["tid"].astype(int), d["pid"].astype(int)))
    edges = {(pid_of.get(int(t)), pid_of.get(int(n))) for t, n in zip(switches["tid"], switches["result"])}
    found, grown = {pid}, True
    while grown:
        grown = False
        for a, b in edges:
            if a is not None and b is not None and (a in found) != (b in found):
                found |= {a, b}
                grown = True
    return found


def representative(step: pd.Series, replica: str = ALL) -> int | None:
    """The trace row that stands for a step: the chosen replica's, else primary, tracer, backup."""
    order = [replica] if replica != ALL else ["primary", "tracer", "backup"]
    for r in order:
        v = step[f"row_{r}"]
        if not pd.isna(v):
            return int(v)
    return None


def describe_step(df: pd.DataFrame, step: pd.Series, replica: str = ALL,
                  pairs: pd.DataFrame | None = None, expect: Iterable[str] = ()) -> dict:
    """What the stepper shows for one step (a row of :func:`step_table`).

    Returns a dict: ``call`` (strace-style), ``row`` (the representative
    trace row as a dict), ``pid, seq, epoch, kind, cls``, ``replicas`` (for
    each replica that saw the event: action, result, t_ns, wait_ns),
    ``pending`` (signals that arrived and are not yet delivered at this
    point, with their arrival seq) and ``delivered`` (signal deliveries of
    this process in the same epoch, with their seq and replicas). ``pairs``
    is :func:`deferrals` of ``df`` (computed if not given).
    A replica in ``expect`` that has no row for the step is listed in
    ``replicas`` as None: it has not got there yet (a live backup lags).
    """
    i = representative(step, replica)
    row = df.iloc[i].to_dict()
    pid, seq, epoch = int(row["pid"]), int(row["seq"]), int(row["epoch"])
    per_replica = {}
    for r in REPLICAS:
        j = step[f"row_{r}"]
        if pd.isna(j):
            continue
        rr = df.iloc[int(j)]
        per_replica[r] = dict(action=str(rr["action"]), result=int(rr["result"]),
                              t_ns=int(rr["t_ns"]), wait_ns=int(rr["wait_ns"]))
    for r in expect:
        per_replica.setdefault(r, None)

    if pairs is None:
        pairs = deferrals(df)
    here = (seq, int(step["rank"]))
    pending = []
    for p in pairs[(pairs["pid"] == pid) & pairs["arrival_seq"].notna()].itertuples():
        arrived = (int(p.arrival_seq), _KIND_RANK["arrived"])
        delivered = (int(p.delivery_seq), _KIND_RANK["delivered"]) if not pd.isna(p.delivery_seq) else None
        if arrived <= here and (delivered is None or here < delivered):
            pending.append(dict(signal=str(p.signal), arrival_seq=int(p.arrival_seq),
                                delivery_seq=None if delivered is None else int(p.delivery_seq)))
    # The engine also records the pending signals on each call: trust it too.
    recorded = row.get("signal") if row.get("kind") != "signal" else ""
    for name in (s.strip() for s in (recorded or "").split(",") if isinstance(recorded, str)):
        if name and name not in {p["signal"] for p in pending}:
            pending.append(dict(signal=name, arrival_seq=None, delivery_seq=None))

    dl = df[(df["kind"] == "signal") & (df["signal"] == "delivered") & (df["pid"] == pid) & (df["epoch"] == epoch)]
    delivered = [
        dict(signal=str(name), seq=int(s), replicas=sorted(g["replica"].astype(str).unique()))
        for (name, s), g in dl.groupby([dl["syscall"].astype(object), "seq"], sort=True)
    ]
    return dict(call=format_call(row), row=row, pid=pid, tid=int(row.get("tid") or pid), seq=seq, epoch=epoch,
                kind=str(row["kind"]),
                cls=str(row["cls"]), replicas=per_replica, pending=pending, delivered=delivered)


def render_step(info: dict) -> str:
    """The HTML for one step as :func:`describe_step` describes it.

    A replica listed as None shows *not yet*; an optional ``boundary`` entry (a
    list of ``(signal, seq)``) adds the signals delivered at the epoch boundary
    just before this step (the live stepper's "To end of epoch" stops after it).
    """
    e = html.escape
    def wait(ns: int) -> str:
        return f"{ns / 1e3:.1f} µs" if ns else ""

    rows = "".join(
        f"<tr><td>{e(r)}</td><td><b>{e(v['action'])}</b></td>"
        f"<td>{e(format_result(info['row']['syscall'], v['result']))}</td>"
        f"<td>{v['t_ns'] / 1e6:.3f}</td><td>{wait(v['wait_ns'])}</td></tr>"
        if v is not None else
        f'<tr><td>{e(r)}</td><td><i style="color:#888">not yet</i></td><td></td><td></td><td></td></tr>'
        for r, v in info["replicas"].items()
    )
    if info["pending"]:
        pending = ", ".join(
            f"{e(p['signal'])}"
            + (f" (arrived after seq {p['arrival_seq']}" if p["arrival_seq"] is not None else " (")
            + (f"; delivered after seq {p['delivery_seq']})" if p["delivery_seq"] is not None
               else ("; not delivered yet)" if p["arrival_seq"] is not None else "recorded)"))
            for p in info["pending"]
        )
    else:
        pending = "none"
    delivered = ", ".join(
        f"{e(d['signal'])} after seq {d['seq']} ({', '.join(map(e, d['replicas']))})" for d in info["delivered"]
    ) or "none"
    return (
        '<div class="tft-step" style="font-size:13px;line-height:1.45">'
        f'<pre style="margin:4px 0;padding:6px;background:#f6f6f6;border-left:4px solid #1f77b4">'
        f"{e(info['call'])}</pre>"
        f"<div>pid <b>{info['pid']}</b> · "
        + (f"thread <b>{info['tid']}</b> · " if info.get("tid", info["pid"]) != info["pid"] else "")
        + f"seq <b>{info['seq']}</b> · epoch <b>{info['epoch']}</b> · "
        f"{e(info['kind'])} · class <b>{e(info['cls'])}</b></div>"
        '<table style="margin:4px 0"><tr><th>replica</th><th>action</th><th>result</th>'
        f"<th>t (ms)</th><th>commit wait</th></tr>{rows}</table>"
        f"<div>pending signals: {pending}</div>"
        f"<div>delivered in epoch {info['epoch']}: {delivered}</div>"
        + (f"<div>delivered at the boundary before epoch {info['epoch']}: "
           + ", ".join(f"{e(n)} after seq {q}" for n, q in info["boundary"]) + "</div>"
           if info.get("boundary") else "")
        + "</div>"
    )

