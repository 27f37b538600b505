"""The trace: one row per intercepted event, for either replica.

``TraceEvent`` is the single place where the trace schema is defined: its
field names are the DataFrame's column names (see :func:`to_dataframe`).
"""
from __future__ import annotations

from typing import Iterable, NamedTuple

#: Values of the ``kind`` column.
KINDS = ("syscall", "signal", "rdtsc", "exec", "exit", "failover")
#: Values of the ``replica`` column.
REPLICAS = ("primary", "backup", "tracer")
#: Values of the ``cls`` column (see :mod:`tft_lab.syscalls`).
CLASSES = ("local", "input", "identity", "output", "resource", "unsupported", "event")
#: Values of the ``action`` column: what this replica did with the event.
ACTIONS = (
    "ran",          # executed for real by this replica's kernel
    "logged",       # executed for real and its answer logged (primary/recorder)
    "emulated",     # not executed; result and out-buffers written from the log
    "standin",      # executed on a stand-in object so fd numbers match
    "injected",     # executed, then the primary's value injected (pids)
    "deferred",     # a signal held back to the next epoch boundary
    "delivered",    # a signal delivered to the program
    "merged",       # a standard signal that arrived while the same one was held back (as the kernel merges)
    "dropped",      # a signal that this replica's own kernel raised and the log did not
    "failed",       # refused (unsupported)
    "live",         # the backup went live here (kind "failover"), or ran this call live after it
)


class TraceEvent(NamedTuple):
    """One intercepted event as seen by one replica."""

    replica: str
    """``primary`` (recorder), ``backup`` (replayer) or ``tracer``."""
    pid: int
    """The pid as the primary saw it (the virtual pid, identical on both replicas)."""
    seq: int
    """Per-process count of intercepted system calls; a signal or rdtsc carries the seq it follows."""
    epoch: int
    """``seq // epoch_length``."""
    kind: str
    """One of :data:`KINDS`."""
    syscall: str
    """System call name (``signal``: the signal name, ``rdtsc``: the instruction)."""
    args: str
    """Arguments, formatted strace-style."""
    result: int
    """Return value as the program saw it (negative errno on failure)."""
    cls: str
    """Replication class, one of :data:`CLASSES`."""
    action: str
    """One of :data:`ACTIONS`."""
    signal: str
    """For ``signal`` rows: ``"arrived"`` / ``"delivered"``; else the pending signals, comma-separated."""
    t_ns: int
    """Nanoseconds since the replica's supervisor started."""
    wait_ns: int
    """Time spent waiting for the output-commit rule before this event (0 if none)."""


COLUMNS = TraceEvent._fields


def to_dataframe(events: Iterable[TraceEvent]):
    """Turn trace events into a pandas DataFrame with categorical dtypes where they fit."""
    import pandas as pd

    df = pd.DataFrame.from_records(list(events), columns=COLUMNS)
    for col, cats in (("replica", REPLICAS), ("kind", KINDS), ("cls", CLASSES), ("action", ACTIONS)):
        df[col] = pd.Categorical(df[col], categories=cats)
    df["syscall"] = df["syscall"].astype("category")
    for col in ("pid", "seq", "epoch", "result", "t_ns", "wait_ns"):
        df[col] = df[col].astype("int64")
    return df
