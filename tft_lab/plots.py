"""Pictures of a trace: each a pure function from a DataFrame to a plotly figure.

The functions take the DataFrames of :func:`tft_lab.trace.to_dataframe`,
:func:`tft_lab.compare`, a benchmark table or a crash-point sweep's
(:func:`tft_lab.sweep`) and return a
``plotly.graph_objects.Figure`` (:func:`overhead_ratios`, the table behind
:func:`overhead`, returns its DataFrame); they never display anything
themselves.  :func:`deferrals` (the signal arrival/delivery pairs that
:func:`signal_deferral` draws) lives in :mod:`tft_lab.stepping` and is
re-exported here.

Elements a reader (or a test) may look for carry a ``name``: traces by class
or role, shapes ``"epoch boundary"`` and ``"failover"``, annotations
``"deferral"`` and ``"failover"``.
"""
from __future__ import annotations

import html

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .stepping import deferrals, schedule
from .strace import format_call, format_result
from .trace import CLASSES, FRESH_BACKUPS

__all__ = ["epoch_timeline", "signal_deferral", "side_by_side", "overhead", "overhead_ratios", "deferrals",
           "CLASS_COLORS", "sweep_outcomes", "failover_by_class", "sweep_heatmap", "OUTCOME_COLORS",
           "thread_schedule", "SWITCH_COLORS"]

#: One colour per replication class (and the one for signals, rdtsc...).
CLASS_COLORS = {
    "local": "#7f7f7f",
    "input": "#1f77b4",
    "identity": "#9467bd",
    "output": "#d62728",
    "resource": "#ff7f0e",
    "unsupported": "#000000",
    "event": "#2ca02c",
}
#: One colour per crash-point outcome (the table of :func:`tft_lab.sweep`), best first.
OUTCOME_COLORS = {
    "masked": "#2ca02c",
    "lost output": "#d62728",
    "duplicated output": "#ff7f0e",
    "diverged": "#9467bd",
    "hung": "#8c564b",
    "error": "#000000",
}
DIVERGED_ROW = "#ffd6d6"
DIVERGED_CELL = "#ff7a7a"
WAIT_COLOR = "rgba(214, 39, 40, 0.45)"
SIGNAL_COLOR = "#2ca02c"
FAILOVER_COLOR = "#d62728"

_NS_PER_MS = 1e6
_LANE_HALF = 0.42


def _lanes(df: pd.DataFrame) -> list[tuple[str, int]]:
    """(replica, pid) pairs, primary first, in order of first appearance."""
    order = {r: i for i, r in enumerate(("primary", "backup", "tracer", *FRESH_BACKUPS))}
    seen = df[["replica", "pid"]].astype({"replica": object}).drop_duplicates()
    return sorted(seen.itertuples(index=False, name=None), key=lambda rp: (order.get(rp[0], 9), rp[1]))


def _empty(title: str) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(title=title, xaxis_visible=False, yaxis_visible=False)
    fig.add_annotation(text="no events", showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)
    return fig


# --------------------------------------------------------------------------
# epoch timeline


def epoch_timeline(df: pd.DataFrame, epoch_length: int | None = None,
                   failover_t_ns: int | None = None) -> go.Figure:
    """Both replicas on one time axis, one lane per (replica, pid).

    - every intercepted call is a marker coloured by its class (one trace per
      class, so the legend filters by class); hover shows it strace-style;
    - epochs alternate a light band, each boundary (where the epoch changes
      within a lane) is a dotted line across its lane, named
      ``"epoch boundary"``;
    - a deferred signal is an arrow (annotation named ``"deferral"``) from
      its arrival to its delivery, drawn just above the lane;
    - an output-commit wait (``wait_ns > 0``) is a thick bar ending at the
      call that waited (trace ``"commit wait"``);
    - each failover (a backup goes live), re-integration (a fresh backup starts to
      catch up, has caught up, is lost) and decision of the arbiter (a lease won or
      lost, a replica fenced) is a labelled star on its lane (trace ``"redundancy"``):
      redundancy lost and restored, failure after failure, and who was allowed to be live;
    - ``failover_t_ns``, if given, is a red vertical line named ``"failover"``.

    ``epoch_length``, if given, recomputes the epochs as ``seq //
    epoch_length`` (to see what another length would do); otherwise the
    ``epoch`` column is used. Each replica's ``t_ns`` counts from the start of
    its own supervisor, so the lanes of two replicas share an axis, not a
    clock.
    """
    title = "Epoch timeline" + (f" (epoch length {epoch_length})" if epoch_length else "")
    if df.empty:
        return _empty(title)
    df = df.copy()
    if epoch_length:
        df["epoch"] = df["seq"] // int(epoch_length)
    df["t_ms"] = df["t_ns"] / _NS_PER_MS
    lanes = _lanes(df)
    lane_of = {rp: i for i, rp in enumerate(lanes)}
    df["lane"] = [lane_of[(r, p)] for r, p in zip(df["replica"].astype(object), df["pid"])]

    fig = go.Figure()
    _epoch_shapes(fig, df)
    _commit_waits(fig, df)
    _call_markers(fig, df)
    _signals(fig, df)
    _redundancy(fig, df)
    if failover_t_ns is not None:
        x = failover_t_ns / _NS_PER_MS
        fig.add_shape(type="line", name="failover", x0=x, x1=x, y0=0, y1=1, xref="x", yref="paper",
                      line=dict(color=FAILOVER_COLOR, width=2))
        fig.add_annotation(name="failover", text="failover", x=x, y=1, xref="x", yref="paper",
                           xanchor="left", yanchor="top", xshift=3, showarrow=False,
                           bgcolor="rgba(255, 255, 255, 0.8)", font=dict(color=FAILOVER_COLOR))
    fig.update_layout(
        title=title,
        template="plotly_white",
        xaxis_title="time since the supervisor started (ms)",
        yaxis=dict(tickvals=list(range(len(lanes))), ticktext=[f"{r} pid {p}" for r, p in lanes],
                   range=[len(lanes) - 0.5, -0.5], zeroline=False, showgrid=False),
        height=180 + 90 * len(lanes),
        legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0),
        margin=dict(t=110),
        hovermode="closest",
    )
    return fig


#: Above this many epochs in a figure, boundaries are one line trace (named
#: "epoch boundary") instead of shapes, without bands or labels: plotly
#: redraws every shape on each zoom, and thousands make the page crawl.
MAX_EPOCH_SHAPES = 300


def _epoch_shapes(fig: go.Figure, df: pd.DataFrame) -> None:
    # An epoch spans from its first event to the next epoch's first event.
    firsts = {lane: g.groupby("epoch", sort=True)["t_ms"].min() for lane, g in df.groupby("lane", sort=True)}
    if sum(len(f) for f in firsts.values()) > MAX_EPOCH_SHAPES:
        xs, ys = [], []
        for lane, f in firsts.items():
            for start in f.iloc[1:]:
                xs += [start, start, None]
                ys += [lane - _LANE_HALF, lane + _LANE_HALF, None]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name="epoch boundary", hoverinfo="skip",
                                 line=dict(color="#1f77b4", width=1, dash="dot")))
        return
    # Built as lists and set once: add_shape() one by one is quadratic.
    shapes, labels = [], []
    for lane, f in firsts.items():
        ends = list(f.iloc[1:]) + [df.loc[df["lane"] == lane, "t_ms"].max()]
        for i, (epoch, start) in enumerate(f.items()):
            if epoch % 2 == 0:
                shapes.append(dict(type="rect", name="epoch band", x0=start, x1=ends[i],
                                   y0=lane - _LANE_HALF, y1=lane + _LANE_HALF, xref="x", yref="y",
                                   fillcolor="rgba(31, 119, 180, 0.07)", line_width=0, layer="below"))
            if i > 0:
                shapes.append(dict(type="line", name="epoch boundary", x0=start, x1=start,
                                   y0=lane - _LANE_HALF, y1=lane + _LANE_HALF, xref="x", yref="y",
                                   line=dict(color="#1f77b4", width=1, dash="dot")))
                labels.append(dict(name="epoch label", text=f"epoch {epoch}", x=start,
                                   y=lane + _LANE_HALF, xref="x", yref="y", showarrow=False,
                                   xanchor="left", yanchor="bottom", font=dict(size=9, color="#1f77b4")))
    fig.update_layout(shapes=[*fig.layout.shapes, *shapes], annotations=[*fig.layout.annotations, *labels])


def _hover(g: pd.DataFrame) -> list[str]:
    return [
        f"{html.escape(format_call(r))}<br>seq {r.seq} · epoch {r.epoch} · {r.cls} · {r.action}"
        + (f"<br>waited {r.wait_ns / 1e3:.1f} µs to commit" if r.wait_ns > 0 else "")
        + (f"<br>pending: {html.escape(r.signal)}" if r.kind != "signal" and isinstance(r.signal, str)
           and r.signal else "")
        for r in g.itertuples()
    ]


def _call_markers(fig: go.Figure, df: pd.DataFrame) -> None:
    calls = df[df["kind"] != "signal"]
    for cls in CLASSES:
        g = calls[calls["cls"] == cls]
        if g.empty:
            continue
        fig.add_trace(go.Scatter(
            x=g["t_ms"], y=g["lane"], mode="markers", name=cls,
            marker=dict(color=CLASS_COLORS.get(cls, "#333"), size=12, symbol="line-ns-open",
                        line=dict(width=2, color=CLASS_COLORS.get(cls, "#333"))),
            text=_hover(g), hovertemplate="%{text}<extra></extra>",
        ))


def _redundancy(fig: go.Figure, df: pd.DataFrame) -> None:
    marks = df[df["kind"].isin(("failover", "reintegration", "arbiter"))]
    if marks.empty:
        return
    texts = [f"{html.escape(str(r.syscall))}<br>{html.escape(str(r.args))}" for r in marks.itertuples()]
    fig.add_trace(go.Scatter(
        x=marks["t_ms"], y=marks["lane"] - 0.25, mode="markers+text", name="redundancy",
        text=marks["syscall"].astype(str), textposition="top center", hovertext=texts,
        hovertemplate="%{hovertext}<extra></extra>",
        marker=dict(symbol="star", size=14, color=FAILOVER_COLOR),
    ))


def _commit_waits(fig: go.Figure, df: pd.DataFrame) -> None:
    waits = df[df["wait_ns"] > 0]
    if waits.empty:
        return
    xs, ys, texts = [], [], []
    for r in waits.itertuples():
        y = r.lane + 0.18
        xs += [(r.t_ns - r.wait_ns) / _NS_PER_MS, r.t_ms, None]
        ys += [y, y, None]
        t = f"{html.escape(format_call(r))}<br>waited {r.wait_ns / 1e3:.1f} µs for the backup's ack"
        texts += [t, t, None]
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name="commit wait", text=texts,
                             line=dict(color=WAIT_COLOR, width=7), hovertemplate="%{text}<extra></extra>"))


def _signals(fig: go.Figure, df: pd.DataFrame) -> None:
    sig = df[df["kind"] == "signal"]
    if sig.empty:
        return
    for state, symbol in (("arrived", "circle-open"), ("delivered", "star")):
        g = sig[sig["signal"] == state]
        if g.empty:
            continue
        fig.add_trace(go.Scatter(
            x=g["t_ms"], y=g["lane"] - 0.22, mode="markers", name=f"signal {state}",
            marker=dict(color=SIGNAL_COLOR, size=11, symbol=symbol, line=dict(width=2, color=SIGNAL_COLOR)),
            text=[f"{r.syscall} {state} after seq {r.seq} (epoch {r.epoch})" for r in g.itertuples()],
            hovertemplate="%{text}<extra></extra>",
        ))
    lane_of = dict(zip(zip(df["replica"].astype(object), df["pid"]), df["lane"]))
    pairs = deferrals(df).dropna(subset=["arrival_t_ns", "delivery_t_ns"])
    arrows = []
    for r in pairs.itertuples():
        y = lane_of[(r.replica, r.pid)] - 0.22
        arrows.append(dict(
            name="deferral", x=r.delivery_t_ns / _NS_PER_MS, y=y, ax=r.arrival_t_ns / _NS_PER_MS, ay=y,
            xref="x", yref="y", axref="x", ayref="y", showarrow=True, arrowhead=2, arrowwidth=1.5,
            arrowcolor=SIGNAL_COLOR, text="",
            hovertext=f"{r.signal}: arrived after seq {r.arrival_seq}, delivered after seq "
                      f"{r.delivery_seq} ({r.deferral_calls} calls, {r.deferral_ns / 1e6:.3f} ms later)",
        ))
    fig.update_layout(annotations=[*fig.layout.annotations, *arrows])


# --------------------------------------------------------------------------
# signal deferral


def signal_deferral(df: pd.DataFrame) -> go.Figure:
    """Per signal, arrival vs delivery, in seq (left) and in time (right).

    One row per signal (see :func:`deferrals`), a segment from its arrival to
    its delivery labelled with the deferral; a pending signal has an arrival
    marker only, a delivery without arrival (on a backup) a delivery marker
    only. Traces are named ``"deferral"``, ``"arrival"`` and ``"delivery"``.
    """
    pairs = deferrals(df)
    if pairs.empty:
        return _empty("Signal deferral")
    labels = [f"{r.signal} #{i + 1} · {r.replica} pid {r.pid}" for i, r in enumerate(pairs.itertuples())]
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.06,
                        subplot_titles=("in system calls (seq)", "in time (ms)"))
    for col, (a, d, unit, scale) in enumerate(
        (("arrival_seq", "delivery_seq", "calls", 1), ("arrival_t_ns", "delivery_t_ns", "ms", _NS_PER_MS)),
        start=1,
    ):
        first = col == 1
        av = [None if pd.isna(v) else v / scale for v in pairs[a]]
        dv = [None if pd.isna(v) else v / scale for v in pairs[d]]
        xs, ys = [], []
        for x0, x1, y in zip(av, dv, labels):
            if x0 is not None and x1 is not None:
                xs += [x0, x1, None]
                ys += [y, y, None]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name="deferral", legendgroup="deferral",
                                 showlegend=first, line=dict(color=SIGNAL_COLOR, width=3),
                                 hoverinfo="skip"), row=1, col=col)
        fig.add_trace(go.Scatter(x=av, y=labels, mode="markers", name="arrival", legendgroup="arrival",
                                 showlegend=first, marker=dict(symbol="circle-open", size=11, color=SIGNAL_COLOR,
                                                               line=dict(width=2)),
                                 hovertemplate=f"arrived after %{{x}} {unit}<extra></extra>"), row=1, col=col)
        amount = pairs["deferral_calls"] if first else pairs["deferral_ns"] / scale
        text = [
            ("pending" if pd.isna(d_) else "as logged") if pd.isna(v)
            else (f"+{int(v)} calls" if first else f"+{v:.3f} ms")
            for v, d_ in zip(amount, dv)
        ]
        fig.add_trace(go.Scatter(x=dv, y=labels, mode="markers+text", name="delivery", legendgroup="delivery",
                                 showlegend=first, marker=dict(symbol="star", size=12, color=SIGNAL_COLOR),
                                 text=text, textposition="middle right",
                                 hovertemplate=f"delivered after %{{x}} {unit}<extra></extra>"), row=1, col=col)
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(title_text="seq", row=1, col=1)
    fig.update_xaxes(title_text="ms since the supervisor started", row=1, col=2)
    fig.update_layout(title="Signal deferral: arrival → delivery at the next epoch boundary",
                      template="plotly_white", height=160 + 40 * len(labels))
    return fig


# --------------------------------------------------------------------------
# side by side


def _call_text(aligned: pd.DataFrame, side: str) -> list[str]:
    out = []
    for kind, name, args, result in zip(aligned["kind"], aligned[f"syscall_{side}"],
                                        aligned[f"args_{side}"], aligned[f"result_{side}"]):
        if pd.isna(name):
            out.append("—")
        elif kind == "signal":
            out.append(f"--- {name} delivered ---")
        else:
            out.append(f"{name}({'' if pd.isna(args) else args}) = {format_result(name, result)}")
    return out


def side_by_side(aligned: pd.DataFrame) -> go.Figure:
    """The two replicas' calls aligned row by row, divergences in red.

    ``aligned`` is the output of :func:`tft_lab.compare`. A table:
    pid, seq, epoch, the primary's call and action, the backup's call and
    action, and the reason; a diverged row is light red and its differing
    cells (the calls, or the whole side that is missing) dark red.
    """
    n = len(aligned)
    diverged = aligned["diverged"].tolist() if n else []
    header = ["pid", "seq", "epoch", "primary", "action", "backup", "action", "divergence"]
    values = [
        aligned["pid"].tolist(), aligned["seq"].tolist(), aligned["epoch"].tolist(),
        _call_text(aligned, "primary"), aligned["action_primary"].fillna("").tolist(),
        _call_text(aligned, "backup"), aligned["action_backup"].fillna("").tolist(),
        aligned["reason"].tolist(),
    ]
    row_fill = [DIVERGED_ROW if d else "white" for d in diverged]
    call_fill = [DIVERGED_CELL if d else "white" for d in diverged]
    fills = [row_fill, row_fill, row_fill, call_fill, row_fill, call_fill, row_fill, row_fill]
    fig = go.Figure(go.Table(
        columnwidth=[40, 40, 45, 330, 80, 330, 80, 125],
        header=dict(values=[f"<b>{h}</b>" for h in header], fill_color="#e8e8e8", align="left"),
        cells=dict(values=values, fill_color=fills, align="left",
                   font=dict(family="monospace", size=12), height=24),
    ))
    k = sum(diverged)
    # Long calls wrap onto a second line in the call columns.
    longest = max((len(t) for t in values[3] + values[5]), default=0)
    row_height = 26 if longest < 32 else 42
    fig.update_layout(
        title=f"Primary and backup side by side: {k} divergence{'s' * (k != 1)} in {n} event{'s' * (n != 1)}",
        height=min(900, 140 + row_height * max(n, 1)), margin=dict(l=10, r=10),
    )
    return fig


# --------------------------------------------------------------------------
# overhead


def overhead_ratios(bench_df: pd.DataFrame) -> pd.DataFrame:
    """Median seconds per (workload, mode, commit, epoch) and its ratio to native.

    ``bench_df`` has columns ``workload, mode, commit, epoch, seconds`` (one row
    per measurement; repeats are summarised by their median). Returns the
    non-native rows with columns ``workload, mode, commit, epoch, seconds,
    native_seconds, ratio``. A workload without a native measurement raises
    ``ValueError``.
    """
    b = bench_df.copy()
    b["commit"] = b["commit"].fillna("").astype(str)
    b["mode"] = b["mode"].astype(str)
    b["workload"] = b["workload"].astype(str)
    b["epoch"] = b["epoch"].fillna(0).astype("int64")
    native = b[b["mode"] == "native"].groupby("workload")["seconds"].median()
    missing = sorted(set(b["workload"]) - set(native.index))
    if missing:
        raise ValueError(f"overhead: no 'native' measurement for workload(s) {missing}; "
                         "the ratio needs one per workload")
    med = (b[b["mode"] != "native"].groupby(["workload", "mode", "commit", "epoch"], sort=True)["seconds"]
           .median().reset_index())
    med["native_seconds"] = med["workload"].map(native)
    med["ratio"] = med["seconds"] / med["native_seconds"]
    return med


_MODE_ORDER = ("strace", "trace", "record", "replay", "run")


def overhead(bench_df: pd.DataFrame) -> go.Figure:
    """Slow-down against native, by epoch length and commit policy; one panel per workload.

    A series is a mode with a commit policy (trace name ``"run (output)"``;
    ``"strace"`` alone when the commit is empty). A series measured at
    several epoch lengths is a line over the epoch length; one measured at a
    single length (strace, trace) is a dashed horizontal line across the
    panel. A dotted line marks 1× (native).
    """
    r = overhead_ratios(bench_df)
    if r.empty:
        return _empty("Overhead against native")
    workloads = sorted(r["workload"].unique())
    fig = make_subplots(rows=1, cols=len(workloads), subplot_titles=workloads, shared_yaxes=True,
                        horizontal_spacing=0.04)
    r["series"] = [f"{m} ({c})" if c else m for m, c in zip(r["mode"], r["commit"])]
    series = sorted(r["series"].unique(),
                    key=lambda s: (_MODE_ORDER.index(s.split()[0]) if s.split()[0] in _MODE_ORDER else 99, s))
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
               "#bcbd22", "#17becf"]
    color = {s: palette[i % len(palette)] for i, s in enumerate(series)}
    epochs = sorted(e for e in r["epoch"].unique() if e > 0)
    lo, hi = (epochs[0], epochs[-1]) if epochs else (0, 1)
    log_x = bool(epochs) and hi / lo >= 20
    in_legend: set[str] = set()
    for col, w in enumerate(workloads, start=1):
        rw = r[r["workload"] == w]
        for s in series:
            g = rw[rw["series"] == s].sort_values("epoch")
            if g.empty:
                continue
            text = [f"{s}: {x:.2f}× native ({sec:.3f} s)" for x, sec in zip(g["ratio"], g["seconds"])]
            if g["epoch"].nunique() > 1:
                x, y, mode, dash = g["epoch"].tolist(), g["ratio"].tolist(), "lines+markers", "solid"
                text = [f"{t}<br>epoch {e}" for t, e in zip(text, x)]
            else:
                x, y, mode, dash = [lo, hi], [g["ratio"].iloc[0]] * 2, "lines", "dash"
                text = text * 2
            fig.add_trace(go.Scatter(x=x, y=y, mode=mode, name=s, legendgroup=s, showlegend=s not in in_legend,
                                     line=dict(color=color[s], dash=dash), text=text,
                                     hovertemplate="%{text}<extra></extra>"), row=1, col=col)
            in_legend.add(s)
        fig.add_hline(y=1, line=dict(color="#999", dash="dot"), row=1, col=col)
    fig.update_xaxes(title_text="epoch length (system calls)", type="log" if log_x else "linear")
    fig.update_yaxes(rangemode="tozero")
    fig.update_yaxes(title_text="time / native time", row=1, col=1)
    fig.update_layout(title="Overhead against native", height=450, hovermode="closest")
    return fig


# --------------------------------------------------------------------------
# crash-point sweeps (the table of tft_lab.sweep: one row per point)


def _outcomes(df: pd.DataFrame) -> list[str]:
    seen = set(df["outcome"].astype(str))
    return [o for o in OUTCOME_COLORS if o in seen] + sorted(seen - set(OUTCOME_COLORS))


def sweep_outcomes(df: pd.DataFrame) -> go.Figure:
    """Outcome by crash point: one marker per point, one row per outcome (``name`` = the outcome).

    A point whose check failed is drawn as an ``x``; the hover names the call at
    that point and why the outcome is not ``masked``.
    """
    if df.empty:
        return _empty("Outcome by crash point")
    fig = go.Figure()
    order = _outcomes(df)
    for outcome in order:
        g = df[df["outcome"].astype(str) == outcome]
        text = [f"point {p} ({s})<br>{outcome}" + (f": {html.escape(str(n))}" if n else "")
                for p, s, n in zip(g["point"], g["syscall"], g["note"].fillna(""))]
        fig.add_trace(go.Scatter(
            x=g["point"], y=[outcome] * len(g), mode="markers", name=outcome, text=text,
            marker=dict(color=OUTCOME_COLORS.get(outcome, "#7f7f7f"), size=9,
                        symbol=["circle" if ok else "x" for ok in g["check_ok"].astype(bool)]),
            hovertemplate="%{text}<extra></extra>"))
    victim = ", ".join(sorted(set(df["victim"].astype(str))))
    fig.update_yaxes(categoryorder="array", categoryarray=order[::-1])
    fig.update_layout(title=f"Outcome by crash point ({len(df)} points, {victim} failed)",
                      xaxis_title="crash point (intercepted call N)", height=160 + 40 * len(order))
    return fig


def failover_by_class(df: pd.DataFrame) -> go.Figure:
    """Failover time (ms) by the class of the call the primary died at: a box per class
    (``name`` = the class), over the points that failed over."""
    f = df[df["failover_ms"].notna()] if "failover_ms" in df else df.iloc[0:0]
    if f.empty:
        return _empty("Failover time by syscall class")
    fig = go.Figure()
    for cls in [c for c in CLASS_COLORS if c in set(f["cls"])] + sorted(set(f["cls"]) - set(CLASS_COLORS)):
        g = f[f["cls"] == cls]
        fig.add_trace(go.Box(y=g["failover_ms"], name=cls, boxpoints="all", jitter=0.4,
                             marker_color=CLASS_COLORS.get(cls, "#7f7f7f"),
                             text=[f"point {p}: {s}" for p, s in zip(g["point"], g["syscall"])]))
    fig.update_layout(title="Failover time by the class of the call the primary died at",
                      yaxis_title="detection to live (ms)", showlegend=False)
    return fig


def sweep_heatmap(df: pd.DataFrame, value: str = "masked") -> go.Figure:
    """Commit policy × epoch length: the share of crash points ``masked`` (``value="masked"``)
    or the median ``wall_s`` of a point (``value="wall_s"``, the cost), one cell per pair.

    The hover gives both, and the points behind each cell.
    """
    if df.empty:
        return _empty("Crash points masked by commit policy and epoch length")
    d = df.assign(masked=(df["outcome"].astype(str) == "masked") & df["check_ok"].astype(bool))
    g = d.groupby(["commit", "epoch"], observed=True).agg(masked=("masked", "mean"), wall_s=("wall_s", "median"),
                                                          points=("point", "size")).reset_index()
    commits = [c for c in ("output", "epoch", "none") if c in set(g["commit"])] + \
        sorted(set(g["commit"]) - {"output", "epoch", "none"})
    epochs = sorted(g["epoch"].unique())
    z, text = [], []
    for c in commits:
        zr, tr = [], []
        for e in epochs:
            cell = g[(g["commit"] == c) & (g["epoch"] == e)]
            if cell.empty:
                zr.append(None)
                tr.append("")
                continue
            r = cell.iloc[0]
            zr.append(float(r[value]))
            tr.append(f"{r['masked']:.0%} masked of {r['points']}<br>median point {r['wall_s']:.2f} s")
        z.append(zr)
        text.append(tr)
    masked = value == "masked"
    fig = go.Figure(go.Heatmap(z=z, x=[str(e) for e in epochs], y=commits, text=text, texttemplate="%{text}",
                               colorscale="RdYlGn" if masked else "Blues", zmin=0 if masked else None,
                               zmax=1 if masked else None, hovertemplate="commit %{y}, epoch %{x}<br>%{text}"
                               "<extra></extra>", colorbar_title="masked" if masked else "s / point"))
    fig.update_layout(title="Crash points masked" if masked else "Cost: median seconds per crash point",
                      xaxis_title="epoch length (system calls)", yaxis_title="commit policy")
    return fig


#: Why a thread gave way: the colour of its turn in :func:`thread_schedule`.
SWITCH_COLORS = {"block": "#1f77b4", "epoch": "#ff7f0e", "exit": "#7f7f7f", "end": "#c7c7c7"}
_SWITCH_TEXT = {"block": "blocked in {call}", "epoch": "reached an epoch boundary", "exit": "exited",
                "end": "ran to the end"}


def thread_schedule(df: pd.DataFrame, replica: str = "primary", pid: int | None = None) -> go.Figure:
    """The threads of one process (and of the processes scheduled with it: they share memory)
    on one axis: who ran when, and why it gave way.

    One lane per thread (the process's first thread on top, then in order of creation);
    each turn (:func:`tft_lab.stepping.schedule`) is a bar over the process's calls it
    made, coloured by how it ended (:data:`SWITCH_COLORS`: blocked in a call, an epoch
    boundary, its exit; one trace per reason, named so, so the legend filters by it); a
    thin line joins the end of each turn to the thread that ran next (trace ``"switch"``).
    The x axis counts the process's calls in the order they were made, which both
    replicas share: a replay's figure is the recording's.
    """
    turns = schedule(df, replica, pid)
    title = f"Thread schedule ({replica})"
    if turns.empty:
        return _empty(title)
    order = list(dict.fromkeys(turns["tid"]))
    lane = {t: i for i, t in enumerate(order)}
    fig = go.Figure()
    for why, g in turns.groupby("ended_by", sort=False):
        hover = [f"thread {t}: its calls {a}–{b} ({n}), then {_SWITCH_TEXT.get(why, why).format(call=c)}"
                 + (f"; thread {nx} runs next" if not pd.isna(nx) else "")
                 for t, a, b, n, c, nx in zip(g["tid"], g["first_seq"], g["last_seq"], g["calls"], g["blocked_in"],
                                              g["next_tid"])]
        fig.add_trace(go.Bar(name=str(why), orientation="h", y=[lane[t] for t in g["tid"]],
                             x=(g["end"] - g["start"]).clip(lower=0.3), base=g["start"], width=0.6,
                             marker_color=SWITCH_COLORS.get(why, "#999"), hovertext=hover, hoverinfo="text"))
    xs, ys = [], []
    for end, t, nx in zip(turns["end"], turns["tid"], turns["next_tid"]):
        if not pd.isna(nx) and int(nx) in lane:
            xs += [end, end, None]
            ys += [lane[t], lane[int(nx)], None]
    fig.add_trace(go.Scatter(name="switch", x=xs, y=ys, mode="lines", hoverinfo="skip",
                             line=dict(color="rgba(0, 0, 0, 0.35)", width=1)))
    first = order[0]
    fig.update_layout(
        title=title, template="plotly_white", barmode="overlay",
        xaxis_title="the process's calls, in the order they were made",
        yaxis=dict(tickvals=list(range(len(order))),
                   ticktext=[f"thread {t}" + (" (first)" if t == first else "") for t in order],
                   range=[len(order) - 0.5, -0.5], zeroline=False, showgrid=False),
        height=160 + 45 * len(order), legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0),
        margin=dict(t=90), hovermode="closest",
    )
    return fig
