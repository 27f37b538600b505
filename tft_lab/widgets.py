"""The steppers: widgets that walk through a trace one intercepted event at a time.

What a step is and what it shows are pure functions of :mod:`tft_lab.stepping`
(:func:`~tft_lab.stepping.step_table`, :func:`~tft_lab.stepping.describe_step`,
:func:`~tft_lab.stepping.render_step`, re-exported here); this module adds
the widgets around them:

- :class:`StepView`, an ``ipywidgets.HTML`` that shows one step of a trace;
- :class:`TraceStepper` over a *recorded* trace (slider, Prev / Next, filters
  by class and replica);
- :class:`LiveStepper` over a *running* program
  (:func:`tft_lab.session.live`): the program is really paused after every
  event; the buttons let it go on to the next event, the next epoch, the next
  signal or the end, or fail the primary right there.  It shows the paused
  event in the same :class:`StepView`, with what each replica has done for it
  so far, read from the event streams the session names.

Widget state lives in widget values only (the slider's ``value``, the
dropdowns' ``value``); the Python side holds no other mutable state than the
trace it was given and tables derived from it.
"""
from __future__ import annotations

import html
import socket
import threading

import ipywidgets as widgets
import pandas as pd

from .stepping import ALL, deferrals, describe_step, render_step, representative, step_table
from .strace import format_call
from .trace import FRESH_BACKUPS, REPLICAS, EventFollower, TraceEvent, to_dataframe

__all__ = ["StepView", "TraceStepper", "LiveStepper", "step_table", "describe_step", "render_step"]


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
        i = representative(self._steps.iloc[self.slider.value], self.replica_filter.value)
        return self._df.iloc[i].to_dict()

    def next(self) -> None:
        """Show the next step (stays on the last one)."""
        self.index = self.index + 1

    def prev(self) -> None:
        """Show the previous step (stays on the first one)."""
        self.index = self.index - 1


# --------------------------------------------------------------------------
# the live stepper


class LiveStepper(widgets.VBox):
    """Step through a *running* program: it is really paused after every event.

    ``session`` is a :class:`tft_lab.session.LiveSession` (``tft_lab.session.live(argv,
    kind="run", epoch=...)``, or ``%tft step ./app``); the stepper reads the event
    streams it names (``event_files``, ``replicas``, ``epoch``). The primary's supervisor stops
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
        self.session = session
        # The replicas the view waits for: a fresh backup (after a failover) joins once it has events.
        self.replicas = tuple(r for r in session.replicas if r not in FRESH_BACKUPS)
        self.epoch_length = session.epoch
        self._follower = EventFollower(session.event_files.values())
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
