"""The stepper: walk through a trace one intercepted event at a time.

The stepper is three layers, so that a *live* stepper (the supervised program
really paused at each step) can reuse the two lower ones with another
source of events:

1. pure functions over DataFrames: :func:`step_table` turns a trace (one row
   per event per replica) into *steps* (one row per logical event, pointing
   at each replica's row); :func:`describe_step` gathers what one step shows;
   :func:`render_step` turns that into HTML;
2. :class:`StepView`, an ``ipywidgets.HTML`` that shows one step of a
   trace;
3. controls: :class:`TraceStepper` over a *recorded* trace (slider, Prev /
   Next, filters by class and replica), and :class:`LiveStepper` over a
   *running* program (:func:`tft_lab.session.live`): the program is really
   paused after every event; the buttons let it go on to the next event, the
   next epoch, the next signal or the end, or fail the primary right there.
   It shows the paused event in the same :class:`StepView`, with what each
   replica has done for it so far.

Widget state lives in widget values only (the slider's ``value``, the
dropdowns' ``value``); the Python side holds no other mutable state than the
trace it was given and tables derived from it.
"""
from __future__ import annotations

import html
import os
import socket
import threading
from typing import Iterable, Protocol

import ipywidgets as widgets
import pandas as pd

from .plots import deferrals, format_call, format_result
from .trace import REPLICAS, TraceEvent, to_dataframe

ALL = "all"

#: Order of the events that share a (pid, seq): the call itself, then what
#: happened right after it returned.
_KIND_RANK = {"syscall": 0, "exec": 1, "rdtsc": 2, "arrived": 3, "delivered": 4, "exit": 5}


class StepSource(Protocol):
    """What a stepper over a source of events drives (:class:`LiveStepper` drives a
    :class:`tft_lab.session.LiveSession`, whose ``step(cmd)`` returns one paused event).

    ``step()`` lets the supervised program(s) run to the next intercepted
    event, leaves them paused there, and returns the trace events that
    happened meanwhile (for either replica); an empty list once the run is
    over.
    """

    def step(self) -> Iterable[TraceEvent]: ...


# --------------------------------------------------------------------------
# pure layer


def _rank(kind: str, signal: str) -> int:
    return _KIND_RANK.get(signal if kind == "signal" else kind, 6)


def step_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per logical event of a trace, in the order the program met them.

    An event seen by several replicas (the same call at the same ``(pid,
    seq)``) is one step. Columns: ``pid, seq, kind, syscall, rank, nth`` (the
    key), ``t_key`` (the sort time) and ``row_<replica>`` for each replica in
    :data:`tft_lab.trace.REPLICAS`: the positional index (``df.iloc``) of that
    replica's row, ``<NA>`` if it has none. Steps are ordered by the clock of
    the first replica present among primary, tracer, backup; an event that
    replica lacks follows the one before it in the same process.
    """
    d = pd.DataFrame({
        "replica": df["replica"].astype(object).to_numpy(),
        "pid": df["pid"].to_numpy(),
        "seq": df["seq"].to_numpy(),
        "kind": df["kind"].astype(object).to_numpy(),
        "syscall": df["syscall"].astype(object).to_numpy(),
        "signal": df["signal"].astype(object).to_numpy(),
        "t_ns": df["t_ns"].to_numpy(),
    })
    d["row"] = range(len(d))
    d["rank"] = [_rank(k, s) for k, s in zip(d["kind"], d["signal"])]
    key = ["pid", "seq", "rank", "syscall"]
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
    steps = steps.sort_values(["pid", "seq", "rank", "nth"], kind="stable")
    # An event the reference replica lacks follows the one before it in its
    # process; a process it never saw at all goes by its own replica's clock.
    steps["t_key"] = steps.groupby("pid")["t_key"].ffill().fillna(steps["own_t"])
    steps = steps.sort_values(["t_key", "pid", "seq", "rank", "nth"], kind="stable").reset_index(drop=True)
    for r in REPLICAS:
        steps[f"row_{r}"] = (steps[r] if r in steps else pd.Series(pd.NA, index=steps.index)).astype("Int64")
    return steps[["pid", "seq", "kind", "syscall", "rank", "nth", "t_key", *[f"row_{r}" for r in REPLICAS]]]


def _representative(step: pd.Series, replica: str = ALL) -> int | None:
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
    is :func:`tft_lab.plots.deferrals` of ``df`` (computed if not given).
    A replica in ``expect`` that has no row for the step is listed in
    ``replicas`` as None: it has not got there yet (a live backup lags).
    """
    i = _representative(step, replica)
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
    return dict(call=format_call(row), row=row, pid=pid, seq=seq, epoch=epoch, kind=str(row["kind"]),
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
        f"<div>pid <b>{info['pid']}</b> · seq <b>{info['seq']}</b> · epoch <b>{info['epoch']}</b> · "
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


# --------------------------------------------------------------------------
# widgets


class StepView(widgets.HTML):
    """An HTML widget showing one step of a trace (see :func:`render_step`)."""

    def show(self, df: pd.DataFrame, step: pd.Series | None, replica: str = ALL,
             pairs: pd.DataFrame | None = None) -> None:
        if step is None:
            self.value = "<i>no event matches the filters</i>"
        else:
            self.value = render_step(describe_step(df, step, replica, pairs))


class TraceStepper(widgets.VBox):
    """Step through a recorded trace: slider, Prev / Next, filters by class and replica.

    ``df`` is a trace as :func:`tft_lab.trace.to_dataframe` makes it, one or
    both replicas. A step is one logical event; the view shows it
    strace-style with its class, epoch, what each replica did and the signals
    pending and delivered around it. Display the stepper as the last
    expression of a cell.

    For tests and notebooks: :attr:`index` (position among the steps that
    pass the filters), :meth:`next`, :meth:`prev`, :attr:`current` (the
    shown trace row as a dict), :attr:`steps` (the filtered steps), and the
    widgets ``slider``, ``prev_button``, ``next_button``, ``class_filter``,
    ``replica_filter``, ``position`` and ``view``.
    """

    def __init__(self, df: pd.DataFrame, **kwargs):
        self._df = df.reset_index(drop=True)
        self._all_steps = step_table(self._df)
        self._pairs = deferrals(self._df)
        classes = [c for c in self._df["cls"].cat.categories if (self._df["cls"] == c).any()] \
            if hasattr(self._df["cls"], "cat") else sorted(self._df["cls"].astype(str).unique())
        replicas = [r for r in REPLICAS if (self._df["replica"] == r).any()]

        self.prev_button = widgets.Button(description="Prev", icon="step-backward", tooltip="previous event",
                                          layout=widgets.Layout(width="90px"))
        self.next_button = widgets.Button(description="Next", icon="step-forward", tooltip="next event",
                                          layout=widgets.Layout(width="90px"))
        self.slider = widgets.IntSlider(min=0, max=0, value=0, description="step", readout=False,
                                        continuous_update=True, layout=widgets.Layout(width="420px"))
        self.position = widgets.HTML()
        self.position.add_class("tft-stepper-position")
        self.class_filter = widgets.Dropdown(options=[ALL, *classes], value=ALL, description="class",
                                             layout=widgets.Layout(width="220px"))
        self.replica_filter = widgets.Dropdown(options=[ALL, *replicas], value=ALL, description="replica",
                                               layout=widgets.Layout(width="220px"))
        self.view = StepView()
        self.view.add_class("tft-stepper-view")

        self.prev_button.on_click(lambda _: self.prev())
        self.next_button.on_click(lambda _: self.next())
        self.slider.observe(lambda _: self._show(), names="value")
        self.class_filter.observe(self._on_filter, names="value")
        self.replica_filter.observe(self._on_filter, names="value")

        super().__init__(
            children=[
                widgets.HBox([self.prev_button, self.next_button, self.slider, self.position]),
                widgets.HBox([self.class_filter, self.replica_filter]),
                self.view,
            ],
            **kwargs,
        )
        self.add_class("tft-stepper")
        self._steps = self._filtered()
        self._reset_slider(0)

    # -- state derived from widget values --------------------------------

    def _filtered(self) -> pd.DataFrame:
        s = self._all_steps
        replica, cls = self.replica_filter.value, self.class_filter.value
        if replica != ALL:
            s = s[s[f"row_{replica}"].notna()]
        if cls != ALL:
            if replica != ALL:
                rows = s[f"row_{replica}"]
            else:
                rows = s["row_primary"].fillna(s["row_tracer"]).fillna(s["row_backup"])
            s = s[self._df["cls"].astype(object).to_numpy()[rows.to_numpy(dtype="int64")] == cls]
        return s

    def _reset_slider(self, index: int) -> None:
        n = len(self._steps)
        with self.slider.hold_trait_notifications():
            self.slider.max = max(n - 1, 0)
            self.slider.value = min(max(index, 0), max(n - 1, 0))
        for w in (self.slider, self.prev_button, self.next_button):
            w.disabled = n == 0
        self._show()

    def _on_filter(self, _change) -> None:
        # Stay on the same event if it still passes, else go to the next one that does.
        here = self._step_position()
        self._steps = self._filtered()
        if here is None or self._steps.empty:
            self._reset_slider(0)
            return
        order = list(self._steps.index)
        after = [k for k, i in enumerate(order) if i >= here]
        self._reset_slider(after[0] if after else len(order) - 1)

    def _step_position(self) -> int | None:
        """The current step's index in the unfiltered step table."""
        if self._steps.empty:
            return None
        return int(self._steps.index[self.slider.value])

    def _show(self) -> None:
        n = len(self._steps)
        if n == 0:
            self.position.value = "<b>0 of 0</b>"
            self.view.show(self._df, None)
            return
        step = self._steps.iloc[self.slider.value]
        self.position.value = f"<b>{self.slider.value + 1} of {n}</b> · seq {step['seq']}"
        self.view.show(self._df, step, self.replica_filter.value, self._pairs)

    # -- public ------------------------------------------------------------

    @property
    def steps(self) -> pd.DataFrame:
        """The steps (rows of :func:`step_table`) that pass the filters, in order."""
        return self._steps

    @property
    def index(self) -> int:
        """Position of the shown step among :attr:`steps` (0-based)."""
        return int(self.slider.value)

    @index.setter
    def index(self, value: int) -> None:
        self.slider.value = min(max(int(value), 0), self.slider.max)

    @property
    def current(self) -> dict | None:
        """The shown trace row (the filtered replica's, else the primary's) as a dict; None if nothing matches."""
        if self._steps.empty:
            return None
        i = _representative(self._steps.iloc[self.slider.value], self.replica_filter.value)
        return self._df.iloc[i].to_dict()

    def next(self) -> None:
        """Show the next step (stays on the last one)."""
        self.index = self.index + 1

    def prev(self) -> None:
        """Show the previous step (stays on the first one)."""
        self.index = self.index - 1


# --------------------------------------------------------------------------
# the live stepper


def _proc_children(parent: int) -> list[tuple[int, int, list[str]]]:
    """(start time, pid, argv) of the children of ``parent`` (from /proc)."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
            with open(f"/proc/{name}/cmdline", "rb") as f:
                argv = [w.decode(errors="replace") for w in f.read().split(b"\0") if w]
        except OSError:
            continue  # gone meanwhile
        # The command name (field 2) may hold spaces and parentheses: split after its ")".
        fields = stat[stat.rfind(")") + 2:].split()
        if int(fields[1]) == parent:
            out.append((int(fields[19]), int(name), argv))   # fields[19] is field 22, starttime
    return out


#: Supervisor processes a LiveStepper has already matched to its session, as (pid, start time).
_CLAIMED: set[tuple[int, int]] = set()


def _option(argv: list[str], name: str) -> str | None:
    head = argv[:argv.index("--")] if "--" in argv else argv
    return head[head.index(name) + 1] if name in head[:-1] else None


def _session_streams(session) -> tuple[dict[str, str], tuple[str, ...], int | None]:
    """Where a live session's supervisors stream their events: ({replica: path}, replicas, epoch length).

    A session that says so itself (attributes ``event_files``, ``replicas``,
    ``epoch``) is believed. Otherwise the ``tft`` child process it started is
    found in /proc (the newest child of this process run with
    ``--control-fd`` that no other stepper has taken) and its command line
    read: ``run --workdir W`` streams to ``W/primary.trace.jsonl`` and
    ``W/backup.trace.jsonl``, ``record --events F`` to ``F``. Nothing found:
    no streams (the stepper then shows the primary's paused events only).
    """
    files = getattr(session, "event_files", None)
    if files is not None:
        replicas = tuple(getattr(session, "replicas", None) or files)
        return dict(files), replicas, getattr(session, "epoch", None)
    candidates = []
    for start, pid, argv in _proc_children(os.getpid()):
        if "tft_lab.cli" in argv and "--control-fd" in argv and (pid, start) not in _CLAIMED:
            candidates.append((start, pid, argv))
    if not candidates:
        return {}, ("primary",), None
    start, pid, argv = max(candidates)
    _CLAIMED.add((pid, start))
    kind = argv[argv.index("tft_lab.cli") + 1]
    epoch = _option(argv, "--epoch")
    epoch = int(epoch) if epoch and epoch.isdigit() else None
    if kind == "run" and _option(argv, "--workdir"):
        work = _option(argv, "--workdir")
        replicas = ("primary",) if _option(argv, "--backup") == "none" else ("primary", "backup")
        return {r: os.path.join(work, f"{r}.trace.jsonl") for r in replicas}, replicas, epoch
    if kind == "record" and _option(argv, "--events"):
        return {"primary": _option(argv, "--events")}, ("primary",), epoch
    return {}, ("primary",), epoch


class LiveStepper(widgets.VBox):
    """Step through a *running* program: it is really paused after every event.

    ``session`` is a :class:`tft_lab.session.LiveSession` (``tft_lab.session.live(argv,
    kind="run", epoch=...)``, or ``%tft step ./app``). The primary's supervisor stops
    after every intercepted event and waits for a button:

    - **Next**: run to the next event;
    - **To end of epoch**: run to the first event of the next epoch;
    - **To next signal**: run to the next signal event (a signal arriving, or delivered);
    - **Fail the primary here**: the primary fail-stops right now; the backup replays
      what it was sent, goes live and finishes the program;
    - **Run to end**: let the program run on, unpaused, to the end.

    The view shows the paused event strace-style, its class, epoch and pending
    signals and, from the trace streamed so far, what each replica did with that
    ``(pid, seq)``: the backup lags behind the primary (it is fed the log in batches)
    and shows *not yet* until it gets there. While paused, the view is refreshed
    every ``refresh`` seconds (0: only when a button is pressed, or on
    :meth:`refresh`).

    For tests and notebooks: :meth:`next`, :meth:`to_epoch_end`, :meth:`to_signal`,
    :meth:`fail_primary`, :meth:`run_to_end` (what the buttons call), :attr:`current`
    (the paused event as a dict, None once the run is over), :attr:`pending`,
    :attr:`trace` (every event so far, both replicas, as a DataFrame),
    :attr:`finished` and :meth:`result` (the final :class:`tft_lab.session.Run`).
    Widgets: ``next_button``, ``epoch_button``, ``signal_button``, ``fail_button``,
    ``end_button``, ``position``, ``status``, ``view``, ``summary``.
    """

    def __init__(self, session, refresh: float = 0.5, **kwargs):
        from .session import _Follower

        self.session = session
        files, self.replicas, self.epoch_length = _session_streams(session)
        self._follower = _Follower(list(files.values()))
        self._lock = threading.RLock()
        self._gate_events: list[TraceEvent] = []     # the primary's events as the gate reported them
        self._last_streamed_t = -1                   # t_ns of the primary's newest streamed event
        self._stops = 0
        self._msg: dict | None = None
        self._run = None
        self._error: str | None = None

        def button(description, icon, tooltip, style=""):
            b = widgets.Button(description=description, icon=icon, tooltip=tooltip, button_style=style,
                               layout=widgets.Layout(width="auto"))
            return b

        self.next_button = button("Next", "step-forward", "run to the next intercepted event")
        self.epoch_button = button("To end of epoch", "fast-forward", "run to the first event of the next epoch")
        self.signal_button = button("To next signal", "bolt", "run to the next signal event")
        self.fail_button = button("Fail the primary here", "times", "the primary fail-stops now; the backup "
                                  "goes live", "danger")
        self.end_button = button("Run to end", "play", "let the program run to its end")
        self.buttons = [self.next_button, self.epoch_button, self.signal_button, self.fail_button, self.end_button]
        for b, method in zip(self.buttons, (self.next, self.to_epoch_end, self.to_signal, self.fail_primary,
                                            self.run_to_end)):
            b.on_click(lambda _b, m=method: self._clicked(m))
        self.position = widgets.HTML()
        self.position.add_class("tft-live-position")
        self.status = widgets.HTML()
        self.view = StepView()
        self.view.add_class("tft-stepper-view")
        self.summary = widgets.HTML()
        super().__init__(children=[widgets.HBox(self.buttons), widgets.HBox([self.position, self.status]),
                                   self.view, self.summary], **kwargs)
        self.add_class("tft-live-stepper")

        self._take(session.current)
        with self._lock:
            self._poll()
            self._render()
        if session.current is None:
            self._finish()
        self._stop_refresh = threading.Event()
        if refresh and not self.finished:
            threading.Thread(target=self._refresh_loop, args=(refresh,), daemon=True,
                             name="tft-live-stepper").start()

    # -- events --------------------------------------------------------------

    def _take(self, msg: dict | None) -> None:
        with self._lock:
            self._msg = msg
            if msg is not None:
                self._stops += 1
                self._gate_events.append(TraceEvent(**msg["event"]))

    def _poll(self) -> bool:
        """Read what the supervisors streamed since the last poll; True if anything came."""
        new = self._follower.poll()
        for ev in new:
            if ev.replica == "primary":
                self._last_streamed_t = max(self._last_streamed_t, ev.t_ns)
        return bool(new)

    def _events(self) -> list[TraceEvent]:
        # The streams are complete but may lag; the gate's events fill in the primary's newest.
        extra = [e for e in self._gate_events if e.t_ns > self._last_streamed_t]
        return self._follower.events + extra

    def _refresh_loop(self, period: float) -> None:
        while not self._stop_refresh.wait(period):
            if self.finished:
                return
            with self._lock:
                if self._poll():
                    self._render()

    def refresh(self) -> None:
        """Read what the replicas have done since, and show it."""
        with self._lock:
            self._poll()
            self._render()

    # -- showing -----------------------------------------------------------

    def _render(self) -> None:
        events = self._events()
        counts = {r: 0 for r in self.replicas}
        for ev in events:
            counts[ev.replica] = counts.get(ev.replica, 0) + 1
        state = "finished" if self._run is not None else ("paused" if self._msg else "ending...")
        self.status.value = (" · ".join(f"{r}: {n} events" for r, n in counts.items())
                             + f" · <b>{state}</b>" + (f' · <span style="color:#d62728">{html.escape(self._error)}'
                                                       '</span>' if self._error else ""))
        if self._msg is None:
            return
        ev = TraceEvent(**self._msg["event"])
        self.position.value = (f"<b>#{self._stops}</b> · pid {ev.pid} · seq {ev.seq} · epoch {ev.epoch}"
                               + (f" (length {self.epoch_length})" if self.epoch_length else "") + " &nbsp;")
        self.view.value = render_step(self._describe(events, ev))

    def _describe(self, events: list[TraceEvent], ev: TraceEvent) -> dict:
        """describe_step for the paused event, over the events of its process and epoch."""
        df = to_dataframe(e for e in events if e.pid == ev.pid)
        pairs = deferrals(df)
        sub = df[df["epoch"] == ev.epoch].reset_index(drop=True)
        here = sub.index[(sub["replica"] == "primary") & (sub["t_ns"] == ev.t_ns)]
        steps = step_table(sub)
        step = steps[steps["row_primary"] == here[0]].iloc[0] if len(here) else None
        if step is None:   # cannot happen: the gate's event is always among the events
            info = dict(call=format_call(ev._asdict()), row=ev._asdict(), pid=ev.pid, seq=ev.seq, epoch=ev.epoch,
                        kind=ev.kind, cls=ev.cls, replicas={"primary": None}, pending=[], delivered=[])
        else:
            info = describe_step(sub, step, pairs=pairs, expect=self.replicas)
        known = {p["signal"] for p in info["pending"]}
        info["pending"] += [dict(signal=s, arrival_seq=None, delivery_seq=None)
                            for s in self._msg.get("pending", []) if s not in known]
        # "To end of epoch" stops at the first event of the next epoch: show what was
        # delivered at the boundary just passed (it belongs to the epoch before).
        before = df[(df["kind"] == "signal") & (df["signal"] == "delivered") & (df["epoch"] == ev.epoch - 1)]
        last = df.loc[df["epoch"] == ev.epoch - 1, "seq"].max() if len(before) else None
        info["boundary"] = sorted({(str(n), int(q)) for n, q in zip(before["syscall"], before["seq"]) if q == last})
        return info

    def _show_result(self, run) -> None:
        e = html.escape
        lines = run.stdout.splitlines()
        out = "\n".join(lines[-12:])
        more = f"... ({len(lines) - 12} lines before)\n" if len(lines) > 12 else ""
        fo = f" · failover {run.failover_ms:.1f} ms" if run.failover_ms is not None else ""
        self.summary.value = (
            f'<div class="tft-live-result"><b>finished</b>: exit status <b>{run.returncode}</b>'
            + (f" · outcome <b>{e(run.outcome)}</b>" if run.outcome else "") + fo
            + f" · {len(run.trace)} trace rows"
            + f'<pre style="margin:4px 0;padding:6px;background:#f6f6f6">{e(more + out)}</pre></div>')
        self.position.value = (f"<b>#{self._stops}</b> · finished: exit status {run.returncode}"
                               + (f", {e(run.outcome)}" if run.outcome else "") + " &nbsp;")

    def _clicked(self, method) -> None:
        # A button's error is shown in the widget (a click has no cell to print it in).
        try:
            method()
        except Exception as e:  # noqa: BLE001
            with self._lock:
                self._error = f"{type(e).__name__}: {e}"
                self._render()

    # -- stepping ----------------------------------------------------------

    def _step(self, cmd: str) -> dict | None:
        if self.finished:
            return None
        with self._lock:
            self.status.value = f"running ({cmd})..."
        msg = self.session.step(cmd)
        self._take(msg)
        with self._lock:
            self._poll()
            self._render()
        if msg is None:
            self._finish()
        return self.current

    def next(self) -> dict | None:
        """Let the program run to its next intercepted event; returns :attr:`current`."""
        return self._step("next")

    def to_epoch_end(self) -> dict | None:
        """Run to the first event of the next epoch (the signals held back are delivered on the way)."""
        return self._step("epoch")

    def to_signal(self) -> dict | None:
        """Run to the next signal event: a signal arriving (and held back), or being delivered."""
        return self._step("signal")

    def fail_primary(self):
        """Fail-stop the primary where it is paused; wait for the backup to finish the program.

        Returns the final :class:`tft_lab.session.Run` (outcome ``failover`` if a backup took over).
        """
        self._step("fail")
        return self.result()

    def run_to_end(self):
        """Let the program run to its end unpaused; returns the final :class:`tft_lab.session.Run`."""
        return self.result()

    def _finish(self):
        if self._run is None:
            with self._lock:
                self.status.value = "running to the end..."
            run = self.session.result()
            if run is None:
                raise RuntimeError("the live run did not finish in time")
            self._stop_refresh_if_any()
            with self._lock:
                self._run = run
                self._msg = None
                self._poll()
                self._render()
                self._show_result(run)
            for b in self.buttons:
                b.disabled = True
        return self._run

    def _stop_refresh_if_any(self) -> None:
        stop = getattr(self, "_stop_refresh", None)
        if stop is not None:
            stop.set()

    def result(self):
        """Run the program to its end (if it is not there yet) and return its :class:`tft_lab.session.Run`."""
        return self._finish()

    def close(self) -> None:
        """Close the widget; an unfinished program runs on to its end, unattended."""
        self._stop_refresh_if_any()
        if self._run is None:
            # Shut the socket down, not only close it: Controller.close() leaves the
            # descriptor open while its makefile() reader lives, and the paused
            # supervisor would wait for a command forever.
            sock = getattr(getattr(self.session, "controller", None), "sock", None)
            try:
                if sock is not None:
                    sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.session.close()
        super().close()

    # -- public state --------------------------------------------------------

    @property
    def finished(self) -> bool:
        """True once the program has ended (on a live replica) and :meth:`result` is known."""
        return self._run is not None

    @property
    def current(self) -> dict | None:
        """The event the program is paused after (the trace's columns, as a dict); None once it has ended."""
        msg = self._msg
        return None if msg is None else dict(msg["event"])

    @property
    def pending(self) -> list[str]:
        """Signals the supervisor holds back at the paused event (delivered at the next epoch boundary)."""
        msg = self._msg
        return [] if msg is None else list(msg.get("pending", []))

    @property
    def trace(self) -> pd.DataFrame:
        """Every event so far, both replicas (all of them once finished), as :func:`tft_lab.trace.to_dataframe`."""
        if self._run is not None:
            return self._run.trace
        with self._lock:
            self._poll()
            return to_dataframe(self._events())
