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
   Next, filters by class and replica). A live stepper would instead drive a
   :class:`StepSource`, append what ``step()`` returns to its trace and show
   the newest step in the same :class:`StepView`.

Widget state lives in widget values only (the slider's ``value``, the
dropdowns' ``value``); the Python side holds no other mutable state than the
trace it was given and tables derived from it.
"""
from __future__ import annotations

import html
from typing import Iterable, Protocol

import ipywidgets as widgets
import pandas as pd

from .plots import deferrals, format_call, format_result
from .trace import REPLICAS, TraceEvent

ALL = "all"

#: Order of the events that share a (pid, seq): the call itself, then what
#: happened right after it returned.
_KIND_RANK = {"syscall": 0, "exec": 1, "rdtsc": 2, "arrived": 3, "delivered": 4, "exit": 5}


class StepSource(Protocol):
    """What a live stepper drives (not implemented here: see the engine's ``step()``).

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
                  pairs: pd.DataFrame | None = None) -> dict:
    """What the stepper shows for one step (a row of :func:`step_table`).

    Returns a dict: ``call`` (strace-style), ``row`` (the representative
    trace row as a dict), ``pid, seq, epoch, kind, cls``, ``replicas`` (for
    each replica that saw the event: action, result, t_ns, wait_ns),
    ``pending`` (signals that arrived and are not yet delivered at this
    point, with their arrival seq) and ``delivered`` (signal deliveries of
    this process in the same epoch, with their seq and replicas). ``pairs``
    is :func:`tft_lab.plots.deferrals` of ``df`` (computed if not given).
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
    """The HTML for one step as :func:`describe_step` describes it."""
    e = html.escape
    def wait(ns: int) -> str:
        return f"{ns / 1e3:.1f} µs" if ns else ""

    rows = "".join(
        f"<tr><td>{e(r)}</td><td><b>{e(v['action'])}</b></td>"
        f"<td>{e(format_result(info['row']['syscall'], v['result']))}</td>"
        f"<td>{v['t_ns'] / 1e6:.3f}</td><td>{wait(v['wait_ns'])}</td></tr>"
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
        "</div>"
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
