"""The trace: one row per intercepted event, for either replica, and its stream.

``TraceEvent`` is the single place where the trace schema is defined: its
field names are the DataFrame's column names (see :func:`to_dataframe`).

While a supervisor runs, its events go to an *event stream*: a JSON-lines file
(``{replica}.trace.jsonl`` in a run's work directory, see :func:`event_file`),
one JSON list per event in :data:`COLUMNS` order, mode 0600.  The supervisor
writes it (:class:`EventWriter`) and flushes it at least every 0.2 s, so a
live view (:class:`EventFollower`) sees an event within that time and a
killed supervisor loses at most its last line, which readers skip.
:func:`load` reads finished streams into a DataFrame; :func:`save` writes a
DataFrame as parquet (or CSV).
"""
from __future__ import annotations

import json
import os
from typing import Iterable, NamedTuple

from .log import open_private

#: Values of the ``kind`` column.
KINDS = ("syscall", "signal", "rdtsc", "exec", "exit", "failover", "arbiter", "switch")
#: Values of the ``replica`` column.
REPLICAS = ("primary", "backup", "tracer")
#: Values of the ``cls`` column (see :mod:`tft_lab.syscalls`).
CLASSES = ("local", "input", "identity", "output", "resource", "unsupported", "event")
#: Values of the ``action`` column: what this replica did with the event.
ACTIONS = (
    "ran",          # executed for real by this replica's kernel
    "logged",       # executed for real and its answer logged (primary/recorder)
    "emulated",     # not executed; result and out-buffers written from the log
    "mapped",       # a file mmap that maps the logged content instead of the local file (replay)
    "standin",      # executed on a stand-in object so fd numbers match
    "injected",     # executed, then the primary's value injected (pids)
    "deferred",     # a signal held back to the next epoch boundary
    "delivered",    # a signal delivered to the program
    "merged",       # a standard signal that arrived while the same one was held back (as the kernel merges)
    "dropped",      # a signal that this replica's own kernel raised and the log did not
    "failed",       # refused (unsupported)
    "live",         # the backup went live here (kind "failover"), or ran this call live after it
    "won",          # this replica won its run's key in the arbiter (kind "arbiter"): it may be live
    "lost",         # another replica holds the key (kind "arbiter"): this backup stands down
    "fenced",       # this replica's lease ran out unrenewed (kind "arbiter"): it stops, no more output
    "switched",     # another thread of the process runs now (kind "switch")
)


class TraceEvent(NamedTuple):
    """One intercepted event as seen by one replica."""

    replica: str
    """``primary`` (recorder), ``backup`` (replayer) or ``tracer``."""
    pid: int
    """The pid as the primary saw it (the virtual pid, identical on both replicas)."""
    seq: int
    """Per-thread count of intercepted system calls (per process for a single-threaded one); a
    signal, rdtsc or switch carries the seq it follows."""
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
    tid: int = 0
    """The thread's id as the primary saw it (equal to ``pid`` for a process's first thread).
    A ``switch`` row is the thread that gives way: ``syscall`` says at which point (``block``,
    ``epoch``, ``exit``), ``result`` the thread that runs next."""


COLUMNS = TraceEvent._fields


def to_dataframe(events: Iterable[TraceEvent]):
    """Turn trace events into a pandas DataFrame with categorical dtypes where they fit."""
    import pandas as pd

    df = pd.DataFrame.from_records(list(events), columns=COLUMNS)
    for col, cats in (("replica", REPLICAS), ("kind", KINDS), ("cls", CLASSES), ("action", ACTIONS)):
        df[col] = pd.Categorical(df[col], categories=cats)
    df["syscall"] = df["syscall"].astype("category")
    for col in ("pid", "seq", "epoch", "result", "t_ns", "wait_ns", "tid"):
        df[col] = df[col].astype("int64")
    return df


# -- the event stream ------------------------------------------------------------------------

#: A streamed event is made visible to readers at most this long after it happened.
FLUSH_NS = 200_000_000


def event_file(workdir: str | os.PathLike, replica: str) -> str:
    """The event stream of ``replica``'s supervisor in a run's work directory."""
    return os.path.join(os.fspath(workdir), f"{replica}.trace.jsonl")


def _private(path: str, flags: int) -> int:
    """Open for ``open(opener=...)``: readable by its owner only, as a log (traces show a program's data)."""
    return open_private(path, flags)


class EventWriter:
    """Appends :class:`TraceEvent` s to a JSON-lines file (created or truncated, mode 0600).

    Writes are buffered; the file is flushed when an event comes more than
    :data:`FLUSH_NS` after the last flush, on :meth:`flush` and on
    :meth:`close`.  Used by one thread (the supervisor's).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        self._file = open(self.path, "w", opener=_private)
        self._flushed_ns = 0

    def write(self, ev: TraceEvent) -> None:
        """Append one event; ``ev.t_ns`` decides whether it is time to flush."""
        self._file.write(json.dumps(ev, separators=(",", ":")) + "\n")
        if ev.t_ns - self._flushed_ns > FLUSH_NS:
            self._file.flush()
            self._flushed_ns = ev.t_ns

    def flush(self) -> None:
        """Make every event written so far visible to readers."""
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class EventFollower:
    """Reads event streams that supervisors may still be appending to.

    Each :meth:`poll` returns the events completed since the last one; a line
    still being written is kept for the next poll, and a line that is not an
    event (the tail a killed supervisor left) is skipped.  A file that does not
    exist (yet) is read as empty.
    """

    def __init__(self, paths: Iterable[str | os.PathLike]) -> None:
        self.paths = [os.fspath(p) for p in paths]
        self._offsets = {p: 0 for p in self.paths}
        self._partial = {p: "" for p in self.paths}
        #: Every event read so far, in the order read (file by file within a poll).
        self.events: list[TraceEvent] = []

    def poll(self) -> list[TraceEvent]:
        new = []
        for p in self.paths:
            try:
                with open(p) as f:
                    f.seek(self._offsets[p])
                    chunk = f.read()
                    self._offsets[p] = f.tell()
            except OSError:
                continue
            lines = (self._partial[p] + chunk).split("\n")
            self._partial[p] = lines.pop()
            for line in lines:
                try:
                    new.append(TraceEvent(*json.loads(line)))
                except (ValueError, TypeError):
                    pass
        self.events.extend(new)
        return new


def read_events(paths: Iterable[str | os.PathLike]) -> list[TraceEvent]:
    """Every complete event in finished event streams (missing files count as empty)."""
    return EventFollower(paths).poll()


def load(paths: Iterable[str | os.PathLike]):
    """Finished event streams (one per replica) as one DataFrame (see :func:`to_dataframe`)."""
    return to_dataframe(read_events(paths))


def save(df, path: str | os.PathLike) -> None:
    """Write a trace DataFrame to ``path`` (mode 0600): CSV if the name ends in ``.csv``, else parquet."""
    path = os.fspath(path)
    if path.endswith(".csv"):
        with open(path, "w", newline="", opener=_private) as f:
            df.to_csv(f, index=False)
    else:
        with open(path, "wb", opener=_private) as f:
            df.to_parquet(f, index=False)
